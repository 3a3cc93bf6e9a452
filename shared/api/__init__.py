"""The search API: FastAPI app served by uvicorn locally and by Mangum in Lambda (`functions/api.py`).

Routes (JSON; every one takes `collection`, default IB_BUCKET):
  GET  /api/search?q=&limit=&min_score=&prefix=&after=&before=&type=&cursor=   text (or `similar:<key>`)
  GET  /api/similar?key=&limit=&min_score=&cursor=                             like a stored image
  POST /api/search/image                                                       like an uploaded image
  GET  /api/recent?limit=&cursor=                                              newest first, keyset paging
  GET  /api/images/{collection}/{key}?thumbnail=1                              redirect to the object
  GET  /api/collections, /api/stats, /api/health

`create_app()` does no I/O: the database pool, storage and model come from `shared.runtime` on first
use (a Lambda container keeps them between invocations), and the text tower loads on the first text
query only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from shared.catalog import Catalog, CatalogError, Collection, Hit, ModelMismatch, SearchFilters, UnknownCollection
from shared.config import Settings, get_settings
from shared.db import DatabaseUnavailable
from shared.embedders import EmbedderError, EmbedderTemporaryError
from shared.storage import UrlSigner

if TYPE_CHECKING:
    from shared.embedders import Embedder

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SIMILAR_PREFIX = "similar:"
MAX_LIMIT = 100
RETRY_AFTER_SECONDS = 5
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file itself


class ApiError(Exception):
    """An answer other than 200: status, machine code, and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# ---- query embedding cache ------------------------------------------------------------------------


class QueryCache:
    """LRU of text-query embeddings keyed by (model, text): paging and repeats skip the encoder."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, model_id: str, text: str, compute: Callable[[str], np.ndarray]) -> np.ndarray:
        key = (model_id, text)
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return vector
            self.misses += 1
        vector = compute(text)
        if self.size > 0:
            with self._lock:
                self._items[key] = vector
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return vector


# ---- cursors --------------------------------------------------------------------------------------


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> dict[str, Any]:
    """The cursor's fields; 400 naming `cursor` if it was not made by this route."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("i"), int):
            raise ValueError(kind)
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            400, "bad_parameter",
            "parameter 'cursor' is not a cursor from this route: pass the next_cursor of the previous "
            "answer unchanged, or leave it out for the first page",
        ) from None


def vector_cursor(hits: list[Hit], limit: int) -> str | None:
    if len(hits) < limit:
        return None
    last = hits[-1]
    return encode_cursor({"k": "v", "d": last.distance, "i": last.id})


def vector_after(cursor: str | None) -> tuple[float, int] | None:
    if not cursor:
        return None
    data = decode_cursor(cursor, "v")
    if not isinstance(data.get("d"), int | float):
        raise ApiError(400, "bad_parameter", "parameter 'cursor' is damaged: start again without it")
    return float(data["d"]), int(data["i"])


# ---- the app --------------------------------------------------------------------------------------


@dataclass
class Services:
    """What the routes need, each created on first use (tests pass their own)."""

    settings: Settings
    catalog_factory: Callable[[], Catalog]
    embedder_factory: Callable[[], Embedder]
    signer: UrlSigner
    cache: QueryCache
    _catalog: Catalog | None = None
    _embedder: Embedder | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self.catalog_factory()
        return self._catalog

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.embedder_factory()
        return self._embedder

    def collection(self, name: str | None, *, check_model: bool = False) -> Collection:
        collection = self.catalog.get_collection(name or self.settings.bucket)
        if check_model:
            self.catalog.check_model(collection, self.embedder.model_id, self.embedder.dim)
        return collection

    def encode_text(self, text: str) -> np.ndarray:
        embedder = self.embedder
        return self.cache.get(embedder.model_id, text, embedder.embed_text)

    def item(self, collection: Collection, hit: Hit) -> dict[str, Any]:
        thumb_key = f"{self.settings.thumbnail_prefix}{hit.key}.webp"  # as Storage.thumbnail_key
        return {
            "key": hit.key,
            "score": None if hit.score is None else round(hit.score, 6),
            "url": self.signer.url(collection.bucket, hit.key),
            # Thumbnails are written when an image is embedded; the gallery falls back to `url`.
            "thumbnail_url": self.signer.url(collection.bucket, thumb_key),
            "width": hit.width,
            "height": hit.height,
            "size": hit.size,
            "last_modified": hit.last_modified.isoformat() if hit.last_modified else None,
            "content_type": hit.content_type,
        }


def _default_catalog() -> Catalog:
    from shared import runtime

    return runtime.catalog()


def _default_embedder() -> Embedder:
    from shared import runtime

    return runtime.embedder()


def _factory(given: Any, default: Callable[[], Any]) -> Callable[[], Any]:
    """An object, a zero-argument factory, or None (the process-wide default)."""
    if given is None:
        return default
    return given if callable(given) else lambda: given


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | Callable[[], Catalog] | None = None,
    embedder: Embedder | Callable[[], Embedder] | None = None,
    serve_web: bool = True,
) -> FastAPI:
    """The API app. No I/O here: everything heavy is created on first use."""
    settings = settings or get_settings()
    services = Services(
        settings=settings,
        catalog_factory=_factory(catalog, _default_catalog),
        embedder_factory=_factory(embedder, _default_embedder),
        signer=UrlSigner(settings),
        cache=QueryCache(settings.query_cache_size),
    )
    app = FastAPI(
        title="Image Browser search API",
        version="1.0",
        description="Natural-language and similar-image search over a bucket's images (CLIP + pgvector).",
    )
    app.state.services = services
    _install_error_handlers(app)
    _add_routes(app, services)
    if serve_web and WEB_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        # After the /api routes, so they win; html=True serves index.html at /.
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    if settings.cors_origins:
        # Outermost, so preflights and error answers (401 included) carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "x-api-key", "content-type"],
            max_age=600,
        )
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body", "header")]
            name = ".".join(loc) or "request"
            problems.append(f"parameter '{name}': {error.get('msg', 'invalid')}")
        return error_response(400, "bad_parameter", "; ".join(problems) + ". Fix the parameter and retry.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}: see /docs for the API's routes"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return error_response(
            503, "database_unavailable",
            f"the database is unavailable right now; retry in {RETRY_AFTER_SECONDS} s ({exc})",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(UnknownCollection)
    async def _unknown(request: Request, exc: UnknownCollection) -> JSONResponse:
        return error_response(404, "unknown_collection", str(exc))

    @app.exception_handler(ModelMismatch)
    async def _mismatch(request: Request, exc: ModelMismatch) -> JSONResponse:
        return error_response(409, "model_mismatch", str(exc))

    @app.exception_handler(CatalogError)
    async def _catalog(request: Request, exc: CatalogError) -> JSONResponse:
        return error_response(400, "bad_parameter", str(exc))

    @app.exception_handler(EmbedderTemporaryError)
    async def _model_busy(request: Request, exc: EmbedderTemporaryError) -> JSONResponse:
        return error_response(503, "model_unavailable", f"{exc}; retry later",
                              {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(EmbedderError)
    async def _model_broken(request: Request, exc: EmbedderError) -> JSONResponse:
        return error_response(503, "model_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal", f"unexpected {type(exc).__name__} while answering {request.url.path}; "
            "the server log has the details",
        )


# Shared parameter declarations (documented once, in /docs).
CollectionParam = Annotated[str | None, Query(description="Collection (bucket); default IB_BUCKET.")]
LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Results per page.")]
MinScoreParam = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="Cut off results whose cosine similarity is lower.")
]
CursorParam = Annotated[str | None, Query(description="next_cursor of the previous page.")]
PrefixParam = Annotated[str | None, Query(max_length=1024, description="Only keys starting with this.")]
AfterParam = Annotated[datetime | None, Query(description="Only images modified at or after (ISO 8601).")]
BeforeParam = Annotated[datetime | None, Query(description="Only images modified before (ISO 8601).")]
TypeParam = Annotated[
    str | None, Query(max_length=100, description="Only this content type: image/jpeg, or jpeg, png, ...")
]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # a time without zone means UTC


def _filters(prefix: str | None, after: datetime | None, before: datetime | None, type_: str | None) -> SearchFilters:
    after, before = _utc(after), _utc(before)
    if after and before and after >= before:
        raise ApiError(400, "bad_parameter", "parameter 'after' must be earlier than 'before'")
    content_type = None
    if type_:
        content_type = type_.strip().lower()
        if "/" not in content_type:
            content_type = "image/" + ("jpeg" if content_type == "jpg" else content_type)
    return SearchFilters(prefix=prefix or None, after=after, before=before, content_type=content_type)


@dataclass(frozen=True)
class VectorQuery:
    """What every vector search takes besides its target: where, how many, how good, which page."""

    collection: str | None
    limit: int
    min_score: float | None
    filters: SearchFilters
    cursor: str | None


def vector_query(
    collection: CollectionParam = None,
    limit: LimitParam = 30,
    min_score: MinScoreParam = None,
    prefix: PrefixParam = None,
    after: AfterParam = None,
    before: BeforeParam = None,
    type: TypeParam = None,  # noqa: A002 - the public parameter name
    cursor: CursorParam = None,
) -> VectorQuery:
    return VectorQuery(collection, limit, min_score, _filters(prefix, after, before, type), cursor)


VectorQueryParams = Annotated[VectorQuery, Depends(vector_query)]


def _add_routes(app: FastAPI, services: Services) -> None:
    settings = services.settings

    def require_key(request: Request) -> None:
        if not settings.api_key:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ApiError(
                401, "unauthorized",
                "this API needs a key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
                if given is None else "the API key is wrong: check it against IB_API_KEY",
                {"WWW-Authenticate": "Bearer"},
            )

    guarded = [Depends(require_key)]

    def vector_page(
        collection: Collection, query: VectorQuery, *, vector: np.ndarray | None = None,
        similar_to: str | None = None, started: float,
    ) -> JSONResponse:
        try:
            hits = services.catalog.search(
                collection, vector, similar_to=similar_to, limit=query.limit, min_score=query.min_score,
                filters=query.filters, after=vector_after(query.cursor), ef_search=settings.hnsw_ef_search,
            )
        except KeyError:
            raise ApiError(
                404, "unknown_key",
                f"no embedded image {similar_to!r} in collection {collection.name!r}: check the key "
                "(it may still be pending embedding, or deleted)",
            ) from None
        return JSONResponse({
            "items": [services.item(collection, hit) for hit in hits],
            "next_cursor": vector_cursor(hits, query.limit),
            "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "model": services.embedder.model_id,
            "collection": collection.name,
        })

    @app.get("/api/search", dependencies=guarded, tags=["search"])
    def search(
        q: Annotated[str, Query(min_length=1, max_length=2000, description="Text, or similar:<key>.")],
        query: VectorQueryParams,
    ) -> JSONResponse:
        """Natural-language search, best match first (`score` = cosine similarity)."""
        started = time.perf_counter()
        text = q.strip()
        if not text:
            raise ApiError(400, "bad_parameter", "parameter 'q' is blank: type what to look for")
        coll = services.collection(query.collection, check_model=True)
        if text.lower().startswith(SIMILAR_PREFIX):
            key = text[len(SIMILAR_PREFIX):].strip()
            if not key:
                raise ApiError(400, "bad_parameter", "parameter 'q' is 'similar:' without a key")
            return vector_page(coll, query, similar_to=key, started=started)
        return vector_page(coll, query, vector=services.encode_text(text), started=started)

    @app.get("/api/similar", dependencies=guarded, tags=["search"])
    def similar(
        key: Annotated[str, Query(min_length=1, max_length=1024, description="Key of a stored image.")],
        query: VectorQueryParams,
    ) -> JSONResponse:
        """Images like a stored one, the image itself excluded."""
        started = time.perf_counter()
        coll = services.collection(query.collection, check_model=True)
        return vector_page(coll, query, similar_to=key, started=started)

    @app.post(
        "/api/search/image", dependencies=guarded, tags=["search"],
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        }}},
    )
    async def search_image(request: Request, query: VectorQueryParams) -> JSONResponse:
        """Images like an uploaded one (multipart field `file`, or the raw image as the body); not stored."""
        started = time.perf_counter()
        data = await _read_upload(request, settings.max_upload_bytes)

        def answer() -> JSONResponse:
            coll = services.collection(query.collection, check_model=True)
            return vector_page(coll, query, vector=_embed_upload(services, data), started=started)

        return await run_in_threadpool(answer)

    @app.get("/api/recent", dependencies=guarded, tags=["browse"])
    def recent(collection: CollectionParam = None, limit: LimitParam = 30, cursor: CursorParam = None) -> JSONResponse:
        """Embedded images, newest first; `next_cursor` pages on, stable while images are added."""
        coll = services.collection(collection)
        after = None
        if cursor:
            data = decode_cursor(cursor, "r")
            try:
                when = datetime.fromisoformat(data["t"]) if data.get("t") else None
            except (TypeError, ValueError):
                raise ApiError(400, "bad_parameter", "parameter 'cursor' is damaged: start again without it") from None
            after = (when, int(data["i"]))
        hits = services.catalog.recent(coll, limit=limit, after=after)
        next_cursor = None
        if len(hits) == limit:
            last = hits[-1]
            when = last.last_modified.isoformat() if last.last_modified else None
            next_cursor = encode_cursor({"k": "r", "t": when, "i": last.id})
        return JSONResponse({
            "items": [services.item(coll, hit) for hit in hits],
            "next_cursor": next_cursor,
            "collection": coll.name,
        })

    @app.get("/api/images/{collection}/{key:path}", dependencies=guarded, tags=["browse"])
    def image(
        collection: str, key: str,
        thumbnail: Annotated[bool, Query(description="Redirect to the WebP thumbnail instead.")] = False,
    ) -> RedirectResponse:
        """Redirect (307) to the original object, or to its thumbnail."""
        coll = services.collection(collection)
        row = services.catalog.get_row(coll, key)
        if row is None or row.status == "deleted":
            raise ApiError(404, "unknown_key", f"no image {key!r} in collection {coll.name!r}: check the key")
        target = f"{settings.thumbnail_prefix}{key}.webp" if thumbnail else key
        return RedirectResponse(services.signer.url(coll.bucket, target), status_code=307)

    @app.get("/api/collections", dependencies=guarded, tags=["status"])
    def collections() -> JSONResponse:
        """Every collection with its model, counts by status, bytes stored and last update."""
        out = []
        for coll in services.catalog.list_collections():
            stats = services.catalog.stats(coll)
            out.append({
                "name": coll.name, "bucket": coll.bucket, "model": coll.model_id, "dim": coll.dim,
                "counts": stats["counts"], "bytes": stats["bytes"], "updated_at": stats["last_update"],
            })
        return JSONResponse({"default": settings.bucket, "collections": out})

    @app.get("/api/stats", dependencies=guarded, tags=["status"])
    def stats(collection: CollectionParam = None) -> JSONResponse:
        """Counts by status (embedded, pending, failed), bytes of originals, last update."""
        return JSONResponse(services.catalog.stats(services.collection(collection)))

    @app.get("/api/health", tags=["status"])
    def health() -> JSONResponse:
        """Whether the database answers and which model towers are loaded. Needs no key."""
        try:
            services.catalog.db.run("SELECT 1")
            database = True
        except Exception as exc:  # any failure means "not reachable" here; the detail goes to the log
            log.warning("health: database check failed: %s", exc)
            database = False
        model, loaded, test_model = settings.model, {"visual": False, "textual": False}, False
        try:
            embedder = services.embedder
            model, loaded, test_model = embedder.model_id, embedder.loaded(), embedder.is_test_model
        except Exception as exc:  # a model that cannot be resolved degrades search, not health itself
            log.warning("health: model %s unavailable: %s", settings.model, exc)
        return JSONResponse({
            "status": "ok" if database else "degraded",
            "database": database,
            "model": model,
            "model_loaded": loaded,
            "test_model": test_model,
        })


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded image's bytes: multipart field `file`, or a raw image/* body. 413 over the limit."""
    too_large = ApiError(
        413, "too_large",
        f"the upload is over the limit of {max_bytes:,} bytes (IB_MAX_UPLOAD_BYTES): send a smaller image",
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large  # refuse before reading the body
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise ApiError(400, "bad_parameter",
                           "form field 'file' is missing: send the image as multipart/form-data field 'file'")
        data = await part.read(max_bytes + 1)
        await form.close()
    elif content_type.startswith(("image/", "application/octet-stream")):
        data = await request.body()
    else:
        raise ApiError(
            415, "unsupported_media_type",
            f"expected multipart/form-data with a 'file' field (or an image body), got {content_type or 'no type'}",
        )
    if len(data) > max_bytes:
        raise too_large
    if not data:
        raise ApiError(400, "bad_parameter", "the uploaded file is empty: choose an image file")
    return data


def _embed_upload(services: Services, data: bytes) -> np.ndarray:
    from shared.images import ImageError, decode

    settings = services.settings
    try:
        image = decode(data, max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes)
    except ImageError as exc:
        if exc.reason in {"too_large", "too_many_pixels"}:
            raise ApiError(413, "too_large", str(exc)) from None
        raise ApiError(415, "unsupported_media_type", f"the upload is not an image we can read: {exc}") from None
    return services.embedder.embed_images([image])[0]


__all__ = ["ApiError", "QueryCache", "create_app"]
