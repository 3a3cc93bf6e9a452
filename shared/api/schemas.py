"""The API's answers as pydantic models: FastAPI validates each route's answer against its model and
/docs shows them. Times are ISO 8601 strings, as the catalog gives them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class SearchPage(BaseModel):
    items: list[ImageItem] = Field(description="Best match first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    took_ms: float
    model: str = Field(description="The model that embedded the query.")
    collection: str


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


class CollectionStats(BaseModel):
    collection: str
    model: str
    counts: StatusCounts
    bytes: int = Field(description="Bytes of the originals.")
    last_update: str | None = Field(description="ISO 8601 time of the last change.")
    move: ModelMove | None = Field(None, description="The model move under way, if any.")


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
