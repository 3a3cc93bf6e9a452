"""Duplicate groups: the same bytes (exact), near-duplicates and similar shots, each with a copy to keep.

Deleting stays with the user's own S3 tool; the API only says which copies could go.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shared.api.cursors import duplicates_after, duplicates_cursor
from shared.api.deps import CollectionParam, CursorParam, ServicesDep, require_api_key
from shared.api.errors import ApiError, error_responses
from shared.api.schemas import DuplicateGroup, DuplicatesPage
from shared.search import duplicates
from shared.search.service import Services
from shared.store import neighbours

LevelParam = Annotated[duplicates.Level, Query(
    description="exact: the same bytes (SHA-256); near: cosine distance <= IB_DUPLICATES_NEAR_DISTANCE (0.01); "
    "similar: <= IB_DUPLICATES_SIMILAR_DISTANCE (0.06).")]
ThresholdParam = Annotated[float | None, Query(
    gt=0.0, le=neighbours.RADIUS,
    description="Cosine distance for near or similar instead of the deployment's default (at most 0.15).")]
GroupLimitParam = Annotated[int, Query(ge=1, le=100, description="Groups per page.")]

router = APIRouter(
    tags=["duplicates"], dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 404, 503)
)


def threshold_for(services: Services, level: duplicates.Level, threshold: float | None) -> float | None:
    """The cosine distance a level groups by: the request's, else the deployment's; None for exact."""
    if level == "exact":
        if threshold is not None:
            raise ApiError(400, "bad_parameter", "parameter 'threshold' applies to level near or similar; exact "
                           "groups are files with the same bytes (SHA-256): leave threshold out")
        return None
    if threshold is not None:
        return threshold
    settings = services.settings
    return settings.duplicates_near_distance if level == "near" else settings.duplicates_similar_distance


@router.get("/duplicates")
def list_duplicates(
    services: ServicesDep, collection: CollectionParam = None, level: LevelParam = "near",
    threshold: ThresholdParam = None, limit: GroupLimitParam = 20, cursor: CursorParam = None,
) -> DuplicatesPage:
    """Groups of duplicates, biggest first, each with `keep`: the copy to keep (most pixels, then taken
    earliest, then the shortest key). Groups join the stored nearest neighbours of each image (found once per
    image in the vector index) within the threshold; `waiting` counts images not compared yet."""
    started = time.perf_counter()
    distance = threshold_for(services, level, threshold)
    after = duplicates_after(cursor)
    coll = services.collection(collection)
    groups, following, total, waiting = duplicates.group_page(
        services.catalog, coll, level, distance or 0.0, limit=limit, after=after)
    return DuplicatesPage(
        groups=[DuplicateGroup(level=group.level, keep=group.keep.key,
                               items=[services.item(coll, hit) for hit in group.items]) for group in groups],
        next_cursor=duplicates_cursor(following), level=level, threshold=distance, total_groups=total, waiting=waiting,
        took_ms=round((time.perf_counter() - started) * 1000, 3), collection=coll.name, bucket=coll.bucket,
    )
