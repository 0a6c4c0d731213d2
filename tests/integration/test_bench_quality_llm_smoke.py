"""`python -m bench.quality --mode llm` without a key: the worker's LLM path against the fake server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_llm_mode_runs_the_worker_path_against_the_fake_server(tmp_path: Path) -> None:
    """Without OPENAI_API_KEY the LLM mode checks the plumbing against the fake server: the SDK, the
    answer's checks and the fallback run for every address, and it says who answered. (A process of
    its own: it configures logging.)"""
    out = tmp_path / "llm.json"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--mode", "llm", "--no-baseline", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["mode"] == "llm" and figures["accuracy"]["dev"]["cep"] > 0.9
    assert "llm mode against the fake server (plumbing only)" in done.stderr
    answered = re.search(r"answered by (\{.*\})", done.stderr)
    assert answered is not None and "'llm': " in answered.group(1)
