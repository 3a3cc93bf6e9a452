"""The OCR stage: images/min reading photos without text and photos with text (real PP-OCR models from the
rapidocr wheel), and ingestion with the OCR stage on and off.

Real parts on 127.0.0.1, as in bench_ingest: moto S3/SQS in its own process, embedded PostgreSQL. The stage
reads each original from S3, decodes it at a reduced scale, detects text at IB_OCR_DETECT_SIDE (736) and
recognises only the lines found, one picture per core side by side (IB_OCR_PARALLEL).

    python -m bench.bench_ocr [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.bench_ingest import (
    BATCH_SIZE,
    PHOTO_SIZES,
    SQS_BATCH,
    SQS_CONCURRENCY,
    SQS_WINDOW,
    _cpu_seconds,
    _env,
    _moto_process,
    _pipeline,
)
from shared import runtime
from shared.config import get_settings
from shared.dev.local_services import EmbeddedPostgres, aws_client, wire_bucket_to_queue
from shared.dev.sqs_poller import SqsPoller
from shared.events import ObjectEvent
from shared.ingest.event_filter import thumbnail_filter
from shared.store import stage_rows
from shared.store.db import quote_ident
from tests.fixtures.model import ensure_test_model, synthetic_photo
from tests.fixtures.text_images import SCENES, render

RANDOM_MODEL, RANDOM_DIM = "bench-random-vectors", 8  # the stage never looks at vectors


def _photos(count: int, with_text: bool) -> tuple[list[bytes], list[str]]:
    """JPEG photos at PHOTO_SIZES, plain or with one of the text scenes laid over; and the text expected.
    16 pictures at most, each copy with its own JPEG comment: different bytes, so ingestion never reuses a
    copy's vector (same SHA-256) and every object costs what its picture costs."""
    pictures, expected = [], []
    for i in range(min(count, 16)):
        size = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        if with_text:
            scene = replace(SCENES[i % len(SCENES)], canvas=size, seed=i)
            pictures.append(render(scene))
            expected.append("\n".join(scene.lines))
        else:
            pictures.append(synthetic_photo(*size, seed=200 + i))
            expected.append("")
    encoded = []
    for i in range(count):
        out = io.BytesIO()
        pictures[i % len(pictures)].save(out, format="JPEG", quality=88, comment=f"copy {i}")
        encoded.append(out.getvalue())
    return encoded, [expected[i % len(pictures)] for i in range(count)]


def _embedded_rows(bucket: str, photos: list[bytes]) -> None:
    """Upload the photos and record them as embedded (random vectors): what the OCR stage finds to read."""
    s3, catalog = aws_client("s3", get_settings().s3_endpoint_url), runtime.catalog()
    s3.create_bucket(Bucket=bucket)
    collection = catalog.open_collection(bucket, RANDOM_MODEL, RANDOM_DIM)
    rng = np.random.default_rng(0)

    def put(index: int) -> None:
        key = f"p/{index:05d}.jpg"
        etag = s3.put_object(Bucket=bucket, Key=key, Body=photos[index], ContentType="image/jpeg")["ETag"].strip('"')
        catalog.record_event(collection, ObjectEvent(bucket, key, "created", etag))
        catalog.store_embedding(collection, key, etag, rng.standard_normal(RANDOM_DIM), model_id=RANDOM_MODEL)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(len(photos))))


def _stage_rate(bucket: str, photos: list[bytes], expected: list[str]) -> dict[str, float]:
    """Images/min of one OCR stage run over the photos, and how well it read them."""
    _embedded_rows(bucket, photos)
    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = runtime.ocr_stage().run(bucket)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    catalog = runtime.catalog()
    collection = catalog.get_collection(bucket)
    texts = dict(catalog.db.run(f"SELECT key, ocr_text FROM {quote_ident(collection.table)}"))
    read = [texts[f"p/{i:05d}.jpg"] for i in range(len(photos))]
    return {"per_min": summary.read / seconds * 60, "count": summary.read, "cpu_ms": cpu / summary.read * 1000,
            "exact": sum(got == want for got, want in zip(read, expected, strict=True)),
            "with_text": sum(bool(got) for got in read)}


class OcrWorker(threading.Thread):
    """The OCR stage on a short schedule beside the pipeline, as `make dev` runs it."""

    def __init__(self, bucket: str):
        super().__init__(daemon=True)
        self.bucket, self.stopping = bucket, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            runtime.ocr_stage().run(self.bucket)


def _ingest(endpoint: str, pg_dir: Path, bucket: str, photos: list[bytes], ocr: bool) -> dict[str, float]:
    """Embed images/min through the SQS pipeline; with `ocr`, the stage runs beside it, and the time until
    the last picture's words are stored counts too."""
    from functions import embed as embed_function

    queue_url = wire_bucket_to_queue(endpoint, bucket, f"{bucket}-events")
    poller = SqsPoller(aws_client("sqs", endpoint), queue_url, embed_function.handler, batch_size=SQS_BATCH,
                       batching_window=SQS_WINDOW, visibility_timeout=60, concurrency=SQS_CONCURRENCY,
                       filter_patterns=thumbnail_filter(get_settings().thumbnail_prefix))  # as deployed
    _pipeline(endpoint, bucket, photos[:BATCH_SIZE], "warmup", poller, pg_dir)  # cold start out of the way
    worker = OcrWorker(bucket)
    if ocr:
        runtime.ocr_stage().run(bucket)  # the warm-up's pictures, outside the timing
        worker.start()
    started = time.perf_counter()
    try:
        _, seconds, _ = _pipeline(endpoint, bucket, photos, "run", poller, pg_dir)
        collection = runtime.catalog().get_collection(bucket)
        while ocr and stage_rows.count_waiting(runtime.catalog(), collection, stage_rows.OCR):
            if time.perf_counter() - started > 600:
                raise TimeoutError("the OCR stage did not read every picture within 10 minutes")
            time.sleep(0.25)
        words = time.perf_counter() - started
    finally:
        worker.stopping.set()
        if worker.is_alive():
            worker.join()
    return {"embed_per_min": len(photos) / seconds * 60, "words_per_min": len(photos) / words * 60}


def run(quick: bool = False) -> str:
    from functions import embed as embed_function

    embed_function.logger.setLevel("WARNING")
    model_dir = ensure_test_model("b32")
    stage_count = 16 if quick else 96
    ingest_count = 32 if quick else 192
    plain, plain_expected = _photos(stage_count, with_text=False)
    texty, texty_expected = _photos(stage_count, with_text=True)
    halves = zip(_photos(ingest_count // 2, False)[0], _photos(ingest_count // 2, True)[0], strict=True)
    mixed = [photo for pair in halves for photo in pair]
    with tempfile.TemporaryDirectory(prefix="ib-bench-ocr-") as tmp, _moto_process() as endpoint:
        pg_dir = Path(tmp) / "pg"
        pg = EmbeddedPostgres(pg_dir)
        url = pg.start()
        env = {"IB_DATABASE_URL": url, "IB_S3_ENDPOINT_URL": endpoint, "IB_S3_ACCESS_KEY_ID": "test",
               "IB_S3_SECRET_ACCESS_KEY": "test", "IB_MODEL": str(model_dir), "IB_EMBED_BATCH_SIZE": str(BATCH_SIZE)}
        try:
            with _env(env):
                warm, warm_expected = _photos(4, with_text=True)
                _stage_rate("bench-ocr-warmup", warm, warm_expected)  # loads the models
                without = _stage_rate("bench-ocr-plain", plain, plain_expected)
                with_text = _stage_rate("bench-ocr-text", texty, texty_expected)
                off_before = _ingest(endpoint, pg_dir, "bench-ocr-off-1", mixed, ocr=False)
                on = _ingest(endpoint, pg_dir, "bench-ocr-on", mixed, ocr=True)
                off_after = _ingest(endpoint, pg_dir, "bench-ocr-off-2", mixed, ocr=False)
                calls, detect_side = get_settings().ocr_calls, get_settings().ocr_detect_side
        finally:
            pg.stop()
    off = (off_before["embed_per_min"] + off_after["embed_per_min"]) / 2
    lines = [
        "## OCR stage",
        "",
        f"Command: `python -m bench.bench_ocr{' --quick' if quick else ''}` (part of `make bench`). The OCR stage "
        "(`shared/ocr/stage.py`) over rows already embedded: claim, S3 GET of the original (moto), JPEG decode at "
        f"a reduced scale, text detection at longest side {detect_side} px (IB_OCR_DETECT_SIDE), recognition of "
        "the lines found, text stored. PP-OCRv6 small det/rec from the rapidocr wheel on ONNX Runtime, "
        f"{calls} pictures side by side (IB_OCR_PARALLEL = one per core), one ONNX thread each, warm. Photos "
        f"{', '.join(f'{w}x{h}' for w, h in PHOTO_SIZES)}; the text ones carry one of the test scenes (sign, "
        "street sign, receipt, screenshot, poster: 1-3 lines, rotated up to 4 degrees).",
        "",
        "| photos | images | images/min | CPU-ms / image | read exactly as written | with any text |",
        "|---|---:|---:|---:|---:|---:|",
        f"| without text | {without['count']:.0f} | **{without['per_min']:,.0f}** | {without['cpu_ms']:.0f} | - | "
        f"{without['with_text']:.0f} (false text) |",
        f"| with text | {with_text['count']:.0f} | **{with_text['per_min']:,.0f}** | {with_text['cpu_ms']:.0f} | "
        f"{with_text['exact']:.0f} / {with_text['count']:.0f} | {with_text['with_text']:.0f} |",
        "",
        "Goal: >= 300 images/min on this machine for the stage. CPU-ms are this process's (S3 client, decode, "
        f"OCR, catalog); {os.cpu_count()} idle cores offer {os.cpu_count() * 60_000:,} CPU-ms a minute.",
        "",
        "### Ingestion with the OCR stage on and off",
        "",
        f"The end-to-end pipeline of the ingestion section (S3 -> SQS -> embed handler, {len(mixed)} JPEGs, half "
        "of them with text, ViT-B/32-shaped test model) with IB_OCR off, and on with the OCR stage running "
        "beside it in the same process every 0.5 s, as `make dev` runs it (its threads at nice 10, so the "
        "cores go to embedding first). In Lambda the stage is a function of its own and takes no CPU from "
        "embedding at all.",
        "",
        "| run | embedded images/min | words stored, images/min |",
        "|---|---:|---:|",
        f"| OCR off (mean of a run before and one after) | **{off:,.0f}** ({off_before['embed_per_min']:,.0f}, "
        f"{off_after['embed_per_min']:,.0f}) | - |",
        f"| OCR on, stage beside the pipeline | **{on['embed_per_min']:,.0f}** | {on['words_per_min']:,.0f} |",
        "",
        f"Embedding throughput with the stage on: {on['embed_per_min'] / off:.0%} of the OCR-off figure "
        f"({os.cpu_count()} cores shared by the model, the OCR stage, moto and PostgreSQL).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
