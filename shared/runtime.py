"""The composition root: settings, the database pool (catalog), storage, the models and the ingestor.

Each is created on first use and then reused: a Lambda container keeps them between invocations
(connection reuse), and nothing here runs at import time, so a cold start pays only for what the
first request needs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from shared.config import ConfigError, get_settings

if TYPE_CHECKING:
    from shared.catalog import Catalog
    from shared.embedders import Embedder, Models
    from shared.ingest import Ingestor
    from shared.storage import Storage


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    from shared.catalog import Catalog

    url = get_settings().database_url
    if not url:
        raise ConfigError(
            "IB_DATABASE_URL is not set: give the PostgreSQL URL (postgresql://user:pass@host:5432/db). "
            "Locally, `make dev` starts a database and sets it."
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
    from shared.ingest import Ingestor

    return Ingestor(get_settings(), catalog(), storage(), models())


def reset() -> None:
    """Forget everything (tests that change settings between cases)."""
    for cached in (get_settings, catalog, storage, models, ingestor):
        cached.cache_clear()


def embedder() -> Embedder:
    """The default model (new collections get it)."""
    return models().default
