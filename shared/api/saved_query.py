"""Saved searches and Discover categories answered as /api/search answers them.

A saved query holds /api/search's parameters by the same names, declared with the same types and limits
(shared/api/deps.py), and becomes the same search through the same dependency functions, so a query that
/api/search refuses is refused here with the same message, naming the parameter. Counts and covers are
stored (shared/store/saved.py): the lists read them; a never-counted one is counted on first read; the
sweep refreshes them (`refresh_counts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api.deps import (
    AfterParam,
    BeforeParam,
    CameraParam,
    CollapseParam,
    CutoffParam,
    LangParam,
    MinScoreParam,
    ModeParam,
    PrefixParam,
    SearchOptions,
    SearchParams,
    SortParam,
    TakenAfterParam,
    TakenBeforeParam,
    TypeParam,
    photo_filters,
    search_params,
)
from shared.api.errors import ApiError
from shared.api.schemas import SearchPage
from shared.api.validation import check_value
from shared.embedders import Embedder, EmbedderError
from shared.embedders.text import DEFAULT_LANGUAGE
from shared.search import hybrid
from shared.search.discover import CATEGORIES
from shared.search.query_language import QueryError, Term, parse
from shared.search.service import Services
from shared.store import saved
from shared.store.catalog import Collection

log = logging.getLogger(__name__)

QueryText = Field(min_length=1, max_length=2000, description="As /api/search's q.")
PlaceText = Field(None, max_length=400, description="As /api/search's place.")


class SavedQuery(BaseModel):
    """A saved search's parameters: /api/search's, by its names and rules (only `q` is required)."""

    model_config = ConfigDict(extra="forbid")

    q: str = QueryText
    mode: ModeParam = "hybrid"
    sort: SortParam = "relevance"
    cutoff: CutoffParam = "auto"
    lang: LangParam = DEFAULT_LANGUAGE
    min_score: MinScoreParam = None
    prefix: PrefixParam = None
    after: AfterParam = None
    before: BeforeParam = None
    type: TypeParam = None
    taken_after: TakenAfterParam = None
    taken_before: TakenBeforeParam = None
    camera: CameraParam = None
    place: str | None = PlaceText
    collapse: CollapseParam = None


class SavedSearchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="What the gallery shows.")
    query: SavedQuery = Field(description="The search's parameters, as /api/search takes them.")


def _value(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of one of deps.py's cheap async dependencies (they never await) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a dependency awaited: call it from async code")


def search_parts(query: SavedQuery, collection: str, *, limit: int = 30, cursor: str | None = None,
                 ) -> tuple[SearchParams, SearchOptions, list[Term]]:
    """What /api/search would run for these parameters; 400 (ApiError, QueryError) naming a bad one."""
    for name, value in query.model_dump().items():
        if isinstance(value, str):
            check_value(name, value, "text", where="query field")
    photo = _value(photo_filters(query.taken_after, query.taken_before, query.camera, query.place))
    search = _value(search_params(photo, collection, limit, query.min_score, query.prefix, query.after, query.before,
                                 query.type, cursor, query.collapse))
    terms = parse(query.q)
    hybrid.plan(terms, query.mode)  # QueryError (400) when the mode cannot answer these terms
    return search, SearchOptions(query.mode, query.sort, query.cutoff, query.lang), terms


def stored_query(query: dict[str, Any]) -> SavedQuery:
    """A stored query read back (validated when it was saved: a later release may have tightened a rule)."""
    try:
        return SavedQuery.model_validate(query)
    except ValueError as exc:
        raise ApiError(409, "stale_saved_search", f"this saved search no longer validates ({exc}): delete it and "
                       "save it again") from None


def answer(services: Services, query: SavedQuery, collection: str, *, limit: int = 30,
           cursor: str | None = None) -> SearchPage:
    """The live answer, in /api/search's shape."""
    from shared.api.routes.search import answer_search  # the routes package imports this module
    search, options, terms = search_parts(query, collection, limit=limit, cursor=cursor)
    return answer_search(services, search, options, terms, started=time.perf_counter())


def count_and_cover(services: Services, query: SavedQuery, collection: str) -> tuple[int, str | None, str]:
    """(results at most 1,000, the best match's key, the model) of a query, now."""
    from shared.api.routes.search import query_vector  # the routes package imports this module
    first = answer(services, query, collection, limit=1)
    search, options, terms = search_parts(query, collection)
    plan = hybrid.plan(terms, options.mode)

    def count(coll: Collection, embedder: Embedder | None) -> int:
        vector = query_vector(services, coll, embedder, terms, options.lang, None) if plan.needs_vector else None
        filters = hybrid.with_people(services.catalog, coll, terms, search.filters)
        request = hybrid.SearchRequest(options.sort, options.cutoff, hybrid.MAX_RESULTS, 0, search.min_score,
                                       filters, services.settings.search_floor_for(coll.model_id),
                                       services.settings.hnsw_ef_search)
        return hybrid.count(services.catalog, coll, plan, vector, request)

    needs_model = plan.needs_vector and any(term.kind == "text" for term in terms)
    total = services.on_current_model(collection, count, needs_model=needs_model)
    return total, first.items[0].key if first.items else None, first.model


def counted(services: Services, row: saved.SavedRow, collection: Collection, *, force: bool = False) -> saved.SavedRow:
    """The row with its count: stored unless never counted, counted with another model, or `force`."""
    if not force and row.count is not None and row.counted_model == collection.model_id:
        return row
    total, cover, model = count_and_cover(services, stored_query(row.query), collection.name)
    stored = saved.store_count(services.catalog, row.id, total, cover, model)
    return stored or replace(row, count=total, cover_key=cover, counted_model=model)


def discover_queries() -> list[tuple[str, dict[str, Any]]]:
    """The built-in categories as saved queries: semantic (their text is a caption, not words to find), auto
    cutoff."""
    return [(category.name, {"q": category.query, "mode": "semantic", "cutoff": "auto"}) for category in CATEGORIES]


def refresh_counts(services: Services, collection: Collection, time_left: Callable[[], float]) -> int:
    """The sweep: count every saved search and Discover category of the collection again; how many. A model
    this deployment lacks, or a stale query, leaves the old counts."""
    done = 0
    rows = [*saved.list_rows(services.catalog, collection.name, "discover"),
            *saved.list_rows(services.catalog, collection.name, "saved")]
    for row in rows:
        if time_left() <= 0:
            break
        try:
            counted(services, row, collection, force=True)
            done += 1
        except (ApiError, EmbedderError, QueryError) as exc:  # QueryError: a person renamed since
            log.warning("saved search %s (%s) not counted: %s", row.id, row.name, exc)
    return done

