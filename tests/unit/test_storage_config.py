"""Storage settings that need no S3 server."""

from __future__ import annotations

import pytest

from shared.config import load_settings
from shared.storage import Storage, StorageUnavailable


def test_r2_endpoint_from_account_id() -> None:
    settings = load_settings(r2_account_id="abc123", s3_access_key_id="k", s3_secret_access_key="s")
    storage = Storage(settings)
    assert storage.client.meta.endpoint_url == "https://abc123.r2.cloudflarestorage.com"
    assert storage.client.meta.region_name == "auto"


def test_unreachable_endpoint_is_transient() -> None:
    from shared.dev.local_services import free_port

    settings = load_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_access_key_id="k",
                             s3_secret_access_key="s")
    storage = Storage(settings)
    storage.client.meta.config.retries = {"max_attempts": 0}
    with pytest.raises(StorageUnavailable, match="cannot reach storage"):
        storage.read("b", "k.jpg")
