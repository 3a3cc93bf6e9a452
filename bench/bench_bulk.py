"""Catch-up of an existing bucket: the backfill plans and queues, the embed function's concurrency does the work.

Real parts on 127.0.0.1: moto S3/SQS in its own process, embedded PostgreSQL + pgvector, the SQS poller calling
`functions.embed.handler` with Lambda's event shape, and the ViT-B/32-shaped test model. The bucket has no
notification configuration (objects put with any S3 tool): only the plan finds them.

1. The plan's call: seconds to list, record and queue N objects (it returns before the work is done).
2. Photos/min end to end with 1 and 2 consumers (the trigger's MaximumConcurrency), each on a bucket of its own.
3. The database's side of the fan-out: rows/s written into an HNSW-indexed collection table by 1, 2 and 4
   writers at once (the pipeline's two statements per photo: the event's row, then its vector).
4. A table for AWS computed from those figures and Lambda's published limits.

    python -m bench.bench_bulk [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.bench_ingest import _cpu_seconds, _env, _moto_process, _photos
from shared import runtime
from shared.config import get_settings
from shared.dev.local_services import EmbeddedPostgres, aws_client
from shared.dev.sqs_poller import SqsPoller
from shared.events import ObjectEvent
from shared.ingest.backfill import plan
from shared.ingest.event_filter import thumbnail_filter
from shared.store import queries
from shared.store.catalog import Catalog
from tests.fixtures.model import ensure_test_model

SQS_BATCH = 10  # embedBatchSize: a work message carries 25 keys, so one invocation gets up to 250
# Lambda (x86_64, us-east-1 list prices): $0.0000166667 per GB-second and $0.20 per million requests;
# one vCPU per 1,769 MB of memory.
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
MB_PER_VCPU = 1769
EMBED_MEMORY_MB = 2048  # serverless.yml embedMemory
POOL_PER_CONTAINER = 8  # shared/store/db.py: a container's pool holds up to this many connections


def _put_all(endpoint: str, bucket: str, photos: list[bytes]) -> None:
    s3 = aws_client("s3", endpoint)
    s3.create_bucket(Bucket=bucket)  # no notification configuration: only the plan finds these objects
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"roll/{i:05d}.jpg", Body=photos[i],
                                              ContentType="image/jpeg"), range(len(photos))))


def _catch_up(endpoint: str, bucket: str, photos: list[bytes], consumers: int) -> dict[str, float]:
    """Plan the bucket, then drain the queue with `consumers` invocations at once: the plan's seconds, how many
    it queued, and photos/min from the plan's start until the last row has its vector."""
    from functions import embed as embed_function

    _put_all(endpoint, bucket, photos)
    sqs = aws_client("sqs", endpoint)
    queue_url = sqs.create_queue(QueueName=f"{bucket}-work", Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
    ingestor, catalog = runtime.ingestor(), runtime.catalog()
    poller = SqsPoller(sqs, queue_url, embed_function.handler, batch_size=SQS_BATCH, batching_window=0.5,
                       visibility_timeout=120, concurrency=consumers,
                       filter_patterns=thumbnail_filter(get_settings().thumbnail_prefix))
    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = plan(ingestor, bucket, queue_url=queue_url)
    planned = time.perf_counter() - start
    collection = catalog.get_collection(bucket)
    poller.start()
    try:
        while queries.counts(catalog, collection)["embedded"] < len(photos):
            if time.perf_counter() - start > 1200:
                raise TimeoutError("the catch-up did not finish within 20 minutes")
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    finally:
        poller.stop()
    return {"plan_seconds": planned, "queued": summary.queued, "per_minute": len(photos) / seconds * 60,
            "cpu_ms": (_cpu_seconds() - cpu) / len(photos) * 1000, "seconds": seconds}


def _insert_rate(url: str, writers: int, rows: int, prefill: int) -> float:
    """Rows/s that `writers` threads write into one HNSW-indexed table, as the pipeline does (event row, then
    its vector), after `prefill` rows are in (an index of some size, as a collection being caught up has)."""
    catalog = Catalog.from_url(url, pool_size=writers + 1)
    name = f"bench-insert-{writers}-{time.monotonic_ns()}"
    collection = catalog.ensure_collection(name, "bench-model", 512)
    rng = np.random.default_rng(writers)
    centres = rng.normal(size=(64, 512)).astype(np.float32)

    def vector(i: int) -> np.ndarray:
        v = centres[i % 64] + 0.35 * rng.normal(size=512).astype(np.float32)
        return v / np.linalg.norm(v)

    def write(i: int) -> None:
        key = f"k/{i:07d}.jpg"
        catalog.record_event(collection, ObjectEvent(name, key, "created", f"e{i}", 1000,
                                                     event_time=datetime.now(UTC)))
        catalog.store_embedding(collection, key, f"e{i}", vector(i), model_id="bench-model", width=640,
                                height=480)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(prefill)))
    with ThreadPoolExecutor(writers) as pool:
        start = time.perf_counter()
        list(pool.map(write, range(prefill, prefill + rows)))
        rate = rows / (time.perf_counter() - start)
    catalog.db.close()
    return rate


def _aws_rows(cpu_ms: float, ocr_cpu_ms: float, insert_rate: float) -> list[str]:
    """Minutes, dollars and connections for a catch-up on AWS, from the measured CPU per photo and the measured
    database insert rate (the cap of the fan-out)."""
    vcpus = EMBED_MEMORY_MB / MB_PER_VCPU
    per_container = vcpus * 1000 / cpu_ms  # photos/s one container embeds with its vCPUs busy
    rows = []
    for photos in (100_000, 1_000_000):
        for concurrency in (5, 50, 200):
            rate = min(concurrency * per_container, insert_rate)
            minutes = photos / rate / 60
            gb_seconds = photos * (cpu_ms + ocr_cpu_ms) / 1000 / vcpus * EMBED_MEMORY_MB / 1024
            dollars = gb_seconds * LAMBDA_GB_SECOND + photos / 250 * 2 * LAMBDA_REQUEST
            capped = " (database-bound)" if rate == insert_rate else ""
            rows.append(f"| {photos:,} | {concurrency} | {minutes:,.0f}{capped} | ${dollars:,.2f} | "
                        f"{concurrency * POOL_PER_CONTAINER:,} |")
    return rows


def _ocr_cpu_ms(photos: list[bytes]) -> float:
    """CPU-ms per photo of the OCR stage's reading (real PP-OCR models from the rapidocr wheel)."""
    import io

    from PIL import Image

    from shared.ocr.reader import TextReader

    reader = TextReader()
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in photos]
    reader.read(images[0])  # load the models
    started = time.process_time()
    for image in images:
        reader.read(image)
    return (time.process_time() - started) / len(images) * 1000


def run(quick: bool = False) -> str:
    from functions import embed as embed_function

    embed_function.logger.setLevel("WARNING")
    count = 200 if quick else 2000
    photos = _photos(count, 16 if quick else 64)
    model_dir = ensure_test_model("b32")
    with tempfile.TemporaryDirectory(prefix="ib-bench-bulk-") as tmp, _moto_process() as endpoint:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        env = {"IB_DATABASE_URL": url, "IB_S3_ENDPOINT_URL": endpoint, "IB_S3_ACCESS_KEY_ID": "test",
               "IB_S3_SECRET_ACCESS_KEY": "test", "IB_BUCKET": "bench-bulk-1", "IB_MODEL": str(model_dir),
               "IB_OCR": "false"}
        try:
            with _env(env):
                runs = {n: _catch_up(endpoint, f"bench-bulk-{n}", photos, n) for n in (1, 2)}
                inserts = {w: _insert_rate(url, w, 500 if quick else 2000, 2000 if quick else 20_000)
                           for w in (1, 2, 4)}
                ocr_ms = _ocr_cpu_ms(photos[:4 if quick else 12])
        finally:
            pg.stop()
    one, two = runs[1], runs[2]
    lines = [
        "## Catch-up of an existing bucket",
        "",
        f"Command: `python -m bench.bench_bulk{' --quick' if quick else ''}` (part of `make bench`). {count} JPEG "
        "photos (as in the ingestion section) put into a bucket with no notification configuration; "
        "`backfill.plan` lists it, records each object and queues work messages (25 keys each) on the embed "
        "queue; the local SQS poller drains it into `functions.embed.handler` with 1, then 2 invocations at "
        f"once (MaximumConcurrency; BatchSize {SQS_BATCH}), each on a bucket of its own. OCR off (its cost is "
        "measured apart below). Timed from the plan's call to the last row with its vector.",
        "",
        "| consumers | the plan's call (s) | queued | end to end (s) | photos/min | CPU-ms / photo |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {n} | {r['plan_seconds']:.1f} | {r['queued']:,} | {r['seconds']:.0f} | {r['per_minute']:,.0f} | "
          f"{r['cpu_ms']:.0f} |" for n, r in runs.items()],
        "",
        f"The plan returns after {one['plan_seconds'] / one['seconds']:.0%} of the catch-up's time; the rest is "
        f"the queue's. Two consumers give {two['per_minute'] / one['per_minute']:.2f} x one on this 2-core "
        "machine, which also runs moto and PostgreSQL; on Lambda each consumer has cores of its own.",
        "",
        "Rows written per second into one HNSW-indexed collection table (512-d halfvec, m 16, ef_construction "
        "128; the pipeline's two statements per photo) with several writers at once, after "
        f"{2000 if quick else 20_000:,} rows:",
        "",
        "| writers | rows/s |",
        "|---:|---:|",
        *[f"| {w} | {rate:,.0f} |" for w, rate in inserts.items()],
        "",
        f"OCR reading costs {ocr_ms:.0f} CPU-ms per photo (PP-OCR from the rapidocr wheel, measured here).",
        "",
        "### On AWS, computed",
        "",
        f"From the CPU per photo measured above ({one['cpu_ms']:.0f} ms embedding, {ocr_ms:.0f} ms OCR, this "
        f"machine's cores), Lambda's published limits ({EMBED_MEMORY_MB} MB = {EMBED_MEMORY_MB / MB_PER_VCPU:.2f} "
        f"vCPU, ${LAMBDA_GB_SECOND} per GB-s, $0.20 per million requests) and the database's insert rate "
        f"with 4 writers ({inserts[4]:,.0f} rows/s here; a managed PostgreSQL with more cores writes faster), "
        "which caps the fan-out. Dollars are Lambda's (embed + OCR); connections are each container's pool "
        f"({POOL_PER_CONTAINER}) times the concurrency, the most a database must accept (size `embedMaxConcurrency` "
        "to it, or put a pooler in session mode in front).",
        "",
        "| photos | embedMaxConcurrency | minutes | dollars | connections, at most |",
        "|---:|---:|---:|---:|---:|",
        *_aws_rows(one["cpu_ms"], ocr_ms, inserts[4]),
        "",
        "The goal, a bucket of 1,000,000 photos in 30 minutes at concurrency 200, needs "
        f"{1_000_000 / 1800:,.0f} photos/s from the database: here it writes {inserts[4]:,.0f}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
