"""The API's answers as pydantic models: FastAPI validates each route's answer against its model and
/docs shows them. Times are ISO 8601 strings, as the catalog gives them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Location(BaseModel):
    lat: float = Field(description="Latitude, degrees; south is negative.")
    lon: float = Field(description="Longitude, degrees; west is negative.")


class Place(BaseModel):
    city: str | None = Field(description="Null when only the country is known.")
    state: str | None
    country: str
    country_code: str = Field(description="ISO 3166 alpha-2, e.g. FR.")


class ItemPerson(BaseModel):
    id: int
    name: str | None = Field(description="Null until someone names the person.")
    box: list[float] = Field(description="The face: left, top, right, bottom as fractions 0..1 of the picture's width "
                             "and height (any size of it, thumbnail or original).")


class ImageItem(BaseModel):
    key: str
    score: float | None = Field(description="Cosine similarity to the query; null when browsing.")
    url: str = Field(description="The original: a presigned GET that expires, or a CDN link.")
    thumbnail_url: str = Field(description="The WebP thumbnail; it may not exist yet, so fall back to `url`.")
    width: int | None
    height: int | None
    size: int | None = Field(description="Bytes of the original.")
    last_modified: str | None = Field(description="ISO 8601.")
    content_type: str | None
    taken_at: str | None = Field(None, description="When the photo was taken (EXIF DateTimeOriginal), ISO 8601 with "
                                 "the UTC offset the camera recorded; without one, the camera's clock time, no offset.")
    camera: str | None = Field(None, description='EXIF make and model, e.g. "Apple iPhone 12".')
    location: Location | None = Field(None, description="Where it was taken (EXIF GPS).")
    collapsed: int | None = Field(None, description="With collapse=near: how many near-duplicates this item stands "
                                  "for (the gallery's +N).")
    text: str | None = Field(None, description="The words read in the picture (OCR), one line per line of text; "
                             "empty when it has none, null until the OCR stage has read it.")
    place: Place | None = Field(None, description="Where it was taken, named offline from its GPS position "
                                "(GeoNames); null without a position, or far from any named place.")
    tags: list[str] | None = Field(None, description="Keywords written into the photo (IPTC, XMP dc:subject, "
                                   "lr:hierarchicalSubject levels); null until read.")
    caption: str | None = Field(None, description="The caption written into the photo (XMP dc:description, IPTC).")
    people: list[ItemPerson] | None = Field(None, description="The people whose faces are in it (the faces stage), "
                                            "left to right; null where an answer does not list them.")
    matched: list[Literal["name", "text", "place", "tag", "visual"]] | None = Field(
        None, description="Search answers: why it matched. name: the query's words are in its key (folders, file "
        "name); text: in the words read in it or its EXIF text; place: in its place's names; tag: in its own tags "
        "or caption; visual: the picture is like the query.")


class QueryTerm(BaseModel):
    kind: Literal["text", "image", "keyword", "person"] = Field(
        description="text: embedded and matched as words; image: a stored (similar:<key>) or uploaded image; "
        'keyword: a "quoted" term, matched as words only; person: person:"Name", a person in the photo.')
    value: str
    weight: float = Field(description="The term's weight; negative for a minus term.")


class ParsedQuery(BaseModel):
    terms: list[QueryTerm] = Field(description="How `q` (and an uploaded image) was read, in order.")


class SearchPage(BaseModel):
    items: list[ImageItem] = Field(description="Best match first, or in the order `sort` asks for.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    took_ms: float
    model: str = Field(description="The model that embedded the query.")
    collection: str
    query: ParsedQuery
    mode: Literal["hybrid", "semantic", "keyword"]
    sort: Literal["relevance", "newest", "oldest"]
    cutoff: Literal["auto", "none"]
    hidden: int = Field(description="Picture matches the cutoff held back among those the search looked at "
                        "(the best 64 or more); cutoff=none shows them.")
    cutoff_score: float | None = Field(
        description="Picture matches scoring below this were held back (cutoff=auto or min_score); null when "
        "nothing was cut.")


class RecentPage(BaseModel):
    items: list[ImageItem] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    collection: str


class StatusCounts(BaseModel):
    embedded: int
    pending: int
    failed: int


class CollectionInfo(BaseModel):
    name: str
    bucket: str
    model: str
    dim: int
    counts: StatusCounts
    bytes: int = Field(description="Bytes of the originals.")
    updated_at: str | None = Field(description="ISO 8601 time of the last change.")


class CollectionList(BaseModel):
    default: str = Field(description="The collection used when a request names none (IB_BUCKET).")
    collections: list[CollectionInfo]


class ModelMove(BaseModel):
    """A collection moving to another model: searches use `from` until the switch, `to` after it."""

    model_config = ConfigDict(populate_by_name=True)

    from_model: str = Field(alias="from", description="The model searches use until the switch.")
    to: str = Field(description="The model the collection moves to.")
    done: int = Field(description="Embedded images that have the new model's vector already.")
    total: int = Field(description="Embedded images.")


class Backlog(BaseModel):
    queued: int = Field(description="Images the last backfill plan queued for embedding.")
    done: int = Field(description="Of those, embedded (or given up) since.")
    per_minute: float = Field(description="Images done per minute since the plan.")
    eta_seconds: int | None = Field(description="Seconds until the backlog is empty at that rate.")


class CollectionStats(BaseModel):
    collection: str
    model: str
    counts: StatusCounts
    bytes: int = Field(description="Bytes of the originals.")
    last_update: str | None = Field(description="ISO 8601 time of the last change.")
    move: ModelMove | None = Field(None, description="The model move under way, if any.")
    ocr_waiting: int | None = Field(None, description="Embedded images whose words the OCR stage has still to read.")
    faces_waiting: int | None = Field(None, description="Embedded images whose faces the faces stage has still to "
                                      "find.")
    backlog: Backlog | None = Field(None, description="Queued bulk work still draining; absent when none is left.")


class TowersLoaded(BaseModel):
    visual: bool
    textual: bool


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool = Field(description="Whether the database answers.")
    model: str = Field(description="The default model: new collections get it.")
    models: list[str] = Field(description="Every model this deployment holds (IB_MODEL).")
    model_loaded: TowersLoaded = Field(description="Which towers are in memory (each loads on first use).")
    test_model: bool = Field(description="True for the tiny random test model: results mean nothing.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable, e.g. bad_parameter, unknown_collection.")
    message: str = Field(description="What went wrong and what to do.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class DuplicateGroup(BaseModel):
    level: Literal["exact", "near", "similar"]
    keep: str = Field(description="Key of the suggested copy to keep: most pixels, then taken earliest, then the "
                      "shortest key. It is also the first item.")
    items: list[ImageItem] = Field(description="Every copy, the keeper first; `score` is the cosine similarity to the "
                                   "keeper (1 for exact copies).")


class DuplicatesPage(BaseModel):
    groups: list[DuplicateGroup] = Field(description="Biggest groups first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    level: Literal["exact", "near", "similar"]
    threshold: float | None = Field(description="The cosine distance used (near, similar); null for exact.")
    total_groups: int = Field(description="Groups at this level and threshold in the whole collection.")
    waiting: int = Field(description="Images whose neighbours are not found yet (a large upload or a model move): "
                         "not grouped in this answer; the sweep finds them, and so does the next request.")
    took_ms: float
    collection: str
    bucket: str = Field(description="The collection's bucket: where the copies are deleted, with any S3 tool.")


class Cover(BaseModel):
    """The picture that stands for a list entry: like an ImageItem's key and thumbnail."""

    key: str
    thumbnail_url: str = Field(description="The WebP thumbnail; fall back to /api/images/{collection}/{key}.")


class PlaceEntry(BaseModel):
    city: str | None = Field(description="Null for photos named by their country only.")
    state: str | None
    country: str
    country_code: str
    count: int = Field(description="Embedded photos taken there.")
    cover: Cover = Field(description="The newest of them.")
    filter: str = Field(description="The place= value that lists exactly these photos, e.g. 'Paris, Ile-de-France, "
                        "France'.")


class PlaceList(BaseModel):
    places: list[PlaceEntry] = Field(description="Most photos first.")
    collection: str


class SavedSearch(BaseModel):
    id: int
    name: str
    query: dict[str, object]
    count: int | None = Field(description="Results when last counted (at saving, then by the sweep); at most 1,000.")
    counted_at: str | None = Field(None, description="ISO 8601 time of that count.")
    cover: Cover | None = Field(None, description="Its best match when counted.")


class SavedSearchList(BaseModel):
    saved_searches: list[SavedSearch] = Field(description="Oldest first.")
    collection: str


class DiscoverCategory(BaseModel):
    name: str = Field(description="What the gallery shows, e.g. Receipts.")
    query: str = Field(description="The text query it searches (semantic, cutoff=auto).")
    count: int = Field(description="Photos that pass the adaptive cutoff, at most 1,000 (refreshed by the sweep).")
    cover: Cover | None = Field(description="Its best match; null when it has none.")
    counted_at: str | None = Field(None, description="ISO 8601 time of the count.")


class DiscoverList(BaseModel):
    categories: list[DiscoverCategory] = Field(description="In the built-in order; empty ones included.")
    collection: str
    model: str


class FaceCover(BaseModel):
    """The face that stands for a person: its picture and where the face is in it."""

    key: str
    box: list[float] = Field(description="left, top, right, bottom as fractions 0..1 of the picture.")
    thumbnail_url: str = Field(description="The WebP thumbnail; fall back to /api/images/{collection}/{key}.")


class PersonEntry(BaseModel):
    id: int
    name: str | None = Field(description="Null until someone names the person.")
    faces: int = Field(description="Faces of this person found in the collection.")
    cover: FaceCover | None = Field(description="Its best-scoring face.")


class PeopleList(BaseModel):
    people: list[PersonEntry] = Field(description="Most faces first.")
    collection: str


class PersonPage(PersonEntry):
    items: list[ImageItem] = Field(description="The person's photos, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    collection: str


class PersonName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(description="The person's name; null or empty to unname.", max_length=200)


class PersonMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: int = Field(description="The person who keeps the faces (and its name, or takes this one's).", ge=1)
