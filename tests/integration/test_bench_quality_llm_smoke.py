"""`python -m bench.quality --mode llm` without a key: the worker's LLM path against the fake server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_llm_mode_runs_the_worker_path_against_the_fake_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without OPENAI_API_KEY the LLM mode checks the plumbing against the fake server: the SDK, the
    answer's checks and the fallback run for every address, and it says who answered."""
    from bench import quality

    out = tmp_path / "llm.json"
    assert quality.main(["--mode", "llm", "--no-baseline", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["mode"] == "llm" and figures["accuracy"]["dev"]["cep"] > 0.9
    err = capsys.readouterr().err
    assert "llm mode against the fake server (plumbing only)" in err
    answered = re.search(r"answered by (\{.*\})", err)
    assert answered is not None and "'llm': " in answered.group(1)
