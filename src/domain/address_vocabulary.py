"""The words of Brazilian addresses: abbreviations, connectors, casing, and reading single tokens.

Lookup keys are "folded": accents removed, lower-case, trailing dots dropped, so that `Pç.`, `PÇA`
and `pca` all find the same entry. Output values carry the accents Correios uses. The readers at the
end (`read_number`, `read_complement`) look at one position of a token list and say what starts there.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

STREET_TYPES: dict[str, str] = {
    "r": "Rua", "rua": "Rua",
    "av": "Avenida", "avn": "Avenida", "ave": "Avenida", "avda": "Avenida", "avenida": "Avenida",
    "trav": "Travessa", "tv": "Travessa", "tr": "Travessa", "travessa": "Travessa",
    "al": "Alameda", "alam": "Alameda", "alameda": "Alameda",
    "rod": "Rodovia", "rodovia": "Rodovia",
    "estr": "Estrada", "est": "Estrada", "estrada": "Estrada",
    "pc": "Praça", "pca": "Praça", "praca": "Praça",
    "lgo": "Largo", "lg": "Largo", "largo": "Largo",
    "vl": "Vila", "vila": "Vila",
    "pq": "Parque", "pque": "Parque", "parque": "Parque",
    "bc": "Beco", "beco": "Beco",
    "lad": "Ladeira", "ld": "Ladeira", "ladeira": "Ladeira",
    "viela": "Viela", "vla": "Viela",
    "pass": "Passagem", "psg": "Passagem", "passagem": "Passagem",
    "serv": "Servidão", "svd": "Servidão", "servidao": "Servidão",
    "via": "Via", "vd": "Viaduto", "viaduto": "Viaduto",
    "mgl": "Marginal", "marginal": "Marginal",
    "cam": "Caminho", "caminho": "Caminho",
    "acesso": "Acesso", "ramal": "Ramal", "rodoanel": "Rodoanel", "esplanada": "Esplanada",
    "cond": "Condomínio", "condominio": "Condomínio",
    # rural addresses (Correios logradouro types): `Sítio Boa Esperança, s/n, Zona Rural`
    "sitio": "Sítio", "sit": "Sítio", "fazenda": "Fazenda", "faz": "Fazenda", "chacara": "Chácara",
    "granja": "Granja", "linha": "Linha",
}  # fmt: skip

# Abbreviated titles inside names ("R. Dr. Arnaldo", "Pres. Prudente"). Most are expanded only when
# written with a dot, because without it they can be ordinary words ("Rua do Pe", "Gal Costa").
TITLES: dict[str, str] = {
    "dr": "Doutor", "dra": "Doutora", "prof": "Professor", "profa": "Professora",
    "eng": "Engenheiro", "cel": "Coronel", "gen": "General", "gal": "General", "mal": "Marechal",
    "pres": "Presidente", "sta": "Santa", "sto": "Santo", "pe": "Padre", "cap": "Capitão",
    "ten": "Tenente", "sgt": "Sargento", "dep": "Deputado", "des": "Desembargador",
    "gov": "Governador", "sen": "Senador", "ver": "Vereador", "min": "Ministro", "com": "Comendador",
    "brig": "Brigadeiro", "alm": "Almirante", "mons": "Monsenhor", "cons": "Conselheiro",
    "nsa": "Nossa", "sra": "Senhora", "sr": "Senhor", "jr": "Júnior",
}  # fmt: skip
TITLES_WITHOUT_DOT: frozenset[str] = frozenset(
    "dr dra prof profa eng cel gen pres brig alm mons sgt nsa sra jr".split()
)

BAIRRO_PREFIXES: dict[str, str] = {
    "jd": "Jardim", "jdm": "Jardim", "jard": "Jardim", "vl": "Vila", "pq": "Parque", "pque": "Parque",
    "res": "Residencial", "resid": "Residencial", "cj": "Conjunto", "conj": "Conjunto",
    "hab": "Habitacional", "ch": "Chácara", "chac": "Chácara", "lot": "Loteamento", "nuc": "Núcleo",
}  # fmt: skip
# Words that open a bairro name: a state name right after them is part of the name (`Jardim Paraná`).
BAIRRO_WORDS: frozenset[str] = frozenset(
    {"bairro", "centro", "vila", "jardim", "parque", "residencial", "conjunto", "setor", "chacara"}
    | BAIRRO_PREFIXES.keys()
)

# "Centro Histórico" is one bairro; "Centro Curitiba" is a bairro followed by its city.
CENTRO_QUALIFIERS: frozenset[str] = frozenset(
    "historico civico comercial empresarial industrial administrativo antigo velho novo norte sul leste oeste"
    " expandido urbano".split()
)

# Complement keyword → (label, needs an identifier after it).
COMPLEMENTS: dict[str, tuple[str, bool]] = {
    "ap": ("Apto", True), "apt": ("Apto", True), "apto": ("Apto", True), "apartamento": ("Apto", True),
    "bl": ("Bloco", True), "blc": ("Bloco", True), "bloco": ("Bloco", True),
    "cj": ("Conjunto", True), "conj": ("Conjunto", True), "conjunto": ("Conjunto", True),
    "sl": ("Sala", True), "sala": ("Sala", True),
    "lj": ("Loja", True), "loja": ("Loja", True),
    "km": ("Km", True), "lt": ("Lote", True), "lote": ("Lote", True),
    "qd": ("Quadra", True), "qda": ("Quadra", True), "quadra": ("Quadra", True),
    "box": ("Box", True), "galpao": ("Galpão", True), "torre": ("Torre", True),
    "unidade": ("Unidade", True), "un": ("Unidade", True),
    "cs": ("Casa", False), "casa": ("Casa", False),
    "fundos": ("Fundos", False), "fundo": ("Fundos", False), "fds": ("Fundos", False),
    "frente": ("Frente", False), "terreo": ("Térreo", False), "sobreloja": ("Sobreloja", False),
    "cobertura": ("Cobertura", False), "sobrado": ("Sobrado", False),
}  # fmt: skip

CONNECTORS: frozenset[str] = frozenset(
    {"de", "da", "do", "das", "dos", "e", "d", "em", "na", "no", "nas", "nos", "del", "di"}
)
NUMBER_MARKERS: frozenset[str] = frozenset({"n", "no", "nro", "num", "numero", "#"})
NO_NUMBER: frozenset[str] = frozenset({"s/n", "s/no", "sn", "s.n", "s/n.", "s-n"})
# State names that are also the name of their capital: alone, they most likely mean the city.
CITY_NAMED_STATES: frozenset[str] = frozenset({"sao paulo", "rio de janeiro"})

_ROMAN = re.compile(r"^(?=[ivxl])(?:xl|l?x{0,3})(?:ix|iv|v?i{0,3})$")
_ROMAN_WORDS = frozenset({"li", "vi", "xi"})
_VOWELS = frozenset("aeiouy")
_WORD_PARTS = re.compile(r"([-'’])")
_NUMBER = re.compile(r"^([0-9]{1,5})(?:-?([a-z]))?$")
_THOUSANDS = re.compile(r"^([0-9]{1,2})\.([0-9]{3})$")
_GLUED_NUMBER = re.compile(r"^(?:n|no|nro|num|numero)\.?([0-9]{1,5}[a-z]?)$")
_GLUED_COMPLEMENT = re.compile(r"^([a-z]+)\.?([0-9][0-9a-z\-.]{0,6})$")
_ORDINAL = re.compile(r"^([0-9]{1,3})[oa]?$")
_ID = re.compile(
    r"^(?:[0-9]{1,5}[a-z]{0,2}|[a-z]{1,2}[0-9]{0,3}|[0-9]{1,5}-[a-z0-9]{1,3}|[0-9]{1,4}\.[0-9]{1,3})$"
)


@lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """Lower-case, accent-free form used for lookups: `São Paulo` → `sao paulo`."""
    decomposed = unicodedata.normalize("NFD", text.lower().replace("°", "o"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=8192)
def key(token: str) -> str:
    """Lookup key of one token: folded, without the trailing dots or colons (`Av.` → `av`)."""
    return fold(token).rstrip(".:")


@lru_cache(maxsize=8192)
def _case_word(word: str, *, inner: bool) -> str:
    """Capitalise one word; `inner` says it is not the first word of the name."""
    if any(ch.isdigit() for ch in word):
        return word.upper()  # road codes and lot ids: BR-101, 12A
    lowered = word.lower()
    if _ROMAN.match(lowered) and lowered not in _ROMAN_WORDS:
        return word.upper()  # Pio XII, Dom Pedro II
    if len(word) > 1 and "." not in word and not _VOWELS.intersection(fold(word)):
        return word.upper()  # Portuguese words have vowels; these are codes: SQS, CLN, SHIS
    opening = word[: len(word) - len(word.lstrip("(\"'"))]  # `(Aruana)`: case what follows
    pieces = _WORD_PARTS.split(word[len(opening) :])
    out: list[str] = [opening]
    for index, piece in enumerate(pieces):
        if index == 0 and inner and piece.lower() == "d" and len(pieces) > 1:
            out.append("d")  # Olho d'Água
        else:
            out.append(piece[:1].upper() + piece[1:].lower())
    return "".join(out)


def _expand_title(token: str, token_key: str, next_key: str) -> str | None:
    has_dot = token.endswith(".")
    if token_key == "n" and has_dot and next_key in {"sra", "senhora"}:
        return "Nossa"  # N. Sra. da Penha
    if token_key in TITLES and (has_dot or token_key in TITLES_WITHOUT_DOT):
        return TITLES[token_key]
    return None


def title_case(tokens: list[str], prefixes: dict[str, str] | None = None, *, after_type: bool = False) -> str:
    """Title-case a name, expanding titles (and `prefixes` on the first word), connectors lower-case.

    Connectors stay capitalised at the ends of a name, where they are usually a letter (`Rua E`);
    `after_type` says a street type precedes the name, so its first word is not an end (`Rua das Flores`).
    """
    out: list[str] = []
    last = len(tokens) - 1
    first = -1 if after_type else 0
    for index, token in enumerate(tokens):
        token_key = key(token)
        next_key = key(tokens[index + 1]) if index < last else ""
        if prefixes and token_key in prefixes and (index == 0 or token.endswith(".")):
            out.append(prefixes[token_key])
        elif expanded := _expand_title(token, token_key, next_key):
            out.append(expanded)
        elif first < index < last and token_key in CONNECTORS:
            out.append(token.lower().rstrip("."))
        else:
            out.append(_case_word(token.rstrip(":") or token, inner=index > first))
    return " ".join(out)


def as_number(token: str) -> str | None:
    """A house number (`123`, `12A`, `12-a`, `1.578`) in its plain form, or None."""
    token_key = key(token)
    if match := _NUMBER.match(token_key):
        return match.group(1) + (match.group(2) or "").upper()
    if match := _THOUSANDS.match(token_key):
        return match.group(1) + match.group(2)
    return None


def _as_id(token: str) -> str | None:
    token_key = key(token).lstrip("#")
    if token_key in CONNECTORS or token_key in COMPLEMENTS or not _ID.match(token_key):
        return None
    if token_key.isalpha() and len(token_key) > 1 and not token.isupper():
        return None  # "frente ao mercado": a short word, not a block letter
    return token_key.upper()


def read_number(tokens: list[str], i: int) -> tuple[str | None, int]:
    """House number at `tokens[i]` (`123`, `nº 45`, `s/n`, `sem número`) and how many tokens it took."""
    token_key = key(tokens[i])
    following = tokens[i + 1] if i + 1 < len(tokens) else ""
    if token_key in NO_NUMBER:
        return "S/N", 1
    if token_key == "sem" and key(following) in NUMBER_MARKERS:
        return "S/N", 2
    if glued := _GLUED_NUMBER.match(token_key):
        return glued.group(1).upper(), 1
    if token_key in NUMBER_MARKERS and (number := as_number(following)):
        return number, 2
    if number := as_number(tokens[i]):
        return number, 1
    return None, 0


def read_complement(tokens: list[str], i: int) -> tuple[str | None, int]:
    """Complement at `tokens[i]` (`ap 4`, `bl B`, `cj12`, `3º andar`, `fundos`) and its token count."""
    token_key = key(tokens[i])
    next_key = key(tokens[i + 1]) if i + 1 < len(tokens) else ""
    if (floor := _ORDINAL.match(token_key)) and next_key == "andar":
        return f"{floor.group(1)}º Andar", 2
    if token_key == "andar" and (floor := _ORDINAL.match(next_key)):
        return f"{floor.group(1)}º Andar", 2
    if (glued := _GLUED_COMPLEMENT.match(token_key)) and glued.group(1) in COMPLEMENTS:
        return f"{COMPLEMENTS[glued.group(1)][0]} {glued.group(2).upper()}", 1
    if token_key not in COMPLEMENTS:
        return None, 0
    label, needs_id = COMPLEMENTS[token_key]
    j = i + 2 if next_key in NUMBER_MARKERS and i + 2 < len(tokens) else i + 1
    if j < len(tokens) and (ident := _as_id(tokens[j])):
        return f"{label} {ident}", j - i + 1
    # A bare "casa" is a complement only when nothing else follows it ("Casa Verde" is a bairro).
    if not needs_id and (i + 1 == len(tokens) or read_complement(tokens, i + 1)[1]):
        return label, 1
    return None, 0
