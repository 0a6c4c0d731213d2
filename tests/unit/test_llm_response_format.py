"""The response format we build once is exactly what the SDK's structured outputs would send."""

from __future__ import annotations

import json

import pytest
from openai.lib._parsing._completions import type_to_response_format_param
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from src.infrastructure.llm_request import (
    RESPONSE_FORMAT,
    CompletionReply,
    LLMAddressAnswer,
    build_messages,
    request_body,
    request_body_prefix,
)


def test_response_format_equals_the_sdks_structured_output_format() -> None:
    """`chat.completions.parse(response_format=LLMAddressAnswer)` builds this on every call; ours is
    built once. If the SDK or the model changes how it is built, this says so (private SDK helper:
    only the test imports it)."""
    assert type_to_response_format_param(LLMAddressAnswer) == RESPONSE_FORMAT
    schema = RESPONSE_FORMAT["json_schema"]["schema"]  # type: ignore[index]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(LLMAddressAnswer.model_fields)


def test_request_body_is_the_json_the_sdk_would_have_encoded() -> None:
    """The body encoded once up to the user message, then closed around each address, decodes to
    the same request `client.post(body=...)` sent: model, both messages, schema, token limit.
    Quotes, backslashes, accents and a closing-looking `]}` in the address stay data."""
    prefix = request_body_prefix("some-model", 123)
    for raw in ["Rua A, 1", 'R. "Aspas" \\ barra, São Paulo ]}', ""]:
        decoded = json.loads(request_body(prefix, raw))
        assert decoded == {
            "model": "some-model",
            "max_completion_tokens": 123,
            "response_format": RESPONSE_FORMAT,
            "messages": build_messages(raw),
        }


def test_completion_reply_reads_a_full_chat_completion() -> None:
    """`CompletionReply` takes the fields the normalizer checks from a whole SDK-shaped completion,
    ignoring the rest, and refuses a reply without choices."""
    completion = ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": '{"a": 1}', "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    reply = CompletionReply.model_validate_json(completion.model_dump_json())
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == '{"a": 1}'
    assert reply.choices[0].message.refusal is None
    with pytest.raises(ValidationError):
        CompletionReply.model_validate_json(b'{"id": "c2"}')
    with pytest.raises(ValidationError):
        CompletionReply.model_validate_json(b"<html>502</html>")
