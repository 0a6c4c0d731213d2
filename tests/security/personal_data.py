"""Personal data to look for, in every form it could be written in, and where to look for it.

Each value is searched case-insensitively as given (whitespace runs collapsed) and, depending on its
kind, also as digits only, formatted (CPF 000.000.000-00, CNPJ 00.000.000/0000-00) and "folded":
letters and digits only, so a value spelled out character by character (`'m', 'a', 'r', ...`) is
found too. Trivially short values are skipped, because they would match unrelated text: a one-word
name under 5 characters, document or phone digit strings under 10 digits, the part of an e-mail
before the @ under 8 characters, folded forms under 12 characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from arq.connections import ArqRedis

KINDS = ("paciente", "documento", "endereco", "telefone", "email")
MIN_ONE_WORD_NAME = 5
MIN_DIGITS = 10
MIN_FOLDED = 12
MIN_LOCAL_PART = 8


def _collapse(text: str) -> str:
    return " ".join(text.split())


def fold(text: str) -> str:
    """Letters and digits only, case-folded; newlines are kept so lines stay apart."""
    return "\n".join(re.sub(r"[\W_]+", "", line.casefold()) for line in text.split("\n"))


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Needle:
    kind: str
    value: str  # as given
    form: str  # what is searched
    folded: bool  # searched in folded text


def document_forms(value: str) -> set[str]:
    """A CPF/CNPJ as given, as digits (and letters) only, and formatted."""
    forms = {value}
    alnum = re.sub(r"[^0-9A-Za-z]", "", value).upper()
    if len(alnum) >= MIN_DIGITS:
        forms.add(alnum)
    if len(alnum) == 11 and alnum.isdigit():
        forms.add(f"{alnum[:3]}.{alnum[3:6]}.{alnum[6:9]}-{alnum[9:]}")
    if len(alnum) == 14:
        forms.add(f"{alnum[:2]}.{alnum[2:5]}.{alnum[5:8]}/{alnum[8:12]}-{alnum[12:]}")
    return {form for form in forms if len(re.sub(r"\W", "", form)) >= MIN_DIGITS}


def needles(kind: str, raw: object) -> list[Needle]:
    """What to search for one personal value (none when it is too short to mean anything)."""
    if raw is None or not str(raw).strip():
        return []
    value = _collapse(str(raw))
    plain: set[str] = set()
    folded: set[str] = set()
    if kind == "documento":
        plain = document_forms(value)
    elif kind == "telefone":
        digits = re.sub(r"\D", "", value)
        plain = {value, digits} if len(digits) >= MIN_DIGITS else set()
    elif kind == "paciente":
        if " " in value or len(value) >= MIN_ONE_WORD_NAME:
            plain = {value, strip_accents(value)}
            folded = {fold(value), fold(strip_accents(value))}
    elif kind == "endereco":
        plain = {value, strip_accents(value)}
        folded = {fold(value)}
    elif kind == "email":
        local = value.partition("@")[0]  # the personal part: usually the name
        plain = {value} | ({local} if len(local) >= MIN_LOCAL_PART else set())
        folded = {fold(value), fold(local)}
    else:
        raise ValueError(f"unknown kind of personal data: {kind}")
    found = [Needle(kind, value, form.casefold(), False) for form in plain]
    found += [Needle(kind, value, form, True) for form in folded if len(form) >= MIN_FOLDED]
    return found


def needles_of_rows(rows: Iterable[Mapping[str, object]], columns: Mapping[str, str]) -> list[Needle]:
    """The needles of every personal column of every row (`columns`: column name -> kind)."""
    return [n for row in rows for column, kind in columns.items() for n in needles(kind, row.get(column))]


def find_leaks(found_in: Mapping[str, Iterable[str]], wanted: Iterable[Needle]) -> list[str]:
    """`found_in` maps a place (logs, a Redis key, a response) to its lines of text; returns one
    line per needle found, saying where and in which line."""
    places = {place: list(lines) for place, lines in found_in.items()}
    texts = {place: "\n".join(lines).casefold() for place, lines in places.items()}
    folded = {place: fold(text) for place, text in texts.items()}
    leaks: list[str] = []
    for needle in set(wanted):
        for place, lines in places.items():
            haystack = folded[place] if needle.folded else texts[place]
            at = haystack.find(needle.form)
            if at < 0:
                continue
            line = lines[haystack.count("\n", 0, at)]
            how = "spelled out" if needle.folded else "as " + repr(needle.form)
            leaks.append(f"{needle.kind} {needle.value!r} ({how}) in {place}: {line[:300]}")
    return sorted(leaks)


async def redis_contents(pool: ArqRedis) -> dict[str, list[str]]:
    """Every key of the connection's database with its value(s), read by type."""
    contents: dict[str, list[str]] = {}
    async for raw_key in pool.scan_iter(count=1000):
        key = raw_key.decode(errors="replace")
        kind = (await pool.type(raw_key)).decode()
        values: list[bytes | str | float]
        if kind == "string":
            values = [await pool.get(raw_key) or b""]
        elif kind == "zset":
            values = [v for pair in await pool.zrange(raw_key, 0, -1, withscores=True) for v in pair]
        elif kind == "set":
            values = list(await pool.smembers(raw_key))
        elif kind == "hash":
            values = [v for pair in (await pool.hgetall(raw_key)).items() for v in pair]
        elif kind == "list":
            values = list(await pool.lrange(raw_key, 0, -1))
        else:  # streams and the like: this application writes none
            values = [f"<{kind}>"]
        texts = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values]
        contents[f"redis {kind} {key}"] = [key, *texts]
    return contents
