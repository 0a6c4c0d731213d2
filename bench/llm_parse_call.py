"""The SDK's structured outputs helper, `chat.completions.parse(response_format=LLMAddressAnswer)`,
in place of our raw request (`client.post` with a body encoded once and the reply read from bytes),
for the benchmarks that compare the two (`bench.llm_client_cpu --call`, `bench.llm_mode --call`).

`use_parse()` swaps `LLMAddressNormalizer._ask` in this process; `python -m bench.llm_parse_call
--queue normalization` runs `workers.py` that way. Same semaphore, counters and failure reasons.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

import openai
from pydantic import ValidationError

from src.infrastructure import llm_address_normalizer as llm
from src.infrastructure.llm_address_normalizer import LLMAddressNormalizer, _Rejected
from src.infrastructure.llm_request import LLMAddressAnswer, build_messages

ROOT = Path(__file__).resolve().parent.parent


async def ask_with_parse(self: LLMAddressNormalizer, raw: str) -> LLMAddressAnswer:
    async with self._semaphore:
        self.counters.in_flight += 1
        self.counters.max_in_flight = max(self.counters.max_in_flight, self.counters.in_flight)
        started = time.perf_counter()
        try:
            completion = await self._client.chat.completions.parse(
                model=self._model,
                messages=build_messages(raw),
                response_format=LLMAddressAnswer,
                max_completion_tokens=400,
            )
        except openai.LengthFinishReasonError as exc:
            raise _Rejected("truncated") from exc
        except openai.ContentFilterFinishReasonError as exc:
            raise _Rejected("content_filter") from exc
        except openai.APIConnectionError as exc:
            raise _Rejected(llm.connection_failure(exc)) from exc
        except openai.RateLimitError as exc:
            raise _Rejected("rate_limited") from exc
        except openai.APIStatusError as exc:
            raise _Rejected("server_error" if exc.status_code >= 500 else "client_error") from exc
        except openai.OpenAIError as exc:
            raise _Rejected("api_error") from exc
        except ValidationError as exc:
            raise _Rejected("unparsable") from exc
        finally:
            self.counters.in_flight -= 1
            self.counters.latency_s.observe(time.perf_counter() - started)
    if not completion.choices:
        raise _Rejected("no_choices")
    message = completion.choices[0].message
    if message.refusal:
        raise _Rejected("refused")
    if message.parsed is None:
        raise _Rejected("empty_answer")
    return message.parsed


def use_parse() -> None:
    LLMAddressNormalizer._ask = ask_with_parse  # type: ignore[method-assign]


if __name__ == "__main__":
    use_parse()
    sys.argv = [str(ROOT / "workers.py"), *sys.argv[1:]]
    runpy.run_path(str(ROOT / "workers.py"), run_name="__main__")
