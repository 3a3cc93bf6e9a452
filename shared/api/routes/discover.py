"""Discover: the built-in categories (shared/search/discover.py), each a saved search answered with the
adaptive cutoff, with stored counts (GET /api/discover). A category's photos: GET /api/search with its
`query`, mode=semantic."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shared.api.deps import CollectionParam, ServicesDep, require_api_key
from shared.api.errors import error_responses
from shared.api.saved_query import counted, discover_queries
from shared.api.schemas import DiscoverCategory, DiscoverList
from shared.store import saved

router = APIRouter(tags=["discover"], dependencies=[Depends(require_api_key)],
                   responses=error_responses(400, 401, 409, 503))


@router.get("/discover")
def discover(services: ServicesDep, collection: CollectionParam = None) -> DiscoverList:
    """The categories with how many photos pass the cutoff (at most 1,000) and the best as cover. Counts are
    stored: refreshed by the sweep, counted here only the first time (or after a model move)."""
    coll = services.collection(collection)
    stored = saved.discover_rows(services.catalog, coll.name, discover_queries())
    rows = [counted(services, row, coll) for row in stored]
    return DiscoverList(
        categories=[DiscoverCategory(name=row.name, query=str(row.query["q"]), count=row.count or 0,
                                     cover=services.cover(coll, row.cover_key) if row.cover_key else None,
                                     counted_at=row.counted_at.isoformat() if row.counted_at else None)
                    for row in rows],
        collection=coll.name, model=coll.model_id,
    )
