"""Browsing without a query: newest images first, and a redirect to an image's bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse

from shared.api.cursors import recent_after, recent_cursor
from shared.api.deps import (
    CollectionParam,
    CursorParam,
    LimitParam,
    PhotoFiltersParams,
    ServicesDep,
    require_api_key,
)
from shared.api.errors import ApiError, error_responses
from shared.api.schemas import RecentPage
from shared.store import queries

router = APIRouter(
    tags=["browse"], dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 404, 503)
)


@router.get("/recent")
def recent(
    services: ServicesDep, photo: PhotoFiltersParams, collection: CollectionParam = None, limit: LimitParam = 30,
    cursor: CursorParam = None,
) -> RecentPage:
    """Embedded images, newest first; `next_cursor` pages on, stable while images are added. `taken_after`,
    `taken_before` and `camera` filter by the photos' EXIF."""
    coll = services.collection(collection)
    hits = queries.recent(services.catalog, coll, limit=limit, after=recent_after(cursor), filters=photo)
    return RecentPage(
        items=services.items(coll, hits),
        next_cursor=recent_cursor(hits, limit),
        collection=coll.name,
    )


@router.get(
    "/images/{collection}/{key:path}",
    response_class=RedirectResponse,
    status_code=307,
    responses={307: {
        "description": "Redirect to the object: a presigned GET that expires, or a CDN link.",
        "headers": {"Location": {"description": "The image's URL.", "schema": {"type": "string", "format": "uri"}}},
    }},
)
def image(
    services: ServicesDep, collection: str, key: str,
    thumbnail: Annotated[bool, Query(description="Redirect to the WebP thumbnail instead.")] = False,
) -> RedirectResponse:
    """Redirect (307) to the original object, or to its thumbnail."""
    coll = services.collection(collection)
    row = queries.get_row(services.catalog, coll, key)
    if row is None or row.status == "deleted":
        raise ApiError(404, "unknown_key", f"no image {key!r} in collection {coll.name!r}: check the key")
    target = services.storage.thumbnail_key(key) if thumbnail else key
    return RedirectResponse(services.storage.url(coll.bucket, target), status_code=307)
