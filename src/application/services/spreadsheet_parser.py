"""Parse an uploaded appointments spreadsheet (`.xlsx` or `.csv`) into clean rows and row errors.

The header row (the first non-empty row) names the columns, matched case-, accent- and
punctuation-insensitively: `paciente`, `documento`, `endereco`, `data_hora` (required) and
`telefone`, `email` (optional); other columns are ignored. A bad row becomes `RowError`s and is
skipped; a bad file raises `InvalidInput`, too many rows `PayloadTooLarge`.

Messages never contain a cell value (LGPD): only the row, the column and what is wrong.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from src.application.services.xlsx_reader import xlsx_records
from src.domain.appointments import FieldLimits, local_moment
from src.errors import InvalidInput, PayloadTooLarge

SAO_PAULO = ZoneInfo("America/Sao_Paulo")  # APP_TIMEZONE's default
REQUIRED_COLUMNS: tuple[str, ...] = ("paciente", "documento", "endereco", "data_hora")
OPTIONAL_COLUMNS: tuple[str, ...] = ("telefone", "email")
COLUMN_ALIASES: dict[str, str] = {"e_mail": "email"}
# zipfile never inflates past an entry's declared size, so checking the declared sizes stops
# decompression bombs (the shared-strings table and the small parts are read whole).

_XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_TEXT_SUFFIXES = frozenset({".csv", ".txt", ""})
_ZIP_MAGIC = b"PK\x03\x04"
_OTHER_MAGIC: dict[bytes, str] = {
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "a legacy .xls or password-protected workbook (save it as .xlsx or .csv)",
    b"\x89PNG": "an image",
    b"\xff\xd8\xff": "an image",
    b"\x1f\x8b": "a gzip archive",
}
_DMY = re.compile(
    r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T]+(?:(?:às|as) +)?(\d{1,2})[:h](\d{2})(?::(\d{2}))?)?",
    re.IGNORECASE,
)
_NOT_A_DATE = "not a date (expected dd/mm/yyyy hh:mm or ISO 8601)"


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One valid appointment row; `row` is its number in the file (2 = first data row)."""

    row: int
    paciente: str
    documento: str
    endereco: str
    data_hora: datetime
    telefone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row was skipped. `message` names the column and the problem, never the value."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(slots=True)
class ParsedSheet:
    """The valid rows in file order and the errors of the skipped ones."""

    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    blank: int = 0  # empty rows between the header and the end, skipped without an error

    @property
    def rejected(self) -> int:
        """How many rows were skipped because of errors (a row may have several)."""
        return len({error.row for error in self.errors})


def parse_spreadsheet(
    content: bytes,
    filename: str,
    *,
    max_rows: int,
    timezone: tzinfo = SAO_PAULO,
    limits: FieldLimits | None = None,
) -> ParsedSheet:
    """Parse an `.xlsx` or `.csv` upload; raise `InvalidInput` or `PayloadTooLarge` for the file.
    Times without a zone are in `timezone` (APP_TIMEZONE); a row with a field over its limit is
    rejected, naming the field."""
    rules = _RowRules(timezone, limits or FieldLimits())
    if not content:
        raise InvalidInput("the file is empty")
    suffix = PurePath(filename).suffix.lower()
    if suffix not in _XLSX_SUFFIXES | _TEXT_SUFFIXES:
        raise InvalidInput("unsupported file type: upload an .xlsx or .csv spreadsheet")
    for magic, what in _OTHER_MAGIC.items():
        if content.startswith(magic):
            raise InvalidInput(f"the file is {what}, not an .xlsx or .csv spreadsheet")
    if content.startswith(_ZIP_MAGIC):
        return _collect(xlsx_records(content), max_rows=max_rows, rules=rules)
    if suffix in _XLSX_SUFFIXES:
        raise InvalidInput("the file is named .xlsx but is not an xlsx workbook")
    return _collect(_csv_records(content), max_rows=max_rows, rules=rules)


@dataclass(frozen=True)
class _RowRules:
    timezone: tzinfo
    limits: FieldLimits


def _collect(records: Iterator[tuple[int, Sequence[Any]]], *, max_rows: int, rules: _RowRules) -> ParsedSheet:
    columns = _read_header(records)
    paciente, documento, endereco, data_hora = (columns[name] for name in REQUIRED_COLUMNS)
    telefone, email = columns.get("telefone"), columns.get("email")
    sheet = ParsedSheet()
    seen = 0
    for number, record in records:
        if all(value is None or (isinstance(value, str) and not value.strip()) for value in record):
            sheet.blank += 1
            continue
        seen += 1
        if seen > max_rows:  # stop at once: the rest of the file is never read
            raise PayloadTooLarge(f"the spreadsheet has more than {max_rows} data rows", max_rows=max_rows)
        width = len(record)
        texts = [_text(record[i]) if i < width else "" for i in (paciente, documento, endereco)]
        moment = _parse_datetime(record[data_hora], rules.timezone) if data_hora < width else None
        problems = [
            RowError(number, name, f"{name}: required value is empty")
            for name, text in zip(REQUIRED_COLUMNS[:3], texts, strict=True)
            if not text
        ]
        optional = {"telefone": _optional(record, telefone), "email": _optional(record, email)}
        exceeded = rules.limits.first_exceeded(
            {**dict(zip(REQUIRED_COLUMNS[:3], texts, strict=True)), **optional}
        )
        if exceeded is not None:
            name, limit, length = exceeded
            problems.append(RowError(number, name, f"{name}: {length} characters, over its limit of {limit}"))
        if moment is None:
            empty = data_hora >= width or not _text(record[data_hora])
            reason = "required value is empty" if empty else _NOT_A_DATE
            problems.append(RowError(number, "data_hora", f"data_hora: {reason}"))
        if problems:
            sheet.errors.extend(problems)
            continue
        assert moment is not None  # for mypy: problems is non-empty otherwise
        sheet.rows.append(
            ParsedRow(
                row=number,
                paciente=texts[0],
                documento=texts[1],
                endereco=texts[2],
                data_hora=moment,
                telefone=optional["telefone"],
                email=optional["email"],
            )
        )
    return sheet


def _read_header(records: Iterator[tuple[int, Sequence[Any]]]) -> dict[str, int]:
    for _number, header in records:
        if any(_text(value) for value in header):
            break
    else:
        raise InvalidInput("the spreadsheet has no header row")
    columns: dict[str, int] = {}
    for index, value in enumerate(header):
        key = _column_key(value)
        if key not in REQUIRED_COLUMNS and key not in OPTIONAL_COLUMNS:
            continue
        if key in columns:
            raise InvalidInput(f"column {key} appears more than once in the header")
        columns[key] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        # Never echo the header cells: in a file without a header they are a patient's data.
        raise InvalidInput(
            f"missing required column(s): {', '.join(missing)} "
            f"(the first row must name the columns {', '.join(REQUIRED_COLUMNS)})",
            missing=missing,
        )
    return columns


def _column_key(value: object) -> str:
    ascii_text = unicodedata.normalize("NFKD", _text(value)).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    return COLUMN_ALIASES.get(key, key)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        # A CPF typed as a number comes back as 1234567890.0 (leading zeros already lost).
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _optional(record: Sequence[Any], index: int | None) -> str | None:
    if index is None or index >= len(record):
        return None
    return _text(record[index]) or None


def _parse_datetime(value: object, zone: tzinfo) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        match = _DMY.fullmatch(text)
        try:
            if match:
                day, month, year, hour, minute, second = match.groups()
                moment = datetime(
                    int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
                )
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return local_moment(moment, zone)


def _csv_records(content: bytes) -> Iterator[tuple[int, Sequence[Any]]]:
    text = _decode(content)
    sample = text[:65536]
    controls = sum(1 for char in sample if char < " " and char not in "\t\r\n")
    if "\x00" in sample or controls > len(sample) // 100:
        raise InvalidInput("the file is not a spreadsheet (binary content)")
    header_line = re.search(r"[^\r\n]*\S[^\r\n]*", text)
    delimiter = _sniff_delimiter(header_line.group() if header_line else "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    number = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:
            raise InvalidInput(f"malformed CSV after row {number}") from None
        number += 1
        yield number, record


def _decode(content: bytes) -> str:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if content.startswith(bom):
            try:
                return content.decode(encoding)
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"the file starts with a {encoding} mark but is not valid {encoding}"
                ) from None
    for encoding in ("utf-8", "cp1252"):  # Excel on Windows saves "CSV" as cp1252, a Latin-1 superset
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            pass
    return content.decode("latin-1")


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter under which the header names the most known columns (then: most fields)."""
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)

    def score(delimiter: str) -> tuple[int, int]:
        try:
            fields = next(csv.reader([header_line], delimiter=delimiter), [])
        except csv.Error:
            return 0, 0
        return sum(_column_key(name) in known for name in fields), len(fields)

    return max((",", ";", "\t"), key=score)
