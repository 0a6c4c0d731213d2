"""The Correios CEP ranges per UF, and a UF checked against its CEP whatever produced the address."""

from __future__ import annotations

import pytest

from src.domain.addresses import UF_CODES, AddressSource, NormalizedAddress, reconcile_uf_with_cep
from src.domain.cep_ranges import CEP_RANGES, uf_of_cep


@pytest.mark.parametrize(
    ("cep", "uf"),
    [
        ("01310-100", "SP"), ("19999-999", "SP"), ("20000-000", "RJ"), ("29055-000", "ES"),
        ("30130-170", "MG"), ("40010-000", "BA"), ("49025-000", "SE"), ("52050-000", "PE"),
        ("57035-000", "AL"), ("58038-000", "PB"), ("59064-000", "RN"), ("60160-000", "CE"),
        ("64049-000", "PI"), ("65076-000", "MA"), ("66035-000", "PA"), ("68906-000", "AP"),
        ("69057-000", "AM"), ("69301-000", "RR"), ("69400-000", "AM"), ("69907-000", "AC"),
        ("70390-000", "DF"), ("72800-000", "GO"), ("73350-120", "DF"), ("74230-020", "GO"),
        ("76801-000", "RO"), ("77015-000", "TO"), ("78043-000", "MT"), ("79021-000", "MS"),
        ("80240-000", "PR"), ("88015-000", "SC"), ("90570-000", "RS"), ("99999-999", "RS"),
        ("13108348", "SP"), ("13.108-348", "SP"),
    ],
)  # fmt: skip
def test_each_state_is_found_from_a_cep_in_its_range(cep: str, uf: str) -> None:
    """A CEP in any of its spellings gives the state whose Correios range holds it."""
    assert uf_of_cep(cep) == uf


@pytest.mark.parametrize("cep", [None, "", "00500-000", "78950-000", "1310-100", "131083489", "abcde-fgh"])
def test_no_state_for_a_malformed_cep_or_one_outside_every_range(cep: str | None) -> None:
    """Malformed CEPs, 00xxx and Rondônia's pre-2008 78900-78999 belong to no state."""
    assert uf_of_cep(cep) is None


def test_ranges_are_ordered_disjoint_and_cover_every_state() -> None:
    """The table is sorted, never overlaps, and names each of the 27 UFs."""
    for (_, end, _), (start, _, _) in zip(CEP_RANGES, CEP_RANGES[1:], strict=False):
        assert end < start
    assert all(start <= end for start, end, _ in CEP_RANGES)
    assert {uf for _, _, uf in CEP_RANGES} == UF_CODES


def llm_address(**changes: object) -> NormalizedAddress:
    values: dict[str, object] = {
        "logradouro": "Rua Augusta",
        "numero": "1500",
        "cidade": "Campinas",
        "cep": "13010-100",
        "confidence": 0.9,
        "source": AddressSource.LLM,
    }
    return NormalizedAddress.model_validate(values | changes)


def test_reconcile_fills_a_missing_uf_and_the_formatted_line() -> None:
    """An answer without UF gets the CEP's, a note, and a formatted line that shows it."""
    address = reconcile_uf_with_cep(llm_address(uf=None))
    assert (address.uf, address.confidence, address.source) == ("SP", 0.9, AddressSource.LLM)
    assert address.notes == ("uf SP inferred from cep 13010-100",)
    assert address.formatted == "Rua Augusta, 1500, Campinas - SP, 13010-100"


def test_reconcile_flags_a_contradiction_once() -> None:
    """A contradicting UF stays, costs 0.3 of confidence and is explained; a second pass changes nothing."""
    flagged = reconcile_uf_with_cep(llm_address(uf="MG"))
    assert (flagged.uf, flagged.confidence) == ("MG", 0.6)
    assert flagged.notes == ("uf MG contradicts cep 13010-100, which is in SP",)
    assert reconcile_uf_with_cep(flagged) == flagged


@pytest.mark.parametrize(
    "changes", [{"uf": "SP"}, {"uf": None, "cep": None}, {"uf": "SP", "cep": "00100-000"}]
)
def test_reconcile_leaves_agreeing_or_uncheckable_addresses_alone(changes: dict[str, object]) -> None:
    """Nothing to fill and nothing to contradict: the very same object comes back."""
    address = llm_address(**changes)
    assert reconcile_uf_with_cep(address) is address


def test_results_stored_before_notes_existed_still_load() -> None:
    """A stored address without `notes` reads with no notes (the field is new and optional)."""
    stored = {"logradouro": "Rua X", "cidade": "Y", "uf": "SP", "confidence": 0.8, "source": "rules"}
    assert NormalizedAddress.model_validate(stored).notes == ()
