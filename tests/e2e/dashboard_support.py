"""Helpers of the dashboard test: Debian's Chromium (installed with apt-get when missing), the app served
by a real uvicorn on a free loopback port, and a Playwright page that may reach that port only."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI

try:
    from playwright.async_api import BrowserContext, Page, Request, Route, async_playwright
except ImportError as exc:  # pragma: no cover - a set-up error, reported loudly
    raise ImportError(
        "the dashboard test drives Debian's Chromium with Playwright for Python: "
        "`pip install -r requirements.lock` (never `playwright install`: no browser is downloaded)"
    ) from exc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_PACKAGES = ["chromium", "chromium-driver"]


def ensure_chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (as root); otherwise fail saying what to
    install. Never skips: a dashboard nobody looked at is not tested."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    install = f"apt-get update && apt-get install -y {' '.join(APT_PACKAGES)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and this is not root with apt-get: run `sudo {install}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *APT_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"`{install}` ran but {CHROMIUM} is still missing")
    return CHROMIUM


@asynccontextmanager
async def serve(app: FastAPI, *, start_timeout: float = 30.0) -> AsyncIterator[str]:
    """Run `app` (lifespan included) under uvicorn in a background thread on a free loopback port;
    yields its base URL and stops it cleanly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # uvicorn listens on this very socket: no race for the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dashboard-uvicorn")
    thread.start()
    try:
        deadline = asyncio.get_running_loop().time() + start_timeout
        while not server.started:
            if not thread.is_alive() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("uvicorn did not start (see the log above)")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, start_timeout)
        sock.close()


@asynccontextmanager
async def chromium_page(profile_dir: Path, base_url: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page of headless Chromium with a fresh profile. Requests anywhere but `base_url` are aborted
    and listed (yielded beside the page), so the test proves the dashboard works offline."""
    origin = urlsplit(base_url).netloc
    foreign: list[str] = []

    async def only_same_origin(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == origin:
            await route.continue_()
        else:
            foreign.append(request.url)
            await route.abort()

    async with async_playwright() as playwright:
        context: BrowserContext = await playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=ensure_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            await context.route("**/*", only_same_origin)
            page = context.pages[0] if context.pages else await context.new_page()
            yield page, foreign
        finally:
            await context.close()
