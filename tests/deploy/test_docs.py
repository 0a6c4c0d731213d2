"""Every document with shell commands says where each block is tested or what it needs; links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.tools import ROOT, SINGLE_CONTAINER_HEALTHCHECK

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# every document that shows shell commands: the README, docs/ and the Coolify guide
DOCS = [
    p
    for p in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "deploy" / "coolify" / "README.md",
    ]
    if SHELL_BLOCK.search(p.read_text())
]
NEEDS = ("# needs: a Docker engine", "# needs: Coolify", "# needs: the package index")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
ids = [str(p.relative_to(ROOT)) for p in DOCS]


@pytest.mark.parametrize("path", DOCS, ids=ids)
def test_every_shell_block_is_tested_or_marked(path: Path) -> None:
    """Each shell block starts with `# tested: FILE` (an existing test) or a `# needs: ...` marker."""
    blocks = SHELL_BLOCK.findall(path.read_text())
    assert blocks, f"{path.name} shows no commands"
    for block in blocks:
        first = block.splitlines()[0]
        if first.startswith("# tested: "):
            assert (ROOT / first.removeprefix("# tested: ")).is_file(), first
        else:
            assert first in NEEDS, f"unmarked command block in {path.name}:\n{block}"


@pytest.mark.parametrize("path", DOCS, ids=ids)
def test_relative_links_resolve(path: Path) -> None:
    """Every relative link points at an existing file."""
    for target in LINK.findall(path.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_documented_single_container_healthcheck_is_the_tested_one() -> None:
    """The option A health check in docs/deployment.md is the command the start-script test runs."""
    assert SINGLE_CONTAINER_HEALTHCHECK in (ROOT / "docs" / "deployment.md").read_text()
