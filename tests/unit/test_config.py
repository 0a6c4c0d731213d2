"""Settings: one rule per service, secrets masked, placeholders refused outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from src.config import Settings


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_redis_password_fills_in_only_when_the_url_has_none() -> None:
    """REDIS_PASSWORD is added to a password-less REDIS_URL, never replaces the URL's own."""
    assert make(redis_url="redis://r:6379/1", redis_password="s3cr:t").effective_redis_url == (
        "redis://:s3cr%3At@r:6379/1"
    )
    assert make(redis_url="redis://:own@r:6379/1", redis_password="other").effective_redis_url == (
        "redis://:own@r:6379/1"
    )
    assert make(redis_url="redis://r:6379").effective_redis_url == "redis://r:6379"


def test_redis_display_masks_the_password() -> None:
    """The banner form of Redis shows host, port and db, never the password."""
    shown = make(redis_url="redis://user:hunter2@clinic-redis:6380/3").redis_display
    assert shown == "***@clinic-redis:6380/3"
    assert "hunter2" not in shown


def test_secrets_are_never_printed() -> None:
    """repr/str of the settings hide every secret."""
    s = make(openai_api_key="sk-live-123", api_access_token="tok-456", redis_password="pw-789")
    text = repr(s) + str(s)
    for secret in ("sk-live-123", "tok-456", "pw-789"):
        assert secret not in text


def test_placeholders_and_missing_token_are_refused_in_production() -> None:
    """Outside development a placeholder secret or a missing API token stops start-up."""
    with pytest.raises(ValidationError, match="placeholder"):
        make(environment="production", api_access_token="changeme")
    with pytest.raises(ValidationError, match="API_ACCESS_TOKEN"):
        make(environment="production")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make(environment="production", api_access_token="short-token")
    assert make(environment="production", api_access_token="a-real-token-of-length").is_production


def test_llm_mode_needs_a_key_or_a_base_url() -> None:
    """No key and no base URL means rules mode; blank strings count as unset."""
    assert make().llm_enabled is False
    assert make(openai_api_key="  ", openai_base_url="").llm_enabled is False
    assert make(openai_base_url="http://127.0.0.1:9/v1").llm_enabled is True
    assert make(openai_api_key="sk-x").llm_enabled is True


def test_coolify_guide_defaults() -> None:
    """The defaults named by the deployment guide, but for the slots: the guide's 10 could never
    use the LLM cap of 32 (docs/configuration.md, "Slots and the LLM cap"), so they are cap + 8."""
    s = make()
    assert (s.arq_job_timeout, s.arq_keep_result, s.llm_concurrency_hard_cap) == (300, 3600, 32)
    assert s.arq_max_jobs == s.llm_concurrency_hard_cap + 8 == 40
    assert s.batch_chunk_size == 50


def test_named_tokens_are_parsed_and_checked() -> None:
    """API_TOKENS is name:role:token entries; bad roles, duplicates and short tokens are refused."""
    s = make(api_tokens="bi:reader:aaaaaaaaaaaaaaaaaaaa, ops:operator:bbbbbbbbbbbbbbbbbbbb")
    assert s.named_tokens == [("bi", "reader", "a" * 20), ("ops", "operator", "b" * 20)]
    for bad, reason in (("x:admin:" + "c" * 20, "role must be one of"), ("nocolons", "name:role:token"),
                        ("a:reader:" + "t" * 20 + ",a:writer:" + "u" * 20, "unique")):  # fmt: skip
        with pytest.raises(ValidationError, match=reason):
            make(api_tokens=bad)
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make(environment="production", api_tokens="bi:reader:short")
    assert make(environment="production", api_tokens="bi:reader:" + "r" * 20).named_tokens


def test_refused_settings_never_echo_the_secrets_given() -> None:
    """A validation error of the settings does not print the input values (tokens, keys)."""
    with pytest.raises(ValidationError) as refused:
        make(environment="production", api_access_token="changeme", openai_api_key="sk-very-secret-1234")
    assert "sk-very-secret-1234" not in str(refused.value) and "changeme" not in str(refused.value)
