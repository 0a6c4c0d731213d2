"""The response format we build once is exactly what the SDK's structured outputs would send."""

from __future__ import annotations

from openai.lib._parsing._completions import type_to_response_format_param

from src.infrastructure.llm_address_normalizer import RESPONSE_FORMAT, LLMAddressAnswer


def test_response_format_equals_the_sdks_structured_output_format() -> None:
    """`chat.completions.parse(response_format=LLMAddressAnswer)` builds this on every call; ours is
    built once. If the SDK or the model changes how it is built, this says so (private SDK helper:
    only the test imports it)."""
    assert type_to_response_format_param(LLMAddressAnswer) == RESPONSE_FORMAT
    schema = RESPONSE_FORMAT["json_schema"]["schema"]  # type: ignore[index]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(LLMAddressAnswer.model_fields)
