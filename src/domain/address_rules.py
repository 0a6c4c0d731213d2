"""Rule-based normalizer for messy Brazilian addresses (pure, deterministic, never raises).

The text is cut into segments (commas, spaced dashes, `cidade/UF`) and read from both ends: the CEP
wherever it is, the UF at the end, the street (type, name, number, complements) at the start; the
places left in between are the bairro and the cidade.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from src.domain.address_vocabulary import (
    BAIRRO_PREFIXES,
    BAIRRO_WORDS,
    CENTRO_QUALIFIERS,
    CITY_NAMED_STATES,
    COMPLEMENTS,
    CONNECTORS,
    NUMBER_MARKERS,
    STREET_TYPES,
    fold,
    key,
    read_complement,
    read_number,
    title_case,
)
from src.domain.addresses import (
    UF_BY_NAME,
    UF_CEP_CONFLICT_PENALTY,
    UF_CODES,
    AddressSource,
    NormalizedAddress,
    format_address_line,
    format_cep,
    uf_cep_conflict,
    uf_inferred_note,
)
from src.domain.cep_ranges import uf_of_cep

MAX_INPUT_CHARS = 400  # longer text is not an address; cutting it keeps the worst case cheap

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2060\ufeff]")
# Pictographs and their joiners/selectors: never part of an address.
_PICTOGRAPHS = re.compile(r"[\u2190-\u21ff\u2300-\u27bf\u2b00-\u2bff\ufe0e\ufe0f\U0001f000-\U0001faff]")
_GROUPING = re.compile(r"[\[\]{};|]")
# A balanced pair of parentheses becomes \x01inner\x02 (control characters are gone by then), so that
# `_split` can keep `Zona de Expansão (Aruana)` whole; a stray one is a separator like a comma.
_PARENTHESES = re.compile(r"\(([^()]*)\)")
_STRAY_PARENTHESIS = re.compile(r"[()]")
_PARENTHESIZED = re.compile(r"\x01([^\x01\x02]*)\x02")
# `GROENLANDIA-255`, `PEDRO II-3189` (a number joined to the street) and `1695-APTO` (a complement
# joined to the number); road codes (`BR-101`, `SP-330`, `T-37`) are kept.
_WORD_HYPHEN_NUMBER = re.compile(r"\b([^\W\d_]{2,})-(?=[0-9]{1,5}(?![0-9]))")
_NUMBER_HYPHEN_WORD = re.compile(r"(?<![\w\-])([0-9]{1,5})-(?=[^\W\d_]{2})")
# `Rod. BR 116`, `ROD SP330`, `BR 101 km 20`: the road code is written `BR-116`.
_ROAD_CODE = re.compile(
    r"\b(?:(rod(?:ovia)?\.?\s+)([a-z]{2,3})|(br))\s?-?\s?([0-9]{2,3})(?![\w\-])", re.IGNORECASE
)
_LABEL = re.compile(r"^\s*(?:endere[cç]o|end)\s*[:.\-]\s*", re.IGNORECASE)
_KM_DECIMAL = re.compile(r"\b(km\s*[0-9]{1,4}),([0-9]{1,3})\b", re.IGNORECASE)
_GLUED_ABBREVIATION = re.compile(r"(?<![\w.])([^\W\d_]{2,5})\.(?=[^\W\d_])")
_NUMBER_SLASH = re.compile(r"(?<=[0-9])/(?=[^\W\d_])")  # "1234/apto 56"
_SPACES = re.compile(r"\s+")
_ALNUM = re.compile(r"[^\W_]")
_CEP_LABELLED = re.compile(r"\bcep\b\W{0,3}([0-9]{2}\.?[0-9]{3})[\s-]?([0-9]{3})(?![0-9])", re.IGNORECASE)
_CEP_BARE = re.compile(r"(?<![\w.\-/])[0-9]{2}\.?[0-9]{3}-?[0-9]{3}(?![\w\-])")
_CEP_LEFTOVER = re.compile(r"\bcep\b[\s:.]*[0-9.\-]*", re.IGNORECASE)
# Commas, dashes with a space on one side at least, `cidade/UF`. The spaces around are left to
# `_split`'s strip: a leading `\s*` or `\s+` here made runs of spaces or dashes quadratic.
_SEGMENT_BREAK = re.compile(r",|(?<=\s)[-–—]+|(?<![-–—])[-–—]+(?=\s)|(?<=[^\W\d_]{2})/(?=[^\W\d_]{2})")
# "Zona Rural" is a bairro of its own even when written without commas around it.
_RURAL_ZONE = re.compile(r"\b(zona\s+rural)\b", re.IGNORECASE)
_UF_GLUED = re.compile(r"^(.*[^\W\d_])[-/]([A-Za-z]{2})$")
# How much each part found adds to the confidence; a full Correios address sums to 1.
_WEIGHTS: dict[str, float] = {
    "logradouro": 0.2, "tipo": 0.1, "numero": 0.15, "bairro": 0.05, "cidade": 0.2, "uf": 0.15, "cep": 0.15,
}  # fmt: skip


@dataclass
class _Parts:
    street_type: str | None = None
    street_name: list[str] = field(default_factory=list)
    numero: str | None = None
    complements: list[str] = field(default_factory=list)
    places: list[list[str]] = field(default_factory=list)


def _unglue_number(match: re.Match[str]) -> str:
    word = match.group(1)
    is_code = len(word) == 2 and (word.upper() in UF_CODES or word.upper() == "BR")
    return match.group() if is_code else f"{word} "


def _road_code(match: re.Match[str]) -> str:
    prefix, code = match.group(1) or "", (match.group(2) or match.group(3)).upper()
    if code[:2] not in UF_CODES and code != "BR":
        return match.group()
    return f"{prefix}{code}-{match.group(4)}"


def _clean(raw: str) -> str:
    text = raw[:MAX_INPUT_CHARS]
    if not text.isascii():  # NFKC: composed accents, `º` → `o`, full-width digits → ASCII
        text = _PICTOGRAPHS.sub(" ", unicodedata.normalize("NFKC", text)[:MAX_INPUT_CHARS])
    if not text.isprintable():
        text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    text = _STRAY_PARENTHESIS.sub(",", _PARENTHESES.sub("\x01\\1\x02", _GROUPING.sub(",", text)))
    text = _NUMBER_SLASH.sub(" ", _KM_DECIMAL.sub(r"\1.\2", _LABEL.sub("", text)))
    text = _WORD_HYPHEN_NUMBER.sub(_unglue_number, _ROAD_CODE.sub(_road_code, text))
    text = _NUMBER_HYPHEN_WORD.sub(r"\1 ", text)
    return _SPACES.sub(" ", _GLUED_ABBREVIATION.sub(r"\1. ", text)).strip()


def _take_cep(text: str) -> tuple[str, str | None]:
    """Remove the CEP (the labelled one, else the last bare one) and return it formatted."""
    cep: str | None = None
    if labelled := _CEP_LABELLED.search(text):
        cep = format_cep(labelled.group(1) + labelled.group(2))
        text = f"{text[: labelled.start()]}, {text[labelled.end() :]}"
    elif bare := list(_CEP_BARE.finditer(text)):
        cep = format_cep(bare[-1].group())
        text = f"{text[: bare[-1].start()]}, {text[bare[-1].end() :]}"
    return _CEP_LEFTOVER.sub(", ", text), cep


def _keeps_parenthesis(text: str, match: re.Match[str]) -> bool:
    """`Zona de Expansão (Aruana)`: words in parentheses after a place's words belong to its name.

    Not in the street's segment, not after a number (`2000 (fundos)`), not a UF or a complement.
    """
    before = text[: match.start()].rstrip()
    tokens = match.group(1).split()
    if not tokens or not before or not before[-1].isalpha() or not _SEGMENT_BREAK.search(before):
        return False
    if not any(ch.isalpha() for ch in match.group(1)) or _uf_of(match.group(1))[0] is not None:
        return False
    return read_complement(tokens, 0)[1] == 0 and read_number(tokens, 0)[1] == 0


def _open_parentheses(text: str) -> str:
    if "\x01" not in text:
        return text
    return _PARENTHESIZED.sub(
        lambda m: f" ({m.group(1).strip()})" if _keeps_parenthesis(text, m) else f", {m.group(1)},", text
    )


def _split(text: str) -> list[str]:
    text = _RURAL_ZONE.sub(r", \1, ", _open_parentheses(text))
    pieces = (piece.strip(" .:-–—/\\'\"") for piece in _SEGMENT_BREAK.split(text))
    segments = [piece for piece in pieces if _ALNUM.search(piece)]
    if segments and fold(segments[-1]) in {"brasil", "brazil"}:
        segments.pop()
    return segments


def _uf_of(segment: str) -> tuple[str | None, bool]:
    """UF named by a whole segment (`SP`, `Minas Gerais`), and whether the name is also a capital's."""
    folded = fold(segment).replace(".", "").strip()
    if len(folded) == 2 and folded.upper() in UF_CODES:
        return folded.upper(), False
    if folded in UF_BY_NAME:
        return UF_BY_NAME[folded], folded in CITY_NAMED_STATES
    return None, False


def _peel_capital(segments: list[str], uf: str) -> None:
    """`... Copacabana Rio de Janeiro RJ`: a capital named like its state, before the code, is the city."""
    tokens = segments[-1].split() if segments else []
    for size in (3, 2):
        name = " ".join(tokens[-size:])
        if len(tokens) > size and fold(name) in CITY_NAMED_STATES and UF_BY_NAME[fold(name)] == uf:
            if key(tokens[-size - 1]) not in CONNECTORS and key(tokens[-size - 1]) not in STREET_TYPES:
                segments[-1:] = [" ".join(tokens[:-size]), name]
            return


def _take_trailing_uf(segments: list[str]) -> tuple[str | None, str | None]:
    """UF written at the end of the last segment: `Itajaí SC`, `Lauro de Freitas Bahia`, `Recife-PE`."""
    tokens = segments[-1].split()
    if tokens and (glued := _UF_GLUED.match(tokens[-1])) and glued.group(2).upper() in UF_CODES:
        tokens[-1:] = [glued.group(1), glued.group(2)]
    # A lone segment is the street itself ("Rua Bahia"): its end is a UF only after a house number.
    if len(segments) == 1 and not any(read_number(tokens, i)[1] for i in range(len(tokens) - 1)):
        return None, None
    for size in range(1, min(4, len(tokens) - 1) + 1):
        before = key(tokens[-size - 1])
        uf, city_named = _uf_of(" ".join(tokens[-size:]))
        if uf and before not in CONNECTORS and before not in BAIRRO_WORDS and before not in STREET_TYPES:
            segments[-1] = " ".join(tokens[:-size])
            if city_named:
                return uf, " ".join(tokens[-size:])
            _peel_capital(segments, uf)
            return uf, None
    return None, None


def _take_uf(segments: list[str]) -> tuple[str | None, str | None]:
    """Pop the UF off the end of `segments`; also return the city a `São Paulo`-like name implies."""
    if not segments:
        return None, None
    uf, city_named = _uf_of(segments[-1])
    if uf is None:
        return _take_trailing_uf(segments)
    last = segments.pop()
    if len(segments) > 1 and _uf_of(segments[-1]) == (uf, False):
        segments.pop()  # "Belo Horizonte, Minas Gerais, MG": the state twice
    elif not city_named:
        _peel_capital(segments, uf)
    return uf, last if city_named else None


def _put_leading_place_after_street(segments: list[str]) -> None:
    """`Conj. Hab. Primavera, Rua 3, 120, Teresina`: a bairro written before the street goes last."""
    if len(segments) < 3 or not segments[0].split() or not segments[1].split():
        return
    first, second = key(segments[0].split()[0]), key(segments[1].split()[0])
    if first in BAIRRO_WORDS and first not in STREET_TYPES and second in STREET_TYPES:
        segments.insert(-1, segments.pop(0))


def _ends_street_name(tokens: list[str], i: int) -> bool:
    number, used = read_number(tokens, i)
    next_key = key(tokens[i + 1]) if i + 1 < len(tokens) else ""
    if used and (used > 1 or number == "S/N" or next_key not in CONNECTORS):
        return True  # "Rua 25 de Março" keeps its 25; "Rua X 25" ends before it
    _, used = read_complement(tokens, i)
    return used > 0 and COMPLEMENTS.get(key(tokens[i]), ("", True))[1]


def _read_tail(tokens: list[str], parts: _Parts) -> list[str]:
    """Read a number first, then complements; return the tokens that were neither."""
    i = 0
    if tokens and parts.numero is None:
        parts.numero, i = read_number(tokens, 0)
    leftover: list[str] = []
    while i < len(tokens):
        label, used = read_complement(tokens, i)
        if label:
            parts.complements.append(label)
            i += used
        else:
            leftover.append(tokens[i])
            i += 1
    return leftover


def _read_street(tokens: list[str], parts: _Parts) -> None:
    start = 0
    if tokens and (street_type := STREET_TYPES.get(key(tokens[0]))):
        parts.street_type, start = street_type, 1
    elif tokens and _ends_street_name(tokens, 0):
        _read_segment(tokens, parts)  # "Quadra 5 Lote 10, ...": no street name at all
        return
    end = start
    while end < len(tokens) and not (end > start and _ends_street_name(tokens, end)):
        end += 1
    name = tokens[start:end]
    while name and key(name[-1]) in NUMBER_MARKERS:
        name.pop()  # "Rua X nº, 123"
    parts.street_name = name
    if leftover := _read_tail(tokens[end:], parts):
        parts.places.append(leftover)


def _read_segment(tokens: list[str], parts: _Parts) -> None:
    """A segment after the street: the number, complements, stray numbers, or a place name."""
    if parts.numero is None and read_number(tokens, 0)[1]:
        if leftover := _read_tail(tokens, parts):
            parts.places.append(leftover)
        return
    items: list[str] = []
    i = 0
    while i < len(tokens):
        label, used = read_complement(tokens, i)
        if label is None:
            break
        items.append(label)
        i += used
    if i == len(tokens):
        parts.complements.extend(items)
    elif not any(ch.isalpha() for token in tokens for ch in token):
        parts.complements.append(" ".join(tokens))
    else:
        parts.places.append(tokens)


def _is_bairro(place: list[str]) -> bool:
    return key(place[0]) in {"bairro", "centro"} or key(place[0]) in BAIRRO_PREFIXES


def _resolve_places(
    places: list[list[str]], city_hint: str | None
) -> tuple[str | None, str | None, list[str]]:
    """Last place is the cidade, the one before the bairro; earlier ones go to the complement.

    A lone place is the bairro when it looks like one, or when the UF was written as a state named like
    its capital (`Bela Vista, São Paulo`): that name is then taken as the city.
    """
    if len(places) == 1 and len(places[0]) > 1 and key(places[0][0]) == "centro":
        qualifier = key(places[0][1])
        if qualifier not in CONNECTORS and qualifier not in CENTRO_QUALIFIERS:
            places = [places[0][:1], places[0][1:]]  # "Centro Curitiba", written without a comma
    cidade: list[str] | None = None
    if places and not (len(places) == 1 and (city_hint is not None or _is_bairro(places[0]))):
        cidade = places.pop()
    if places and key(places[-1][0]) == "bairro" and len(places[-1]) > 1:
        places[-1] = places[-1][1:]
    bairro = title_case(places.pop(), BAIRRO_PREFIXES) if places else None
    if cidade is None and city_hint is not None:
        cidade = city_hint.split()
    city = title_case(cidade) if cidade else None
    return bairro, city, [title_case(place) for place in places]


def normalize_address_rules(raw: str | None) -> NormalizedAddress:
    """Structure a free-text Brazilian address; unreadable input gives an address with low confidence.

    `notes` say what was inferred or doubted: a UF taken from the CEP's range, a UF that contradicts
    the CEP (the confidence then drops by `UF_CEP_CONFLICT_PENALTY`), or input cut to its first
    `MAX_INPUT_CHARS` characters.
    """
    raw = raw or ""
    notes: list[str] = []
    if len(raw) > MAX_INPUT_CHARS:
        notes.append(f"input of {len(raw)} characters cut to its first {MAX_INPUT_CHARS}")
    text, cep = _take_cep(_clean(raw))
    segments = _split(text)
    uf, city_hint = _take_uf(segments)
    _put_leading_place_after_street(segments)
    parts = _Parts()
    if segments:
        _read_street(segments[0].split(), parts)
        for segment in segments[1:]:
            _read_segment(segment.split(), parts)
    if parts.street_type is None and parts.numero is None and not parts.complements and uf:
        parts.places.insert(0, parts.street_name)  # "Centro, Campinas - SP": no street at all
        parts.street_name = []
    bairro, cidade, extras = _resolve_places([p for p in parts.places if p], city_hint)
    name = (
        title_case(parts.street_name, after_type=parts.street_type is not None) if parts.street_name else None
    )
    logradouro = f"{parts.street_type} {name}" if name and parts.street_type else name
    if uf is None and cep is not None and (uf := uf_of_cep(cep)):
        notes.append(uf_inferred_note(uf, cep))  # the Correios range of a CEP is a fact: it counts fully
    fields = {
        "logradouro": logradouro,
        "numero": parts.numero,
        "complemento": " ".join(parts.complements + extras) or None,
        "bairro": bairro,
        "cidade": cidade,
        "uf": uf,
        "cep": cep,
    }
    found = {**fields, "tipo": logradouro and parts.street_type}
    confidence = min(1.0, sum(weight for part, weight in _WEIGHTS.items() if found.get(part)))
    if conflict := uf_cep_conflict(uf, cep):
        notes.append(conflict)
        confidence = max(0.0, confidence - UF_CEP_CONFLICT_PENALTY)
    formatted = format_address_line(NormalizedAddress(**fields))
    return NormalizedAddress(
        **fields,
        formatted=formatted,
        confidence=round(confidence, 2),
        source=AddressSource.RULES,
        notes=tuple(notes),
    )
