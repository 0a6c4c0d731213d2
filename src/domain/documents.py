"""CPF / CNPJ documents: the result model (pure, no I/O).

The normalization rules (`normalize_document`) live below the model; they use python-stdnum.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from stdnum.br import cnpj, cpf
from stdnum.exceptions import InvalidChecksum, ValidationError


class DocumentKind(StrEnum):
    CPF = "cpf"
    CNPJ = "cnpj"
    UNKNOWN = "unknown"


class NormalizedDocument(BaseModel):
    """A document after normalization. `canonical` is digits (and letters for the 2026 CNPJ) only."""

    model_config = ConfigDict(frozen=True)

    kind: DocumentKind
    canonical: str | None
    formatted: str | None
    valid: bool
    reason: str | None = None


# Labels people type before the number ("CPF: 529...", "CNPJ/CPF - 11.222..."); a separator must follow
# so that an alphanumeric CNPJ beginning with these letters is never eaten.
_LABEL = re.compile(r"^\s*(?:cpf|cnpj)(?:\s*/\s*(?:cpf|cnpj))?(?:\s*[:#.\-]\s*|\s+)", re.IGNORECASE)
# A numeric spreadsheet cell read as a float: "52998224725.0".
_FLOAT_CELL = re.compile(r"^\s*([0-9]{9,14})\.0+\s*$")
_SEPARATORS = re.compile(r"[\W_]+")
_CPF_SHAPE = re.compile(r"^[0-9]{11}$")
_CNPJ_SHAPE = re.compile(r"^[0-9A-Z]{12}[0-9]{2}$")

REASON_EMPTY = "empty"
REASON_SHAPE = "not a CPF (11 digits) or CNPJ (14 characters)"
REASON_REPEATED = "repeated digits"
REASON_CHECK_DIGITS = "invalid check digits"
REASON_FORMAT = "invalid format"


def _clean(raw: str | None) -> str:
    """Drop labels, punctuation and whitespace; uppercase the letters of an alphanumeric CNPJ."""
    if not raw:
        return ""
    text = unicodedata.normalize("NFKC", raw)
    if cell := _FLOAT_CELL.match(text):
        text = cell.group(1)
    text = _LABEL.sub("", text, count=1)
    return _SEPARATORS.sub("", text).upper()


def _kind_of(cleaned: str) -> DocumentKind:
    if _CPF_SHAPE.match(cleaned):
        return DocumentKind.CPF
    if _CNPJ_SHAPE.match(cleaned):
        return DocumentKind.CNPJ
    return DocumentKind.UNKNOWN


def _is_repeated(cleaned: str) -> bool:
    return len(set(cleaned)) == 1


def _restore_leading_zeros(cleaned: str) -> str:
    """Spreadsheets store documents as numbers and drop their leading zeros; pad back only when valid."""
    if not cleaned.isdigit():
        return cleaned
    for short_lengths, full_length, module in (((9, 10), 11, cpf), ((12, 13), 14, cnpj)):
        if len(cleaned) in short_lengths:
            padded = cleaned.zfill(full_length)
            if not _is_repeated(padded) and module.is_valid(padded):
                return padded
    return cleaned


def normalize_document(raw: str | None) -> NormalizedDocument:
    """Classify, validate and format a CPF or CNPJ (numeric or the 2026 alphanumeric CNPJ).

    Never raises. Reasons never repeat the document (no personal data in messages).
    """
    cleaned = _restore_leading_zeros(_clean(raw))
    if not cleaned:
        return NormalizedDocument(
            kind=DocumentKind.UNKNOWN, canonical=None, formatted=None, valid=False, reason=REASON_EMPTY
        )
    kind = _kind_of(cleaned)
    if kind is DocumentKind.UNKNOWN:
        return NormalizedDocument(kind=kind, canonical=None, formatted=None, valid=False, reason=REASON_SHAPE)
    if _is_repeated(cleaned):
        return NormalizedDocument(
            kind=kind, canonical=cleaned, formatted=None, valid=False, reason=REASON_REPEATED
        )
    module = cpf if kind is DocumentKind.CPF else cnpj
    try:
        canonical = module.validate(cleaned)
    except InvalidChecksum:
        reason = REASON_CHECK_DIGITS
    except ValidationError:
        reason = REASON_FORMAT
    else:
        return NormalizedDocument(
            kind=kind, canonical=canonical, formatted=module.format(canonical), valid=True
        )
    return NormalizedDocument(kind=kind, canonical=cleaned, formatted=None, valid=False, reason=reason)


def mask_document(value: str | None) -> str:
    """Mask a CPF/CNPJ for logs, keeping only its middle: `***.982.247-**`, `**.***.345/01DE-**`.

    Anything that is not shaped like a CPF or CNPJ becomes `***`, so a log line never holds a whole number.
    """
    cleaned = _restore_leading_zeros(_clean(value))
    kind = _kind_of(cleaned)
    if kind is DocumentKind.CPF:
        return f"***.{cleaned[3:6]}.{cleaned[6:9]}-**"
    if kind is DocumentKind.CNPJ:
        return f"**.***.{cleaned[5:8]}/{cleaned[8:12]}-**"
    return "***"
