"""Ingest core and backfill sweep against moto S3 + embedded PostgreSQL with the tiny test model:
failure sorting, idempotency, row claiming by concurrent sweeps, deadlines, retries and the model move."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.config import Settings
from shared.embedders import Embedder, EmbedderTemporaryError, load, normalize_rows
from shared.events import ObjectEvent
from shared.ingest.backfill import sweep
from shared.ingest.model_move import reembed
from shared.ingest.pipeline import Ingestor, IngestRetry
from shared.jobs import Deadline, retry_delay
from shared.storage import Storage, StorageUnavailable
from shared.store import queries
from shared.store.catalog import Catalog
from shared.store.db import quote_ident
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import embedded_keys


def jpeg(seed: int, size: tuple[int, int] = (80, 60)) -> bytes:
    out = io.BytesIO()
    synthetic_photo(*size, seed=seed).save(out, format="JPEG")
    return out.getvalue()


def created(bucket: str, key: str, etag: str | None) -> ObjectEvent:
    return ObjectEvent(bucket, key, "created", etag, None, None, datetime.now(UTC))


class Counting:
    """Counts the keys each ingestor sends through the model."""

    def __init__(self, ingestor: Ingestor, calls: Counter[str], lock: threading.Lock):
        original = ingestor._embed_batch

        def counting(batch: list[Any], *args: Any) -> None:
            with lock:
                calls.update(p.item.key for p in batch)
            original(batch, *args)

        ingestor._embed_batch = counting  # type: ignore[method-assign]


@pytest.fixture()
def embedder(settings: Settings, model_dir: Path) -> Embedder:
    return load(str(model_dir), settings)


@pytest.fixture()
def ingestor(settings: Settings, catalog: Catalog, storage: Storage, embedder: Embedder, bucket: str) -> Ingestor:
    return Ingestor(settings.model_copy(update={"embed_batch_size": 3}), catalog, storage, embedder)


def upload(storage: Storage, bucket: str, items: dict[str, bytes]) -> dict[str, str | None]:
    etags = {}
    for key, data in items.items():
        storage.put(bucket, key, data, "image/jpeg")
        info = storage.head(bucket, key)
        etags[key] = info.etag if info else None
    return etags


def test_events_embed_skip_and_stay_idempotent(ingestor: Ingestor, storage: Storage, bucket: str) -> None:
    etags = upload(storage, bucket, {f"a/{i}.jpg": jpeg(i) for i in range(5)})
    storage.put(bucket, "a/readme.txt", b"hello", "text/plain")
    storage.put(bucket, "a/no-extension", jpeg(9), "image/jpeg")  # an image by content type only
    events = [created(bucket, k, e) for k, e in etags.items()]
    events += [created(bucket, "a/readme.txt", None), created(bucket, "a/no-extension", None),
               created(bucket, ".thumbnails/a/0.jpg.webp", None)]
    report = ingestor.process_events(events)
    assert sorted(report.keys("embedded")) == sorted([*etags, "a/no-extension"])
    reasons = {o.key: o.reason for o in report.outcomes if o.outcome == "skipped"}
    assert "not an image" in (reasons["a/readme.txt"] or "")
    assert "thumbnail" in (reasons[".thumbnails/a/0.jpg.webp"] or "")
    assert storage.head(bucket, storage.thumbnail_key("a/3.jpg")) is not None
    row = queries.get_row(ingestor.catalog, ingestor.collection_for(bucket), "a/3.jpg")
    assert row is not None and (row.width, row.height) == (80, 60) and row.content_type == "image/jpeg"
    again = ingestor.process_events(events[:5])
    assert again.summary()["embedded"] == 0 and again.summary()["skipped"] == 5
    # A sweep leaves it all alone, the image known only by its content type included.
    swept = sweep(ingestor, bucket)
    assert (swept.embedded, swept.removed, swept.added, swept.remaining) == (0, 0, 0, 0)
    assert queries.get_row(ingestor.catalog, ingestor.collection_for(bucket), "a/no-extension").status == "embedded"


def test_transient_storage_error_fails_only_that_object(
    ingestor: Ingestor, storage: Storage, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    etags = upload(storage, bucket, {f"t/{i}.jpg": jpeg(10 + i) for i in range(4)})
    real_read = storage.read

    def flaky_read(b: str, key: str, max_bytes: int | None = None) -> Any:
        if key == "t/2.jpg":
            raise StorageUnavailable("s3://…/t/2.jpg: storage is busy (SlowDown); retry later")
        return real_read(b, key, max_bytes)

    monkeypatch.setattr(storage, "read", flaky_read)
    report = ingestor.process_events([created(bucket, k, e) for k, e in etags.items()])
    assert set(report.errors) == {(bucket, "t/2.jpg")}
    assert sorted(report.keys("embedded")) == ["t/0.jpg", "t/1.jpg", "t/3.jpg"]
    monkeypatch.setattr(storage, "read", real_read)
    assert ingestor.process_events([created(bucket, "t/2.jpg", etags["t/2.jpg"])]).keys("embedded") == ["t/2.jpg"]


def test_embedding_backend_429_retries_the_batch(ingestor: Ingestor, storage: Storage, bucket: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    etags = upload(storage, bucket, {"r/0.jpg": jpeg(20), "r/1.jpg": jpeg(21)})

    def busy(*_: Any) -> Any:
        raise EmbedderTemporaryError("429 Too Many Requests after 3 retries")

    monkeypatch.setattr(ingestor, "_vectors", busy)
    report = ingestor.process_events([created(bucket, k, e) for k, e in etags.items()])
    assert set(report.errors) == {(bucket, "r/0.jpg"), (bucket, "r/1.jpg")}
    row = queries.get_row(ingestor.catalog, ingestor.collection_for(bucket), "r/0.jpg")
    assert row is not None and row.status == "pending"  # not failed: a retry will work


def test_ingest_events_raises_for_retry(ingestor: Ingestor, storage: Storage, bucket: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import r2_pull
    from shared import runtime

    monkeypatch.setattr(runtime, "ingestor", lambda: ingestor)
    monkeypatch.setattr(storage, "read", lambda *a, **k: (_ for _ in ()).throw(StorageUnavailable("503")))
    with pytest.raises(IngestRetry, match="retried"):
        r2_pull.ingest_events([created(bucket, "x/1.jpg", "e1")])


def test_permanent_failures_are_marked_with_backoff_and_limited(
    ingestor: Ingestor, storage: Storage, bucket: str, catalog: Catalog
) -> None:
    big = ingestor.settings.model_copy(update={"max_image_bytes": 2048})
    small_ingestor = Ingestor(big, catalog, storage, ingestor.embedder)
    etags = upload(storage, bucket, {"p/big.jpg": jpeg(30, (400, 300)), "p/bad.jpg": b"\x89PNG\r\n\x1a\n" + b"x" * 50})
    report = small_ingestor.process_events([created(bucket, k, e) for k, e in etags.items()])
    failed = {o.key: o.reason for o in report.outcomes if o.outcome == "failed"}
    assert failed["p/big.jpg"].startswith("too_large") and failed["p/bad.jpg"].startswith("corrupt")
    assert not report.errors
    collection = ingestor.collection_for(bucket)
    q = quote_ident(collection.table)
    ((delay,),) = catalog.db.run(
        f"SELECT extract(epoch FROM next_attempt_at - updated_at) FROM {q} WHERE key = 'p/bad.jpg'")
    assert float(delay) == pytest.approx(retry_delay(0), abs=5)
    # A redelivered event does not retry it; sweeps do, after the backoff, until IB_MAX_ATTEMPTS.
    assert small_ingestor.process_events([created(bucket, "p/bad.jpg", etags["p/bad.jpg"])]).keys("skipped")
    for attempt in range(2, ingestor.settings.max_attempts + 2):
        catalog.db.run(f"UPDATE {q} SET next_attempt_at = now() - interval '1 second'")
        sweep(small_ingestor, bucket, reconcile_bucket=False)
        row = queries.get_row(catalog, collection, "p/bad.jpg")
        assert row is not None and row.attempts == min(attempt, ingestor.settings.max_attempts)
    assert retry_delay(1) > retry_delay(0)


def test_two_sweeps_at_once_embed_each_image_once(
    settings: Settings, catalog: Catalog, storage: Storage, embedder: Embedder, bucket: str, pg_url: str
) -> None:
    upload(storage, bucket, {f"s/{i:02d}.jpg": jpeg(40 + i) for i in range(24)})
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    small = settings.model_copy(update={"embed_batch_size": 4, "backfill_batch_size": 4})
    sweepers = [Ingestor(small, Catalog.from_url(pg_url), Storage(settings), embedder) for _ in range(2)]
    for s in sweepers:
        Counting(s, calls, lock)
    sweepers[0].collection_for(bucket)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda s=s: results.append(sweep(s, bucket))) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 24 and max(calls.values()) == 1
    assert sum(r.embedded for r in results) == 24
    collection = catalog.get_collection(bucket)
    assert catalog.count_todo(collection, max_attempts=settings.max_attempts) == 0
    assert len(embedded_keys(catalog, collection)) == 24


def test_sweep_stops_before_the_deadline(ingestor: Ingestor, storage: Storage, bucket: str) -> None:
    upload(storage, bucket, {f"d/{i}.jpg": jpeg(70 + i) for i in range(4)})
    rounds = Ingestor(ingestor.settings.model_copy(update={"backfill_batch_size": 2}), ingestor.catalog, storage,
                      ingestor.embedder)
    budget = iter([10**6] * 2 + [0] * 100)  # enough for the listing and one round, then nothing
    summary = sweep(rounds, bucket, deadline=Deadline(lambda: next(budget), 1000))
    assert summary.stopped_early and summary.listed == 4
    assert summary.embedded == 2 and summary.remaining == 2
    assert sweep(rounds, bucket).remaining == 0


class Projected(Embedder):
    """Another 'model': the tiny model's vectors cut to 16 dimensions (different id and size)."""

    model_id = "test/projected-16"
    dim = 16

    def __init__(self, base: Embedder):
        self.base = base

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        return normalize_rows(self.base.embed_images(images)[:, :16])

    def embed_texts(self, texts: Sequence[str], lang: str = "en") -> np.ndarray:
        return normalize_rows(self.base.embed_texts(texts, lang)[:, :16])

    def loaded(self) -> dict[str, bool]:
        return self.base.loaded()


def test_reembed_moves_the_collection_to_another_model(ingestor: Ingestor, storage: Storage, bucket: str,
                                                       catalog: Catalog) -> None:
    etags = upload(storage, bucket, {f"m/{i}.jpg": jpeg(80 + i) for i in range(5)})
    ingestor.process_events([created(bucket, k, e) for k, e in etags.items()])
    collection = ingestor.collection_for(bucket)
    seen: list[tuple[int, int]] = []
    summary = reembed(ingestor, bucket, Projected(ingestor.embedder),
                      progress_callback=lambda d, t: seen.append((d, t)))
    assert summary.switched and summary.embedded == 5 and summary.reset_to_pending == 0
    assert seen[-1] == (5, 5)
    moved = catalog.get_collection(bucket)
    assert (moved.model_id, moved.dim) == ("test/projected-16", 16)
    q = quote_ident(collection.table)
    dims = catalog.db.run(f"SELECT DISTINCT vector_dims(embedding::vector) FROM {q} WHERE embedding IS NOT NULL")
    assert dims == [[16]]
    indexes = {r[0] for r in catalog.db.run("SELECT indexname FROM pg_indexes WHERE tablename = :t",
                                            t=collection.table)}
    assert collection.table + "_hnsw" in indexes and collection.table + "_hnsw2" not in indexes
    assert len(embedded_keys(catalog, moved)) == 5
    # The new model now owns the collection; the old one is refused.
    new_ingestor = Ingestor(ingestor.settings, catalog, storage, Projected(ingestor.embedder))
    storage.put(bucket, "m/new.jpg", jpeg(99), "image/jpeg")
    info = storage.head(bucket, "m/new.jpg")
    assert new_ingestor.process_events([created(bucket, "m/new.jpg", info.etag if info else None)]).keys("embedded")


def test_uploads_during_a_move_get_both_vectors(ingestor: Ingestor, storage: Storage, bucket: str,
                                                catalog: Catalog) -> None:
    from shared.embedders import Models
    from shared.ingest import model_move

    collection = ingestor.collection_for(bucket)
    projected = Projected(ingestor.embedder)
    model_move.begin(catalog, collection, projected.model_id, projected.dim)
    both = Ingestor(ingestor.settings, catalog, storage, Models([ingestor.embedder, projected]))
    etags = upload(storage, bucket, {"v/both.jpg": jpeg(120)})
    assert both.process_events([created(bucket, "v/both.jpg", etags["v/both.jpg"])]).keys("embedded")
    q = quote_ident(collection.table)
    ((live, following),) = catalog.db.run(
        f"SELECT vector_dims(embedding::vector), vector_dims(embedding_next::vector) FROM {q} WHERE key = 'v/both.jpg'")
    assert (live, following) == (ingestor.embedder.dim, 16)
    assert queries.move_status(catalog, catalog.get_collection(bucket)) == {
        "from": ingestor.embedder.model_id, "to": projected.model_id, "done": 1, "total": 1}


@pytest.mark.parametrize("path", ["event", "work message"])
def test_an_upload_caught_by_a_model_switch_is_embedded_at_once_with_the_new_model(
    ingestor: Ingestor, storage: Storage, bucket: str, catalog: Catalog, path: str
) -> None:
    from shared.embedders import Models

    collection = ingestor.collection_for(bucket)
    projected = Projected(ingestor.embedder)
    both = Ingestor(ingestor.settings, catalog, storage, Models([ingestor.embedder, projected]))
    original, calls = both._embed_batch, []

    def switch_first(batch: list[Any], *args: Any) -> None:
        if not calls:  # the move finishes while this batch is in the old model
            assert reembed(ingestor, bucket, projected).switched
        calls.append([p.item.key for p in batch])
        original(batch, *args)

    both._embed_batch = switch_first  # type: ignore[method-assign]
    etags = upload(storage, bucket, {"x/1.jpg": jpeg(125)})
    event = created(bucket, "x/1.jpg", etags["x/1.jpg"])
    if path == "event":
        report = both.process_events([event])
    else:  # the row is known (a plan listed it); a work message names it
        catalog.record_event(collection, event)
        report = both.process_work(bucket, ["x/1.jpg"])
    # Not handed back to wait out the queue's visibility timeout: embedded by the second pass, with the new model.
    assert calls == [["x/1.jpg"], ["x/1.jpg"]]
    assert report.keys("embedded") == ["x/1.jpg"] and not report.errors and not report.keys("retry")
    moved = catalog.get_collection(bucket)
    ((dims,),) = catalog.db.run(f"SELECT vector_dims(embedding::vector) FROM {quote_ident(moved.table)} "
                                "WHERE key = 'x/1.jpg' AND status = 'embedded'")
    assert (moved.model_id, dims) == (projected.model_id, 16)


def test_a_process_without_the_collections_model_fails_only_those_messages(
    ingestor: Ingestor, storage: Storage, bucket: str, catalog: Catalog, settings: Settings
) -> None:
    from shared.embedders import ModelNotDeployed

    etags = upload(storage, bucket, {"w/1.jpg": jpeg(121)})
    ingestor.process_events([created(bucket, "w/1.jpg", etags["w/1.jpg"])])
    summary = reembed(ingestor, bucket, Projected(ingestor.embedder))
    assert summary.switched
    other = f"{bucket}-other"
    storage.client.create_bucket(Bucket=other)
    storage.put(other, "x.jpg", jpeg(122), "image/jpeg")
    upload(storage, bucket, {"w/2.jpg": jpeg(123)})
    # This process holds only the old model: the moved collection's object comes back, the other is embedded.
    report = ingestor.process_events([created(bucket, "w/2.jpg", None), created(other, "x.jpg", None)])
    assert report.keys("embedded") == ["x.jpg"]
    error = report.errors[(bucket, "w/2.jpg")]
    assert isinstance(error, ModelNotDeployed)
    assert "test/projected-16" in str(error) and ingestor.embedder.model_id in str(error)
    assert queries.get_row(catalog, catalog.get_collection(bucket), "w/2.jpg") is None  # nothing half-written


def test_a_vector_of_a_model_the_collection_left_is_never_written(ingestor: Ingestor, storage: Storage,
                                                                  bucket: str, catalog: Catalog) -> None:
    from shared.ingest import model_move
    from shared.store.catalog import ModelChanged

    etags = upload(storage, bucket, {"s/1.jpg": jpeg(124)})
    ingestor.process_events([created(bucket, "s/1.jpg", etags["s/1.jpg"])])
    stale = ingestor.collection_for(bucket)  # read before the move, as a batch in flight holds it
    # A move to a model of the same size: no dimension error would catch a stale write.
    same_size = Projected(ingestor.embedder)
    same_size.model_id, same_size.dim = "test/same-size", ingestor.embedder.dim
    same_size.embed_images = ingestor.embedder.embed_images  # type: ignore[method-assign]
    assert model_move.reembed(ingestor, bucket, same_size).switched
    catalog.record_event(stale, created(bucket, "s/1.jpg", "new-etag"))
    with pytest.raises(ModelChanged):
        catalog.store_embedding(stale, "s/1.jpg", "new-etag", np.ones(stale.dim, dtype=np.float32) / stale.dim**0.5,
                                model_id=stale.model_id)
    assert queries.get_row(catalog, stale, "s/1.jpg").status == "pending"
    with pytest.raises(ModelChanged):  # nor compared: a search with the old model's vector is refused
        queries.search(catalog, stale, np.ones(stale.dim, dtype=np.float32) / stale.dim**0.5)
