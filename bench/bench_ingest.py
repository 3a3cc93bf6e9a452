"""Ingestion end to end: object in local S3 -> SQS event -> embed handler -> row with vector + thumbnail.

Measured beside the raw model throughput in the same run, so the pipeline's overhead shows as a ratio.
Real parts on 127.0.0.1: moto S3/SQS in its own process (S3 is remote in production; in-process it
would compete for our GIL), embedded PostgreSQL + pgvector, the SQS poller calling
`functions.embed.handler` with Lambda's event shape, and the random-weight ViT-B/32-shaped test model.

    python -m bench.bench_ingest [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shared import queries, runtime
from shared.config import get_settings
from shared.dev.services import EmbeddedPostgres, aws_client, free_port, wire_bucket_to_queue
from shared.dev.sqs_poller import PollStats, SqsPoller
from shared.ingest import Writes
from tests.fixtures.model import ensure_test_model, synthetic_photo

PHOTO_SIZES = [(1600, 1200), (1200, 1600), (1024, 768), (2000, 1125)]
BATCH_SIZE = 16  # images per model call (IB_EMBED_BATCH_SIZE)
SQS_BATCH = 100  # event source mapping BatchSize (half of the messages are our thumbnails' events)
SQS_WINDOW = 1.0  # MaximumBatchingWindowInSeconds
SQS_CONCURRENCY = 2  # MaximumConcurrency: one invocation's start and end overlap another's middle


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    runtime.reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        runtime.reset()


@contextmanager
def _moto_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = aws_client("s3", endpoint)
        for _ in range(100):
            try:
                s3.list_buckets()
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def _photos(count: int, distinct: int) -> list[bytes]:
    encoded = []
    for i in range(distinct):
        out = io.BytesIO()
        synthetic_photo(*PHOTO_SIZES[i % len(PHOTO_SIZES)], seed=i).save(out, format="JPEG", quality=88)
        encoded.append(out.getvalue())
    return [encoded[i % distinct] for i in range(count)]


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _server_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the servers on this machine: moto (S3 + SQS) and PostgreSQL (all backends)."""
    import psutil

    totals = {"moto": 0.0, "postgres": 0.0}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        kind = "moto" if "moto.server" in cmdline else "postgres" if proc.info["name"] == "postgres" else None
        if kind and proc.info["cpu_times"]:
            totals[kind] += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return totals


def _raw_model(photos: list[bytes]) -> dict[str, float]:
    """Images/s of the model on decoded images: with its preprocessing, and the ONNX call alone.

    Run the way the pipeline runs the model: IB_EMBED_PARALLEL batches side by side, so the ratio
    compares the pipeline with the best the model does on this machine, not with a handicapped model.
    """
    ingestor = runtime.ingestor()
    embedder, writes = ingestor.embedder, Writes(ingestor.embedder)
    calls = get_settings().image_model_calls
    images = [ingestor.decode(p, writes) for p in photos]  # as the pipeline decodes them
    batches = [images[i:i + BATCH_SIZE] for i in range(0, len(images), BATCH_SIZE)]
    embedder.embed_images(batches[0])  # warm-up
    with ThreadPoolExecutor(calls) as pool:
        start, cpu = time.perf_counter(), _cpu_seconds()
        list(pool.map(embedder.embed_images, batches))
        seconds = time.perf_counter() - start
        result = {"with_preprocess": len(images) / seconds,
                  "cpu_ms": (_cpu_seconds() - cpu) / len(images) * 1000}
        pixels = [embedder.preprocess(batch) for batch in batches]
        start = time.perf_counter()
        list(pool.map(embedder.run_visual, pixels))
        result["onnx_only"] = len(images) / (time.perf_counter() - start)
    return result


def _pipeline(endpoint: str, bucket: str, photos: list[bytes], prefix: str,
              poller: SqsPoller) -> tuple[float, float, dict[str, int]]:
    """Upload with the poller stopped (events wait in the queue, as behind a busy function), then time
    from starting the poller to the last row embedded (thumbnails written): (upload s, pipeline s, counts)."""
    s3 = aws_client("s3", endpoint)
    catalog = runtime.catalog()
    collection = runtime.ingestor().collection_for(bucket)
    before = queries.counts(catalog, collection)["embedded"]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"{prefix}/{i:05d}.jpg", Body=photos[i],
                                              ContentType="image/jpeg"), range(len(photos))))
    uploaded = time.perf_counter() - start
    start, cpu, servers = time.perf_counter(), _cpu_seconds(), _server_cpu_seconds()
    poller.start()
    try:
        while queries.counts(catalog, collection)["embedded"] - before < len(photos):
            if time.perf_counter() - start > 600:
                raise TimeoutError("the pipeline did not embed every image within 10 minutes")
            time.sleep(0.25)  # polling the catalog costs CPU the pipeline needs
        seconds = time.perf_counter() - start
    finally:
        poller.stop()
    counts = dict(queries.counts(catalog, collection))
    counts["cpu_ms_per_image"] = round((_cpu_seconds() - cpu) / len(photos) * 1000)
    for name, seconds_now in _server_cpu_seconds().items():
        counts[f"{name}_cpu_ms_per_image"] = round((seconds_now - servers[name]) / len(photos) * 1000)
    return uploaded, seconds, counts


def run(quick: bool = False) -> str:
    from functions import embed as embed_function

    embed_function.logger.setLevel("WARNING")  # one JSON line per object would bury the report

    model_dir = ensure_test_model("b32")
    count = 32 if quick else 256
    photos = _photos(count, 8 if quick else 32)
    with tempfile.TemporaryDirectory(prefix="ib-bench-ingest-") as tmp, _moto_process() as endpoint:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        bucket = "bench-ingest"
        queue_url = wire_bucket_to_queue(endpoint, bucket, "bench-ingest-events")
        env = {"IB_DATABASE_URL": url, "IB_S3_ENDPOINT_URL": endpoint, "IB_S3_ACCESS_KEY_ID": "test",
               "IB_S3_SECRET_ACCESS_KEY": "test", "IB_BUCKET": bucket, "IB_MODEL": str(model_dir),
               "IB_EMBED_BATCH_SIZE": str(BATCH_SIZE)}
        try:
            with _env(env):
                sample = photos[: min(len(photos), 64 if quick else 128)]
                raw_before = _raw_model(sample)
                poller = SqsPoller(aws_client("sqs", endpoint), queue_url, embed_function.handler,
                                   batch_size=SQS_BATCH, batching_window=SQS_WINDOW, visibility_timeout=60,
                                   concurrency=SQS_CONCURRENCY)
                _pipeline(endpoint, bucket, photos[:BATCH_SIZE], "warmup", poller)  # cold start out of the way
                poller.stats = PollStats()
                uploaded, seconds, counts = _pipeline(endpoint, bucket, photos, "run", poller)
                stats = poller.stats
                raw_after = _raw_model(sample)  # the machine may be busier or quieter than at the start
        finally:
            pg.stop()
    raw_full = (raw_before["with_preprocess"] + raw_after["with_preprocess"]) / 2
    raw_model = (raw_before["onnx_only"] + raw_after["onnx_only"]) / 2
    raw_cpu = (raw_before["cpu_ms"] + raw_after["cpu_ms"]) / 2
    cpu_per_image = counts.pop("cpu_ms_per_image")
    moto_cpu, pg_cpu = counts.pop("moto_cpu_ms_per_image"), counts.pop("postgres_cpu_ms_per_image")
    budget = 1000 * (os.cpu_count() or 1) / (count / seconds)  # CPU-ms the cores offer per image at this rate
    per_minute = count / seconds * 60
    lines = [
        "## Ingestion end to end",
        "",
        f"Command: `python -m bench.bench_ingest{' --quick' if quick else ''}` (part of `make bench`). "
        f"{count} JPEG photos ({', '.join(f'{w}x{h}' for w, h in PHOTO_SIZES)}, "
        f"~{np.mean([len(p) for p in photos]) / 1e3:.0f} kB each) "
        f"uploaded with 8 parallel PUTs to moto S3 ({uploaded:.1f} s, not timed below); S3 notifications -> SQS "
        f"-> poller (BatchSize {SQS_BATCH}, batching window {SQS_WINDOW:.0f} s, Lambda's event shape) -> "
        "`functions.embed.handler` -> embedded PostgreSQL. Timed from starting the poller on the full queue "
        "until the last row has its vector (thumbnails are written before). Model: ViT-B/32-shaped test "
        f"model, fp32, batch {BATCH_SIZE}, warm (a first batch took the cold start).",
        "",
        "| measure | images/s | images/min |",
        "|---|---:|---:|",
        f"| raw model: preprocessing + ONNX on decoded images in memory | {raw_full:,.1f} | {raw_full * 60:,.0f} |",
        f"| raw model: ONNX visual tower only (preprocessed input) | {raw_model:,.1f} | {raw_model * 60:,.0f} |",
        f"| **end to end: S3 object -> row with vector + thumbnail** | **{per_minute / 60:,.1f}** | "
        f"**{per_minute:,.0f}** |",
        "",
        f"Pipeline / raw model with preprocessing: **{per_minute / 60 / raw_full:.0%}**; pipeline / ONNX call "
        f"alone: {per_minute / 60 / raw_model:.0%}. Raw figures are the mean of a run before and one after the "
        "pipeline. The seed did about 60 images/min.",
        "",
        "Where the rest goes, measured in the same run (CPU-ms per image; the cores offer "
        f"{budget:.0f} at this rate):",
        "",
        "| process | CPU-ms / image |",
        "|---|---:|",
        f"| the model alone, raw run (preprocessing + ONNX) | {raw_cpu:.0f} |",
        f"| this process end to end: model + S3 GET/PUT (boto3), JPEG decode, WebP thumbnail, catalog, SQS "
        f"| {cpu_per_image} |",
        f"| moto (the local S3 + SQS: GET, thumbnail PUT, notifications, receive/delete) | {moto_cpu} |",
        f"| PostgreSQL | {pg_cpu} |",
        "",
        f"The pipeline's own overhead over the model is {cpu_per_image - raw_cpu:.0f} CPU-ms per image "
        f"({raw_cpu / cpu_per_image:.0%} of this process's CPU goes to the model). On this 2-core machine the "
        "local S3/SQS server competes for the same cores; in production S3 and SQS run elsewhere. "
        f"Reads, decoding, thumbnails and preprocessing run in worker threads; {get_settings().image_model_calls} "
        f"image batches of {BATCH_SIZE} run in the model side by side (IB_EMBED_PARALLEL), and the poller runs "
        f"{SQS_CONCURRENCY} invocations at once (MaximumConcurrency), so one invocation's start and end overlap "
        "another's middle.",
        "",
        f"The poller made {stats.invocations} invocations for {stats.received} messages (image events and the "
        f"skipped events of our own thumbnail writes); {stats.failed} messages failed. Catalog after the run: "
        f"{counts}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
