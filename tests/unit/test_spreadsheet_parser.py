"""The spreadsheet import parser and the sample generator that feeds it."""

from __future__ import annotations

import io
import random
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook, load_workbook
from stdnum.br import cnpj, cpf

from scripts import generate_sample
from scripts.generate_sample import COLUMNS, generate_rows, write_csv, write_xlsx
from src.application.services import xlsx_reader
from src.application.services.spreadsheet_parser import ParsedSheet, parse_spreadsheet
from src.errors import InvalidInput, PayloadTooLarge

SP = ZoneInfo("America/Sao_Paulo")
HEADER = ["paciente", "documento", "endereco", "data_hora", "telefone", "email"]
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample_appointments.xlsx"
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _xlsx(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _csv(lines: list[str], *, encoding: str = "utf-8") -> bytes:
    return "\r\n".join(lines).encode(encoding)


def _handmade_xlsx(
    sheet_data: str, *, strings: list[str] | None = None, date1904: bool = False, prefix: str = ""
) -> bytes:
    """A minimal workbook written by hand: shared strings, a date style (index 1), optional prefix."""
    ns = f"xmlns:{prefix[:-1]}" if prefix else "xmlns"
    rels = [("rId1", "worksheet", "worksheets/sheet1.xml"), ("rId2", "styles", "styles.xml")]
    parts = {
        "_rels/.rels": _rels([("rId1", "officeDocument", "xl/workbook.xml")]),
        "xl/workbook.xml": (
            f'<{prefix}workbook {ns}="{MAIN_NS}" xmlns:r="{REL_NS}">'
            f'<{prefix}workbookPr date1904="{int(date1904)}"/>'
            f'<{prefix}sheets><{prefix}sheet name="Plan1" sheetId="1" r:id="rId1"/></{prefix}sheets>'
            f"</{prefix}workbook>"
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{MAIN_NS}"><fonts count="1"><font/></fonts>'
            '<fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
            '<borders count="1"><border/></borders><cellStyleXfs count="1"><xf/></cellStyleXfs>'
            '<cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="22" applyNumberFormat="1"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            "</styleSheet>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<{prefix}worksheet {ns}="{MAIN_NS}"><{prefix}sheetData>{sheet_data}'
            f"</{prefix}sheetData></{prefix}worksheet>"
        ),
    }
    if strings is not None:
        rels.append(("rId3", "sharedStrings", "sharedStrings.xml"))
        parts["xl/sharedStrings.xml"] = f'<sst xmlns="{MAIN_NS}">{"".join(strings)}</sst>'
    parts["xl/_rels/workbook.xml.rels"] = _rels(rels)
    parts["[Content_Types].xml"] = _content_types(parts)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _rels(rels: list[tuple[str, str, str]]) -> str:
    items = "".join(
        f'<Relationship Id="{rid}" Type="{REL_NS}/{kind}" Target="{target}"/>' for rid, kind, target in rels
    )
    return f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{items}</Relationships>'


def _content_types(parts: dict[str, str]) -> str:
    kinds = {
        "xl/workbook.xml": "spreadsheetml.sheet.main",
        "xl/worksheets/sheet1.xml": "spreadsheetml.worksheet",
        "xl/styles.xml": "spreadsheetml.styles",
        "xl/sharedStrings.xml": "spreadsheetml.sharedStrings",
    }
    overrides = "".join(
        f'<Override PartName="/{name}" '
        f'ContentType="application/vnd.openxmlformats-officedocument.{kind}+xml"/>'
        for name, kind in kinds.items()
        if name in parts
    )
    return (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        f"{overrides}</Types>"
    )


def _header_cells(prefix: str = "") -> str:
    names = ["paciente", "documento", "endereco", "data_hora"]
    p = prefix
    cells = "".join(
        f'<{p}c r="{col}1" t="inlineStr"><{p}is><{p}t>{name}</{p}t></{p}is></{p}c>'
        for col, name in zip("ABCD", names, strict=True)
    )
    return f'<{prefix}row r="1">{cells}</{prefix}row>'


def _parse_rows(rows: list[dict[str, object]], path: Path, fmt: str, **csv_options: str) -> ParsedSheet:
    if fmt == "xlsx":
        write_xlsx(rows, path)
    else:
        write_csv(rows, path, **csv_options)
    return parse_spreadsheet(path.read_bytes(), path.name, max_rows=len(rows) + 1)


def test_xlsx_round_trip_keeps_generated_values(tmp_path: Path) -> None:
    """Every generated row comes back as a parsed row or a row error, with cleaned values."""
    rows = generate_rows(400, seed=3)
    sheet = _parse_rows(rows, tmp_path / "agenda.xlsx", "xlsx")
    blank = sum(all(v in (None, "") for v in row.values()) for row in rows)
    assert len(sheet.rows) + sheet.rejected == len(rows) - blank
    assert sheet.blank == blank  # counted, so a report can add up to the file's rows
    assert sheet.rejected > 0
    for parsed in sheet.rows:
        source = rows[parsed.row - 2]
        assert parsed.paciente == str(source["Paciente"]).strip()
        assert parsed.documento == str(source["Documento"]).strip()
        assert parsed.endereco == str(source["Endereço"]).strip()
        assert parsed.data_hora.tzinfo is not None
        if isinstance(source["Data/Hora"], datetime):
            assert parsed.data_hora == source["Data/Hora"].replace(tzinfo=SP)


def test_xlsx_and_csv_of_the_same_rows_parse_identically(tmp_path: Path) -> None:
    """The format does not change the result: same rows, same errors, same row numbers."""
    rows = generate_rows(300, seed=11)
    from_xlsx = _parse_rows(rows, tmp_path / "a.xlsx", "xlsx")
    from_csv = _parse_rows(rows, tmp_path / "a.csv", "csv")
    assert from_xlsx.rows == from_csv.rows
    assert from_xlsx.errors == from_csv.errors


def test_latin1_comma_csv_parses_like_utf8(tmp_path: Path) -> None:
    """A Latin-1 CSV with `,` (legacy Excel export) gives the same accented values as UTF-8 with `;`."""
    rows = generate_rows(200, seed=5)
    utf8 = _parse_rows(rows, tmp_path / "utf8.csv", "csv")
    latin1 = _parse_rows(rows, tmp_path / "latin1.csv", "csv", encoding="latin-1", delimiter=",")
    assert latin1.rows == utf8.rows
    assert any("ã" in row.paciente or "ç" in row.endereco for row in latin1.rows)


def test_utf16_tab_separated_text_is_read() -> None:
    """Excel's "Unicode text" export (UTF-16 with a BOM, tab-separated) parses."""
    content = "paciente\tdocumento\tendereço\tdata_hora\r\nJoão\t123\tRua Ç, 1\t01/02/2025 10:00\r\n"
    [row] = parse_spreadsheet(content.encode("utf-16"), "agenda.txt", max_rows=10).rows
    assert (row.paciente, row.endereco) == ("João", "Rua Ç, 1")


def test_text_with_a_nul_byte_is_refused() -> None:
    """A NUL never occurs in a text CSV: the upload is binary, whatever its name."""
    content = b"paciente,documento,endereco,data_hora\r\n" + b"Ana,1,Rua A,01/01/2025\r\n" * 50 + b"\x00"
    with pytest.raises(InvalidInput, match="binary"):
        parse_spreadsheet(content, "agenda.csv", max_rows=100)


def test_utf8_bom_does_not_hide_the_first_column() -> None:
    """A UTF-8 BOM before `paciente` is dropped, so the first column is still recognised."""
    content = "\ufeff" + "paciente;documento;endereco;data_hora\r\nJoão;123;Rua A, 1;01/02/2025 10:00"
    sheet = parse_spreadsheet(content.encode("utf-8"), "agenda.csv", max_rows=10)
    assert [row.paciente for row in sheet.rows] == ["João"]


@pytest.mark.parametrize(
    "header",
    [
        [" PACIENTE ", "Documento", "Endereço", "Data Hora", "Telefone", "E-mail"],
        ["Paciente", "DOCUMENTO", "ENDEREÇO", "data-hora", "telefone", "email"],
        ["paciente", "documento", "endereco", "Data/Hora", "TELEFONE", "e_mail"],
    ],
)
def test_header_variants_are_recognised(header: list[str]) -> None:
    """Header names match regardless of case, accents, spaces and punctuation."""
    content = _xlsx(
        [header, ["Ana", "52998224725", "Rua B, 2", "03/04/2025 08:15", "11 9999-0000", "a@b.com"]]
    )
    [row] = parse_spreadsheet(content, "agenda.xlsx", max_rows=10).rows
    assert (row.telefone, row.email) == ("11 9999-0000", "a@b.com")
    assert row.data_hora == datetime(2025, 4, 3, 8, 15, tzinfo=SP)


def test_columns_in_any_order_and_extra_columns_are_ignored() -> None:
    """Columns are found by name, unknown ones are skipped, optional ones may be absent."""
    content = _xlsx(
        [
            ["Convênio", "data_hora", "endereço", "Observações", "documento", "paciente"],
            ["Unimed", "2025-05-06 09:30", "Av. Brasil, 10", "retorno", "11.222.333/0001-81", "Bia"],
        ]
    )
    [row] = parse_spreadsheet(content, "agenda.xlsx", max_rows=10).rows
    assert (row.paciente, row.documento, row.endereco) == ("Bia", "11.222.333/0001-81", "Av. Brasil, 10")
    assert (row.telefone, row.email) == (None, None)


def test_missing_required_columns_are_listed() -> None:
    """A header without required columns is refused, naming each missing column."""
    content = _csv(["paciente,endereco,telefone", "Ana,Rua A,119999"])
    with pytest.raises(InvalidInput) as caught:
        parse_spreadsheet(content, "agenda.csv", max_rows=10)
    assert "documento" in caught.value.message and "data_hora" in caught.value.message
    assert caught.value.details["missing"] == ["documento", "data_hora"]


def test_duplicate_column_is_refused() -> None:
    """Two columns that mean the same thing are ambiguous and refused."""
    content = _csv(["paciente;documento;endereço;endereco;data_hora", "Ana;1;Rua A;Rua B;01/01/2025"])
    with pytest.raises(InvalidInput, match="endereco appears more than once"):
        parse_spreadsheet(content, "agenda.csv", max_rows=10)


def test_csv_without_header_is_refused_without_echoing_its_data() -> None:
    """A file whose first row is data is refused, and the data is not quoted in the message."""
    content = _csv(["Maria Souza,529.982.247-25,Rua das Flores 12,01/02/2025 10:00"])
    with pytest.raises(InvalidInput) as caught:
        parse_spreadsheet(content, "agenda.csv", max_rows=10)
    for value in ("Maria", "529.982.247-25", "Flores"):
        assert value not in str(caught.value)


def _zip_with(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "filename", "reason"),
    [
        (b"", "agenda.xlsx", "empty"),
        (random.Random(1).randbytes(4096), "agenda.csv", "binary"),
        (random.Random(2).randbytes(4096), "agenda.xlsx", "not an xlsx"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "agenda.csv", "PDF"),
        (b"%PDF-1.7\n", "agenda.pdf", "unsupported file type"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "agenda.xls", "unsupported file type"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "agenda.xlsx", "legacy .xls"),
        (_zip_with("notes.txt", b"paciente,documento"), "agenda.xlsx", "not a valid xlsx"),
        (_xlsx([HEADER])[:300], "agenda.xlsx", "corrupt zip"),
        (b"paciente,documento,endereco,data_hora\n", "agenda.xlsx", "not an xlsx"),
        (b"\n\n  \n", "agenda.csv", "no header row"),
    ],
)
def test_files_that_are_not_spreadsheets_are_refused(content: bytes, filename: str, reason: str) -> None:
    """Random bytes, PDFs, legacy .xls, foreign zips, truncated or empty files raise InvalidInput."""
    with pytest.raises(InvalidInput, match=reason):
        parse_spreadsheet(content, filename, max_rows=10)


def test_worksheet_with_a_dtd_is_refused() -> None:
    """Entity declarations (billion laughs and friends) make the workbook invalid, not slow."""
    content = _handmade_xlsx(_header_cells())
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><worksheet/>'
    patched = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(patched, "w") as target:
        for info in source.infolist():
            data = bomb if info.filename.endswith("sheet1.xml") else source.read(info)
            target.writestr(info.filename, data)
    with pytest.raises(InvalidInput, match="worksheet could not be read"):
        parse_spreadsheet(patched.getvalue(), "agenda.xlsx", max_rows=10)


def test_decompression_bomb_is_refused_before_inflating(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workbook whose parts declare more than the inflate budget is refused up front."""
    monkeypatch.setattr(xlsx_reader, "MAX_UNCOMPRESSED_BYTES", 2000)
    with pytest.raises(PayloadTooLarge, match="too large once uncompressed"):
        parse_spreadsheet(_xlsx([HEADER]), "agenda.xlsx", max_rows=10)


def test_too_many_rows_raise_payload_too_large() -> None:
    """One data row over `max_rows` is refused; exactly `max_rows` is accepted."""
    data = [["Ana", "1", "Rua A", "01/01/2025 10:00"]] * 5
    assert len(parse_spreadsheet(_xlsx([HEADER[:4], *data]), "a.xlsx", max_rows=5).rows) == 5
    with pytest.raises(PayloadTooLarge) as caught:
        parse_spreadsheet(_xlsx([HEADER[:4], *data]), "a.xlsx", max_rows=4)
    assert caught.value.details == {"max_rows": 4}


def test_row_limit_stops_reading_the_xlsx_early() -> None:
    """Rows far past the limit are never parsed: a broken cell there does not turn 413 into 422."""
    row = '<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>{pad}</t></is></c></row>'
    filler = "".join(row.format(n=n, pad="x" * 200) for n in range(2, 3000))
    broken = '<row r="3000"><c r="A3000" t="s"><v>999</v></c></row>'  # no shared string 999
    content = _handmade_xlsx(_header_cells() + filler + broken)
    with pytest.raises(InvalidInput, match="worksheet could not be read"):
        parse_spreadsheet(content, "agenda.xlsx", max_rows=5000)
    with pytest.raises(PayloadTooLarge):
        parse_spreadsheet(content, "agenda.xlsx", max_rows=10)


def test_row_limit_stops_reading_the_csv_early() -> None:
    """In a CSV too, the limit is hit before a malformed line further down is read."""
    lines = ["paciente,documento,endereco,data_hora"] + ["Ana,1,Rua A,01/01/2025"] * 2000
    content = _csv([*lines, "Ana,1," + "x" * 200_000 + ",01/01/2025"])  # over csv's field limit
    with pytest.raises(InvalidInput, match="malformed CSV after row 2001"):
        parse_spreadsheet(content, "agenda.csv", max_rows=5000)
    with pytest.raises(PayloadTooLarge):
        parse_spreadsheet(content, "agenda.csv", max_rows=10)


def test_empty_required_fields_and_bad_dates_become_row_errors() -> None:
    """Each empty required cell and each unparsable date is one RowError; the row is skipped."""
    content = _xlsx(
        [
            HEADER[:4],
            ["Ana", "1", "Rua A", "01/01/2025 10:00"],
            ["", "2", "Rua B", "01/01/2025 10:00"],
            ["Bia", "   ", "Rua C", "31/02/2025 10:00"],
            ["Caio", "3", None, "amanhã 14h"],
            ["Duda", "4", "Rua D", None],
            ["Eva", "5", "Rua E", "2025-01-01T09:00:00"],
        ]
    )
    sheet = parse_spreadsheet(content, "agenda.xlsx", max_rows=10)
    assert [row.row for row in sheet.rows] == [2, 7]
    assert [(e.row, e.column) for e in sheet.errors] == [
        (3, "paciente"),
        (4, "documento"),
        (4, "data_hora"),
        (5, "endereco"),
        (5, "data_hora"),
        (6, "data_hora"),
    ]
    assert sheet.rejected == 4
    assert sheet.errors[2].message == "data_hora: not a date (expected dd/mm/yyyy hh:mm or ISO 8601)"
    assert sheet.errors[5].message == "data_hora: required value is empty"
    assert str(sheet.errors[0]) == "row 3: paciente: required value is empty"


def test_blank_rows_are_skipped_silently_and_row_numbers_follow_the_file() -> None:
    """Empty rows (also whitespace-only) are no errors; rows keep the number they have in the file."""
    content = _csv(
        [
            "",
            "paciente;documento;endereco;data_hora",
            "Ana;1;Rua A;01/01/2025",
            ";;;",
            "  ; ;;",
            "Bia;2;Rua B;02/01/2025",
        ]
    )
    sheet = parse_spreadsheet(content, "agenda.csv", max_rows=2)
    assert [row.row for row in sheet.rows] == [3, 6]
    assert sheet.errors == []
    assert sheet.blank == 2  # the empty rows after the header; the one before it is not data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15/03/2025 14:30", datetime(2025, 3, 15, 14, 30, tzinfo=SP)),
        ("5/3/2025 9:05", datetime(2025, 3, 5, 9, 5, tzinfo=SP)),
        ("15/03/2025", datetime(2025, 3, 15, tzinfo=SP)),
        ("15-03-2025 14:30:45", datetime(2025, 3, 15, 14, 30, 45, tzinfo=SP)),
        ("15/03/2025 às 10h30", datetime(2025, 3, 15, 10, 30, tzinfo=SP)),
        ("2025-03-15 14:30", datetime(2025, 3, 15, 14, 30, tzinfo=SP)),
        ("2025-03-15T14:30:00", datetime(2025, 3, 15, 14, 30, tzinfo=SP)),
        ("2025-03-15T14:30:00-03:00", datetime(2025, 3, 15, 17, 30, tzinfo=UTC)),
        ("2025-03-15T17:30:00Z", datetime(2025, 3, 15, 14, 30, tzinfo=SP)),
    ],
)
def test_date_formats_are_parsed_to_aware_datetimes(text: str, expected: datetime) -> None:
    """Brazilian and ISO date strings parse; naive ones are taken as São Paulo time."""
    content = _csv(["paciente,documento,endereco,data_hora", f"Ana,1,Rua A,{text}"])
    [row] = parse_spreadsheet(content, "agenda.csv", max_rows=1).rows
    assert row.data_hora == expected
    assert row.data_hora.utcoffset() is not None


def test_excel_date_and_datetime_cells_become_sao_paulo_aware() -> None:
    """Real date cells keep their wall-clock time in America/Sao_Paulo; a date-only cell is midnight."""
    content = _xlsx(
        [
            HEADER[:4],
            ["Ana", "1", "Rua A", datetime(2025, 7, 1, 14, 45)],
            ["Bia", "2", "Rua B", date(2025, 7, 2)],
        ]
    )
    rows = parse_spreadsheet(content, "agenda.xlsx", max_rows=5).rows
    assert [row.data_hora for row in rows] == [
        datetime(2025, 7, 1, 14, 45, tzinfo=SP),
        datetime(2025, 7, 2, tzinfo=SP),
    ]
    assert rows[0].data_hora.utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize(("date1904", "serial"), [(False, "45658.5"), (True, "44196.5")])
def test_date_serials_follow_the_style_and_the_workbook_epoch(date1904: bool, serial: str) -> None:
    """A number with a date style is a date (1900 or 1904 epoch); without a date style it is not."""
    cells = (
        '<row r="2"><c r="A2" t="inlineStr"><is><t>Ana</t></is></c><c r="B2"><v>1</v></c>'
        f'<c r="C2" t="inlineStr"><is><t>Rua A</t></is></c><c r="D2" s="1"><v>{serial}</v></c></row>'
        '<row r="3"><c r="A3" t="inlineStr"><is><t>Bia</t></is></c><c r="B3"><v>2</v></c>'
        f'<c r="C3" t="inlineStr"><is><t>Rua B</t></is></c><c r="D3"><v>{serial}</v></c></row>'
    )
    sheet = parse_spreadsheet(
        _handmade_xlsx(_header_cells() + cells, date1904=date1904), "agenda.xlsx", max_rows=5
    )
    assert [row.data_hora for row in sheet.rows] == [datetime(2025, 1, 1, 12, tzinfo=SP)]
    assert [(e.row, e.column) for e in sheet.errors] == [(3, "data_hora")]


def test_numeric_cells_become_digit_strings() -> None:
    """A CPF or phone typed as a number (int or float cell) becomes its digits, without `.0`."""
    content = _xlsx(
        [
            [*HEADER[:4], "telefone"],
            ["Ana", 1234567890, "Rua A", "01/01/2025", 11987654321],
            ["Bia", 12345678000195.0, "Rua B", "01/01/2025", 1133334444.0],
        ]
    )
    rows = parse_spreadsheet(content, "agenda.xlsx", max_rows=5).rows
    assert [(row.documento, row.telefone) for row in rows] == [
        ("1234567890", "11987654321"),
        ("12345678000195", "1133334444"),
    ]


def test_shared_strings_rich_text_formulas_and_prefixed_xml_are_read() -> None:
    """Excel-style parts parse: shared strings (rich runs, phonetic guides), cached formula results,
    cells without references and namespace prefixes, with the values openpyxl reads too."""
    strings = [
        "<si><t>paciente</t></si>",
        "<si><t>documento</t></si>",
        "<si><t>endereço</t></si>",
        "<si><t>data_hora</t></si>",
        "<si><r><rPr><b/></rPr><t>João </t></r><r><t>da Silva</t></r>"
        '<rPh sb="0" eb="4"><t>ジョアン</t></rPh></si>',
    ]
    sheet_data = (
        '<x:row r="1"><x:c t="s"><x:v>0</x:v></x:c><x:c t="s"><x:v>1</x:v></x:c>'
        '<x:c t="s"><x:v>2</x:v></x:c><x:c t="s"><x:v>3</x:v></x:c></x:row>'
        '<x:row r="4"><x:c r="A4" t="s"><x:v>4</x:v></x:c><x:c r="B4"><x:v>52998224725</x:v></x:c>'
        '<x:c r="C4" t="str"><x:f>"Rua "&amp;"A"</x:f><x:v>Rua A</x:v></x:c>'
        '<x:c r="D4" s="1"><x:v>45658.75</x:v></x:c></x:row>'
        '<x:row r="5"><x:c r="A5" t="inlineStr"><x:is><x:r><x:t>Ana </x:t></x:r><x:r><x:t>Lima</x:t></x:r>'
        '<x:rPh sb="0" eb="3"><x:t>アナ</x:t></x:rPh></x:is></x:c>'
        '<x:c r="B5"><x:v>5.2998224725E10</x:v></x:c>'
        '<x:c r="C5" t="inlineStr"><x:is><x:t>Rua B</x:t></x:is></x:c>'
        '<x:c r="D5" s="1"><x:v>45659</x:v></x:c></x:row>'
    )
    content = _handmade_xlsx(sheet_data, strings=strings, prefix="x:")
    rows = parse_spreadsheet(content, "agenda.xlsx", max_rows=5).rows
    assert [(row.row, row.paciente, row.documento, row.endereco, row.data_hora) for row in rows] == [
        (4, "João da Silva", "52998224725", "Rua A", datetime(2025, 1, 1, 18, tzinfo=SP)),
        (5, "Ana Lima", "52998224725", "Rua B", datetime(2025, 1, 2, tzinfo=SP)),
    ]
    workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    try:
        oracle_sheet = workbook.active
        assert oracle_sheet is not None
        oracle = list(oracle_sheet.iter_rows(min_row=4, values_only=True))
    finally:
        workbook.close()
    assert oracle == [
        ("João da Silva", 52998224725, "Rua A", datetime(2025, 1, 1, 18)),
        ("Ana Lima", 52998224725.0, "Rua B", datetime(2025, 1, 2)),
    ]


def test_the_active_sheet_is_read() -> None:
    """With several sheets, the one that was open in Excel is imported."""
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.append(["outra", "coisa"])
    second = workbook.create_sheet("Agenda")
    second.append(HEADER[:4])
    second.append(["Ana", "1", "Rua A", "01/01/2025"])
    workbook.active = 1
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert [row.paciente for row in parse_spreadsheet(buffer.getvalue(), "a.xlsx", max_rows=5).rows] == [
        "Ana"
    ]


def test_error_messages_never_contain_personal_data(tmp_path: Path) -> None:
    """No row error quotes the name, document, address or date of its row."""
    rows = generate_rows(3000, seed=99)
    for fmt in ("xlsx", "csv"):
        sheet = _parse_rows(rows, tmp_path / f"agenda.{fmt}", fmt)
        assert len(sheet.errors) > 20
        for error in sheet.errors:
            source = rows[error.row - 2]
            for column in ("Paciente", "Documento", "Endereço", "Data/Hora"):
                value = str(source[column] or "").strip()
                if len(value) > 2:
                    assert value not in error.message and value not in str(error)


def test_generator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    """Same seed, same rows and byte-identical workbooks; another seed, other rows."""
    assert generate_rows(300, seed=7) == generate_rows(300, seed=7)
    assert generate_rows(300, seed=7) != generate_rows(300, seed=8)
    write_xlsx(generate_rows(100, seed=7), tmp_path / "a.xlsx")
    write_xlsx(generate_rows(100, seed=7), tmp_path / "b.xlsx")
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_generator_produces_the_requested_rows_with_brazilian_messiness() -> None:
    """n rows with valid and invalid CPFs/CNPJs, numbers, abbreviations and mixed date formats."""
    rows = generate_rows(3000, seed=42)
    assert len(rows) == 3000 and all(list(row) == list(COLUMNS) for row in rows)
    documents = [row["Documento"] for row in rows]
    texts = [d for d in documents if isinstance(d, str) and d.strip()]
    assert sum(cpf.is_valid(d) for d in texts) > 1000
    assert sum(cnpj.is_valid(d) for d in texts) > 300
    assert any(cnpj.is_valid(d) and any(c.isalpha() for c in d) for d in texts)  # 2026 CNPJ
    assert any(isinstance(d, int) and len(str(d)) == 10 for d in documents)  # lost leading zero
    assert any(d == "111.111.111-11" or d == "11111111111" for d in texts)
    assert sum(len(cpf.compact(d)) == 11 and not cpf.is_valid(d) for d in texts) > 50
    addresses = " ".join(str(row["Endereço"]) for row in rows)
    for token in ("R. ", "Av. ", "Trav. ", "Al. ", "Rod. ", "Estr. ", "Pç. ", "s/n", "cep ", "Bahia"):
        assert token in addresses
    moments = [row["Data/Hora"] for row in rows]
    assert sum(isinstance(m, datetime) for m in moments) > 900
    assert sum(isinstance(m, str) for m in moments) > 1500
    ufs = {part for part in addresses.replace(",", " ").split() if len(part) == 2 and part.isupper()}
    assert len(ufs & {"SP", "RJ", "MG", "BA", "PE", "RS", "AM", "DF", "AC", "TO"}) == 10


def test_generator_check_digits_agree_with_stdnum() -> None:
    """The generator's CPF and (alphanumeric) CNPJ check digits are the official ones."""
    rng = random.Random(0)
    for _ in range(200):
        cpf_base = "".join(rng.choice("0123456789") for _ in range(9))
        cnpj_base = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(12))
        assert cpf.is_valid(cpf_base + generate_sample.cpf_check_digits(cpf_base))
        assert generate_sample.cnpj_check_digits(cnpj_base) == cnpj.calc_check_digits(cnpj_base)


def test_generator_cli_writes_a_csv_the_parser_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format csv` writes a parseable CSV with the requested number of rows."""
    out = tmp_path / "sub" / "agenda.txt"
    generate_sample.main(["--rows", "120", "--out", str(out), "--seed", "3", "--format", "csv"])
    sheet = parse_spreadsheet(out.read_bytes(), out.name, max_rows=120)
    assert 110 <= len(sheet.rows) + sheet.rejected <= 120
    assert "wrote 120 rows" in capsys.readouterr().out


def test_bundled_sample_parses_to_about_a_thousand_rows() -> None:
    """data/sample_appointments.xlsx is small and imports ~1,000 rows, a few of them rejected."""
    content = SAMPLE.read_bytes()
    assert len(content) < 100_000
    sheet = parse_spreadsheet(content, SAMPLE.name, max_rows=1000)
    assert 950 <= len(sheet.rows) <= 990
    assert 10 <= sheet.rejected <= 40
    assert len(sheet.rows) + sheet.rejected >= 990
