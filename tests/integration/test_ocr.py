"""OCR: the real PP-OCR models (bundled in the rapidocr wheel) read rendered signs, receipts and screenshots;
the OCR stage reads embedded pictures apart from embedding, against moto S3 + embedded PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shared import runtime
from shared.api import create_app
from shared.cli.main import main
from shared.config import Settings
from shared.embedders import Embedder, load
from shared.events import ObjectEvent
from shared.ingest.pipeline import Ingestor
from shared.ocr.reader import TextLine, TextReader
from shared.ocr.stage import OcrStage
from shared.search.keywords import fold
from shared.storage import Storage, StorageUnavailable
from shared.store import queries, stage_rows
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.ocr_text import store_text
from tests.fixtures.model import synthetic_photo
from tests.fixtures.text_images import SCENE, jpeg, render

# Seeds (and sizes) of generated photos in which detection finds edges that read as a lone "8", "-", "L",
# "。" or "--" with confidence over 0.8: the line rule, not the floor, keeps their text empty.





# ---- the models ------------------------------------------------------------------------------------------










# ---- the stage ------------------------------------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    catalog: Catalog
    storage: Storage
    ingestor: Ingestor
    collection: Collection
    etags: dict[str, str | None]

    def upload(self, pictures: dict[str, bytes]) -> None:
        """Upload and embed, as the embed function does for the bucket's events."""
        events = []
        for key, data in pictures.items():
            self.storage.put(self.settings.bucket, key, data, "image/jpeg")
            info = self.storage.head(self.settings.bucket, key)
            self.etags[key] = info.etag if info else None
            events.append(ObjectEvent(self.settings.bucket, key, "created", self.etags[key]))
        report = self.ingestor.process_events(events)
        assert report.keys("embedded") == list(pictures), report.outcomes
        self.collection = self.catalog.get_collection(self.settings.bucket)

    def row(self, key: str) -> dict[str, Any]:
        columns = ["status", "ocr_text", "ocr_words", "ocr_state", "ocr_attempts", "ocr_error",
                   "ocr_next_attempt_at > now()", "embedding IS NOT NULL"]
        (values,) = self.catalog.db.run(f"SELECT {', '.join(columns)} FROM {quote_ident(self.collection.table)} "
                                        "WHERE key = :key", key=key)
        return dict(zip(["status", "text", "words", "state", "attempts", "error", "waiting_for_retry",
                         "has_vector"], values, strict=True))

    def waiting(self) -> int:
        return stage_rows.count_waiting(self.catalog, self.collection, stage_rows.OCR)

    def stage(self, reader: Any, **settings: Any) -> OcrStage:
        return OcrStage(self.settings.model_copy(update=settings), self.catalog, self.storage, reader)


@pytest.fixture(scope="module")
def embedder(test_model_dir: Path) -> Embedder:
    return load(str(test_model_dir))


@pytest.fixture()
def world(settings: Settings, catalog: Catalog, storage: Storage, bucket: str, embedder: Embedder) -> World:
    settings = settings.model_copy(update={"ocr_parallel": 2})
    ingestor = Ingestor(settings, catalog, storage, embedder)
    return World(settings, catalog, storage, ingestor, ingestor.collection_for(bucket), {})


class StubReader(TextReader):
    """Counts the pictures it is given; reads `words` in each, or raises `error`."""

    def __init__(self, words: str = "stub words", error: Exception | None = None, pause: float = 0.0):
        super().__init__()
        self.words, self.error, self.pause = words, error, pause
        self.calls: Counter[tuple[int, int]] = Counter()
        self.lock = threading.Lock()

    def read(self, image: Image.Image) -> list[TextLine]:
        with self.lock:
            self.calls[image.size] += 1
        time.sleep(self.pause)  # lets runs at the same time overlap
        if self.error is not None:
            raise self.error
        return [TextLine(self.words, 1.0)]


def test_stage_reads_embedded_pictures_for_keyword_search_and_the_api(world: World, reader: TextReader,
                                                                      embedder: Embedder) -> None:
    world.upload({"signs/ward.jpg": jpeg(render(SCENE["hospital-sign"])),
                  "receipts/bakery.jpg": jpeg(render(SCENE["receipt"])),
                  "photos/lake.jpg": jpeg(synthetic_photo(1024, 768, seed=9))})
    # Embedded and searchable by its look at once; the words come later, from the stage.
    assert world.waiting() == 3
    assert {hit.key: hit.ocr_text for hit in queries.recent(world.catalog, world.collection)} == {
        "signs/ward.jpg": None, "receipts/bakery.jpg": None, "photos/lake.jpg": None}

    summary = world.stage(reader).run(world.settings.bucket)
    assert (summary.read, summary.with_text, summary.failed, summary.remaining) == (3, 2, 0, 0)
    sign = world.row("signs/ward.jpg")
    assert (sign["text"], sign["state"]) == ("INPATIENT\nHOSPITAL", "done")
    assert sign["words"] == fold(sign["text"]) == "inpatient\nhospital"
    assert world.row("receipts/bakery.jpg")["text"] == "\n".join(SCENE["receipt"].lines)
    assert world.row("photos/lake.jpg")["text"] == ""
    assert world.waiting() == 0
    assert world.stage(reader).run(world.settings.bucket).read == 0  # nothing is read twice

    # The keyword index (the generated search_tsv over ocr_words) finds each phrase's picture first.
    table = quote_ident(world.collection.table)
    for phrase, key in (("Inpatient hospital", "signs/ward.jpg"), ("sourdough LOAF", "receipts/bakery.jpg")):
        found = world.catalog.db.run(
            f"SELECT key FROM {table}, plainto_tsquery('simple', :q) AS q WHERE search_tsv @@ q "
            "ORDER BY ts_rank(search_tsv, q) DESC, key", q=fold(phrase))
        assert [row[0] for row in found] == [key]

    client = TestClient(create_app(world.settings, catalog=world.catalog, models=embedder))
    items = {item["key"]: item for item in client.get("/api/recent", params={
        "collection": world.settings.bucket}).json()["items"]}
    assert items["signs/ward.jpg"]["text"] == "INPATIENT\nHOSPITAL"
    assert items["photos/lake.jpg"]["text"] == ""
    assert client.get("/api/stats", params={"collection": world.settings.bucket}).json()["ocr_waiting"] == 0
    for mode in ("keyword", "hybrid"):  # searching a phrase finds its picture first, matched by its text
        found = client.get("/api/search", params={"q": "inpatient hospital", "mode": mode,
                                                  "collection": world.settings.bucket}).json()["items"]
        assert found[0]["key"] == "signs/ward.jpg" and "text" in found[0]["matched"], found
        assert mode == "hybrid" or [item["key"] for item in found] == ["signs/ward.jpg"]


def test_ocr_failure_never_fails_embedding_and_is_retried_with_backoff(world: World) -> None:
    keys = [f"p/{i}.jpg" for i in range(3)]
    world.upload({key: jpeg(synthetic_photo(320, 240, seed=i)) for i, key in enumerate(keys)})
    broken = StubReader(error=RuntimeError("onnxruntime fell over"))
    summary = world.stage(broken).run(world.settings.bucket)
    assert (summary.failed, summary.read, summary.remaining) == (3, 0, 3)
    for key in keys:
        row = world.row(key)
        assert (row["status"], row["has_vector"], row["text"], row["state"], row["attempts"]) == (
            "embedded", True, None, None, 1)
        assert row["error"] == "RuntimeError: onnxruntime fell over" and row["waiting_for_retry"]
    similar = queries.search(world.catalog, world.collection, similar_to=keys[0])  # still searchable by look
    assert sorted(hit.key for hit in similar) == keys[1:]
    assert world.stage(broken).run(world.settings.bucket).failed == 0  # backing off: nothing is claimed

    table = quote_ident(world.collection.table)
    for attempt in (2, 3):  # IB_MAX_ATTEMPTS is 3: the third failure gives up
        world.catalog.db.run(f"UPDATE {table} SET ocr_next_attempt_at = now() - interval '1 second'")
        assert world.stage(broken).run(world.settings.bucket).failed == 3
        assert {world.row(key)["attempts"] for key in keys} == {attempt}
    assert {world.row(key)["state"] for key in keys} == {"failed"}
    assert world.waiting() == 0
    world.upload({"p/new.jpg": jpeg(synthetic_photo(320, 240, seed=7))})  # embedding goes on regardless
    assert world.row("p/new.jpg")["status"] == "embedded" and world.waiting() == 1


def test_a_replaced_picture_is_read_again_and_an_old_reading_is_never_stored(world: World,
                                                                             reader: TextReader) -> None:
    world.upload({"board.jpg": jpeg(render(SCENE["street-sign"]))})
    world.stage(reader).run(world.settings.bucket)
    assert world.row("board.jpg")["text"] == "Harbour Street"

    world.upload({"board.jpg": jpeg(render(SCENE["poster"]))})  # new content under the same key
    assert world.waiting() == 1
    assert world.stage(reader).run(world.settings.bucket).read == 1
    assert world.row("board.jpg")["text"] == "Summer Jazz Festival\nRiverside Park"

    world.upload({"board.jpg": jpeg(render(SCENE["screenshot"]))})
    (claimed,) = stage_rows.claim_waiting(world.catalog, world.collection, stage_rows.OCR, 10)
    world.upload({"board.jpg": jpeg(synthetic_photo(640, 480, seed=3))})  # replaced while being read
    assert not store_text(world.catalog, world.collection, claimed.key, claimed.etag, "Settings")
    assert world.row("board.jpg")["text"] is None and world.waiting() == 1  # claimable at once: new content
    assert world.stage(reader).run(world.settings.bucket).read == 1
    assert world.row("board.jpg")["text"] == ""


def test_runs_at_the_same_time_read_each_picture_once(world: World) -> None:
    sizes = [(200 + 10 * i, 150) for i in range(8)]  # a distinct size per picture tells them apart
    world.upload({f"s/{i}.jpg": jpeg(synthetic_photo(*size, seed=i)) for i, size in enumerate(sizes)})
    counting = StubReader(pause=0.05)
    summaries: list[Any] = []
    runs = [threading.Thread(target=lambda: summaries.append(world.stage(counting, ocr_parallel=1).run(
        world.settings.bucket))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert counting.calls == Counter(dict.fromkeys(sizes, 1))
    assert sum(summary.read for summary in summaries) == len(sizes) and world.waiting() == 0
    assert {world.row(f"s/{i}.jpg")["words"] for i in range(len(sizes))} == {"stub words"}


def test_an_outage_gives_rows_back_without_counting_an_attempt(world: World) -> None:
    world.upload({"o/1.jpg": jpeg(synthetic_photo(320, 240, seed=1))})

    class DownStorage(Storage):
        def read(self, bucket: str, key: str, max_bytes: int | None = None) -> Any:
            raise StorageUnavailable("S3 answered 503 Slow Down")

    stage = OcrStage(world.settings, world.catalog, DownStorage(world.settings), StubReader())
    summary = stage.run(world.settings.bucket)
    assert (summary.retry, summary.failed) == (1, 0) and "503" in summary.errors[0]
    row = world.row("o/1.jpg")
    assert (row["attempts"], row["state"], row["waiting_for_retry"]) == (0, None, True)


def test_ib_ocr_false_turns_the_stage_off(world: World) -> None:
    world.upload({"f/1.jpg": jpeg(synthetic_photo(320, 240, seed=1))})
    counting = StubReader()
    summary = world.stage(counting, ocr=False).run(world.settings.bucket)
    assert summary.disabled and summary.read == 0 and not counting.calls
    assert world.waiting() == 1


@pytest.fixture()
def ocr_env(world: World, pg_url: str, test_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """IB_* variables for the command line and the Lambda handler, which build their own runtime."""
    for name, value in {"IB_DATABASE_URL": pg_url, "IB_S3_ENDPOINT_URL": str(world.settings.s3_endpoint_url),
                        "IB_S3_ACCESS_KEY_ID": "test", "IB_S3_SECRET_ACCESS_KEY": "test",
                        "IB_BUCKET": world.settings.bucket, "IB_MODEL": str(test_model_dir)}.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield world
    runtime.reset()


def test_command_line_and_lambda_handler_read_what_waits(ocr_env: World, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from functions import ocr as ocr_function
    from shared.dev.sqs_poller import LocalContext

    world = ocr_env
    world.upload({"cli/sign.jpg": jpeg(render(SCENE["street-sign"]))})
    monkeypatch.setenv("IB_OCR", "false")
    runtime.reset()
    assert main(["ocr", "--collection", world.settings.bucket]) == 1
    assert "IB_OCR=false" in capsys.readouterr().err and world.waiting() == 1

    monkeypatch.setenv("IB_OCR", "true")
    runtime.reset()
    assert main(["ocr", "--collection", world.settings.bucket]) == 0
    assert "read 1 (1 with text)" in capsys.readouterr().out
    assert world.row("cli/sign.jpg")["text"] == "Harbour Street"
    assert main(["status", "--collection", world.settings.bucket]) == 0
    assert '"ocr_waiting": 0' in capsys.readouterr().out

    world.upload({"cli/lake.jpg": jpeg(synthetic_photo(640, 480, seed=5))})
    result = ocr_function.handler({"collections": ["no-such-bucket", world.settings.bucket]},
                                  LocalContext("ocr", timeout_seconds=120))
    assert [(c["collection"], c["read"], c["remaining"]) for c in result["collections"]] == [
        (world.settings.bucket, 1, 0)]




def test_pictures_embedded_before_ocr_existed_wait_and_get_read(world: World, pg_url: str) -> None:
    """A table of an older release (no OCR columns) gets them on first use; its pictures wait for the stage."""
    keys = [f"old/{i}.jpg" for i in range(3)]
    world.upload({key: jpeg(synthetic_photo(320, 240, seed=i)) for i, key in enumerate(keys)})
    table = quote_ident(world.collection.table)
    world.catalog.db.run(f"ALTER TABLE {table} DROP COLUMN ocr_text, DROP COLUMN ocr_etag, DROP COLUMN ocr_state, "
                         "DROP COLUMN ocr_attempts, DROP COLUMN ocr_error, DROP COLUMN ocr_next_attempt_at")
    upgraded = Catalog.from_url(pg_url)  # a process of this release opens the catalog
    try:
        upgraded.ensure_schema()
        assert stage_rows.count_waiting(upgraded, world.collection, stage_rows.OCR) == len(keys)
        summary = OcrStage(world.settings, upgraded, world.storage, StubReader()).run(world.settings.bucket)
        assert (summary.read, summary.remaining) == (len(keys), 0)
    finally:
        upgraded.db.close()
