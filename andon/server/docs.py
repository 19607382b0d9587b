"""The API docs page at `/docs`: Swagger UI (from the `swagger-ui-bundle-v2` package, so
nothing comes from a CDN) on the server's own `/openapi.json`, whose examples can be run
from the page ("Try it out")."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

PAGE_DIR = Path(__file__).parent / "docs_page"
ASSETS = Path(str(swagger_ui_path))

# The page may load and call nothing but this server (Swagger UI sets inline styles).
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def docs_page(request: Request) -> Response:
    return FileResponse(PAGE_DIR / "index.html", headers=DOCS_HEADERS, media_type="text/html")


def _page_file(name: str, media_type: str) -> Route:
    async def serve(request: Request) -> Response:
        return FileResponse(PAGE_DIR / name, media_type=media_type)

    return Route(f"/docs/{name}", serve, methods=["GET", "HEAD"])


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/docs", docs_page, methods=["GET", "HEAD"]),
        _page_file("page.js", "text/javascript"),
        _page_file("page.css", "text/css"),
        Mount("/docs/assets", app=StaticFiles(directory=ASSETS), name="docs-assets"),
    ]
