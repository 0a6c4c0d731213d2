"""The rows of an `.xlsx` workbook's active worksheet, streamed with expat (no cell objects), with the
workbook's dates read as dates: the spreadsheet parser's xlsx half.

A workbook is a zip of XML parts: sizes are checked before anything is inflated (a zip bomb is
`PayloadTooLarge`), and a DOCTYPE is refused (no entity expansion).
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree
from xml.parsers import expat
from xml.parsers.expat import XMLParserType

from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel

from src.errors import InvalidInput, PayloadTooLarge

MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
_MAX_COLUMNS = 1024  # cells further right are ignored: a stray cell in XFD must not widen every row
_CHUNK_BYTES = 64 * 1024


def xlsx_records(content: bytes) -> Iterator[tuple[int, Sequence[Any]]]:
    """Stream the rows of the active worksheet as (row number, values).

    openpyxl's read-only mode needs about 10 µs per cell here (6 s for 50,000 rows of a file it wrote
    itself, which has no <dimension> and so is read twice), so the sheet is streamed with expat and
    openpyxl only supplies the number-format and Excel-date rules.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        inflated = sum(info.file_size for info in archive.infolist())
    except Exception:  # zipfile raises an open set of errors on corrupt archives
        raise InvalidInput("the file is not a valid xlsx workbook (corrupt zip archive)") from None
    with archive:
        if inflated > MAX_UNCOMPRESSED_BYTES:
            raise PayloadTooLarge("the workbook is too large once uncompressed")
        try:
            book = _WorkbookParts.read(archive)
        except Exception:  # missing parts, broken XML, bad relationships: not an xlsx we can read
            raise InvalidInput("the file is a zip archive but not a valid xlsx workbook") from None
        rows = _sheet_rows(archive, book)
        number = 0
        while True:
            try:
                number, values = next(rows)
            except StopIteration:
                return
            except Exception:  # `from None`: a parser error may quote cell text
                raise InvalidInput(f"the worksheet could not be read after row {number}") from None
            yield number, values


@dataclass(slots=True)
class _WorkbookParts:
    sheet_path: str
    strings: list[str]
    date_styles: frozenset[int]
    epoch: datetime

    @classmethod
    def read(cls, archive: zipfile.ZipFile) -> _WorkbookParts:
        root_rels = _relationships(archive, "")
        book_path = next(path for kind, path in root_rels.values() if kind == "officeDocument")
        book = _small_xml(archive, book_path)
        rels = _relationships(archive, book_path)
        sheet_ids = [_attribute(el, "id") for el in book.iter() if _local(el.tag) == "sheet"]
        active = next((el for el in book.iter() if _local(el.tag) == "workbookView"), None)
        first = int(active.get("activeTab", "0")) if active is not None else 0
        # The active tab may be a chartsheet: fall back to the first worksheet.
        worksheets = [rels[rid][1] for rid in sheet_ids if rels[rid][0] == "worksheet"]
        active_path = rels[sheet_ids[first]] if first < len(sheet_ids) else None
        sheet_path = active_path[1] if active_path and active_path[0] == "worksheet" else worksheets[0]
        properties = next((el for el in book.iter() if _local(el.tag) == "workbookPr"), None)
        date1904 = properties is not None and properties.get("date1904", "0") in ("1", "true")
        paths = {kind: path for kind, path in rels.values()}
        strings = _shared_strings(archive, paths["sharedStrings"]) if "sharedStrings" in paths else []
        date_styles = _date_styles(archive, paths["styles"]) if "styles" in paths else frozenset()
        epoch = CALENDAR_MAC_1904 if date1904 else CALENDAR_WINDOWS_1900
        return cls(sheet_path, strings, date_styles, epoch)


def _local(name: str) -> str:
    """`{namespace}row`, `x:row` or `row` -> `row` (transitional and strict OOXML alike)."""
    return name.rpartition("}")[2].rpartition(":")[2]


def _attribute(element: ElementTree.Element, name: str) -> str:
    return next(value for key, value in element.attrib.items() if _local(key) == name)


def _small_xml(archive: zipfile.ZipFile, path: str) -> ElementTree.Element:
    data = archive.read(path)
    if b"<!DOCTYPE" in data:  # OOXML never has one; refuse entity tricks outright
        raise ValueError("DTD in workbook part")
    return ElementTree.fromstring(data)


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type suffix such as `worksheet`, part path inside the archive)."""
    folder, _, name = part.rpartition("/")
    rels_path = f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels"
    if rels_path not in archive.NameToInfo:
        return {}
    result: dict[str, tuple[str, str]] = {}
    for rel in _small_xml(archive, rels_path):
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"{folder}/{target}")
        result[rel.get("Id", "")] = (rel.get("Type", "").rpartition("/")[2], path.lstrip("/"))
    return result


def _date_styles(archive: zipfile.ZipFile, path: str) -> frozenset[int]:
    """Indexes of the cell styles whose number format shows a date."""
    styles = _small_xml(archive, path)
    formats: dict[int, str] = dict(BUILTIN_FORMATS)
    for element in styles.iter():
        if _local(element.tag) == "numFmt":
            formats[int(element.get("numFmtId", "0"))] = element.get("formatCode", "")
    cell_xfs = next((el for el in styles if _local(el.tag) == "cellXfs"), None)
    dates: set[int] = set()
    for index, xf in enumerate(cell_xfs if cell_xfs is not None else ()):
        code = formats.get(int(xf.get("numFmtId", "0")))
        if is_date_format(code) and not is_timedelta_format(code):
            dates.add(index)
    return frozenset(dates)


def _shared_strings(archive: zipfile.ZipFile, path: str) -> list[str]:
    strings: list[str] = []
    parts: list[str] = []
    capture = phonetic = False

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal capture, phonetic
        tag = _local(name)
        if tag == "si":
            parts.clear()
        elif tag == "t":
            capture = not phonetic
        elif tag == "rPh":  # a phonetic guide (Japanese), not part of the value
            phonetic = True

    def end(name: str) -> None:
        nonlocal capture, phonetic
        tag = _local(name)
        if tag == "si":
            strings.append("".join(parts))
        elif tag == "t":
            capture = False
        elif tag == "rPh":
            phonetic = False

    def text(data: str) -> None:
        if capture:
            parts.append(data)

    parser = _expat_parser(start, end, text)
    with archive.open(path) as source:
        parser.ParseFile(source)
    return strings


def _expat_parser(
    start: Callable[[str, dict[str, str]], None], end: Callable[[str], None], text: Callable[[str], None]
) -> XMLParserType:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = _refuse_doctype
    return parser


def _refuse_doctype(*_args: object) -> None:
    raise ValueError("DTD in workbook part")


class _SheetHandler:
    """expat callbacks that turn `<row><c r= t= s=><v>` into (row number, values) tuples."""

    def __init__(self, book: _WorkbookParts) -> None:
        self.book = book
        self.done: list[tuple[int, list[Any]]] = []
        self.in_data = False
        self.row_number = 0
        self.values: list[Any] = []
        self.column = 0
        self.kind = "n"
        self.style = 0
        self.text: list[str] = []
        self.capture = False
        self.phonetic = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = name.rpartition(":")[2]
        if not self.in_data:
            self.in_data = tag == "sheetData"
        elif tag == "c":
            ref = attrs.get("r")
            self.column = _column_number(ref) if ref else self.column + 1
            self.kind = attrs.get("t", "n")
            self.style = int(attrs.get("s", "0"))
            self.text = []
        elif tag == "v" or tag == "t":
            self.capture = not self.phonetic
        elif tag == "row":
            ref = attrs.get("r")
            self.row_number = int(ref) if ref else self.row_number + 1
            self.values = []
            self.column = 0
        elif tag == "rPh":  # a phonetic guide inside an inline string, not part of the value
            self.phonetic = True

    def end(self, name: str) -> None:
        tag = name.rpartition(":")[2]
        if not self.in_data:
            return
        if tag == "v" or tag == "t":
            self.capture = False
        elif tag == "c":
            if self.text and self.column <= _MAX_COLUMNS:
                values = self.values
                if self.column > len(values):
                    values.extend([None] * (self.column - len(values)))
                values[self.column - 1] = self._value("".join(self.text))
        elif tag == "row":
            self.done.append((self.row_number, self.values))
        elif tag == "rPh":
            self.phonetic = False
        elif tag == "sheetData":
            self.in_data = False

    def characters(self, data: str) -> None:
        if self.capture:
            self.text.append(data)

    def _value(self, text: str) -> object:
        kind = self.kind
        if kind == "s":
            return self.book.strings[int(text)]
        if kind == "b":
            return text.strip() == "1"
        if kind != "n":  # "inlineStr", "str" (formula result), "e" (#N/A), "d" (ISO 8601 text)
            return text
        number: float = float(text) if ("." in text or "E" in text or "e" in text) else int(text)
        if self.style in self.book.date_styles:
            try:
                return from_excel(number, self.book.epoch)
            except (OverflowError, ValueError):
                return number  # outside Excel's calendar: reported as "not a date"
        return number


def _column_number(ref: str) -> int:
    """`B12` -> 2."""
    number = 0
    for char in ref:
        if not "A" <= char <= "Z":
            break
        number = number * 26 + ord(char) - 64
    return number


def _sheet_rows(archive: zipfile.ZipFile, book: _WorkbookParts) -> Iterator[tuple[int, list[Any]]]:
    handler = _SheetHandler(book)
    parser = _expat_parser(handler.start, handler.end, handler.characters)
    with archive.open(book.sheet_path) as source:
        while chunk := source.read(_CHUNK_BYTES):
            parser.Parse(chunk, False)
            if handler.done:
                done, handler.done = handler.done, []
                yield from done
        parser.Parse(b"", True)
    yield from handler.done
