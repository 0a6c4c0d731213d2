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


def test_the_guides_banner_is_the_banners_code() -> None:
    """The banner shown in the Coolify guide is what a worker of that deployment prints: the
    normalization queue's tasks, the defaults of the compose file, the password masked."""
    from src.config import Environment, Settings
    from src.worker.banner import RULE, render_banner
    from src.worker.settings import worker_settings

    guide = (ROOT / "deploy" / "coolify" / "README.md").read_text()
    [shown] = [b for b in re.findall(r"^```text\n(.*?)^```", guide, re.MULTILINE | re.DOTALL) if "ARQ" in b]
    values = dict(line.split(": ", 1) for line in shown.splitlines() if ": " in line)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment.TEST,
        redis_url="redis://clinic-redis:6379/0",
        redis_password="a-generated-password",
        app_version=values["Code version"],
    )
    config = worker_settings(settings, "normalization")
    banner = render_banner(
        settings,
        queue_name=config.queue_name,
        tasks=[f.name for f in config.functions],
        worker_id=values["Worker id"],
    )
    assert shown.rstrip("\n") == banner and shown.startswith(RULE)


def test_the_job_state_diagram_has_exactly_the_ledgers_states() -> None:
    """docs/architecture.md draws the job's states once: the same set as `JobStatus`, and its
    terminal states are the ones the ledger treats as terminal."""
    from src.domain.jobs import JobStatus

    text = (ROOT / "docs" / "architecture.md").read_text()
    [diagram] = re.findall(r"```mermaid\n(stateDiagram-v2\n.*?)```", text, re.DOTALL)
    edges = re.findall(r"^\s+(\[\*\]|\w+) --> (\[\*\]|\w+)", diagram, re.MULTILINE)
    states = {s for edge in edges for s in edge} - {"[*]"}
    assert states == {s.value for s in JobStatus}
    terminal = {a for a, b in edges if b == "[*]"}
    assert terminal == {s.value for s in JobStatus if s.terminal}
    assert not any(a in terminal and b != "[*]" for a, b in edges)  # nothing leaves a terminal state
