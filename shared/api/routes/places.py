"""Places: where the collection's photos were taken, most photos first (GET /api/places)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shared.api.deps import CollectionParam, ServicesDep, require_api_key
from shared.api.errors import error_responses
from shared.api.schemas import PlaceEntry, PlaceList
from shared.store.places import place_counts

PlaceLimitParam = Annotated[int, Query(ge=1, le=1000, description="Places listed at most.")]

router = APIRouter(tags=["places"], dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 503))


@router.get("/places")
def places(services: ServicesDep, collection: CollectionParam = None, limit: PlaceLimitParam = 200) -> PlaceList:
    """Every place the photos were taken at (named offline from their GPS position, GeoNames), with how many
    and the newest as its cover; `filter` is the place= value of /api/search and /api/recent that lists them."""
    coll = services.collection(collection)
    return PlaceList(
        places=[PlaceEntry(city=entry.city, state=entry.state, country=entry.country, country_code=entry.country_code,
                           count=entry.count, cover=services.cover(coll, entry.cover),
                           filter=", ".join(part for part in (entry.city, entry.state, entry.country) if part))
                for entry in place_counts(services.catalog, coll, limit=limit)],
        collection=coll.name,
    )
