"""No personal data outside the store: an end-to-end run at DEBUG, then every log line, every Redis
key and value, and every API answer except the appointment reads is searched for the patients'
names, documents, addresses, phones and e-mails.

The run: a CSV and an xlsx import (rows from scripts/generate_sample.py, a third of the documents
spoiled, some rows rejected) with an Idempotency-Key sent twice; single appointments; refused
requests carrying personal data (bad e-mails, bad dates, extra fields, wrong types, broken JSON,
files without a header); 404s; a worker in LLM mode against the shipped fake OpenAI server whose
answers echo the address, then answer malformed, then fail; a cancel and a retry. The SQLite store
holds the data by design and is not searched; `GET /api/v1/appointments/{id}` returns the stored
record by design and is not searched either.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.generate_sample import generate_rows, write_csv, write_xlsx
from scripts.local_redis import RedisServer
from src.api.main import create_app
from src.config import Settings
from src.logging import configure_logging
from src.worker.settings import build_worker
from tests.conftest import make_settings, publish_deployment
from tests.fakes.openai_server import FakeOpenAIServer
from tests.security.personal_data import Needle, find_leaks, needles_of_rows, redis_contents, strip_accents

pytestmark = pytest.mark.e2e

TOKEN = "leak-check-operator-token-0123"
COLUMNS = {"Paciente": "paciente", "Documento": "documento", "Endereço": "endereco"}
COLUMNS |= {"Telefone": "telefone", "E-mail": "email"}
FIELDS = {"paciente": "paciente", "documento": "documento", "endereco": "endereco"}
FIELDS |= {"telefone": "telefone", "email": "email"}
PERSON = {
    "paciente": "Heloísa Brandão Cavalcanti",
    "documento": "529.982.247-25",
    "endereco": "Rua Visconde de Mauá, 77, apto 31, Boa Viagem, Recife - PE, 51020-010",
    "data_hora": "2026-12-01T09:30:00-03:00",
    "telefone": "(81) 98765-4321",
    "email": "heloisa.cavalcanti@gmail.com",
}
# Answers the fake OpenAI server gives in turn, each for new appointments: every one but the first
# makes the worker fall back to the rules (and log why).
LLM_PHASES: tuple[dict[str, Any], ...] = (
    {"echo_input": True},
    {"echo_input": False, "malformed_rate": 1.0, "malformed_kind": "not_json"},
    {"malformed_kind": "wrong_schema"},
    {"malformed_kind": "invalid_cep"},
    {"malformed_kind": "refusal"},
    {"malformed_kind": "truncated"},
    {"malformed_rate": 0.0, "status_code": 500},
)


def spoil(document: object) -> str:
    """The same document with its last digit changed: its check digits no longer match."""
    text = str(document)
    last = max(i for i, c in enumerate(text) if c.isdigit())
    return text[:last] + str((int(text[last]) + 1) % 10) + text[last + 1 :]


def messy_rows(n: int, seed: int) -> list[dict[str, object]]:
    """Generated rows with every third document spoiled and some rows the importer rejects."""
    rows = generate_rows(n, seed)
    for i, row in enumerate(rows):
        if i % 3 == 0 and row["Documento"] is not None and any(c.isdigit() for c in str(row["Documento"])):
            row["Documento"] = spoil(row["Documento"])
    rows[1]["Data/Hora"] = "a confirmar"  # rejected, but its name, document and address are real
    rows[4]["Paciente"] = ""
    return rows


@pytest.fixture
def leak_settings(
    redis_server: RedisServer, tmp_path: Path, fake_openai_session: FakeOpenAIServer
) -> Iterator[Settings]:
    """LLM mode against the shared fake OpenAI server, which is reset before and after."""
    fake_openai_session.reset()
    yield make_settings(
        redis_server.url, tmp_path, api_access_token=TOKEN, log_level="DEBUG", batch_chunk_size=25,
        openai_base_url=fake_openai_session.base_url, openai_max_retries=0, openai_timeout=5.0,
    )  # fmt: skip
    fake_openai_session.reset()


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Everything the API and the worker log at DEBUG, as JSON lines: the handler that
    configure_logging installs writes here (a stream of our own: pytest replaces sys.stderr between
    the set-up and the call of a test)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", "json")
    buffer = io.StringIO()
    for handler in root.handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


class Recorder:
    """Keeps every answer of the API (for the scan) and the bodies of the requests it sent."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int, str]] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        self.answers.append((f"{response.request.method} {response.request.url.path}", response.status_code,
                             response.text))  # fmt: skip

    def scanned(self) -> dict[str, list[str]]:
        """Every answer but the appointment reads (which return the stored record)."""
        return {
            f"response {i} {call} -> {status}": [text]
            for i, (call, status, text) in enumerate(self.answers)
            if not (re.fullmatch(r"GET /api/v1/appointments/[0-9a-f-]+", call) and status == 200)
        }


@pytest.fixture
async def leak_api(
    leak_settings: Settings, arq_pool: ArqRedis, debug_logs: io.StringIO
) -> AsyncIterator[tuple[httpx.AsyncClient, Recorder]]:
    """The app (lifespan run, logging at DEBUG already) behind an httpx client that records answers."""
    app = create_app(leak_settings)
    recorder = Recorder()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {TOKEN}"},
            event_hooks={"response": [recorder]},
        ) as client:
            yield client, recorder


async def run_worker(settings: Settings) -> None:
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


def upload(name: str, content: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, content, "application/octet-stream")}


async def refused_requests(api: httpx.AsyncClient, person: dict[str, str]) -> int:
    """Requests carrying `person`'s data that the API must refuse; returns how many were sent."""
    # JSON cut short after the personal fields
    bad_json = json.dumps({k: person[k] for k in ("paciente", "documento", "endereco")})[:-1] + ","
    header_row = ";".join(person[k] for k in ("paciente", "documento", "endereco")) + ";01/12/2026 10:00"
    bodies: list[dict[str, Any]] = [
        {**person, "email": f"{person['paciente']} {person['email']}"},
        {**person, "email": person["email"].replace("@", "@@")},
        {**person, "email": f'"{person["paciente"]}" {person["email"]}'},
        {**person, "data_hora": "amanhã às 14h"},
        {
            **person,
            "data_hora": "31/02/2026 10:00",
            "observacoes": f"{person['paciente']}, {person['documento']}",
        },
        {**person, "paciente": {"nome": person["paciente"], "cpf": person["documento"]}},
        {**person, "documento": int(re.sub(r"\D", "", person["documento"]))},
        {"paciente": person["paciente"], "endereco": person["endereco"]},
        {**person, "telefone": [person["telefone"], person["email"]]},
    ]
    sent = 0
    for body in bodies:
        answer = await api.post("/api/v1/appointments", json=body)
        assert answer.status_code == 422, (body, answer.text)
        sent += 1
    refused = [
        await api.post(
            "/api/v1/appointments", content=bad_json, headers={"Content-Type": "application/json"}
        ),
        await api.post("/api/v1/appointments/import", files=upload("agenda.csv", header_row.encode())),
        await api.post("/api/v1/appointments/import", files=upload("agenda.xlsx", header_row.encode())),
        await api.post("/api/v1/appointments/import", files=upload(f"{person['paciente']}.pdf", b"%PDF-1.4")),
        await api.post(
            "/api/v1/appointments/import",
            files=upload("agenda.csv", header_row.encode()),
            headers={"Idempotency-Key": strip_accents(f"{person['paciente']} {person['documento']}")},
        ),
    ]
    for answer in refused:
        assert answer.status_code == 422, answer.text
    return sent + len(refused)


async def not_found(api: httpx.AsyncClient) -> int:
    """404s on ids that do not exist; returns how many."""
    calls = [
        ("GET", "/api/v1/appointments/0123456789abcdef0123456789abcdef"),
        ("GET", "/api/v1/batches/0123456789abcdef0123456789abcdef"),
        ("GET", "/api/v1/queue/job/normalize:0123456789abcdef:1"),
        ("POST", "/api/v1/queue/job/normalize:0123456789abcdef:1/cancel"),
        ("POST", "/api/v1/queue/job/normalize:0123456789abcdef:1/retry"),
        ("GET", "/api/v1/queue/info/agenda"),
    ]
    for method, path in calls:
        assert (await api.request(method, path)).status_code == 404, path
    return len(calls)


async def test_personal_data_stays_in_the_store(
    leak_api: tuple[httpx.AsyncClient, Recorder],
    leak_settings: Settings,
    arq_pool: ArqRedis,
    fake_openai_session: FakeOpenAIServer,
    debug_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """After imports, creations, refusals, 404s and LLM-mode normalization (echoed, malformed and
    failed answers), no name, document, address, phone or e-mail is in a log line, in Redis or in
    an API answer other than the appointment reads."""
    api, recorder = leak_api
    wanted: list[Needle] = []

    # imports: a CSV sent twice with the same Idempotency-Key, and an xlsx
    csv_rows, xlsx_rows = messy_rows(60, seed=2026), messy_rows(20, seed=2027)
    write_csv(csv_rows, tmp_path / "agenda.csv")
    write_xlsx(xlsx_rows, tmp_path / "agenda.xlsx")
    wanted += needles_of_rows(csv_rows + xlsx_rows, COLUMNS)
    reports = []
    for name, key in (
        ("agenda.csv", "agenda-2026-12"),
        ("agenda.csv", "agenda-2026-12"),
        ("agenda.xlsx", None),
    ):
        headers = {"Idempotency-Key": key} if key else {}
        answer = await api.post(
            "/api/v1/appointments/import", files=upload(name, (tmp_path / name).read_bytes()), headers=headers
        )
        assert answer.status_code == 202, answer.text
        reports.append(answer.json())
    assert reports[0]["batch_id"] == reports[1]["batch_id"]
    assert reports[0]["rejected"] >= 2 and reports[0]["errors"]

    # one appointment at a time, then the refusals and the 404s
    created = [await api.post("/api/v1/appointments", json=PERSON)]
    first_id = created[0].json()["appointment_id"]
    wanted += needles_of_rows([PERSON], FIELDS)
    refused = await refused_requests(api, PERSON)
    missing = await not_found(api)

    # the worker in LLM mode: echoed answers first, then malformed ones, then server errors
    extra = iter(generate_rows(40, seed=2028))
    for phase in LLM_PHASES:
        fake_openai_session.control(**phase)
        for _ in range(3):
            row = next(r for r in extra if r["Paciente"] and r["Documento"] and r["Endereço"])
            person = {field: row[column] for column, field in zip(COLUMNS, FIELDS, strict=True)}
            person = {k: str(v) for k, v in person.items() if v is not None}
            person["data_hora"] = "2026-12-02T10:00:00-03:00"
            answer = await api.post("/api/v1/appointments", json=person)
            assert answer.status_code == 201, answer.text
            created.append(answer)
            wanted += needles_of_rows([person], FIELDS)
        await run_worker(leak_settings)
    stats = fake_openai_session.stats()
    assert stats["echoed"] > 0 and stats["malformed"] > 0 and stats["by_status"].get("500", 0) > 0

    # an operator cancels a queued job and retries it; then everything is read back
    cancelled = (await api.post("/api/v1/appointments", json=PERSON)).json()["job_id"]
    assert (await api.post(f"/api/v1/queue/job/{cancelled}/cancel")).json()["status"] == "cancelled"
    assert (await api.post(f"/api/v1/queue/job/{cancelled}/retry")).status_code == 202
    await run_worker(leak_settings)
    for answer in created:
        appointment = (await api.get(f"/api/v1/appointments/{answer.json()['appointment_id']}")).json()
        assert appointment["normalization_status"] == "normalized", appointment
    jobs = (await api.get("/api/v1/queue/jobs", params={"limit": 500})).json()["items"]
    for job in jobs:
        assert (await api.get(f"/api/v1/queue/job/{job['job_id']}")).status_code == 200
    for report in reports:
        assert (await api.get(f"/api/v1/batches/{report['batch_id']}")).json()["finished"] is True
    for path in (
        "/api/v1/batches",
        "/api/v1/queue/failed",
        "/api/v1/queue/info",
        "/api/v1/workers",
        "/metrics",
    ):
        assert (await api.get(path)).status_code == 200, path

    printed = capsys.readouterr()  # anything written to stdout/stderr instead of logged
    log_lines = [line for line in debug_logs.getvalue().splitlines() if line.strip()]
    log_lines += [line for line in (printed.out + printed.err).splitlines() if line.strip()]
    events = "\n".join(log_lines)
    for expected in (
        '"level": "debug"',
        "import accepted",
        "appointment created",
        "llm_address_fallback",
        "job done",
        "worker ready",
    ):
        assert expected in events, f"the log capture missed {expected!r}: the scan would prove nothing"
    # the control: the same search finds every kind of value in the stored record the API returns
    record = next(
        text for call, status, text in recorder.answers if call.endswith(first_id) and status == 200
    )
    found = {
        leak.split()[0]
        for leak in find_leaks({"the stored record": [record]}, needles_of_rows([PERSON], FIELDS))
    }
    assert found == set(FIELDS.values()), found
    stored = await redis_contents(arq_pool)
    errors = {place: lines for place, lines in recorder.scanned().items() if " -> 4" in place}
    print(
        f"\nscanned {len(log_lines)} log lines, {len(stored)} Redis keys and "
        f"{len(recorder.scanned())} API answers ({len(errors)} of them 4xx: {refused} refusals with "
        f"personal data, {missing} 404s) for {len({n.value for n in wanted})} personal values "
        f"({len(set(wanted))} forms)"
    )

    leaks = find_leaks({"logs": log_lines, **stored, **recorder.scanned()}, wanted)
    for where in ("logs", "redis", "response"):
        print(f"leaks in {where}: {sum(f' in {where}' in leak for leak in leaks)}")
    assert not leaks, f"{len(leaks)} personal values outside the store:\n" + "\n".join(leaks[:30])
