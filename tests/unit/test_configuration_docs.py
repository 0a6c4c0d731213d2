"""docs/configuration.md and deploy/.env.example list exactly the Settings variables, with true defaults."""

from __future__ import annotations

import re
from pathlib import Path

from src.config import Settings

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
    """deploy/.env.example names exactly the Settings variables."""
    text = (ROOT / "deploy" / ".env.example").read_text()
    names = set(re.findall(r"^([A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert names == settings_variables()
