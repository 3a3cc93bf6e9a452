import os

import pytest

# Tests never reach a model hub; a test that needs a model builds the repo's test model.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.model", "tests.fixtures.text_images"]

# Longest first: `make test` hands whole files to two workers (--dist loadfile) in collection order, so the
# stack and browser files start early and the many short unit files fill the gaps at the end.
TIER_ORDER = ("e2e", "deploy", "integration", "unit")


def pytest_collection_modifyitems(items: list) -> None:
    def tier(item: object) -> int:
        parts = item.path.relative_to(item.config.rootpath).parts  # type: ignore[attr-defined]
        return TIER_ORDER.index(parts[1]) if len(parts) > 2 and parts[1] in TIER_ORDER else len(TIER_ORDER)

    items.sort(key=tier)  # stable: each file keeps its own order


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a fresh checkout, `make test`'s two workers build the small test models at once, each its share in one
    process (torch and transformers imported once for several), rather than one after another as tests ask."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    from shared.dev.model_builder import ensure_test_models

    # Most tests use the first two: one in each worker's share.
    ensure_test_models("tiny", ["transformers", "siglip2", "nllb"] if worker == "gw0" else ["immich", "mclip"])
