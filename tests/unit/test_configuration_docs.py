"""docs/configuration.md and deploy/.env.production.example list exactly the Settings variables, with
true defaults; the development .env.example loads as is, local, and every name in it is a setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from src.config import Settings, describe_errors

ROOT = Path(__file__).resolve().parents[2]


def settings_variables() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def documented_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_configuration_table_matches_the_settings_class() -> None:
    """Every Settings field has a row in docs/configuration.md and every row is a Settings field."""
    assert set(documented_rows()) == settings_variables()


def test_documented_defaults_are_the_real_defaults() -> None:
    """The default column says what the class really defaults to."""
    for name, documented in documented_rows().items():
        field = Settings.model_fields[name.lower()]
        default = field.default
        if default is None or default == "":
            assert documented == "_(none)_", name
            continue
        shown = documented.strip("`")
        actual = default.value if hasattr(default, "value") else default
        if isinstance(actual, bool):
            assert shown == str(actual).lower(), name
        elif isinstance(actual, int | float):
            assert float(shown) == float(actual), name
        else:
            assert shown == str(actual), name


def test_env_example_lists_every_variable() -> None:
    """deploy/.env.production.example names exactly the Settings variables."""
    text = (ROOT / "deploy" / ".env.production.example").read_text()
    names = set(re.findall(r"^([A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert names == settings_variables()


def test_the_development_example_loads_as_is_and_stays_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """.env.example (development) gives valid settings with no placeholder to fill in: development,
    a local Redis, the embedded store, no OpenAI; each name in it is a setting."""
    monkeypatch.delenv("ENVIRONMENT")  # the tests' own; the file's must decide here
    path = ROOT / ".env.example"
    names = set(re.findall(r"^([A-Z0-9_]+)=", path.read_text(), flags=re.MULTILINE))
    assert names <= settings_variables()
    settings = Settings(_env_file=str(path))  # type: ignore[call-arg]
    assert settings.environment.value == "development" and not settings.is_production
    assert settings.mongodb_url is None and not settings.llm_enabled
    assert settings.redis_url.startswith("redis://localhost")


def test_the_production_example_is_refused_until_its_placeholders_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The production template, used as it is, stops with one line naming the variable to fix."""
    monkeypatch.delenv("ENVIRONMENT")

    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=str(ROOT / "deploy" / ".env.production.example"))  # type: ignore[call-arg]
    message = describe_errors(refused.value)
    assert "placeholder" in message and "\n" not in message
    assert any(name in message for name in ("REDIS_PASSWORD", "API_ACCESS_TOKEN", "APP_VERSION"))
