"""Reliability costs: the input check every API request passes, recovering the pool after every backend
is killed, and the local bucket copy `make dev` keeps on disk.

- `check_request` (shared/api/validation.py) on a /api/search request with seven parameters, timed directly.
- Pool recovery (shared/store/db.py): a pool of 8 warm connections, every backend terminated, then 8 threads
  query at once; the first answer's latency, against the same 8 queries on a warm pool. Then 6 threads
  querying for a few seconds while every backend is killed every second: answers, errors, losses seen.
- Bucket copy (shared/dev/bucket_store.py): first save, a save with nothing changed (what the stack runs
  every 2 s), a save after 1 % changed, and a restore into an empty bucket, against moto on 127.0.0.1.

    python -m bench.bench_reliability [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from starlette.requests import Request

from bench.bench_search import percentiles
from shared.api.routes import search as search_routes
from shared.api.validation import check_request
from shared.dev.bucket_store import LISTING_SHARE, SAVE_EVERY_SECONDS, BucketStore
from shared.dev.local_services import EmbeddedPostgres, MotoServer, aws_client
from shared.store.db import Database

QUERY = (b"q=a+red+car+in+the+snow&limit=30&min_score=0.2&prefix=photos%2F2024%2F&after=2024-01-01"
         b"&type=jpeg&cursor=eyJrIjoidiIsImQiOjAuNSwiaSI6MTIzfQ")
KILL_ALL = ("SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'ib-bench-kill') AS t")


def check_us(blocks: int, per_block: int = 100) -> tuple[float, float]:
    """Median and p95 µs per `check_request` call on one /api/search request (request parsing included),
    from blocks of calls inside one coroutine."""
    route = next(route for route in search_routes.router.routes if getattr(route, "path", "") == "/search")
    scope = {"type": "http", "method": "GET", "path": "/api/search", "query_string": QUERY, "headers": [],
             "path_params": {}, "route": route}

    async def block() -> float:
        started = time.perf_counter()
        for _ in range(per_block):
            await check_request(Request(scope))
        return (time.perf_counter() - started) * 1e6 / per_block

    loop = asyncio.new_event_loop()
    samples = [loop.run_until_complete(block()) for _ in range(blocks)]
    loop.close()
    return percentiles(samples)


def parallel_first_answers(db: Database, threads: int) -> float:
    """ms until every one of `threads` simultaneous queries has answered."""
    started = time.perf_counter()
    workers = [threading.Thread(target=db.run, args=("SELECT 1",)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - started) * 1000


def pool_recovery(url: str, rounds: int) -> dict[str, float]:
    db, killer = Database(f"{url}&application_name=ib-bench-kill", max_size=8), Database(url, max_size=1)
    warm, recovered, connects = [], [], []
    for _ in range(rounds):
        parallel_first_answers(db, 8)  # 8 pooled connections
        warm.append(parallel_first_answers(db, 8))
        killer.run(KILL_ALL)
        recovered.append(parallel_first_answers(db, 8))
        started = time.perf_counter()
        with db.connection(fresh=True):
            connects.append((time.perf_counter() - started) * 1000)
    db.close()
    killer.close()
    return {"warm": statistics.median(warm), "recovered": statistics.median(recovered),
            "connect": statistics.median(connects)}


def under_kills(url: str, seconds: float) -> dict[str, float]:
    """6 threads querying while every backend is killed every second."""
    db, killer = Database(f"{url}&application_name=ib-bench-kill", max_size=6), Database(url, max_size=1)
    stop, answers, errors = threading.Event(), [0] * 6, [0] * 6

    def client(number: int) -> None:
        while not stop.is_set():
            try:
                db.run("SELECT 1 FROM pg_sleep(0.001)")
                answers[number] += 1
            except Exception:  # counted: the figure is how many there were
                errors[number] += 1

    workers = [threading.Thread(target=client, args=(number,)) for number in range(6)]
    for worker in workers:
        worker.start()
    killed = rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop.wait(1.0)
        killed += killer.run(KILL_ALL)[0][0]
        rounds += 1
    stop.set()
    for worker in workers:
        worker.join()
    result = {"answers": sum(answers), "errors": sum(errors), "rounds": rounds, "killed": killed,
              "lost": db.lost_connections, "seconds": seconds}
    db.close()
    killer.close()
    return result


def bucket_copy(endpoint: str, count: int, size: int) -> dict[str, float]:
    s3 = aws_client("s3", endpoint)
    bucket, fresh = "bench-copy", "bench-copy-restored"
    for name in (bucket, fresh):
        s3.create_bucket(Bucket=name)
    for i in range(count):
        s3.put_object(Bucket=bucket, Key=f"photos/{i:05d}.jpg", Body=i.to_bytes(4, "big") * (size // 4))
    with tempfile.TemporaryDirectory(prefix="ib-bench-copy-") as tmp:
        store = BucketStore(s3, bucket, Path(tmp))
        timings = {"first": timed_s(store.save), "unchanged": timed_s(store.save)}
        for i in range(0, count, 100):  # 1 % overwritten
            s3.put_object(Bucket=bucket, Key=f"photos/{i:05d}.jpg", Body=b"changed" * (size // 7))
        timings["one_percent"] = timed_s(store.save)
        (Path(tmp) / "manifests" / f"{bucket}.json").rename(Path(tmp) / "manifests" / f"{fresh}.json")
        timings["restore"] = timed_s(BucketStore(s3, fresh, Path(tmp)).restore)
    return timings


def timed_s(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def run(quick: bool = False) -> str:
    check_median, check_p95 = check_us(20 if quick else 200)
    count, size = (200, 20_000) if quick else (2_000, 50_000)
    with tempfile.TemporaryDirectory(prefix="ib-bench-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg")
        url = server.start()
        try:
            recovery = pool_recovery(url, 5 if quick else 20)
            kills = under_kills(url, 3.0 if quick else 10.0)
        finally:
            server.stop()
    moto = MotoServer().start()
    try:
        copy = bucket_copy(moto.endpoint, count, size)
    finally:
        moto.stop()
    megabytes = count * size / 1e6
    period = max(SAVE_EVERY_SECONDS, copy["unchanged"] * (LISTING_SHARE + 1))
    return "\n".join([
        "## Reliability: input checks, pool recovery, the local bucket copy",
        "",
        "`bench/bench_reliability.py`.",
        "",
        f"- **Input check** (`check_request`, run before every /api route): {check_median:.1f} µs median, "
        f"{check_p95:.1f} µs p95 for a /api/search request with seven parameters.",
        f"- **Pool recovery** (8 pooled connections, every backend terminated): 8 simultaneous queries all answer "
        f"in {recovery['recovered']:.1f} ms (median), against {recovery['warm']:.1f} ms on the warm pool: each "
        "finds its connection dead once, the pool is dropped, and the retry opens a new connection (one new "
        f"connection alone takes {recovery['connect']:.1f} ms here: PostgreSQL starts a process for it).",
        f"- **Under repeated kills**: 6 threads querying for {kills['seconds']:.0f} s while every backend was "
        f"terminated once a second ({kills['rounds']} rounds, {kills['killed']} backends): "
        f"{kills['answers']:,} answers, {kills['errors']} errors; {kills['lost']} dead connections found (the "
        "first one found after a kill drops the whole pool, so the others are never tried).",
        "",
        f"Bucket copy of `make dev` ({count:,} objects of {size // 1000} KB, {megabytes:.0f} MB, moto on 127.0.0.1):",
        "",
        "| step | seconds | objects/s |",
        "| --- | ---: | ---: |",
        f"| first save (every object read and written) | {copy['first']:.2f} | {count / copy['first']:,.0f} |",
        f"| save with nothing changed (the periodic one while running) | {copy['unchanged']:.3f} | — |",
        f"| save after 1 % was overwritten | {copy['one_percent']:.3f} | — |",
        f"| restore into an empty bucket (start) | {copy['restore']:.2f} | {count / copy['restore']:,.0f} |",
        "",
        f"With nothing changed the stack's copy of this bucket runs every {period:.1f} s (every "
        f"{SAVE_EVERY_SECONDS:.0f} s, or {LISTING_SHARE} times the listing's own time after it if that is longer).",
    ])


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
