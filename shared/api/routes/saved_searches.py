"""Saved searches: a search kept under a name, answered live (POST/GET/DELETE /api/saved-searches)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from shared.api.deps import CollectionParam, CursorParam, LimitParam, ServicesDep, require_api_key
from shared.api.errors import ApiError, error_responses
from shared.api.saved_query import SavedSearchCreate, answer, counted, search_parts, stored_query
from shared.api.schemas import SavedSearch, SavedSearchList, SearchPage
from shared.api.validation import check_value
from shared.search.service import Services
from shared.store import saved
from shared.store.catalog import Collection

SavedIdParam = Annotated[int, Path(ge=1, description="The saved search's id.")]

router = APIRouter(tags=["saved searches"], dependencies=[Depends(require_api_key)],
                   responses=error_responses(400, 401, 404, 409, 503))


def entry(services: Services, collection: Collection, row: saved.SavedRow) -> SavedSearch:
    return SavedSearch(id=row.id, name=row.name, query=row.query, count=row.count,
                       counted_at=row.counted_at.isoformat() if row.counted_at else None,
                       cover=services.cover(collection, row.cover_key) if row.cover_key else None)


def found(services: Services, collection: Collection, saved_id: int) -> saved.SavedRow:
    row = saved.get(services.catalog, collection.name, saved_id)
    if row is None:
        raise ApiError(404, "unknown_saved_search", f"no saved search {saved_id} in collection {collection.name!r}: "
                       "list them with GET /api/saved-searches")
    return row


@router.post("/saved-searches", status_code=201)
def create(body: SavedSearchCreate, services: ServicesDep, collection: CollectionParam = None) -> SavedSearch:
    """Save a search: `query` holds /api/search's parameters (q required), checked as /api/search checks them.
    The answer carries its id and its count now."""
    coll = services.collection(collection)
    check_value("name", body.name, "text", where="field")
    search_parts(body.query, coll.name)  # 400 naming the parameter, before anything is stored
    query = body.query.model_dump(mode="json", exclude_defaults=True) | {"q": body.query.q}
    row = saved.create(services.catalog, coll.name, body.name.strip() or body.name, query)
    return entry(services, coll, counted(services, row, coll))


@router.get("/saved-searches")
def list_saved(services: ServicesDep, collection: CollectionParam = None) -> SavedSearchList:
    """The collection's saved searches, oldest first, with their counts as last counted (at saving, then by the
    sweep)."""
    coll = services.collection(collection)
    rows = [counted(services, row, coll) for row in saved.list_rows(services.catalog, coll.name)]
    return SavedSearchList(saved_searches=[entry(services, coll, row) for row in rows], collection=coll.name)


@router.get("/saved-searches/{saved_id}")
def run_saved(saved_id: SavedIdParam, services: ServicesDep, collection: CollectionParam = None,
              limit: LimitParam = 30, cursor: CursorParam = None) -> SearchPage:
    """The saved search's answer, computed now, in /api/search's shape (`next_cursor` pages on here)."""
    coll = services.collection(collection)
    row = found(services, coll, saved_id)
    return answer(services, stored_query(row.query), coll.name, limit=limit, cursor=cursor)


@router.delete("/saved-searches/{saved_id}", status_code=204, response_class=Response)
def delete(saved_id: SavedIdParam, services: ServicesDep, collection: CollectionParam = None) -> Response:
    """Delete a saved search (204); 404 when there is none by that id."""
    coll = services.collection(collection)
    if not saved.delete(services.catalog, coll.name, saved_id):
        found(services, coll, saved_id)  # 404
    return Response(status_code=204)
