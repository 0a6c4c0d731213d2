"""The OpenAI SDK (with aiohttp, tens of MB of RSS) is imported only when LLM mode builds its client:
a rules-mode worker and the API stay under the worker RSS budget of the 50,000-row import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_worker_and_api_modules_do_not_import_the_openai_sdk() -> None:
    code = (
        "import sys, workers, src.worker.settings, src.worker.hooks, src.worker.tasks, src.api.main\n"
        "print(sorted(m for m in ('openai', 'aiohttp') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]", completed.stdout + completed.stderr


def test_llm_mode_module_does_import_it() -> None:
    """The check above can fail: importing the LLM adapter pulls the SDK in."""
    code = "import sys, src.infrastructure.llm_address_normalizer\nprint('openai' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "True"
