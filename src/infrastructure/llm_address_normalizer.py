"""Address normalization by an OpenAI-compatible LLM, with the rules normalizer as the fallback.

The model answers through structured outputs: a strict JSON-schema `response_format` built once from
`LLMAddressAnswer`, sent with the SDK's documented raw request `client.post`. It has the same
retries, timeout and errors as `chat.completions.parse` at about a quarter of its CPU per call (0.69
against 2.63 ms; `parse` halved LLM-mode throughput at the cap: docs/benchmarks.md, "Structured
outputs"): the body is encoded once but for the address, and the reply is validated straight from
its bytes by `CompletionReply`, then the answer by `LLMAddressAnswer`. An answer is only used after
the same checks every source passes (`validation_problems`) and after `invented_field` finds no CEP,
UF or number the input does not hold; any bad answer or SDK failure (after the SDK's own retries)
yields the fallback's result instead, marked `rules_fallback` with the reason, so one bad answer
never fails a job. A `CircuitBreaker` stops the calls while they keep failing: the rules answer at
once, and the log gets one line per state change instead of one per address. Nothing here logs the
address or the answer (personal data): only reasons and counts.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import openai
import structlog
from pydantic import ValidationError

from src.application.ports import AddressNormalizer
from src.config import HttpTransport
from src.domain.addresses import (
    UF_BY_NAME,
    AddressSource,
    NormalizedAddress,
    format_address_line,
    format_cep,
    validation_problems,
)
from src.domain.workers import Histogram, LLMStats
from src.infrastructure.circuit_breaker import BreakerPolicy, CircuitBreaker, Permit
from src.infrastructure.llm_request import (
    CompletionReply,
    LLMAddressAnswer,
    request_body,
    request_body_prefix,
)

logger = structlog.get_logger(__name__)

LOCAL_SERVER_API_KEY = "not-needed"


RECENT_WINDOW_S = 300  # the span of the fallback share the health model reads (LLM degraded)


@dataclass
class RecentShare:
    """Addresses asked and fallbacks of the last `RECENT_WINDOW_S`, in one-minute buckets: what the
    LLM is doing now, which totals since the worker started cannot tell."""

    buckets: dict[int, list[int]] = field(default_factory=dict)  # minute → [asked, fell back]

    def add(self, fell_back: bool, now: float | None = None) -> None:
        minute = int((time.time() if now is None else now) // 60)
        bucket = self.buckets.get(minute)
        if bucket is None:
            bucket = self.buckets[minute] = [0, 0]
            for old in [m for m in self.buckets if m <= minute - RECENT_WINDOW_S // 60]:
                del self.buckets[old]
        bucket[0] += 1
        bucket[1] += fell_back

    def totals(self, now: float | None = None) -> tuple[int, int]:
        """(asked, fell back) in the window ending `now`."""
        oldest = int((time.time() if now is None else now) // 60) - RECENT_WINDOW_S // 60
        recent = [b for m, b in self.buckets.items() if m > oldest]
        return sum(b[0] for b in recent), sum(b[1] for b in recent)


# Reasons about the input rather than the service: they neither open nor keep open the circuit.
NOT_BREAKER_FAILURES = frozenset({"empty_input", "refused", "content_filter"})


@dataclass
class LLMNormalizerCounters:
    """Per-instance counters, read later by the metrics endpoint."""

    calls: int = 0
    llm_used: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    latency_s: Histogram = field(default_factory=Histogram)
    recent: RecentShare = field(default_factory=RecentShare)
    breaker: CircuitBreaker | None = None

    def stats(self) -> LLMStats:
        asked, fell_back = self.recent.totals()
        breaker = self.breaker
        return LLMStats(
            calls=self.calls,
            llm_used=self.llm_used,
            fallbacks=dict(self.fallbacks),
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            latency_s=self.latency_s,
            recent_window_s=RECENT_WINDOW_S,
            recent_asked=asked,
            recent_fallbacks=fell_back,
            **(
                {}
                if breaker is None
                else {
                    "breaker": breaker.state,
                    "breaker_opened": breaker.opened_count,
                    "breaker_since": breaker.since,
                    "breaker_reason": breaker.reason,
                }
            ),
        )

    def snapshot(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "llm_used": self.llm_used,
            "fallbacks": dict(self.fallbacks),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class _Rejected(Exception):
    """An answer or call that must not be used; `reason` is a short, data-free label."""

    def __init__(self, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = problems or []


def connection_failure(exc: openai.APIConnectionError) -> str:
    """`connection_refused` when a refused connection is behind the SDK's error (the aiohttp
    transport reports one as a timeout: `APITimeoutError` over aiohttp's `ConnectionRefusedError`),
    else `timeout` or `connection_error`."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionRefusedError):
            return "connection_refused"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return "timeout" if isinstance(exc, openai.APITimeoutError) else "connection_error"


def build_openai_client(
    api_key: str | None,
    base_url: str | None,
    timeout_s: float,
    max_retries: int,
    transport: HttpTransport = "aiohttp",
) -> openai.AsyncOpenAI:
    """The SDK client; timeouts and retries (429/5xx/connection errors, honouring `retry-after`)
    are the SDK's own. Without a key, a custom `base_url` (a local OpenAI-compatible server) gets a
    placeholder key; with neither, the SDK reads `OPENAI_API_KEY` and raises `OpenAIError` if unset.

    `transport` "aiohttp" is the SDK's documented `DefaultAioHttpClient` (the `openai[aiohttp]`
    extra): the same SDK, retries and errors over aiohttp, at about two thirds of the CPU per call
    of the default httpx transport (bench/llm_client_cpu.py); "httpx" is the SDK's default client."""
    if api_key is None and base_url is not None:
        api_key = LOCAL_SERVER_API_KEY
    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=max_retries,
        http_client=http_client,
    )


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def _same_text(a: str, b: str) -> bool:
    return re.sub(r"\W+", " ", a).strip().casefold() == re.sub(r"\W+", " ", b).strip().casefold()


def _ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()


def _digit_run_in(digits: str, text: str) -> bool:
    return re.search(rf"(?<!\d){digits}(?!\d)", text) is not None


def invented_field(address: NormalizedAddress, raw: str) -> str | None:
    """The first of cep, uf, numero whose value the raw address does not hold (a model's guess
    from the city or a made-up number must not be stored as data), else None. The CEP may be
    spelled with dots, dashes or spaces; the UF as its code or its state's name; the number is
    checked by its digits ("S/N" and numbers without digits pass)."""
    if address.cep is not None:
        joined = re.sub(r"(?<=\d)[.\-\s](?=\d)", "", raw)
        if not _digit_run_in(address.cep.replace("-", ""), joined):
            return "cep"
    if address.uf is not None:
        folded = _ascii_fold(raw)
        names = [name for name, code in UF_BY_NAME.items() if code == address.uf]
        if not re.search(rf"\b{address.uf.casefold()}\b", folded) and not any(
            re.search(rf"\b{name}\b", folded) for name in names
        ):
            return "uf"
    digits = re.findall(r"\d+", address.numero or "")
    if any(not _digit_run_in(run, raw) for run in digits):
        return "numero"
    return None


def answer_to_address(answer: LLMAddressAnswer, raw: str) -> NormalizedAddress:
    """Turn the model's answer into a `NormalizedAddress` with source llm, or raise `_Rejected`."""
    cep = _clean(answer.cep)
    uf = _clean(answer.uf)
    address = NormalizedAddress(
        logradouro=_clean(answer.logradouro),
        numero=_clean(answer.numero),
        complemento=_clean(answer.complemento),
        bairro=_clean(answer.bairro),
        cidade=_clean(answer.cidade),
        uf=uf.upper() if uf else None,
        # a well-formed CEP in another spelling is reformatted; a malformed one is kept so the
        # validation below rejects it instead of silently dropping it
        cep=(format_cep(cep) or cep) if cep else None,
        confidence=min(max(answer.confidence, 0.0), 1.0),
        source=AddressSource.LLM,
    )
    problems = validation_problems(address)
    if problems:
        raise _Rejected("invalid_answer", problems)
    # a street or city that is the whole multi-part input means the model did not split anything
    if "," in raw and any(_same_text(part, raw) for part in (address.logradouro, address.cidade) if part):
        raise _Rejected("echoed_input")
    invented = invented_field(address, raw)
    if invented is not None:
        raise _Rejected(f"invented_{invented}")
    return address.model_copy(update={"formatted": format_address_line(address)})


class LLMAddressNormalizer:
    """`AddressNormalizer` backed by an LLM; falls back to `fallback` on any bad answer or error.

    `concurrency` bounds the requests in flight from this process (SDK retries included): pass the
    process-wide `asyncio.Semaphore` or an int to get a private one. `breaker` stops the calls while
    they keep failing (default policy when not given).
    """

    uses_llm = True

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        fallback: AddressNormalizer,
        concurrency: asyncio.Semaphore | int,
        *,
        max_completion_tokens: int = 400,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if isinstance(concurrency, int):
            if concurrency < 1:
                raise ValueError("concurrency must be at least 1")
            concurrency = asyncio.Semaphore(concurrency)
        self._client = client
        self._model = model
        self._fallback = fallback
        self._semaphore = concurrency
        self._body_prefix = request_body_prefix(model, max_completion_tokens)
        self.breaker = breaker or CircuitBreaker(BreakerPolicy())
        self.counters = LLMNormalizerCounters(breaker=self.breaker)

    async def normalize(self, raw: str) -> NormalizedAddress:
        """The LLM's answer when it passes validation, else the fallback's result (marked
        `rules_fallback`, with the reason)."""
        self.counters.calls += 1
        if not raw.strip():
            return await self._fall_back(raw, _Rejected("empty_input"))
        permit = self.breaker.permit()
        if permit is None:
            self.counters.recent.add(fell_back=True)
            return await self._fall_back(raw, _Rejected("breaker_open"))
        try:
            answer = await self._ask(raw)
            address = answer_to_address(answer, raw)
        except _Rejected as rejected:
            failure = None if rejected.reason in NOT_BREAKER_FAILURES else rejected.reason
            self.breaker.record(permit, failure)
            self.counters.recent.add(fell_back=True)
            return await self._fall_back(raw, rejected)
        except BaseException:
            # a cancelled call (job timeout, shutdown) says nothing about the LLM, but a cancelled
            # probe must not leave the circuit half open for good
            if permit is Permit.PROBE:
                self.breaker.record(permit, "cancelled")
            raise
        self.breaker.record(permit, None)
        self.counters.llm_used += 1
        self.counters.recent.add(fell_back=False)
        return address

    async def _ask(self, raw: str) -> LLMAddressAnswer:
        async with self._semaphore:
            self.counters.in_flight += 1
            self.counters.max_in_flight = max(self.counters.max_in_flight, self.counters.in_flight)
            started = time.perf_counter()
            try:
                # The SDK's documented raw request (`client.post`): same retries, timeout and errors
                # as `chat.completions.parse`, without its per-call params transform, schema
                # generation, body encoding and reply model, which cost more CPU than the HTTP
                # exchange itself (bench/llm_client_cpu.py).
                reply = await self._client.post(
                    "/chat/completions",
                    content=request_body(self._body_prefix, raw),  # the SDK's default type: JSON
                    cast_to=bytes,
                )
                completion = CompletionReply.model_validate_json(reply)
            except openai.APIConnectionError as exc:  # APITimeoutError included
                raise _Rejected(connection_failure(exc)) from exc
            except openai.RateLimitError as exc:
                raise _Rejected("rate_limited") from exc
            except openai.APIStatusError as exc:
                raise _Rejected("server_error" if exc.status_code >= 500 else "client_error") from exc
            except openai.OpenAIError as exc:
                raise _Rejected("api_error") from exc
            except ValidationError as exc:  # content that is not JSON or does not fit the schema
                raise _Rejected("unparsable") from exc
            finally:
                self.counters.in_flight -= 1
                self.counters.latency_s.observe(time.perf_counter() - started)
        if not completion.choices:
            raise _Rejected("no_choices")
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            raise _Rejected("truncated")
        if choice.finish_reason == "content_filter":
            raise _Rejected("content_filter")
        if choice.message.refusal:
            raise _Rejected("refused")
        if not choice.message.content:
            raise _Rejected("empty_answer")
        try:
            return LLMAddressAnswer.model_validate_json(choice.message.content)
        except ValidationError as exc:  # not JSON, or not the schema
            raise _Rejected("unparsable") from exc

    async def _fall_back(self, raw: str, rejected: _Rejected) -> NormalizedAddress:
        self.counters.fallbacks[rejected.reason] += 1
        cause = rejected.__cause__
        # debug: an outage would log one line per address; the breaker logs its state changes and
        # the counters (metrics) and the stored `fallback_reason` keep every reason
        logger.debug(
            "llm_address_fallback",
            reason=rejected.reason,
            problems=rejected.problems or None,
            error_type=type(cause).__name__ if cause is not None else None,
            status_code=getattr(cause, "status_code", None),
        )
        address = await self._fallback.normalize(raw)
        return address.model_copy(
            update={"source": AddressSource.RULES_FALLBACK, "fallback_reason": rejected.reason}
        )
