"""CPF / CNPJ documents: the result model (pure, no I/O).

The normalization rules (`normalize_document`) live below the model; they use python-stdnum.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


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
