"""The web page at `GET /` and the files it loads from `/ui/`: plain JavaScript modules
that speak the server's own HTTP+JSON binding (A2A 1.0), with no build step and no
file from anywhere else."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).parent / "ui"

# The page may load and call nothing but this server.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(request: Request) -> Response:
    return FileResponse(UI_DIR / "index.html", headers=PAGE_HEADERS, media_type="text/html")


def ui_routes() -> list[BaseRoute]:
    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Mount("/ui", app=StaticFiles(directory=UI_DIR), name="ui"),
    ]
