"""A small OpenAI-compatible server for tests and benchmarks, with fault injection (never the internet).

It implements `POST /v1/chat/completions` (non-streaming) and `GET /v1/models`, well enough for the
`openai` SDK's structured outputs: the answer is a deterministic "normalization" of the raw address
found in the last user message (between `<address>` tags, else the whole message), filtered to the
properties of the requested JSON schema.

Faults are set at start (CLI flags / `create_app(FaultConfig(...))`) and at run time:

    POST /_control  {"latency_ms": 200}                       every chat request sleeps 200 ms
                    {"status_code": 429, "fail_next": 2}      the next 2 chat requests get 429
                    {"status_code": 503, "status_rate": 0.5}  every 2nd chat request gets 503
                    {"status_code": 500}                      every chat request gets 500
                    {"malformed_rate": 1, "malformed_kind": "invalid_cep"}
                    {"malformed_rate": 1, "malformed_kind": "invented_cep"}  well-formed values
                                         (cep, uf, numero) that the address does not hold
                    {"echo_input": true}                      fields echo the raw address
    GET  /_stats    counters: requests_total, by_status, in_flight, max_in_flight, ...
    POST /_reset    back to the start-up faults, counters zeroed

Rates are applied by error diffusion (rate 0.25 = exactly every 4th request), so runs repeat.
Injected errors carry `retry-after-ms` / `retry-after` headers (`retry_after_ms`, 20 ms by default).

Run as a process: `python -m tests.fakes.openai_server --port 0 --latency-ms 200` prints
`LISTENING http://127.0.0.1:PORT` as its first stdout line. From tests, use `run_fake_openai_server()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from src.domain.addresses import (
    UF_BY_NAME,
    UF_CODES,
    AddressSource,
    NormalizedAddress,
    format_address_line,
    format_cep,
)

MODEL_ID = "fake-address-model"
CHAT_PATH = "/v1/chat/completions"
MalformedKind = Literal[
    "not_json", "wrong_schema", "invalid_cep", "invalid_uf", "truncated", "refusal",
    "invented_cep", "invented_uf", "invented_number",
]  # fmt: skip


class FaultConfig(BaseModel):
    """The faults injected into chat completions (all off by default)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0)
    status_code: int | None = Field(default=None, ge=400, le=599)
    fail_next: int = Field(default=0, ge=0)
    status_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_ms: int = Field(default=20, ge=0)
    malformed_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    malformed_kind: MalformedKind = "not_json"
    echo_input: bool = False


class FaultUpdate(BaseModel):
    """Body of `POST /_control`: only the given fields change. A `status_code` given without
    `fail_next` or `status_rate` fails every request."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0)
    status_code: int | None = Field(default=None, ge=400, le=599)
    fail_next: int | None = Field(default=None, ge=0)
    status_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    retry_after_ms: int | None = Field(default=None, ge=0)
    malformed_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    malformed_kind: MalformedKind | None = None
    echo_input: bool | None = None


class _Diffuser:
    """Deterministic rate: fires exactly `rate` of the time, evenly spread."""

    def __init__(self) -> None:
        self.acc = 0.0

    def fire(self, rate: float) -> bool:
        self.acc += rate
        if self.acc >= 1.0 - 1e-9:
            self.acc -= 1.0
            return True
        return False


class FakeOpenAIState:
    """Faults and counters of one server."""

    def __init__(self, config: FaultConfig) -> None:
        self.initial = config
        self.reset()

    def reset(self) -> None:
        self.config = self.initial.model_copy()
        self.by_status: Counter[int] = Counter()
        self.requests_total = 0
        self.models_requests = 0
        self.malformed = 0
        self.echoed = 0
        self.client_disconnects = 0
        self.in_flight = getattr(self, "in_flight", 0)  # requests still running survive a reset
        self.max_in_flight = self.in_flight
        self._status = _Diffuser()
        self._malformed = _Diffuser()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def update(self, update: FaultUpdate) -> FaultConfig:
        changes = update.model_dump(exclude_unset=True)
        if (
            changes.get("status_code") is not None
            and "fail_next" not in changes
            and "status_rate" not in changes
        ):
            changes["status_rate"] = 1.0
        self.config = FaultConfig.model_validate({**self.config.model_dump(), **changes})
        return self.config

    def next_failure(self) -> int | None:
        """The status to inject into this request, if any (decided on arrival, in order)."""
        cfg = self.config
        if cfg.fail_next > 0:
            self.config = cfg.model_copy(update={"fail_next": cfg.fail_next - 1})
            return cfg.status_code or 500
        if cfg.status_rate > 0 and self._status.fire(cfg.status_rate):
            return cfg.status_code or 500
        return None

    def next_malformed(self) -> MalformedKind | None:
        cfg = self.config
        if cfg.malformed_rate > 0 and self._malformed.fire(cfg.malformed_rate):
            return cfg.malformed_kind
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "malformed": self.malformed,
            "echoed": self.echoed,
            "client_disconnects": self.client_disconnects,
            "models_requests": self.models_requests,
        }


# --- the deterministic "normalization" -------------------------------------------------------------

_ADDRESS_TAG = re.compile(r"<address>(.*)</address>", re.DOTALL)
_CEP = re.compile(r"\b\d{2}\.?\d{3}-?\d{3}\b")
_STREET_TYPES = {
    "r": "Rua", "rua": "Rua", "av": "Avenida", "avenida": "Avenida", "al": "Alameda",
    "alameda": "Alameda", "tv": "Travessa", "trav": "Travessa", "travessa": "Travessa",
    "pca": "Praça", "pc": "Praça", "praca": "Praça", "rod": "Rodovia", "rodovia": "Rodovia",
    "estr": "Estrada", "estrada": "Estrada", "lgo": "Largo", "largo": "Largo",
}  # fmt: skip
_COMPLEMENT = re.compile(
    r"^(apto?|apartamento|ap|bloco|bl|sala|sl|casa|conj|cj|loja|lj|fundos|andar)\b", re.I
)
_NUMBER = re.compile(r"^(n[º°o.]?\s*)?(\d+[a-z]?|sn)$", re.I)
_SMALL_WORDS = {"de", "da", "do", "das", "dos", "e"}


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold().strip()


def _title(text: str) -> str:
    words = text.split()
    return " ".join(
        w.lower() if i and w.lower() in _SMALL_WORDS else w.capitalize() for i, w in enumerate(words)
    )


def _uf_of(part: str) -> str | None:
    if part.strip().upper() in UF_CODES:
        return part.strip().upper()
    return UF_BY_NAME.get(_ascii(part))


def _street(part: str) -> str:
    first, _, rest = part.strip().partition(" ")
    kind = _STREET_TYPES.get(_ascii(first).rstrip("."))
    return _title(f"{kind} {rest}") if kind and rest else _title(part)


def extract_raw_address(content: str) -> str:
    """The raw address inside a user message: between `<address>` tags, else the whole message."""
    match = _ADDRESS_TAG.search(content)
    return (match.group(1) if match else content).strip()


def _take_uf(parts: list[str]) -> str | None:
    """Pop the UF from the end: a last part that is a code or a state name, or a trailing code."""
    last = parts[-1].strip()
    if last.upper() in UF_CODES or (len(parts) > 2 and _ascii(last) in UF_BY_NAME):
        parts.pop()
        return last.upper() if last.upper() in UF_CODES else UF_BY_NAME[_ascii(last)]
    head, _, tail = last.rpartition(" ")
    if head and tail.upper() in UF_CODES and len(tail) == 2:
        parts[-1] = head
        return tail.upper()
    return None


def fake_normalize(raw: str) -> NormalizedAddress:
    """A tiny, deterministic heuristic: split on commas, dashes and slashes, find the CEP and UF."""
    cep_match = _CEP.search(raw)
    cep = format_cep(cep_match.group(0)) if cep_match else None
    text = _CEP.sub(" ", raw) if cep_match else raw
    text = re.sub(r"\bs\s*/\s*n\b", "SN", text, flags=re.I)  # "s/n" before splitting on "/"
    parts = [p.strip(" .;:") for p in re.split(r",|\s-\s|/|\n", text)]
    parts = [p for p in parts if p and _ascii(p) not in {"cep", "brasil", "brazil"}]
    uf = _take_uf(parts) if len(parts) > 1 else None
    numero: str | None = None
    complemento: str | None = None
    rest: list[str] = []
    for part in parts:
        number = _NUMBER.match(part)
        if rest and numero is None and number:
            numero = "S/N" if _ascii(number[2]) == "sn" else number[2]
        elif rest and complemento is None and _COMPLEMENT.match(part):
            complemento = _title(part)
        else:
            rest.append(part)
    trailing_number = re.match(r"^(.*\D)\s+(\d+[a-z]?)$", rest[0], re.I) if rest else None
    if numero is None and trailing_number:  # "Alameda Santos 45"
        rest[0], numero = trailing_number[1], trailing_number[2]
    cidade = _title(rest[-1]) if len(rest) > 1 else None
    address = NormalizedAddress(
        logradouro=_street(rest[0]) if rest else None,
        numero=numero,
        complemento=complemento,
        bairro=_title(rest[-2]) if len(rest) > 2 else None,
        cidade=cidade,
        uf=uf,
        cep=cep,
        confidence=0.9 if cidade and uf else 0.5,
        source=AddressSource.LLM,
    )
    return address.model_copy(update={"formatted": format_address_line(address)})


def _answer_fields(raw: str, state: FakeOpenAIState, malformed: MalformedKind | None) -> dict[str, Any]:
    if state.config.echo_input:
        state.echoed += 1
        echo = NormalizedAddress(
            logradouro=raw, bairro=raw, cidade=raw, confidence=0.9, formatted=raw, source=AddressSource.LLM
        )
        return echo.model_dump(mode="json")
    fields = fake_normalize(raw).model_dump(mode="json")
    if malformed == "invalid_cep":
        fields["cep"] = "123"
    elif malformed == "invalid_uf":
        fields["uf"] = "XX"
    elif malformed == "invented_cep":
        fields["cep"] = "70040-010" if fields["cep"] != "70040-010" else "01001-000"
    elif malformed == "invented_uf":
        fields["uf"] = "TO" if fields["uf"] != "TO" else "AC"
    elif malformed == "invented_number":
        fields["numero"] = "98765"
    elif malformed == "wrong_schema":
        fields["confidence"] = "very high"
        fields["logradouro"] = ["not", "a", "string"]
    return fields


def _schema_properties(body: dict[str, Any]) -> list[str] | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        props = fmt.get("json_schema", {}).get("schema", {}).get("properties")
        if isinstance(props, dict):
            return list(props)
    return None


def _completion(body: dict[str, Any], content: str | None, **extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": extra.get("refusal")}
    return {
        "id": f"chatcmpl-fake-{extra['n']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", MODEL_ID)),
        "choices": [
            {"index": 0, "message": message, "finish_reason": extra.get("finish", "stop"), "logprobs": None}
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90},
    }


def _error(status: int, message: str, kind: str, retry_after_ms: int | None = None) -> JSONResponse:
    headers = {}
    if retry_after_ms is not None:
        headers = {"retry-after-ms": str(retry_after_ms), "retry-after": f"{retry_after_ms / 1000:.3f}"}
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep; False as soon as the client goes away (so in-flight counts drop with it). The body is
    read already, so the next ASGI message is the disconnect: wait for it under a timeout, with no
    task per request (the server shares the benchmark's cores with the workers it serves)."""
    try:
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False


class FakeOpenAIApp:
    """The fake server's ASGI app. `POST /v1/chat/completions`, the one route a benchmark calls
    hundreds of times a second, is served here directly; the control routes go through FastAPI.
    The framework's middleware stack and routing cost as much CPU per request as the answer itself,
    and this server shares the benchmark's two cores with the workers it serves (a real API uses
    none of them)."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.state = api.state  # `app.state.fake` is the `FakeOpenAIState`, as on the FastAPI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CHAT_PATH and scope["method"] == "POST":
            response = await _chat_counted(Request(scope, receive), self.state.fake)
            await response(scope, receive, send)
        else:
            await self.api(scope, receive, send)


async def _chat_counted(request: Request, state: FakeOpenAIState) -> JSONResponse:
    state.requests_total += 1
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    status = 499  # client closed the request, unless we answer
    try:
        response = await _chat(request, state)
        status = response.status_code
        return response
    finally:
        state.in_flight -= 1
        state.by_status[status] += 1


def create_app(config: FaultConfig | None = None) -> FakeOpenAIApp:
    """The fake server's ASGI app; its state lives in `app.state.fake` (a `FakeOpenAIState`)."""
    app = FastAPI(title="fake-openai", docs_url=None, redoc_url=None, openapi_url=None)
    state = FakeOpenAIState(config or FaultConfig())
    app.state.fake = state

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        state.models_requests += 1
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}],
        }

    @app.post("/_control")
    async def control(update: FaultUpdate) -> FaultConfig:
        return state.update(update)

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/_reset")
    async def reset() -> FaultConfig:
        state.reset()
        return state.config

    return FakeOpenAIApp(app)


async def _chat(request: Request, state: FakeOpenAIState) -> JSONResponse:
    n = state.next_id()
    failure = state.next_failure()
    malformed = None if failure else state.next_malformed()
    payload = await request.body()  # read first: the disconnect watcher consumes what follows
    latency_s = state.config.latency_ms / 1000
    if latency_s > 0 and not await _sleep_unless_disconnected(request, latency_s):
        state.client_disconnects += 1
        return JSONResponse({}, status_code=499)
    if failure is not None:
        kind = "rate_limit_error" if failure == 429 else "server_error"
        return _error(failure, f"injected {failure}", kind, state.config.retry_after_ms)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(400, "expected Content-Type application/json", "invalid_request_error")
    try:
        body = json.loads(payload)
        content = [m for m in body["messages"] if m.get("role") == "user"][-1]["content"]
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return _error(400, "expected a JSON body with a user message", "invalid_request_error")
    if malformed is not None:
        state.malformed += 1
    if malformed == "not_json":
        return JSONResponse(_completion(body, '{"logradouro": "Rua', n=n))
    if malformed == "refusal":
        return JSONResponse(_completion(body, None, n=n, refusal="I can't help with that."))
    fields = _answer_fields(extract_raw_address(str(content)), state, malformed)
    props = _schema_properties(body)
    if props is not None:
        fields = {key: fields.get(key) for key in props}
    finish = "length" if malformed == "truncated" else "stop"
    return JSONResponse(_completion(body, json.dumps(fields, ensure_ascii=False), n=n, finish=finish))


# --- running it as a process -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """CLI: bind 127.0.0.1:PORT (0 = free port), print `LISTENING http://127.0.0.1:PORT`, serve."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--status-code", type=int)
    parser.add_argument("--fail-next", type=int, default=0)
    parser.add_argument("--status-rate", type=float, default=0.0)
    parser.add_argument("--retry-after-ms", type=int, default=20)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--malformed-kind", default="not_json")
    parser.add_argument("--echo-input", action="store_true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    status_rate = args.status_rate
    if args.status_code is not None and not args.fail_next and not status_rate:
        status_rate = 1.0
    config = FaultConfig(
        latency_ms=args.latency_ms,
        status_code=args.status_code,
        fail_next=args.fail_next,
        status_rate=status_rate,
        retry_after_ms=args.retry_after_ms,
        malformed_rate=args.malformed_rate,
        malformed_kind=args.malformed_kind,
        echo_input=args.echo_input,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # connections queue until uvicorn serves, so the URL is usable once printed
    host, port = sock.getsockname()[:2]
    print(f"LISTENING http://{host}:{port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    server.run(sockets=[sock])


@dataclass
class FakeOpenAIServer:
    """A running fake server process; `base_url` is what `AsyncOpenAI(base_url=...)` takes."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}{path}", json=body or {}, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def control(self, **faults: Any) -> dict[str, Any]:
        """Change faults at run time (see `FaultUpdate`); returns the resulting configuration."""
        return self._post("/_control", faults)

    def reset(self) -> dict[str, Any]:
        """Start-up faults back, counters zeroed."""
        return self._post("/_reset")

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_idle(self, timeout_s: float = 15.0) -> None:
        """Wait until no chat request is in flight (e.g. ones a client timed out on)."""
        deadline = time.monotonic() + timeout_s
        while self.stats()["in_flight"] > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("fake OpenAI server still has requests in flight")
            time.sleep(0.05)


def _read_first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError("fake OpenAI server printed nothing")
    return process.stdout.readline().decode().strip()


@contextlib.contextmanager
def run_fake_openai_server(*args: str, startup_timeout_s: float = 20.0) -> Iterator[FakeOpenAIServer]:
    """Start `python -m tests.fakes.openai_server --port 0 *args` on a free loopback port, wait
    until it answers, yield it, and stop it. `args` are CLI flags, e.g. `"--latency-ms", "200"`."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", *args]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE)
    try:
        line = _read_first_line(process, startup_timeout_s)
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"fake OpenAI server did not start (exit code {process.poll()})")
        server = FakeOpenAIServer(url=line.split()[1], process=process)
        deadline = time.monotonic() + startup_timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/_stats", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("fake OpenAI server does not answer")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
