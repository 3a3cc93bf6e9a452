"""Search: words and pictures with the query language (GET /api/search), like a stored image
(GET /api/similar), like an uploaded image plus optional terms (POST /api/search/image). Every route runs
`answer_search`: shared/search/hybrid.py ranks, this module builds the query vector and the answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from shared.api.cursors import search_cursor, search_position
from shared.api.deps import (
    SearchOptions,
    SearchOptionsParams,
    SearchParams,
    SearchParamsDep,
    ServicesDep,
    require_api_key,
)
from shared.api.errors import ApiError, error_responses
from shared.api.responses import json_answer
from shared.api.schemas import ParsedQuery, QueryTerm, SearchPage
from shared.api.validation import check_form
from shared.embedders import Embedder
from shared.search import hybrid
from shared.search.query_language import Term, combine, parse
from shared.search.service import Services
from shared.store import queries
from shared.store.catalog import Collection

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file itself

SearchTextParam = Annotated[str, Query(
    min_length=1, max_length=2000,
    description='What to look for: text, similar:<key>, "quoted words", joined by + and -, each with an '
    "optional N: weight (docs/search.md).")]
ImageTermsParam = Annotated[str | None, Query(
    max_length=2000, description="Terms combined with the uploaded image, as in /api/search's q (or form field q).")]
StoredKeyParam = Annotated[str, Query(min_length=1, max_length=1024, description="Key of a stored image.")]

router = APIRouter(
    tags=["search"], dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 404, 409, 503)
)


@dataclass(frozen=True)
class Upload:
    data: bytes
    name: str  # the file name the client gave, for the query's echo
    q: str | None  # the form's q field


def unknown_key(collection: Collection, key: str) -> ApiError:
    return ApiError(404, "unknown_key", f"no embedded image {key!r} in collection {collection.name!r}: check the "
                    "key (it may still be pending embedding, or deleted)")


def query_vector(services: Services, collection: Collection, embedder: Embedder | None, terms: list[Term],
                 lang: str, upload: Upload | None) -> np.ndarray:
    """The re-normalised weighted sum of the query's vectors: its texts (cached), its stored images, the upload.
    `embedder` is needed only for texts and the upload."""
    keys = [term.value for term in terms if term.kind == "image"]
    stored = queries.stored_vectors(services.catalog, collection, keys) if keys else {}
    for key in keys:
        if key not in stored:
            raise unknown_key(collection, key)
    weighted = []
    for term in terms:
        if term.kind == "text" and embedder is not None:
            weighted.append((term.weight, services.encode_text(embedder, term.value, lang)))
        elif term.kind == "image":
            weighted.append((term.weight, stored[term.value]))
    if upload is not None and embedder is not None:
        weighted.insert(0, (1.0, embed_upload(services, embedder, upload.data)))
    return combine(weighted)


def answer_search(services: Services, query: SearchParams, options: SearchOptions, terms: list[Term], *,
                  started: float, upload: Upload | None = None) -> SearchPage:
    """One page of a search. The model is used (and loaded) only for texts and uploads: words, and pictures
    like stored ones, are answered by the database alone."""
    plan = hybrid.plan(terms, options.mode, uploaded=upload is not None)
    offset, bound = search_position(query.cursor, hybrid.MAX_RESULTS)
    echo = [QueryTerm(kind="image", value=upload.name, weight=1.0)] if upload else []
    echo += [QueryTerm.model_validate(term.as_dict()) for term in terms]

    # A lone similar: term (/api/similar) searches by the stored vector in the database: no round trip to read it.
    # Person terms are filters (hybrid.with_people), so a similar: term beside them is still alone.
    searched = [term for term in terms if term.kind != "person"]
    similar_to = searched[0].value if upload is None and len(searched) == 1 and searched[0].kind == "image" \
        and searched[0].weight > 0 else None

    def answer(collection: Collection, embedder: Embedder | None) -> SearchPage:
        vector = query_vector(services, collection, embedder, terms, options.lang, upload) \
            if plan.needs_vector and similar_to is None else None
        # Later pages rank only the rows the first one could see (`bound`): images added meanwhile shift nothing.
        filters = replace(hybrid.with_people(services.catalog, collection, terms, query.filters), up_to_id=bound)
        try:
            page = hybrid.search(services.catalog, collection, plan, vector, hybrid.SearchRequest(
                options.sort, options.cutoff, query.limit, offset, query.min_score, filters,
                services.settings.search_floor_for(collection.model_id), services.settings.hnsw_ef_search),
                similar_to=similar_to)
        except KeyError:
            raise unknown_key(collection, str(similar_to)) from None
        reasons = {row.hit.key: page.matched[row.hit.id] for row in page.rows}
        items = services.search_items(collection, [row.hit for row in page.rows], collapse=query.collapse,
                                      filters=replace(filters, up_to_id=None), vector=vector, similar_to=similar_to)
        return SearchPage(
            items=[item.model_copy(update={"matched": reasons.get(item.key, [])}) for item in items],
            next_cursor=search_cursor(offset + query.limit, page.up_to or 0) if page.more else None,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
            model=collection.model_id,
            collection=collection.name,
            query=ParsedQuery(terms=echo), mode=options.mode, sort=options.sort, cutoff=options.cutoff,
            hidden=page.hidden,
            cutoff_score=None if page.cutoff_score is None else round(page.cutoff_score, 6),
        )

    needs_model = plan.needs_vector and (upload is not None or any(term.kind == "text" for term in terms))
    return services.on_current_model(query.collection, answer, needs_model=needs_model)


@router.get("/search", response_model=SearchPage)
def search(q: SearchTextParam, query: SearchParamsDep, options: SearchOptionsParams,
           services: ServicesDep) -> Response:
    """Words and pictures: hybrid (default), semantic (pictures) or keyword (words) matches of the query
    language, best first or by date, weak picture matches held back by the cutoff (`score` = cosine similarity)."""
    return json_answer(answer_search(services, query, options, parse(q), started=time.perf_counter()))


@router.get("/similar", response_model=SearchPage)
def similar(key: StoredKeyParam, query: SearchParamsDep, options: SearchOptionsParams,
            services: ServicesDep) -> Response:
    """Images like a stored one, the image itself excluded: the same answer as /api/search?q=similar:<key>."""
    return json_answer(answer_search(services, query, options, [Term("image", key, 1.0)],
                                     started=time.perf_counter()))


@router.post(
    "/search/image",
    responses=error_responses(413, 415),
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "q": {"type": "string", "description": "Terms combined with the image, as in /api/search's q."}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }}},
)
async def search_image(request: Request, query: SearchParamsDep, options: SearchOptionsParams,
                       services: ServicesDep, q: ImageTermsParam = None) -> SearchPage:
    """Images like an uploaded one (multipart field `file`, or the raw image as the body; not stored), with
    optional terms (`q`, a form field or parameter) combined by the query language's rules."""
    started = time.perf_counter()
    upload = await read_upload(request, services.settings.max_upload_bytes)
    text = upload.q if upload.q is not None else q
    terms = parse(text) if text and text.strip() else []
    # The database and the model block: off the event loop.
    return await run_in_threadpool(answer_search, services, query, options, terms, started=started, upload=upload)


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The uploaded image: multipart field `file` (and the text field `q`), or a raw image/* body. 413 over the
    limit."""
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
        check_form(form.multi_items())
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise ApiError(400, "bad_parameter",
                           "form field 'file' is missing: send the image as multipart/form-data field 'file'")
        data, name = await part.read(max_bytes + 1), part.filename or "upload"
        terms = form.get("q")
        await form.close()
    elif content_type.startswith(("image/", "application/octet-stream")):
        data, name, terms = await request.body(), "upload", None
    else:
        raise ApiError(
            415, "unsupported_media_type",
            f"expected multipart/form-data with a 'file' field (or an image body), got {content_type or 'no type'}",
        )
    if len(data) > max_bytes:
        raise too_large
    if not data:
        raise ApiError(400, "bad_parameter", "the uploaded file is empty: choose an image file")
    return Upload(data, name, terms if isinstance(terms, str) else None)


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
