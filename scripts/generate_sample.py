"""Generate a messy, realistic spreadsheet of clinic appointments (deterministic for a seed).

    python scripts/generate_sample.py --rows 1000 --out data/sample_appointments.xlsx [--seed 42]
    python scripts/generate_sample.py --rows 50000 --out /tmp/big.csv --format csv

Importable too (`generate_rows`, `write_xlsx`, `write_csv`), for tests and benchmarks. Only the
standard library and openpyxl are used, so the script runs without the `src` package on the path.
All people and documents are fictitious; CPFs/CNPJs are random numbers with computed check digits.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

COLUMNS: tuple[str, ...] = (
    "Paciente",
    "Documento",
    "Endereço",
    "Data/Hora",
    "Telefone",
    "E-mail",
    "Observações",
)
INVALID_SHARE = 0.02  # rows the importer must reject (missing name, bad date, ...)
BLANK_SHARE = 0.003  # completely empty rows, which the importer skips silently

FIRST_NAMES = (
    "Maria", "José", "Ana", "João", "Francisca", "Antônio", "Adriana", "Carlos", "Juliana", "Paulo",
    "Márcia", "Pedro", "Fernanda", "Lucas", "Patrícia", "Luiz", "Aline", "Marcos", "Sandra", "Gabriel",
    "Camila", "Rafael", "Letícia", "Daniel", "Beatriz", "Thiago", "Larissa", "Mateus", "Vitória",
    "Felipe", "Luíza", "Bruno", "Raimunda", "Sebastião", "Conceição", "Gustavo", "Tânia", "Leandro",
    "Cláudia", "Rodrigo", "Heloísa", "Caio", "Débora", "Vinícius", "Simone", "Édson", "Rosângela",
    "Otávio", "Jéssica", "Igor", "Iracema", "Washington", "Kátia", "Júlio", "Lúcia", "Geraldo",
)  # fmt: skip
SURNAMES = (
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima",
    "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes",
    "Vieira", "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques",
    "Machado", "Mendes", "Freitas", "Cardoso", "Ramos", "Gonçalves", "Araújo", "Conceição", "Brandão",
    "Assunção", "Magalhães", "Falcão", "Simões", "Guimarães", "Peçanha", "Lacerda", "Cavalcanti",
)  # fmt: skip
CONNECTORS = ("da", "de", "dos")

# (city, UF, state name, DDD, CEP range as 5-digit prefixes, some real neighbourhoods)
CITIES: tuple[tuple[str, str, str, int, int, int, tuple[str, ...]], ...] = (
    ("São Paulo", "SP", "São Paulo", 11, 1000, 5999, ("Bela Vista", "Moema", "Pinheiros", "Tatuapé")),
    ("Campinas", "SP", "São Paulo", 19, 13000, 13139, ("Cambuí", "Taquaral", "Barão Geraldo")),
    ("Santos", "SP", "São Paulo", 13, 11000, 11099, ("Gonzaga", "Boqueirão", "Ponta da Praia")),
    ("Ribeirão Preto", "SP", "São Paulo", 16, 14000, 14114, ("Jardim Irajá", "Vila Seixas")),
    ("Sorocaba", "SP", "São Paulo", 15, 18000, 18109, ("Campolim", "Vila Hortência")),
    ("Rio de Janeiro", "RJ", "Rio de Janeiro", 21, 20000, 23799, ("Copacabana", "Tijuca", "Méier")),
    ("Niterói", "RJ", "Rio de Janeiro", 21, 24000, 24399, ("Icaraí", "Santa Rosa")),
    ("Petrópolis", "RJ", "Rio de Janeiro", 24, 25600, 25779, ("Quitandinha", "Valparaíso")),
    ("Belo Horizonte", "MG", "Minas Gerais", 31, 30000, 31999, ("Savassi", "Funcionários", "Pampulha")),
    ("Juiz de Fora", "MG", "Minas Gerais", 32, 36000, 36099, ("São Mateus", "Granbery")),
    ("Uberlândia", "MG", "Minas Gerais", 34, 38400, 38415, ("Santa Mônica", "Tabajaras")),
    ("Vitória", "ES", "Espírito Santo", 27, 29000, 29099, ("Praia do Canto", "Jardim Camburi")),
    ("Curitiba", "PR", "Paraná", 41, 80000, 82999, ("Batel", "Água Verde", "Boqueirão")),
    ("Londrina", "PR", "Paraná", 43, 86000, 86099, ("Gleba Palhano", "Vila Brasil")),
    ("Florianópolis", "SC", "Santa Catarina", 48, 88000, 88099, ("Trindade", "Itacorubi", "Coqueiros")),
    ("Joinville", "SC", "Santa Catarina", 47, 89200, 89239, ("América", "Glória")),
    ("Blumenau", "SC", "Santa Catarina", 47, 89000, 89099, ("Velha", "Itoupava Seca")),
    ("Porto Alegre", "RS", "Rio Grande do Sul", 51, 90000, 91999, ("Moinhos de Vento", "Menino Deus")),
    ("Caxias do Sul", "RS", "Rio Grande do Sul", 54, 95000, 95124, ("São Pelegrino", "Exposição")),
    ("Salvador", "BA", "Bahia", 71, 40000, 42599, ("Barra", "Pituba", "Rio Vermelho", "Itapuã")),
    ("Feira de Santana", "BA", "Bahia", 75, 44000, 44099, ("Kalilândia", "Capuchinhos")),
    ("Recife", "PE", "Pernambuco", 81, 50000, 52999, ("Boa Viagem", "Casa Forte", "Graças")),
    ("Fortaleza", "CE", "Ceará", 85, 60000, 61599, ("Aldeota", "Meireles", "Messejana")),
    ("Natal", "RN", "Rio Grande do Norte", 84, 59000, 59139, ("Tirol", "Ponta Negra")),
    ("João Pessoa", "PB", "Paraíba", 83, 58000, 58099, ("Manaíra", "Tambaú")),
    ("Campina Grande", "PB", "Paraíba", 83, 58400, 58439, ("Catolé", "Prata")),
    ("Maceió", "AL", "Alagoas", 82, 57000, 57099, ("Ponta Verde", "Jatiúca")),
    ("Aracaju", "SE", "Sergipe", 79, 49000, 49099, ("Atalaia", "Grageru")),
    ("Teresina", "PI", "Piauí", 86, 64000, 64099, ("Jóquei", "Fátima")),
    ("São Luís", "MA", "Maranhão", 98, 65000, 65099, ("Renascença", "Calhau")),
    ("Belém", "PA", "Pará", 91, 66000, 66999, ("Nazaré", "Umarizal", "Marco")),
    ("Manaus", "AM", "Amazonas", 92, 69000, 69099, ("Adrianópolis", "Ponta Negra")),
    ("Macapá", "AP", "Amapá", 96, 68900, 68914, ("Trem", "Central")),
    ("Boa Vista", "RR", "Roraima", 95, 69300, 69339, ("Caçari", "São Francisco")),
    ("Porto Velho", "RO", "Rondônia", 69, 76800, 76834, ("Olaria", "Embratel")),
    ("Rio Branco", "AC", "Acre", 68, 69900, 69923, ("Bosque", "Estação Experimental")),
    ("Palmas", "TO", "Tocantins", 63, 77000, 77270, ("Plano Diretor Sul", "Taquaralto")),
    ("Goiânia", "GO", "Goiás", 62, 74000, 74899, ("Setor Bueno", "Setor Oeste", "Setor Marista")),
    ("Brasília", "DF", "Distrito Federal", 61, 70000, 72799, ("Asa Sul", "Asa Norte", "Lago Sul")),
    ("Cuiabá", "MT", "Mato Grosso", 65, 78000, 78099, ("Goiabeiras", "Duque de Caxias")),
    ("Campo Grande", "MS", "Mato Grosso do Sul", 67, 79000, 79129, ("Centro", "Jardim dos Estados")),
)  # fmt: skip
GENERIC_BAIRROS = ("Centro", "Vila Nova", "Jardim América", "Boa Vista", "São José", "Santa Cruz")
STREET_NAMES = (
    "das Flores", "Paulista", "XV de Novembro", "Sete de Setembro", "Barão do Rio Branco",
    "Dom Pedro II", "Getúlio Vargas", "Santos Dumont", "Tiradentes", "José Bonifácio",
    "Marechal Deodoro", "Afonso Pena", "Brasil", "da Independência", "Presidente Vargas",
    "das Palmeiras", "dos Andradas", "Voluntários da Pátria", "Conselheiro Furtado", "Treze de Maio",
    "São João", "Rui Barbosa", "Duque de Caxias", "Floriano Peixoto", "Castro Alves", "Goiás",
    "Princesa Isabel", "Padre Anchieta", "Visconde de Mauá", "Cândido Portinari",
)  # fmt: skip
# street type → how people abbreviate it
STREET_KINDS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("Rua", ("R.", "R", "r.", "Rua", "RUA", "rua"), 46),
    ("Avenida", ("Av.", "av", "AV.", "Avenida", "Avda."), 26),
    ("Travessa", ("Trav.", "Tv.", "Travessa"), 6),
    ("Alameda", ("Al.", "Alameda"), 6),
    ("Praça", ("Pç.", "Pça.", "Praça", "Praca"), 5),
    ("Estrada", ("Estr.", "Est.", "Estrada"), 5),
    ("Rodovia", ("Rod.", "Rodovia"), 6),
)  # fmt: skip
COMPLEMENTS = (
    "ap 4", "apto 1203", "Apto. 31 Bl. B", "casa 2", "sala 304", "fundos", "conj. 12", "loja 3",
    "bloco C ap 12", "apt 71", "cj 1504",
)  # fmt: skip
BAD_DATES = ("31/02/2025 10:00", "amanhã 14h", "a confirmar", "2025-13-45 09:00", "15/03 às 9h", "??")
NOTES = ("retorno", "1ª consulta", "convênio Unimed", "particular", "trazer exames", "encaixe")
EMAIL_DOMAINS = ("gmail.com", "hotmail.com", "yahoo.com.br", "outlook.com", "uol.com.br", "bol.com.br")
_CNPJ_CHARS = "0123456789ABCDEFGHIJKLMNPQRSTUVWXYZ"


def cpf_check_digits(base: str) -> str:
    """The two check digits of a 9-digit CPF base."""
    digits = base
    for _ in range(2):
        total = sum(int(c) * w for c, w in zip(digits, range(len(digits) + 1, 1, -1), strict=True))
        digits += str(total * 10 % 11 % 10)
    return digits[9:]


def cnpj_check_digits(base: str) -> str:
    """The two check digits of a 12-character CNPJ base (digits, or letters for the 2026 format)."""
    chars = base.upper()
    for weights in ((5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2), (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)):
        remainder = sum((ord(c) - 48) * w for c, w in zip(chars, weights, strict=True)) % 11
        chars += "0" if remainder < 2 else str(11 - remainder)
    return chars[12:]


def generate_rows(n: int, seed: int) -> list[dict[str, object]]:
    """`n` appointment rows keyed by `COLUMNS`; the same `seed` always gives the same rows."""
    rng = random.Random(seed)
    start = date(2025, 1, 6)
    return [_row(rng, start) for _ in range(n)]


def _row(rng: random.Random, start: date) -> dict[str, object]:
    if rng.random() < BLANK_SHARE:
        return dict.fromkeys(COLUMNS)
    city = rng.choice(CITIES)
    first, surnames = rng.choice(FIRST_NAMES), rng.sample(SURNAMES, rng.choice((1, 2, 2, 3)))
    row: dict[str, object] = {
        "Paciente": _name(rng, first, surnames),
        "Documento": _document(rng),
        "Endereço": _address(rng, city),
        "Data/Hora": _when(rng, start),
        "Telefone": _phone(rng, city[3]) if rng.random() < 0.7 else None,
        "E-mail": _email(rng, first, surnames[-1]) if rng.random() < 0.55 else None,
        "Observações": rng.choice(NOTES) if rng.random() < 0.1 else None,
    }
    if rng.random() < INVALID_SHARE:
        defect = rng.choice(("Paciente", "Data/Hora", "Data/Hora", "Documento", "Endereço"))
        row[defect] = rng.choice(BAD_DATES) if defect == "Data/Hora" else rng.choice(("", "  ", None))
    return row


def _messy_case(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.15:
        text = text.upper()
    elif roll < 0.25:
        text = text.lower()
    if rng.random() < 0.2:
        text = _strip_accents(text)
    return text


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _name(rng: random.Random, first: str, surnames: Sequence[str]) -> str:
    parts = [first]
    for surname in surnames:
        if rng.random() < 0.2:
            parts.append(rng.choice(CONNECTORS))
        parts.append(surname)
    name = _messy_case(rng, " ".join(parts))
    if rng.random() < 0.08:
        name = rng.choice((f"  {name}", f"{name} ", name.replace(" ", "  ", 1)))
    return name


def _document(rng: random.Random) -> object:
    kind = rng.choices(
        ("cpf", "cpf_digits", "cpf_odd", "cpf_number", "cnpj", "cnpj_digits", "cnpj_number", "alnum",
         "bad_check", "repeated", "short"),
        weights=(30, 14, 4, 6, 12, 5, 2, 5, 8, 3, 2),
    )[0]  # fmt: skip
    if kind in ("cnpj", "cnpj_digits", "cnpj_number", "alnum"):
        pool = _CNPJ_CHARS if kind == "alnum" else "0123456789"
        base = "".join(rng.choice(pool) for _ in range(8)) + rng.choice(("0001", "0002", "0003"))
        if kind == "alnum":
            base = base[:2] + "".join(rng.choice(_CNPJ_CHARS[10:]) for _ in range(3)) + base[5:]
            base = base[:10] + "".join(rng.choice(_CNPJ_CHARS[10:]) for _ in range(2))
        if kind == "cnpj_number":
            base = "0" + base[1:]
        value = base + cnpj_check_digits(base)
        if kind == "cnpj_number":
            return int(value)
        if kind == "cnpj_digits" or (kind == "alnum" and rng.random() < 0.25):
            return value
        return f"{value[:2]}.{value[2:5]}.{value[5:8]}/{value[8:12]}-{value[12:]}"
    if kind == "repeated":
        digit = str(rng.randrange(10))
        return rng.choice((f"{digit * 3}.{digit * 3}.{digit * 3}-{digit * 2}", digit * 11))
    base = "".join(str(rng.randrange(10)) for _ in range(9))
    if kind == "cpf_number":
        base = "0" + base[1:]
    value = base + cpf_check_digits(base)
    if kind == "bad_check":
        value = value[:9] + str((int(value[9]) + 1) % 10) + value[10]
    elif kind == "short":
        value = value[:-1]
    if kind == "cpf_number":
        return int(value)
    if kind in ("cpf_digits", "short"):
        return value
    if kind == "cpf_odd":
        return rng.choice((f"{value[:3]} {value[3:6]} {value[6:9]} {value[9:]}", f"{value[:9]}/{value[9:]}"))
    return f"{value[:3]}.{value[3:6]}.{value[6:9]}-{value[9:]}"


def _address(rng: random.Random, city_row: tuple[str, str, str, int, int, int, tuple[str, ...]]) -> str:
    city, uf, state, _ddd, cep_low, cep_high, bairros = city_row
    _kind, abbreviations, _weight = rng.choices(STREET_KINDS, weights=[k[2] for k in STREET_KINDS])[0]
    abbreviation = rng.choice(abbreviations)
    if abbreviation.startswith(("Rod", "rod")):
        street = f"{abbreviation} {rng.choice(('BR-116', 'BR-101', f'{uf}-{rng.randint(10, 499)}'))}"
        number = f"km {rng.randint(1, 480)}" + rng.choice(("", f",{rng.randint(1, 9)}"))
    else:
        street = f"{abbreviation} {rng.choice(STREET_NAMES)}"
        number = rng.choice(("s/n", "S/N", "sn")) if rng.random() < 0.07 else str(rng.randint(1, 4999))
    complement = rng.choice(COMPLEMENTS) if rng.random() < 0.25 else ""
    bairro = rng.choice(bairros + GENERIC_BAIRROS)
    digits = f"{rng.randint(cep_low, cep_high):05d}{rng.randint(0, 999):03d}"
    cep = rng.choice((digits, f"{digits[:5]}-{digits[5:]}", f"{digits[:2]}.{digits[2:5]}-{digits[5:]}"))
    if rng.random() < 0.12:
        cep = ""
    state_text = rng.choices(
        (uf, uf.lower(), state, _strip_accents(state).lower(), ""), (55, 10, 15, 10, 10)
    )[0]
    template = rng.randrange(5)
    if template == 0:  # R. das Flores 123 ap 4, Centro, Sao Paulo - SP, 01310100
        text = f"{street} {number} {complement}".strip() + f", {bairro}, {city}"
        text += (f" - {state_text}" if state_text else "") + (f", {cep}" if cep else "")
    elif template == 1:  # av paulista, 1578 - bela vista - são paulo/sp cep 01310-200
        text = f"{street}, {number}" + (f" {complement}" if complement else "") + f" - {bairro} - {city}"
        text = (text + (f"/{state_text}" if state_text else "") + (f" cep {cep}" if cep else "")).lower()
    elif template == 2:
        text = (
            f"{street}, {'' if number.startswith('km') else 'nº '}{number}"
            + (f", {complement}" if complement else "")
            + f"; {bairro}; {city}"
        )
        text += (f" ({state_text})" if state_text else "") + (f" CEP {cep}" if cep else "")
    elif template == 3:  # all caps, no punctuation, no CEP
        text = f"{street} {number} {complement} {bairro} {city} {state_text}".upper()
        text = re.sub(r"\s+", " ", text).strip()
    else:
        text = f"{street}, {number}" + (f", {complement}" if complement else "") + f" - {bairro}, {city}"
        text += (f", {state_text}" if state_text else "") + (f", CEP: {cep}" if cep else "")
    return _strip_accents(text) if rng.random() < 0.25 else text


def _when(rng: random.Random, start: date) -> object:
    day = start + timedelta(days=rng.randrange(540))
    moment = datetime(day.year, day.month, day.day, rng.randint(7, 18), rng.choice((0, 15, 30, 45)))
    style = rng.choices(range(8), weights=(40, 18, 8, 4, 4, 12, 12, 2))[0]
    if style == 0:
        return moment  # a real Excel date cell (in CSV: dd/mm/yyyy hh:mm)
    formats = ("", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S-03:00", "%d/%m/%Y",
               "%d-%m-%Y %H:%M:%S", "%Y-%m-%d %H:%M")  # fmt: skip
    if style == 7:  # no zero padding and stray spaces
        return f" {moment.day}/{moment.month}/{moment.year} {moment.hour}:{moment.minute:02d} "
    return moment.strftime(formats[style])


def _phone(rng: random.Random, ddd: int) -> object:
    mobile = f"9{rng.randint(6000, 9999)}{rng.randint(0, 9999):04d}"
    landline = f"{rng.randint(2000, 5999)}{rng.randint(0, 9999):04d}"
    style = rng.randrange(6)
    if style == 0:
        return f"({ddd}) {mobile[:5]}-{mobile[5:]}"
    if style == 1:
        return f"{ddd}{mobile}"
    if style == 2:
        return f"+55 {ddd} {mobile[:5]}-{mobile[5:]}"
    if style == 3:
        return f"{ddd} {landline[:4]}-{landline[4:]}"
    if style == 4:
        return int(f"{ddd}{mobile}")  # typed as a number
    return f"0{ddd} {mobile}"


def _email(rng: random.Random, first: str, last: str) -> str:
    user = _strip_accents(f"{first}.{last}").lower() + rng.choice(("", str(rng.randint(1, 99))))
    address = f"{user}@{rng.choice(EMAIL_DOMAINS)}"
    return address.upper() if rng.random() < 0.05 else address


def write_xlsx(rows: Sequence[dict[str, object]], path: Path | str) -> None:
    """Write rows as a one-sheet workbook; byte-identical output for identical rows."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Agendamentos")
    sheet.append(list(COLUMNS))
    for row in rows:
        values: list[object] = []
        for column in COLUMNS:
            value = row.get(column)
            if isinstance(value, datetime):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "dd/mm/yyyy hh:mm"
                value = cell
            values.append(value)
        sheet.append(values)
    fixed = datetime(2025, 1, 1)
    workbook.properties.created = fixed
    buffer = io.BytesIO()
    workbook.save(buffer)
    Path(path).write_bytes(_reproducible(buffer.getvalue(), fixed))


def _reproducible(xlsx: bytes, moment: datetime) -> bytes:
    """Pin the zip entry times and the `modified` property that openpyxl sets to "now" on save."""
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(output, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            entry = zipfile.ZipInfo(info.filename, date_time=moment.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, data, compresslevel=9)
    return output.getvalue()


def write_csv(
    rows: Sequence[dict[str, object]], path: Path | str, *, delimiter: str = ";", encoding: str = "utf-8-sig"
) -> None:
    """Write rows as CSV (`;` and a BOM by default, as Excel in Brazil does); dates as dd/mm/yyyy hh:mm."""
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(column)) for column in COLUMNS])


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    return str(value)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("data/sample_appointments.xlsx"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--format", choices=("xlsx", "csv"), help="default: from the --out extension")
    args = parser.parse_args(argv)
    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "xlsx")
    rows = generate_rows(args.rows, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (write_csv if fmt == "csv" else write_xlsx)(rows, args.out)
    print(
        f"wrote {len(rows)} rows to {args.out} ({args.out.stat().st_size / 1024:.1f} KiB, seed {args.seed})"
    )


if __name__ == "__main__":
    main()
