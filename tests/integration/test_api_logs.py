"""The API's log as uvicorn writes it with LOG_FORMAT=json: every line one JSON object, uvicorn's
own lines included, and each access line a `request` event carrying the request's id."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.local_redis import RedisServer
from tests.support.api_process import run_api

pytestmark = pytest.mark.integration
TOKEN = "logs-token-0123456789"


def _events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def test_uvicorn_lines_are_json_and_access_lines_carry_the_request_id(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Startup, access and shutdown lines all parse as JSON; an access line names the method, path
    and status, and its request_id is the one the client sent (or the one the API made up)."""
    url = redis_server.url.replace("/0", "/9")
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "API_ACCESS_TOKEN": TOKEN}
    with run_api(url, tmp_path, **env) as api:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        httpx.get(f"{api.url}/api/v1/queue/job/missing-job", headers={**auth, "X-Request-ID": "trace-404"})
        made_up = httpx.get(f"{api.url}/api/v1/workers", headers=auth).headers["x-request-id"]
        deadline = time.monotonic() + 30
        while not any(made_up in line for line in api.log_lines()):
            assert time.monotonic() < deadline, "the access line never came"
            time.sleep(0.1)
    events = _events(api.log_lines())  # raises on any plain-text line
    loggers = {e.get("logger") for e in events}
    assert {"uvicorn.error", "uvicorn.access", "src.api.main"} <= loggers
    access = {e["request_id"]: e for e in events if e.get("logger") == "uvicorn.access"}
    missing = access["trace-404"]
    assert (missing["event"], missing["method"], missing["status"]) == ("request", "GET", 404)
    assert missing["path"] == "/api/v1/queue/job/missing-job" and missing["level"] == "info"
    assert access[made_up]["status"] == 200 and access[made_up]["path"] == "/api/v1/workers"
    assert any(e["event"].startswith("Application startup complete") for e in events)
