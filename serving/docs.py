"""The API's reference pages, served offline: Swagger UI (`/docs`, with an Authorize button
for the API key) and ReDoc (`/redoc`), their scripts and styles served by the service
itself from the `fastapi-offline` package (Swagger UI: Apache-2.0, ReDoc: MIT), never from a
CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

# Where the pages load their files from (`asset`), and the files that may be asked for.
ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def asset_folder() -> Path:
    """The folder of the packaged Swagger UI and ReDoc files."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def swagger_page(openapi_url: str, title: str) -> HTMLResponse:
    """Swagger UI on the API's document, with local files only; the key entered with
    Authorize is kept across reloads of the page, and no outside validator is called."""
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - API reference",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    )


def redoc_page(openapi_url: str, title: str) -> HTMLResponse:
    """ReDoc on the API's document, with local files only (no web fonts)."""
    return get_redoc_html(
        openapi_url=openapi_url,
        title=f"{title} - API reference",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )
