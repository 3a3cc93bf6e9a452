"""The FastAPI app: services on `app.state`, the /api routers, error handlers, the gallery, CORS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from shared import runtime
from shared.api.errors import install_error_handlers
from shared.api.routes import api_router
from shared.config import Settings, get_settings
from shared.embedders import Embedder, Models
from shared.search.service import QueryCache, Services
from shared.storage import Storage
from shared.store.catalog import Catalog

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    models: Models | Embedder | None = None,
    serve_web: bool = True,
) -> FastAPI:
    """The API app. No I/O here: everything heavy is created on first use. `models` defaults to the
    deployment's (IB_MODEL); one embedder stands for a set of one."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Image Browser search API",
        version="1.0",
        description="Natural-language and similar-image search over a bucket's images (CLIP + pgvector).",
    )
    app.state.services = create_services(settings, catalog, models)
    install_error_handlers(app)
    app.include_router(api_router)
    app.openapi = lambda: openapi_without_422(app)  # type: ignore[method-assign]
    if serve_web and WEB_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        # After the /api routes, so they win; html=True serves index.html at /.
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    if settings.cors_origins:
        # Outermost, so preflights and error answers (401 included) carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "x-api-key", "content-type"],
            max_age=600,
        )
    return app


def create_services(settings: Settings, catalog: Catalog | None = None,
                    models: Models | Embedder | None = None) -> Services:
    """No I/O: the catalog and the models wait for their first use (the process-wide ones unless given).
    One embedder stands for a set of one."""
    if isinstance(models, Embedder):
        models = Models([models], settings)
    return Services(settings, Storage(settings), QueryCache(settings.query_cache_size),
                    (lambda: catalog) if catalog is not None else runtime.catalog,
                    (lambda: models) if models is not None else runtime.models)


def openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema minus its 422 answers: a bad parameter answers 400 here (errors.py)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
