"""The operator page: one HTML file, one script, one style sheet, shipped in the package and
served as they are (no build step, no CDN). It uses the HTTP API alone, with the token the person
pastes, kept in the tab's sessionStorage."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from pgaudit_py.server.errors import ApiError

FILES = Path(__file__).parent / "static"
# Served by name from this list only: no path from a request reaches the file system.
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


async def index(request: Request) -> Response:
    return FileResponse(FILES / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        raise ApiError(404, "no such path")
    return FileResponse(FILES / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


def page_routes() -> list[Route]:
    return [Route("/", index, methods=["GET"]), Route("/page/{name}", asset, methods=["GET"])]
