"""The operator dashboard: one static page and its script and stylesheet, served without auth.

They hold no data: the page asks for the API token and sends it on every `/api/v1` call it makes.
The Content-Security-Policy allows same-origin resources only, so nothing loads from elsewhere and
no inline script could run even if a server string slipped into the markup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from src.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {  # the only files served: no path ever comes from the request
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The dashboard page (queues, workers, running jobs, failures, imports), refreshing every 2 s."""
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> FileResponse:
    """The page's script or stylesheet."""
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"dashboard asset {asset} not found")
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=HEADERS)
