"""Dependencies of the routes: the app's services, the API key check, and the query parameters that
several routes share (declared once, so /docs describes them once)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from shared.api.errors import ApiError
from shared.embedders.text import DEFAULT_LANGUAGE
from shared.places.lookup import filter_names
from shared.search.hybrid import Cutoff, Mode, Sort
from shared.search.service import Services
from shared.store.queries import SearchFilters

MAX_LIMIT = 100

# The cheap dependencies below are `async` so they run on the event loop, not in a worker thread.


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_api_key(request: Request, services: ServicesDep) -> None:
    """401 unless the request carries IB_API_KEY (as a bearer token or x-api-key); open when none is set."""
    api_key = services.settings.api_key
    if not api_key:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(
            401, "unauthorized",
            "this API needs a key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            if given is None else "the API key is wrong: check it against IB_API_KEY",
            {"WWW-Authenticate": "Bearer"},
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


TakenAfterParam = Annotated[str | None, Query(
    max_length=64, description="Only photos taken at or after this date or ISO 8601 time (EXIF; no offset: UTC).")]
TakenBeforeParam = Annotated[str | None, Query(
    max_length=64, description="Only photos taken before this ISO 8601 time; a date alone includes that whole day.")]
CameraParam = Annotated[str | None, Query(
    max_length=200, description="Only photos whose camera (EXIF make and model) contains this, any case.")]
PlaceParam = Annotated[str | None, Query(
    max_length=400, description="Only photos taken at this place: a city, state or country (any case, accents "
    "optional), or several of them comma-separated to narrow it: Paris, France.")]
PersonParam = Annotated[int | None, Query(
    ge=1, description="Only photos with this person in them (an id of GET /api/people).")]
CollapseParam = Annotated[Literal["near"] | None, Query(
    description="near: one image per group of near-duplicates, with `collapsed` = how many it stands for.")]


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


def _taken(name: str, value: str | None, *, whole_day_after: bool) -> datetime | None:
    """A date ("2023-07-14", its midnight UTC; with `whole_day_after`, the next midnight) or an ISO 8601 time."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            return _utc(datetime.fromisoformat(text))
        except ValueError:
            raise ApiError(400, "bad_parameter", f"parameter {name!r} is not a date or ISO 8601 time (got {text!r}): "
                           "give 2023-07-14 or 2023-07-14T15:30:00+02:00") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 if whole_day_after else 0)


async def photo_filters(
    taken_after: TakenAfterParam = None, taken_before: TakenBeforeParam = None, camera: CameraParam = None,
    place: PlaceParam = None, person: PersonParam = None,
) -> SearchFilters:
    """The photo filters (when taken, camera, place, person) that search and recent share."""
    after = _taken("taken_after", taken_after, whole_day_after=False)
    before = _taken("taken_before", taken_before, whole_day_after=True)
    if after and before and after >= before:
        raise ApiError(400, "bad_parameter", "parameter 'taken_after' must be earlier than 'taken_before'")
    try:
        names = filter_names(place or "")
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"parameter 'place' {exc}") from None
    return SearchFilters(taken_after=after, taken_before=before, camera=(camera or "").strip() or None,
                         place=tuple(names or ()), people=(person,) if person else ())


PhotoFiltersParams = Annotated[SearchFilters, Depends(photo_filters)]


@dataclass(frozen=True)
class SearchParams:
    """What every search takes besides its query (words, pictures or both): where, how many, how good, which
    page, and whether near-duplicates fold into one item."""

    collection: str | None
    limit: int
    min_score: float | None
    filters: SearchFilters
    cursor: str | None
    collapse: str | None = None


async def search_params(
    photo: PhotoFiltersParams,
    collection: CollectionParam = None,
    limit: LimitParam = 30,
    min_score: MinScoreParam = None,
    prefix: PrefixParam = None,
    after: AfterParam = None,
    before: BeforeParam = None,
    type: TypeParam = None,  # noqa: A002 - the public parameter name
    cursor: CursorParam = None,
    collapse: CollapseParam = None,
) -> SearchParams:
    filters = replace(_filters(prefix, after, before, type), taken_after=photo.taken_after,
                      taken_before=photo.taken_before, camera=photo.camera, place=photo.place, people=photo.people)
    return SearchParams(collection, limit, min_score, filters, cursor, collapse)


SearchParamsDep = Annotated[SearchParams, Depends(search_params)]


# Search options (shared/search/hybrid.py): how words and pictures combine, the order, the cutoff, the language.
ModeParam = Annotated[Mode, Query(
    description="hybrid: words and pictures fused; semantic: pictures only; keyword: words only (names, text).")]
SortParam = Annotated[Sort, Query(
    description="relevance, or newest/oldest first (when taken, else last modified) over the relevant set: "
    "what passes the cutoff, at most 1,000 results.")]
CutoffParam = Annotated[Cutoff, Query(
    description="auto: keep picture matches scoring at least halfway from the model's floor to the best "
    "match; none: keep them all.")]
LangParam = Annotated[str, Query(
    min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
    description="The query's language (en, de, pt-BR): the NLLB models are told it; others ignore it.")]


@dataclass(frozen=True)
class SearchOptions:
    mode: Mode
    sort: Sort
    cutoff: Cutoff
    lang: str


async def search_options(mode: ModeParam = "hybrid", sort: SortParam = "relevance", cutoff: CutoffParam = "auto",
                         lang: LangParam = DEFAULT_LANGUAGE) -> SearchOptions:
    return SearchOptions(mode, sort, cutoff, lang)


SearchOptionsParams = Annotated[SearchOptions, Depends(search_options)]
