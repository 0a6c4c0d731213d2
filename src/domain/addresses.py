"""Brazilian addresses: the structured model and the checks every source must pass (pure, no I/O).

Both the rules normalizer (`address_rules.py`) and the LLM adapter produce a `NormalizedAddress`;
an LLM answer is only used when `validation_problems()` finds nothing wrong with it.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from src.domain.cep_ranges import uf_of_cep

UF_BY_NAME: dict[str, str] = {
    "acre": "AC", "alagoas": "AL", "amapa": "AP", "amazonas": "AM", "bahia": "BA", "ceara": "CE",
    "distrito federal": "DF", "espirito santo": "ES", "goias": "GO", "maranhao": "MA",
    "mato grosso": "MT", "mato grosso do sul": "MS", "minas gerais": "MG", "para": "PA",
    "paraiba": "PB", "parana": "PR", "pernambuco": "PE", "piaui": "PI", "rio de janeiro": "RJ",
    "rio grande do norte": "RN", "rio grande do sul": "RS", "rondonia": "RO", "roraima": "RR",
    "santa catarina": "SC", "sao paulo": "SP", "sergipe": "SE", "tocantins": "TO",
}  # fmt: skip
UF_CODES: frozenset[str] = frozenset(UF_BY_NAME.values())

CEP_PATTERN = re.compile(r"^\d{5}-\d{3}$")
# A UF that contradicts its CEP: one of the two is wrong, so neither adds to the confidence (the weight
# each has in the rules' confidence is 0.15).
UF_CEP_CONFLICT_PENALTY = 0.3


class AddressSource(StrEnum):
    """Who wrote a stored address. `rules_fallback`: LLM mode, but the LLM could not be used for
    this address (down, circuit open, or its answer refused: `fallback_reason` says which), so the
    rules' answer stands; such an address is worth asking the LLM again once it is healthy."""

    RULES = "rules"  # rules mode: the rules are the chosen normalizer
    LLM = "llm"
    RULES_FALLBACK = "rules_fallback"


class NormalizedAddress(BaseModel):
    """Structured address. `cep` is `00000-000`, `uf` a two-letter code; absent parts are None.

    `notes` say why a part was inferred or the confidence lowered (`uf inferred from cep 13108-348`);
    empty for an address read as written. Stored results written before it existed read as empty.
    """

    model_config = ConfigDict(frozen=True)

    logradouro: str | None = None
    numero: str | None = None
    complemento: str | None = None
    bairro: str | None = None
    cidade: str | None = None
    uf: str | None = None
    cep: str | None = None
    formatted: str = ""
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    source: AddressSource = AddressSource.RULES
    notes: tuple[str, ...] = ()
    fallback_reason: str | None = None  # with source rules_fallback: why the LLM's answer is not used


def format_cep(raw: str | None) -> str | None:
    """`01310100`, `01310-100` or `01.310-100` → `01310-100`; anything else → None."""
    if raw is None:
        return None
    digits = re.sub(r"\D", "", raw)
    if len(digits) != 8:
        return None
    return f"{digits[:5]}-{digits[5:]}"


def format_address_line(address: NormalizedAddress) -> str:
    """One line in the Correios order: `Rua X, 123, Apto 4 - Bairro, Cidade - UF, 00000-000`."""
    street = ", ".join(p for p in (address.logradouro, address.numero, address.complemento) if p)
    place = " - ".join(p for p in (address.bairro,) if p)
    city = " - ".join(p for p in (address.cidade, address.uf) if p)
    head = " - ".join(p for p in (street, place) if p)
    return ", ".join(p for p in (head, city, address.cep) if p)


def validation_problems(address: NormalizedAddress) -> list[str]:
    """Why an address must not be trusted (empty list when it is acceptable)."""
    problems: list[str] = []
    if address.cep is not None and not CEP_PATTERN.match(address.cep):
        problems.append("cep is not in the 00000-000 format")
    if address.uf is not None and address.uf not in UF_CODES:
        problems.append("uf is not a Brazilian state code")
    if not address.logradouro:
        problems.append("logradouro is missing")
    if not address.cidade:
        problems.append("cidade is missing")
    return problems


def uf_inferred_note(uf: str, cep: str) -> str:
    """The note of a UF filled in from the CEP's range."""
    return f"uf {uf} inferred from cep {cep}"


def uf_cep_conflict(uf: str | None, cep: str | None) -> str | None:
    """Why `uf` cannot be trusted next to `cep` (the CEP's range is another state's), or None."""
    cep_uf = uf_of_cep(cep)
    if uf is None or cep_uf is None or uf == cep_uf:
        return None
    return f"uf {uf} contradicts cep {cep}, which is in {cep_uf}"


def reconcile_uf_with_cep(address: NormalizedAddress) -> NormalizedAddress:
    """Fill a missing UF from the CEP's Correios range; flag a UF that contradicts it.

    A contradiction keeps the UF as written, lowers the confidence by `UF_CEP_CONFLICT_PENALTY` and
    says why in `notes`. Applying it again changes nothing (the rules normalizer already applies it).
    """
    if address.uf is None and address.cep is not None and (cep_uf := uf_of_cep(address.cep)):
        note = uf_inferred_note(cep_uf, address.cep)
        filled = address.model_copy(update={"uf": cep_uf, "notes": (*address.notes, note)})
        return filled.model_copy(update={"formatted": format_address_line(filled)})
    conflict = uf_cep_conflict(address.uf, address.cep)
    if conflict is None or conflict in address.notes:
        return address
    confidence = round(max(0.0, address.confidence - UF_CEP_CONFLICT_PENALTY), 2)
    return address.model_copy(update={"confidence": confidence, "notes": (*address.notes, conflict)})
