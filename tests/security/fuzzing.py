"""Schemathesis cases driven by Hypothesis, sent over real HTTP, with a tally of what the API answered.

Hypothesis runs derandomized (the same requests on every run), keeps no example database and does
not shrink: every example is sent once and judged after the run, so one bad answer does not stop
the exploration of the others.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hypothesis
import requests
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.core.result import Ok

T = TypeVar("T")
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]

# Who may call what (src/api/deps.py): anything else under /api/v1 needs a reader token.
OPEN_OPERATIONS = frozenset({"GET /healthz", "GET /readyz"})
WRITER_OPERATIONS = frozenset({"POST /api/v1/appointments", "POST /api/v1/appointments/import"})
OPERATOR_OPERATIONS = frozenset(
    {
        "POST /api/v1/queue/job/{job_id}/cancel",
        "POST /api/v1/queue/job/{job_id}/retry",
        "POST /api/v1/queue/cleanup",
        "POST /api/v1/workers/versions/{version}/allow",
        "POST /api/v1/workers/versions/{version}/retire",
        "GET /metrics",
    }
)
IMPORT_OPERATION = "POST /api/v1/appointments/import"
# The credential schemathesis generates for the security scheme; the tests decide what is sent.
AUTH_PARAMETER = "authorization"


def label(operation: Operation) -> str:
    return f"{operation.method.upper()} {operation.path}"


def operations(schema: BaseSchema) -> list[Operation]:
    """Every operation of the schema, in schema order."""
    found: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has an operation schemathesis cannot use: {result}"
        found.append(result.ok())
    return found


def own_parameters(operation: Operation) -> list[str]:
    """The operation's inputs other than the bearer credential (path, query, headers, body)."""
    names = [p.name for p in (*operation.path_parameters, *operation.query, *operation.headers)]
    names = [name for name in names if name.lower() != AUTH_PARAMETER]
    return names + (["body"] if len(operation.body) else [])


def spreadsheets() -> st.SearchStrategy[bytes]:
    """CSV files with the right header and arbitrary cells: random bytes never get past the header
    check, these reach the row parser and the store."""
    cell = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
    when = st.one_of(cell, st.sampled_from(("01/12/2026 10:00", "2026-12-01T10:00:00-03:00", "31/02/2026")))
    row = st.tuples(cell, cell, cell, when, cell, cell)
    delimiter = st.sampled_from((";", ",", "\t"))

    def render(rows: list[tuple[str, ...]], sep: str) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep)
        writer.writerow(("paciente", "documento", "endereco", "data_hora", "telefone", "email"))
        writer.writerows(rows)
        return out.getvalue().encode()

    return st.builds(render, st.lists(row, max_size=12), delimiter)


def cases(
    operation: Operation, mode: GenerationMode, seeds: Mapping[str, Sequence[str]]
) -> st.SearchStrategy[AnyCase]:
    """Generated cases. In positive mode a share of them use real ids (`seeds`) as path parameters,
    so cancel, retry and the reads reach existing jobs, appointments and batches too, and a share of
    the imports upload a well-formed spreadsheet."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return generated
    if label(operation) == IMPORT_OPERATION:
        uploads = spreadsheets().flatmap(
            lambda content: operation.as_strategy(generation_mode=mode, body={"file": content})
        )
        return st.one_of(generated, uploads)
    seeded = [p.name for p in operation.path_parameters if seeds.get(p.name)]
    if not seeded:
        return generated
    name = seeded[0]
    real = st.sampled_from(list(seeds[name])).flatmap(
        lambda value: operation.as_strategy(generation_mode=mode, path_parameters={name: value})
    )
    return st.one_of(generated, real)


def explore(strategy: st.SearchStrategy[T], max_examples: int, run: Callable[[T], None]) -> None:
    """Call `run` on up to `max_examples` examples of `strategy` (fewer when the space is smaller)."""

    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        # schemathesis' body strategies are large by design; the run judges responses, not speed
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large),
    )
    @hypothesis.given(strategy)
    def each(example: T) -> None:
        run(example)

    each()


def send(
    session: requests.Session, case: AnyCase, base_url: str, authorization: str | None, tally: Tally
) -> requests.Response:
    """Send the case with exactly this Authorization header (None: no such header at all)."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=base_url)
    _shorten_long_poll(kwargs)
    headers = {k: v for k, v in kwargs.pop("headers").items() if k.lower() != AUTH_PARAMETER}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        return session.request(headers=headers, timeout=30, allow_redirects=False, **kwargs)
    except requests.ConnectionError:
        # uvicorn closes a keep-alive connection after an unhandled exception (a 500), and the
        # next request sent on it is reset: send it once more, on a new connection.
        tally.notes["resent after the server closed the connection"] += 1
        return session.request(headers=headers, timeout=30, allow_redirects=False, **kwargs)


def _shorten_long_poll(kwargs: dict[str, Any]) -> None:
    """A valid `wait` (long poll, up to 60 s) on a job nobody runs would hold each case for up to a
    minute: valid values are cut to 0.5 s; invalid ones (negative, > 60, not a number) go as
    generated, so their validation is still fuzzed."""
    params = kwargs.get("params")
    if not isinstance(params, dict) or "wait" not in params:
        return
    try:
        wait = float(params["wait"])
    except (TypeError, ValueError):
        return
    if 0.5 < wait <= 60:
        params["wait"] = 0.5


def generated_authorization(case: AnyCase) -> str | None:
    """The Authorization value schemathesis generated for this case, if any."""
    return next((v for k, v in (case.headers or {}).items() if k.lower() == AUTH_PARAMETER), None)


def problem(response: requests.Response) -> dict[str, Any]:
    """An error's RFC 9457 problem body; raises ValueError when it is not one (with a `detail`)."""
    if response.headers.get("content-type", "") != "application/problem+json":
        raise ValueError(f"content-type {response.headers.get('content-type')!r}, not problem+json")
    body = json.loads(response.content)
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
        raise ValueError("problem body without a `detail`")
    if body.get("status") != response.status_code or not str(body.get("type")).startswith("/problems/"):
        raise ValueError(
            f"problem body with a wrong status or type: {body.get('status')}, {body.get('type')}"
        )
    return body


def json_detail(response: requests.Response) -> Any:
    """The `detail` of a problem+json error body; raises ValueError when there is none."""
    return problem(response)["detail"]


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@dataclass
class Tally:
    """Requests sent and answers received, per operation; `problems` says what broke a rule."""

    by_operation: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[str] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def record(self, operation: str, status: int) -> None:
        self.by_operation[operation][status] += 1

    def problem(self, text: str, case: AnyCase | None = None) -> None:
        if case is not None:
            text += f"\n    reproduce: {case.as_curl_command()}"
        self.problems.append(text)

    @property
    def requests(self) -> int:
        return sum(sum(counts.values()) for counts in self.by_operation.values())

    @property
    def by_status(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for counts in self.by_operation.values():
            total.update(counts)
        return total

    @property
    def by_class(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for status, n in self.by_status.items():
            total[status_class(status)] += n
        return total

    def lines(self, title: str) -> Iterator[str]:
        yield f"== {title}"
        classes = ", ".join(f"{c}: {n}" for c, n in sorted(self.by_class.items()))
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        yield f"requests sent: {self.requests} over {len(self.by_operation)} operations"
        yield f"by class: {classes}"
        yield f"by status: {statuses}"
        yield f"server errors (5xx): {self.by_class.get('5xx', 0)}"
        for note, n in sorted(self.notes.items()):
            yield f"{note}: {n}"
        for operation, counts in self.by_operation.items():
            yield f"  {operation:<50} {sum(counts.values()):>4}  " + " ".join(
                f"{s}x{n}" for s, n in sorted(counts.items())
            )
