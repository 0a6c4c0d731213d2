"""The normalization service checks every address's UF against its CEP, whatever the source, and
the notes it leaves are stored with the address (a real SQLite store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from src.application.ports import AddressNormalizer
from src.application.services.normalization_service import NormalizationService, RunInfo
from src.application.services.rules_address_normalizer import RulesAddressNormalizer
from src.domain.addresses import AddressSource, NormalizedAddress
from src.domain.jobs import JobProgress
from src.infrastructure.sqlite_repository import SQLiteRepository
from tests.contract.conftest import make_appointment


class CannedLLM:
    """An `AddressNormalizer` answering like an LLM would, with a fixed address."""

    def __init__(self, address: NormalizedAddress) -> None:
        self.address = address

    async def normalize(self, raw: str) -> NormalizedAddress:
        return self.address


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SQLiteRepository]:
    repository = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    await repository.init()
    try:
        yield repository
    finally:
        await repository.close()


async def always_current(progress: JobProgress) -> bool:
    return True


async def normalized_address(
    repo: SQLiteRepository, normalizer: AddressNormalizer, endereco: str
) -> NormalizedAddress:
    await repo.insert_appointments([make_appointment(1, batch_id=None, endereco=endereco)])
    service = NormalizationService(
        repo,
        normalizer,
        documents_enabled=False,
        addresses_enabled=True,
        concurrency=1,
    )
    run = RunInfo(job_id="normalize:appt-1:1", attempt=1, worker_id="w-1", version="1")
    await service.normalize_appointment("appt-1", run, still_current=always_current)
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.endereco_normalizado is not None
    return stored.endereco_normalizado


async def test_llm_answer_contradicting_its_cep_is_stored_flagged(repo: SQLiteRepository) -> None:
    """An LLM answer whose UF is not its CEP's state is stored with lower confidence and the reason."""
    answer = NormalizedAddress(
        logradouro="Rua Augusta", numero="1500", cidade="Campinas", uf="MG", cep="13010-100",
        confidence=0.9, source=AddressSource.LLM,
    )  # fmt: skip
    stored = await normalized_address(repo, CannedLLM(answer), "Rua Augusta 1500, Campinas, MG, 13010-100")
    assert (stored.uf, stored.confidence, stored.source) == ("MG", 0.6, AddressSource.LLM)
    assert stored.notes == ("uf MG contradicts cep 13010-100, which is in SP",)


async def test_rules_result_with_uf_from_cep_keeps_its_note_through_the_store(repo: SQLiteRepository) -> None:
    """The rules' inferred UF and its note survive the service (applied once) and the store."""
    stored = await normalized_address(
        repo, RulesAddressNormalizer(), "Rua Tiradentes, 54; Barão Geraldo; Campinas CEP 13108-348"
    )
    assert (stored.uf, stored.confidence) == ("SP", 1.0)
    assert stored.notes == ("uf SP inferred from cep 13108-348",)
