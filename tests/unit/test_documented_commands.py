"""Every command the docs show exists: CLI subcommands, workers.py flags and make targets."""

from __future__ import annotations

import re
from pathlib import Path

from src.cli import parser as cli_parser
from workers import parse_args

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "coolify" / "README.md"]


def all_docs_text() -> str:
    """The code in the docs only (fenced blocks and inline code spans), not their prose."""
    code: list[str] = []
    for path in DOCS:
        text = path.read_text()
        code += re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
        code += re.findall(r"`([^`\n]+)`", text)
    return "\n".join(code)


def test_documented_cli_subcommands_exist() -> None:
    """`python -m src.cli NAME` in any doc names a real subcommand."""
    choices = set(cli_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    used = set(re.findall(r"python -m src\.cli ([a-z][a-z-]*)", all_docs_text()))
    assert used, "the docs show no CLI command"
    assert used <= choices, f"docs mention CLI commands that do not exist: {sorted(used - choices)}"


def test_documented_worker_flags_exist() -> None:
    """Every `python workers.py --flag` in the docs is accepted by the worker's parser."""
    for line in re.findall(r"python workers\.py([^\n`#]*)", all_docs_text()):
        flags = [token for token in line.split() if token.startswith("--")]
        if "--reload" in flags or "--watch" in flags:
            continue  # shown as what is refused
        args: list[str] = []
        for token in line.split():
            if token in ("&", "&&", "|", ";", "||") or "'" in token or '"' in token:
                break
            args.append(token)
        parse_args(args)


def test_documented_make_targets_exist() -> None:
    """Every `make TARGET` in the docs is a target of the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    used = set(re.findall(r"(?<![\w-])make ([a-z][a-z-]*)", all_docs_text()))
    assert used <= targets, f"docs mention make targets that do not exist: {sorted(used - targets)}"
