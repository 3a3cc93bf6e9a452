"""What the routes work with, created once per app: settings, storage (URLs), the query cache, and the
catalog and models, each made on first use (a Lambda container keeps them between invocations).

Each request reads its collection from the registry and uses the model the collection records, so a
model move done by another process is followed at once, without a restart."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from shared.api.schemas import Cover, ImageItem, ItemPerson, Location, Place
from shared.config import Settings
from shared.embedders import Embedder, Models
from shared.embedders.text import DEFAULT_LANGUAGE
from shared.search import duplicates
from shared.storage import Storage
from shared.store.catalog import Catalog, Collection, ModelChanged
from shared.store.queries import Hit, SearchFilters

T = TypeVar("T")


class QueryCache:
    """LRU of text-query embeddings keyed by (model, language, text): paging and repeats skip the encoder."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, model_id: str, text: str, compute: Callable[[str], np.ndarray],
            lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        key = (model_id, lang, text)
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return vector
            self.misses += 1
        vector = compute(text)
        if self.size > 0:
            with self._lock:
                self._items[key] = vector
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return vector


@dataclass
class Services:
    """What the routes need. The catalog and the models come from sources called on each use, so the
    app's composition (shared/api/app.py) can hand in the process-wide ones, created on first use."""

    settings: Settings
    storage: Storage  # only for URLs and thumbnail keys: its S3 client is never created here
    cache: QueryCache
    catalog_source: Callable[[], Catalog]
    models_source: Callable[[], Models]

    @property
    def catalog(self) -> Catalog:
        return self.catalog_source()

    @property
    def models(self) -> Models:
        return self.models_source()

    def collection(self, name: str | None) -> Collection:
        """The named collection (default IB_BUCKET) as the registry has it now."""
        return self.catalog.get_collection(name or self.settings.bucket)

    def on_current_model(self, name: str | None, answer: Callable[[Collection, Embedder | None], T], *,
                         needs_model: bool = True) -> T:
        """`answer(collection, its model)`; once more if the collection switched models meanwhile (stored
        vectors of the old model are as stale as a text encoded by it).

        A deployment without the collection's model answers 409 (ModelNotDeployed) naming both; an answer
        from stored vectors or words alone (`needs_model=False`) gets None and needs no model.
        """
        for attempt in (1, 2):
            collection = self.collection(name)
            embedder = self.models.get(collection.model_id, collection.name) if needs_model else None
            try:
                return answer(collection, embedder)
            except ModelChanged:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def encode_text(self, embedder: Embedder, text: str, lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        return self.cache.get(embedder.model_id, text, lambda words: embedder.embed_text(words, lang=lang), lang)

    def search_items(self, collection: Collection, hits: list[Hit], *, collapse: str | None, filters: SearchFilters,
                     vector: np.ndarray | None = None, similar_to: str | None = None) -> list[ImageItem]:
        """A search page's items, the last step of every search: with `collapse=near`, one item per group of
        near-duplicates (the copy closest to the query), `collapsed` counting the others."""
        if collapse != "near":
            return self.items(collection, hits)
        shown = duplicates.collapse_near(self.catalog, collection, hits, self.settings.duplicates_near_distance,
                                         vector=vector, similar_to=similar_to, filters=filters)
        items = self.items(collection, [hit for hit, _ in shown])
        return [item.model_copy(update={"collapsed": others}) for item, (_, others) in zip(items, shown, strict=True)]

    def items(self, collection: Collection, hits: list[Hit]) -> list[ImageItem]:
        return [self.item(collection, hit) for hit in hits]

    def item(self, collection: Collection, hit: Hit) -> ImageItem:
        return ImageItem(
            key=hit.key,
            score=None if hit.score is None else round(hit.score, 6),
            url=self.storage.url(collection.bucket, hit.key),
            # Thumbnails are written when an image is embedded; the gallery falls back to `url`.
            thumbnail_url=self.storage.url(collection.bucket, self.storage.thumbnail_key(hit.key)),
            width=hit.width,
            height=hit.height,
            size=hit.size,
            last_modified=hit.last_modified.isoformat() if hit.last_modified else None,
            content_type=hit.content_type,
            taken_at=hit.taken_at.isoformat() if hit.taken_at else None,
            camera=hit.camera,
            location=Location(lat=hit.latitude, lon=hit.longitude)
            if hit.latitude is not None and hit.longitude is not None else None,
            text=hit.ocr_text,
            place=Place(city=hit.city, state=hit.state, country=hit.country, country_code=hit.country_code or "")
            if hit.country else None,
            tags=list(hit.tags) if hit.tags is not None else None,
            caption=hit.caption,
            people=[ItemPerson(id=face.person, name=face.name, box=list(face.box)) for face in hit.people],
        )

    def cover(self, collection: Collection, key: str) -> Cover:
        """The picture that stands for a list entry (a place, a saved search, a Discover category)."""
        return Cover(key=key, thumbnail_url=self.storage.url(collection.bucket, self.storage.thumbnail_key(key)))
