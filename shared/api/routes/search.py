"""Vector search: by text (or `similar:<key>`), like a stored image, like an uploaded image."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from shared import queries
from shared.api.cursors import vector_after, vector_cursor
from shared.api.deps import ServicesDep, VectorQuery, VectorQueryParams, require_api_key
from shared.api.errors import ApiError, error_responses
from shared.api.schemas import SearchPage
from shared.api.services import Services
from shared.catalog import Collection
from shared.embedders import Embedder

SIMILAR_PREFIX = "similar:"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file itself

SearchTextParam = Annotated[str, Query(min_length=1, max_length=2000, description="Text, or similar:<key>.")]
StoredKeyParam = Annotated[str, Query(min_length=1, max_length=1024, description="Key of a stored image.")]

router = APIRouter(
    tags=["search"], dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 404, 409, 503)
)


def vector_page(
    services: Services, collection: Collection, query: VectorQuery, *, vector: np.ndarray | None = None,
    similar_to: str | None = None, started: float,
) -> SearchPage:
    """One page of a vector search, near `vector` or near the stored image `similar_to`."""
    try:
        hits = queries.search(
            services.catalog, collection, vector, similar_to=similar_to, limit=query.limit, min_score=query.min_score,
            filters=query.filters, after=vector_after(query.cursor), ef_search=services.settings.hnsw_ef_search,
        )
    except KeyError:
        raise ApiError(
            404, "unknown_key",
            f"no embedded image {similar_to!r} in collection {collection.name!r}: check the key "
            "(it may still be pending embedding, or deleted)",
        ) from None
    return SearchPage(
        items=[services.item(collection, hit) for hit in hits],
        next_cursor=vector_cursor(hits, query.limit),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        model=collection.model_id,
        collection=collection.name,
    )


@router.get("/search")
def search(q: SearchTextParam, query: VectorQueryParams, services: ServicesDep) -> SearchPage:
    """Natural-language search, best match first (`score` = cosine similarity)."""
    started = time.perf_counter()
    text = q.strip()
    if not text:
        raise ApiError(400, "bad_parameter", "parameter 'q' is blank: type what to look for")
    if text.lower().startswith(SIMILAR_PREFIX):
        key = text[len(SIMILAR_PREFIX):].strip()
        if not key:
            raise ApiError(400, "bad_parameter", "parameter 'q' is 'similar:' without a key")
        return vector_page(services, services.collection(query.collection), query, similar_to=key, started=started)

    def answer(collection: Collection, embedder: Embedder) -> SearchPage:
        vector = services.encode_text(embedder, text)
        return vector_page(services, collection, query, vector=vector, started=started)

    return services.on_current_model(query.collection, answer)


@router.get("/similar")
def similar(key: StoredKeyParam, query: VectorQueryParams, services: ServicesDep) -> SearchPage:
    """Images like a stored one, the image itself excluded."""
    started = time.perf_counter()
    return vector_page(services, services.collection(query.collection), query, similar_to=key, started=started)


@router.post(
    "/search/image",
    responses=error_responses(413, 415),
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }}},
)
async def search_image(request: Request, query: VectorQueryParams, services: ServicesDep) -> SearchPage:
    """Images like an uploaded one (multipart field `file`, or the raw image as the body); not stored."""
    started = time.perf_counter()
    data = await read_upload(request, services.settings.max_upload_bytes)

    def answer(collection: Collection, embedder: Embedder) -> SearchPage:
        vector = embed_upload(services, embedder, data)
        return vector_page(services, collection, query, vector=vector, started=started)

    # The database and the model block: off the event loop.
    return await run_in_threadpool(services.on_current_model, query.collection, answer)


async def read_upload(request: Request, max_bytes: int) -> bytes:
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


def embed_upload(services: Services, embedder: Embedder, data: bytes) -> np.ndarray:
    """The uploaded image's vector; 413 or 415 if it cannot be decoded."""
    from shared.images import ImageError, decode  # Pillow: only the upload route needs it

    settings = services.settings
    try:
        image = decode(data, max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes)
    except ImageError as exc:
        if exc.reason in {"too_large", "too_many_pixels"}:
            raise ApiError(413, "too_large", str(exc)) from None
        raise ApiError(415, "unsupported_media_type", f"the upload is not an image we can read: {exc}") from None
    return embedder.embed_images([image])[0]
