"""Process-wide resources, created lazily on first use and then reused.

A Lambda container keeps these between invocations (connection reuse); nothing here runs at import
time, so a cold start pays only for what the first request needs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from shared.config import ConfigError, get_settings

if TYPE_CHECKING:
    from shared.catalog import Catalog
    from shared.embedders import Embedder
    from shared.storage import Storage

@lru_cache(maxsize=1)
def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise ConfigError(
            "IB_DATABASE_URL is not set: give the PostgreSQL URL (postgresql://user:pass@host:5432/db). "
            "Locally, `make dev` starts a database and sets it."
        )
    return url


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    from shared.catalog import Catalog

    return Catalog.from_url(database_url())


@lru_cache(maxsize=1)
def storage() -> Storage:
    from shared.storage import Storage

    return Storage(get_settings())


def embedder() -> Embedder:
    """The configured model; loading its sessions is itself lazy (text vs. images)."""
    from shared.embedders import load

    return load(get_settings().model, get_settings())  # cached per process, under the loader's lock


def reset() -> None:
    """Forget everything (tests that change settings between cases)."""
    get_settings.cache_clear()
    database_url.cache_clear()
    catalog.cache_clear()
    storage.cache_clear()
