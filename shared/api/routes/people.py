"""People: faces grouped into people by the faces stage (GET /api/people, GET/PATCH /api/people/{id},
POST /api/people/{id}/merge). Search by person is the query language's person:"Name" and the person= filter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from shared.api.cursors import recent_after, recent_cursor
from shared.api.deps import CollectionParam, CursorParam, LimitParam, ServicesDep, require_api_key
from shared.api.errors import ApiError, error_responses
from shared.api.schemas import FaceCover, PeopleList, PersonEntry, PersonMerge, PersonName, PersonPage
from shared.api.validation import check_value
from shared.people.grouping import MIN_FACES
from shared.search.service import Services
from shared.store import faces, queries
from shared.store.catalog import Collection
from shared.store.queries import SearchFilters

PersonIdParam = Annotated[int, Path(ge=1, description="The person's id (GET /api/people).")]
AllParam = Annotated[bool, Query(description=f"Also people with fewer than {MIN_FACES} faces (after merges and "
                                 "re-groups).")]
PeopleLimitParam = Annotated[int, Query(ge=1, le=1000, description="People listed at most.")]

router = APIRouter(tags=["people"], dependencies=[Depends(require_api_key)],
                   responses=error_responses(400, 401, 404, 503))


def entry(services: Services, collection: Collection, person: faces.Person) -> PersonEntry:
    cover = None
    if person.cover_key is not None and person.cover_box is not None:
        cover = FaceCover(key=person.cover_key, box=list(person.cover_box),
                          thumbnail_url=services.cover(collection, person.cover_key).thumbnail_url)
    return PersonEntry(id=person.id, name=person.name, faces=person.faces, cover=cover)


def found(services: Services, collection: Collection, person_id: int) -> faces.Person:
    person = faces.get_person(services.catalog, collection, person_id)
    if person is None:
        raise ApiError(404, "unknown_person", f"no person {person_id} in collection {collection.name!r}: list them "
                       "with GET /api/people (a merge or re-group may have replaced it)")
    return person


@router.get("/people")
def people(services: ServicesDep, collection: CollectionParam = None, all: AllParam = False,  # noqa: A002
           limit: PeopleLimitParam = 500) -> PeopleList:
    """The people found in the collection's photos, most faces first; those with fewer than 3 faces only with
    `all=true`."""
    coll = services.collection(collection)
    found_people = faces.list_people(services.catalog, coll, min_faces=1 if all else MIN_FACES, limit=limit)
    return PeopleList(people=[entry(services, coll, person) for person in found_people], collection=coll.name)


@router.get("/people/{person_id}")
def person(person_id: PersonIdParam, services: ServicesDep, collection: CollectionParam = None,
           limit: LimitParam = 30, cursor: CursorParam = None) -> PersonPage:
    """One person with their photos, newest first (`next_cursor` pages on, as /api/recent)."""
    coll = services.collection(collection)
    return page(services, coll, found(services, coll, person_id), limit, cursor)


def page(services: Services, collection: Collection, person: faces.Person, limit: int = 30,
         cursor: str | None = None) -> PersonPage:
    hits = queries.recent(services.catalog, collection, limit=limit, after=recent_after(cursor),
                          filters=SearchFilters(people=(person.id,)))
    return PersonPage(**entry(services, collection, person).model_dump(), items=services.items(collection, hits),
                      next_cursor=recent_cursor(hits, limit), collection=collection.name)


@router.patch("/people/{person_id}")
def name_person(person_id: PersonIdParam, body: PersonName, services: ServicesDep,
                collection: CollectionParam = None) -> PersonPage:
    """Name a person (null or empty: unnamed). Names survive re-grouping; person:"Name" then finds them."""
    coll = services.collection(collection)
    name = (body.name or "").strip() or None
    if name is not None:
        check_value("name", name, "text", where="field")
        if '"' in name:
            raise ApiError(400, "bad_parameter", "field 'name' has a double quote: person:\"Name\" could not name it")
    if not faces.rename(services.catalog, coll, person_id, name):
        found(services, coll, person_id)  # 404 naming it
    return page(services, coll, found(services, coll, person_id), limit=1)


@router.post("/people/{person_id}/merge")
def merge_person(person_id: PersonIdParam, body: PersonMerge, services: ServicesDep,
                 collection: CollectionParam = None) -> PersonPage:
    """Move every face of this person to `into`, which keeps its name (or takes this one's) and is answered;
    this person is gone after it."""
    coll = services.collection(collection)
    if body.into == person_id:
        raise ApiError(400, "bad_parameter", "field 'into' is this person: merge into another person")
    found(services, coll, person_id)
    found(services, coll, body.into)
    if not faces.merge(services.catalog, coll, person_id, body.into):
        raise ApiError(404, "unknown_person", f"person {person_id} or {body.into} went meanwhile: list them again")
    return page(services, coll, found(services, coll, body.into))
