"""What is there and whether it works: collections, counts by status, health (for probes: no key)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends

from shared.api.deps import CollectionParam, ServicesDep, require_api_key
from shared.api.errors import error_responses
from shared.api.schemas import CollectionInfo, CollectionList, CollectionStats, Health
from shared.store import plans, queries

log = logging.getLogger(__name__)

router = APIRouter(tags=["status"])


@router.get("/collections", dependencies=[Depends(require_api_key)], responses=error_responses(401, 503))
def collections(services: ServicesDep) -> CollectionList:
    """Every collection with its model, counts by status, bytes stored and last update."""
    listing = []
    for coll in services.catalog.list_collections():
        stats = queries.stats(services.catalog, coll)
        listing.append(CollectionInfo(
            name=coll.name, bucket=coll.bucket, model=coll.model_id, dim=coll.dim,
            counts=stats["counts"], bytes=stats["bytes"], updated_at=stats["last_update"],
        ))
    return CollectionList(default=services.settings.bucket, collections=listing)


@router.get(
    "/stats", dependencies=[Depends(require_api_key)], responses=error_responses(400, 401, 404, 503),
    response_model_exclude_unset=True,  # the answer has the fields the catalog gives, no more
)
def stats(services: ServicesDep, collection: CollectionParam = None) -> CollectionStats:
    """Counts by status (embedded, pending, failed), bytes of originals, last update, and the backlog of
    queued bulk work while it drains."""
    coll = services.collection(collection)
    answer = queries.stats(services.catalog, coll)
    backlog = plans.backlog(services.catalog, coll, max_attempts=services.settings.max_attempts)
    if backlog is not None:
        answer["backlog"] = backlog
    return CollectionStats.model_validate(answer)


@router.get("/health")
def health(services: ServicesDep) -> Health:
    """Whether the database answers and which model towers are loaded. Needs no key."""
    try:
        services.catalog.db.ping()
        database = True
    except Exception as exc:  # any failure means "not reachable" here; the detail goes to the log
        log.warning("health: database check failed: %s", exc)
        database = False
    settings = services.settings
    model, models, loaded, test_model = settings.model, [settings.model], {"visual": False, "textual": False}, False
    try:
        embedder = services.models.default
        model, loaded, test_model = embedder.model_id, embedder.loaded(), embedder.is_test_model
        models = services.models.ids()
    except Exception as exc:  # a model that cannot be resolved degrades search, not health itself
        log.warning("health: model %s unavailable: %s", settings.model, exc)
    return Health(
        status="ok" if database else "degraded", database=database, model=model, models=models,
        model_loaded=loaded, test_model=test_model,
    )
