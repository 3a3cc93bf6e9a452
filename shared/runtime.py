"""The composition root: settings, the database pool (catalog), storage, the models and the ingestor.

Each is created on first use and then reused: a Lambda container keeps them between invocations
(connection reuse), and nothing here runs at import time, so a cold start pays only for what the
first request needs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.config import ConfigError, get_settings

if TYPE_CHECKING:
    from shared.embedders import Embedder, Models
    from shared.ingest.pipeline import Ingestor
    from shared.ocr.reader import TextReader
    from shared.ocr.stage import OcrStage
    from shared.people.stage import FacesStage
    from shared.storage import Storage
    from shared.store.catalog import Catalog


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    from shared.store.catalog import Catalog

    url = get_settings().database_url
    if not url:
        raise ConfigError(
            "IB_DATABASE_URL is not set: give the PostgreSQL URL (postgresql://user:pass@host:5432/db), or the "
            "name of the SSM parameter holding it in IB_DATABASE_URL_PARAMETER. Locally, `make dev` starts a "
            "database and sets it."
        )
    return Catalog.from_url(url)


@lru_cache(maxsize=1)
def storage() -> Storage:
    from shared.storage import Storage

    return Storage(get_settings())


@lru_cache(maxsize=1)
def models() -> Models:
    """The models this deployment holds (IB_MODEL); each loads its towers on first use."""
    from shared.embedders import Models

    return Models.from_settings(get_settings())


@lru_cache(maxsize=1)
def ingestor() -> Ingestor:
    from shared.ingest.pipeline import Ingestor

    return Ingestor(get_settings(), catalog(), storage(), models(), queues=queue_client)


@lru_cache(maxsize=1)
def text_reader() -> TextReader:
    """The OCR models (IB_OCR_*); they load on the first picture read. One ONNX thread per call: the
    stage reads IB_OCR_PARALLEL pictures side by side."""
    from shared.ocr.reader import TextReader

    settings = get_settings()
    return TextReader(min_score=settings.ocr_min_score, detect_side=settings.ocr_detect_side)


@lru_cache(maxsize=1)
def ocr_stage() -> OcrStage:
    from shared.ocr.stage import OcrStage

    return OcrStage(get_settings(), catalog(), storage(), text_reader())


@lru_cache(maxsize=1)
def faces_stage() -> FacesStage:
    """The faces stage with dlib's models (each of its threads loads them on its first picture)."""
    from shared.people.faces import FaceFinder
    from shared.people.stage import FacesStage

    return FacesStage(get_settings(), catalog(), storage(), FaceFinder())


@lru_cache(maxsize=8)
def queue_client(queue_url: str) -> Any:
    """An SQS client for `queue_url`, kept per process (shared/storage.py builds it)."""
    from shared.storage import queue_client as build

    return build(queue_url, get_settings())


def reset() -> None:
    """Forget everything (tests that change settings between cases)."""
    for cached in (get_settings, catalog, storage, models, ingestor, text_reader, ocr_stage, faces_stage,
                   queue_client):
        cached.cache_clear()


def embedder() -> Embedder:
    """The default model (new collections get it)."""
    return models().default
