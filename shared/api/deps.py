"""Dependencies of the routes: the app's services, the API key check, and the query parameters that
several routes share (declared once, so /docs describes them once)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request

from shared.api.errors import ApiError
from shared.api.services import Services
from shared.queries import SearchFilters

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


@dataclass(frozen=True)
class VectorQuery:
    """What every vector search takes besides its target: where, how many, how good, which page."""

    collection: str | None
    limit: int
    min_score: float | None
    filters: SearchFilters
    cursor: str | None


async def vector_query(
    collection: CollectionParam = None,
    limit: LimitParam = 30,
    min_score: MinScoreParam = None,
    prefix: PrefixParam = None,
    after: AfterParam = None,
    before: BeforeParam = None,
    type: TypeParam = None,  # noqa: A002 - the public parameter name
    cursor: CursorParam = None,
) -> VectorQuery:
    return VectorQuery(collection, limit, min_score, _filters(prefix, after, before, type), cursor)


VectorQueryParams = Annotated[VectorQuery, Depends(vector_query)]
