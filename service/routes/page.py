"""The web page (``GET /``), its static files, and ``/docs`` and ``/redoc`` served offline.

Everything a browser loads comes from this service: the page's HTML, CSS and JavaScript and
the charting library under ``/static`` (``service/static``), and Swagger UI's and ReDoc's
assets, vendored by ``scripts/vendor_assets.sh`` at pinned versions (their licences and
versions are in ``service/static/vendor``). FastAPI's own ``/docs`` and ``/redoc`` fetch those
from a CDN and are blank without the internet; these are the same pages pointing here
(FastAPI's "Self-hosting JavaScript and CSS for docs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "STATIC_PATH", "mount_static", "router"]

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH: Final = "/static"
_VENDOR: Final = f"{STATIC_PATH}/vendor"
_FAVICON: Final = f"{STATIC_PATH}/favicon.svg"
DOCS_PATH: Final = "/docs"
REDOC_PATH: Final = "/redoc"
OAUTH2_REDIRECT_PATH: Final = f"{DOCS_PATH}/oauth2-redirect"

# The page loads scripts, styles, data and images from this service alone; the browser
# enforces it. Previews of chosen files are blob: URLs; Chart.js sizes its canvases through
# the style property, which style-src does not govern.
PAGE_POLICY: Final = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

# Swagger UI and ReDoc run an inline script and inject their styles; what they must not do is
# reach out: ReDoc's sidebar shows a logo from its makers' CDN, which this refuses (the image
# hides itself when it fails to load).
DOCS_POLICY: Final = "default-src 'self' 'unsafe-inline' blob: data:; object-src 'none'"

router = APIRouter(include_in_schema=False)


def _local_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response


def mount_static(app: FastAPI) -> None:
    """Serve ``service/static`` under ``/static`` (a mount: the router cannot hold one)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"},
    )


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return _local_only(
        get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=_FAVICON,
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            # No badge that sends the description to an online validator.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return _local_only(
        get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=_FAVICON,
            with_google_fonts=False,
        )
    )
