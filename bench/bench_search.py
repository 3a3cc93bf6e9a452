"""Vector search and the HTTP API at 10k and 100k images: HNSW latency and recall, exact scans, HTTP
latency and throughput, storage per image, index build time.

Data: synthetic 512-d unit vectors with CLIP-like structure (see `clustered_vectors`), stored as
halfvec in a collection made by the real catalog code; rows are loaded first (binary COPY) and the
HNSW index is built afterwards with the catalog's parameters (`hnsw_index_sql`). Queries are
held-out vectors from the same distribution; ground truth is an exact numpy scan over the stored
(half-precision) vectors. The HTTP server is uvicorn running `functions/api.py`'s app in its own
process, with the random-weight ViT-B/32-shaped test model for text queries (encode cost is real).

    python -m bench.bench_search [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np

from bench.hybrid_queries import KINDS, measure, photo_keys, word_queries
from shared.config import DEFAULT_HNSW_EF_SEARCH
from shared.dev.local_services import EmbeddedPostgres, free_port
from shared.search.keywords import name_words
from shared.store import queries as catalog_queries
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.hnsw import ef_search_for
from shared.store.tables import HNSW_EF_CONSTRUCTION, HNSW_M, added_indexes_sql, hnsw_index_sql
from shared.store.vectors import vector_literal
from tests.fixtures.model import ensure_test_model

DIM = 512
K = 30
MILLION = 1_000_000  # `make bench SCALE=1m` adds this size
API_WORKERS = os.cpu_count() or 1  # uvicorn's worker processes
# Requests before the throughput run, not counted: a cold server opens its connections and plans its statements
# (in one check, its first 300 requests ran at 154 req/s and the next 2,000 at 260).
WARM_REQUESTS = 300
CHUNK = 100_000  # rows generated and copied at once
# Before any timing the whole graph is walked once, so the index's and the table's pages are in shared buffers, as
# in a collection in use whose index fits in memory (docs/sizing.md). pg_prewarm, which would read them, is a
# contrib extension the embedded server lacks; queries alone warm a million rows' 1.6-GB graph slowly (p50 11.9 ms
# at ef_search 200 after 20 queries, 8.1 ms after 220, and reads from the OS cache in most queries after 700).
WALK_MEMORY = "256MB"  # work_mem of the walk: pgvector's iterative scan keeps its visited set within 8x this


def warm_index(catalog: Catalog, coll: Collection) -> float:
    """Read every page of the collection's HNSW graph and table into shared buffers: one iterative index scan
    with a filter no row passes, so it visits every element (and its row). Returns the seconds it took."""
    q = quote_ident(coll.table)
    probe = vector_literal(clustered_vectors(1, seed=0, clusters=1)[0])

    def walk(conn: object) -> float:
        for name, value in (("hnsw.iterative_scan", "relaxed_order"), ("hnsw.max_scan_tuples", "2000000000"),
                            ("hnsw.scan_mem_multiplier", "8"), ("hnsw.ef_search", "1000"),
                            ("work_mem", WALK_MEMORY)):
            conn.run("SELECT set_config(:name, :value, true)", name=name, value=value)  # type: ignore[attr-defined]
        started = time.perf_counter()
        conn.run(f"SELECT id FROM {q} WHERE embedding IS NOT NULL AND length(key) < 0 "  # type: ignore[attr-defined]
                 "ORDER BY embedding <#> CAST(:v AS halfvec) LIMIT 1", v=probe)
        return time.perf_counter() - started

    return catalog.db.transaction(walk)


BUILD_MEMORY = "3GB"  # maintenance_work_mem for index builds: a million rows' HNSW graph fits
HYBRID_FLOOR = 0.2  # the cutoff floor of OpenAI CLIP models (Settings.search_floor), for the clustered scores
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TEXTS = ["a dog on the beach", "birthday cake", "snowy mountains", "red car", "city at night",
         "a cat on a sofa", "plate of pasta", "children playing football", "old portrait", "forest trail"]


def storage_note(results: list[dict]) -> str:
    largest = results[-1]
    return (
        "Storage: a 512-d halfvec takes 1,032 B in the table row and again in its HNSW element, which also holds "
        f"its neighbour lists (m {HNSW_M}: {largest['index_bytes_per_image']:,.0f} B per element as pages fill; "
        "1,366 B at m 16), so row + index cannot go much below ~2.5 KB per image even with no other column. "
        "With the key, its words and their keyword index "
        f"({largest['words_bytes_per_image']:,.0f} B), etag, timestamps and the b-tree indexes the catalog needs, "
        f"it is {largest['bytes_per_image'] / 1000:.1f} KB at {largest['n']:,} rows: the goal of 2.6 KB is not met."
    )


# ---- data ---------------------------------------------------------------------------------------------


def clustered_vectors(n: int, dim: int = DIM, *, seed: int = 0, clusters: int | None = None) -> np.ndarray:
    """CLIP-like unit vectors: a shared direction, Zipf-sized clusters around it, noise within.

    CLIP image embeddings are far from uniform on the sphere: they share a large common component
    (unrelated photos still have cosine ~0.5) and form many clusters of very different sizes (one
    per subject, event, burst of shots). So: x = normalise(0.8·g + c_k + 0.55·e), with g a fixed unit
    vector, c_k a cluster centre ~ N(0, I/dim) (norm ~1), e ~ N(0, I/dim), and cluster k drawn with
    probability ∝ 1/(k+10) over n/50 clusters. Unrelated pairs then score ~0.4, same-cluster pairs
    ~0.75, as CLIP ViT-B/32 photos do. Uniform random vectors, HNSW's worst case, would be unlike this.
    """
    rng = np.random.default_rng(seed)
    clusters = clusters or max(10, n // 50)
    shared = np.random.default_rng(12345).normal(size=dim)
    shared /= np.linalg.norm(shared)
    centres = np.random.default_rng(54321).normal(size=(clusters, dim)) / np.sqrt(dim)
    weights = 1.0 / (np.arange(clusters) + 10.0)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):  # in chunks: a million float64 rows at once would take 4 GB
        part = 0.8 * shared + centres[labels[start:start + CHUNK]] \
            + 0.55 * rng.normal(size=(len(labels[start:start + CHUNK]), dim)) / np.sqrt(dim)
        out[start:start + CHUNK] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def copy_rows(catalog: Catalog, coll: Collection, vectors: np.ndarray) -> list[str]:
    """Binary COPY of embedded rows with realistic keys (`photo_keys`), their keyword-index words, sizes and
    dates, CHUNK rows per COPY; returns the keys."""
    n, dim = vectors.shape
    keys, times = photo_keys(n)
    q = quote_ident(coll.table)
    vector_head = struct.pack("!ihh", 4 + 2 * dim, dim, 0)
    status, ctype = b"embedded", b"image/jpeg"
    for start in range(0, n, CHUNK):
        halves = vectors[start:start + CHUNK].astype(">f2")  # halfvec binary: int16 dim, int16 0, big-endian halves
        out = io.BytesIO()
        out.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
        for i in range(start, min(n, start + CHUNK)):
            key, words = keys[i].encode(), name_words(keys[i]).encode()
            out.write(struct.pack("!hi", 9, len(key)) + key)
            out.write(struct.pack("!i", len(status)) + status)
            out.write(struct.pack("!iq", 8, 2_000_000 + i * 37 % 900_000))
            out.write(struct.pack("!i", len(ctype)) + ctype)
            out.write(struct.pack("!iiii", 4, 4032, 4, 3024))
            out.write(struct.pack("!iq", 8, int((times[i] - PG_EPOCH) / timedelta(microseconds=1))))
            out.write(vector_head + halves[i - start].tobytes())
            out.write(struct.pack("!i", len(words)) + words)
        out.write(struct.pack("!h", -1))
        out.seek(0)
        catalog.db.run_with_retry(lambda conn, out=out: conn.run(
            f"COPY {q} (key, status, size, content_type, width, height, last_modified, embedding, name_words) "
            "FROM STDIN WITH (FORMAT binary)", stream=out))
    return keys


def build_index(catalog: Catalog, coll: Collection) -> float:
    """(Re)build the catalog's HNSW index on the loaded rows; seconds taken."""
    def build(conn: object) -> float:
        conn.run(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")  # the whole graph in memory: no slow spill
        conn.run("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        conn.run(hnsw_index_sql(coll.table))
        seconds = time.perf_counter() - started
        conn.run("RESET maintenance_work_mem")
        conn.run("RESET max_parallel_maintenance_workers")
        return seconds

    return catalog.db.run_with_retry(build)


def build_word_index(catalog: Catalog, coll: Collection) -> float:
    """(Re)build the keyword index (GIN over the generated tsvector) on the loaded rows; seconds taken."""
    started = time.perf_counter()
    catalog.db.run(next(sql for sql in added_indexes_sql(coll.table) if coll.table + "_words" in sql))
    return time.perf_counter() - started


# ---- measuring ----------------------------------------------------------------------------------------


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def exact_sql(catalog: Catalog, coll: Collection, query: np.ndarray) -> list[list[object]]:
    """The same query without the index: a sequential scan and a top-k sort."""
    q = quote_ident(coll.table)

    def run(conn: object) -> list[list[object]]:
        conn.run("SET LOCAL enable_indexscan = off")
        return conn.run(f"SELECT id FROM {q} WHERE embedding IS NOT NULL AND status = 'embedded' "
                        "ORDER BY embedding <#> CAST(:v AS halfvec) LIMIT 30", v=vector_literal(query))

    return catalog.db.transaction(run)


class ApiServer:
    """uvicorn serving functions/api.py's app in child processes, one per core (API_WORKERS), as a server of the
    API would run it: one Python process answers on one core (its GIL). The client must not share that GIL either."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "functions.api:app", "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning", "--no-access-log", "--workers", str(API_WORKERS)],
            env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the API server did not start within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def http_latency(client: httpx.Client, requests: list[tuple[str, dict[str, object]]]) -> tuple[float, float]:
    samples = []
    for path, params in requests:
        started = time.perf_counter()
        response = client.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return percentiles(samples)


def cpu_seconds(pid: int | None) -> dict[str, float]:
    """CPU seconds used so far: by the process `pid` and its children ("api": uvicorn's workers), by every
    PostgreSQL process ("postgres"; the run's own server is the only one), and by this process (the load generator,
    "client")."""
    import psutil

    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
            return float(times.user + times.system)
        except psutil.Error:  # exited meanwhile
            return 0.0

    api = 0.0
    if pid is not None:
        server = psutil.Process(pid)
        api = sum(used(proc) for proc in [server, *server.children(recursive=True)])
    postgres = [proc for proc in psutil.process_iter(["name"]) if proc.info["name"] == "postgres"]
    return {"api": api, "postgres": sum(used(p) for p in postgres), "client": used(psutil.Process())}


async def _load(host: str, port: int, requests: list[bytes], concurrency: int) -> int:
    """Send `requests` (whole HTTP/1.1 GETs) over `concurrency` keep-alive connections, each waiting for its answer
    before sending the next; how many answered other than 200."""
    pending = iter(requests)  # shared by the connections: one event loop, one thread
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in pending:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")]
                if not lengths:  # the API's answers always carry one; a chunked body would need parsing
                    raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
                await reader.readexactly(lengths[0])
                errors += head[9:12] != b"200"
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return errors


def throughput(base: str, requests: list[tuple[str, dict[str, object]]], concurrency: int,
               server_pid: int | None = None) -> tuple[float, int, dict[str, float]]:
    """Requests per second with `concurrency` clients in flight; how many answered other than 200; and the
    CPU milliseconds per request of the API server (`server_pid` and its workers), PostgreSQL and the load generator.
    The load generator is asyncio on keep-alive sockets, its requests written beforehand: httpx in 16 threads
    cost 1.3 CPU ms per answer, on the cores the API and PostgreSQL share."""
    url = httpx.URL(base)
    wire = [f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()
            for path, params in requests]
    before = cpu_seconds(server_pid)
    started = time.perf_counter()
    errors = asyncio.run(_load(url.host, int(url.port or 80), wire, concurrency))
    elapsed = time.perf_counter() - started
    after = cpu_seconds(server_pid)
    return len(requests) / elapsed, errors, {name: (after[name] - before[name]) * 1000 / len(requests)
                                             for name in after}


# ---- the run ------------------------------------------------------------------------------------------


def load_table(catalog: Catalog, n: int, model_id: str) -> dict:
    """A collection of n clustered rows: loaded with its indexes dropped, then the indexes built and timed."""
    coll = catalog.ensure_collection(f"bench-{n}", model_id, DIM)
    q = quote_ident(coll.table)
    for index in ("_hnsw", "_words"):  # load first, build after
        catalog.db.run(f"DROP INDEX IF EXISTS {quote_ident(coll.table + index)}")
    vectors = clustered_vectors(n, seed=n)
    started = time.perf_counter()
    keys = copy_rows(catalog, coll, vectors)
    load_s = time.perf_counter() - started
    build_s, words_s = build_index(catalog, coll), build_word_index(catalog, coll)
    catalog.db.run(f"VACUUM ANALYZE {q}")
    (total_bytes, index_bytes, words_bytes), = catalog.db.run(
        f"SELECT pg_total_relation_size('{q}'), pg_relation_size('{quote_ident(coll.table + '_hnsw')}'), "
        f"pg_relation_size('{quote_ident(coll.table + '_words')}')")
    ids = np.asarray([row[0] for row in catalog.db.run(f"SELECT id FROM {q} ORDER BY id")])
    return {"coll": coll, "keys": keys, "vectors": vectors, "ids": ids, "n": n, "load_s": load_s,
            "build_s": build_s, "words_build_s": words_s, "bytes_per_image": total_bytes / n,
            "index_bytes_per_image": index_bytes / n, "words_bytes_per_image": words_bytes / n}


def vector_rows(catalog: Catalog, table: dict, efs: tuple[int, ...], n_queries: int, *, exact: bool) -> dict:
    """HNSW latency and recall@30 per ef_search against an exact numpy scan (and the SQL scan, if `exact`)."""
    n, coll = table["n"], table["coll"]
    queries = clustered_vectors(n_queries, seed=n + 1, clusters=max(10, n // 50))
    stored = table["vectors"].astype(np.float16).astype(np.float32)
    brute_ms = []
    truth = np.empty((n_queries, K), dtype=np.int64)
    for i, query in enumerate(queries):
        started = time.perf_counter()
        scores = stored @ query
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        brute_ms.append((time.perf_counter() - started) * 1000)
        truth[i] = table["ids"][top]
    found_exact = {}
    if exact:
        exact_ms = [timed(lambda query=query: exact_sql(catalog, coll, query)) for query in queries[:20]]
        found_exact = {"exact": percentiles(exact_ms), "exact_recall": recall(
            [[row[0] for row in exact_sql(catalog, coll, qv)] for qv in queries[:20]], truth[:20])}
    hnsw_rows = []
    warm_s = warm_index(catalog, coll)
    for ef in efs:
        for query in queries[:20]:  # this ef_search's first queries, not timed
            catalog_queries.search(catalog, coll, query, limit=K, ef_search=ef)
        samples, found = [], []
        for query in queries:
            started = time.perf_counter()
            hits = catalog_queries.search(catalog, coll, query, limit=K, ef_search=ef)
            samples.append((time.perf_counter() - started) * 1000)
            found.append([hit.id for hit in hits])
        p50, p95 = percentiles(samples)
        hnsw_rows.append((ef_search_for(catalog, n, ef), p50, p95, recall(found, truth)))  # as the search ran
    return {"hnsw": hnsw_rows, "brute": percentiles(brute_ms), "n_queries": n_queries, "warm_s": warm_s,
            **found_exact}


def word_rows(catalog: Catalog, table: dict, count: int, *, full: bool) -> dict:
    """Keyword-only and hybrid search (and, if `full`, pictures-only and newest-first) with the realistic
    query mix; a clustered vector stands for each query's encoded text."""
    n, coll = table["n"], table["coll"]
    mix = word_queries(table["keys"], count)
    vectors = clustered_vectors(count, seed=n + 2, clusters=max(10, n // 50))
    runs = {"keyword": ("keyword", "relevance"), "hybrid": ("hybrid", "relevance")}
    if full:
        runs |= {"semantic": ("semantic", "relevance"), "hybrid newest": ("hybrid", "newest")}
    return {name: measure(catalog, coll, mix, vectors, mode=mode, sort=sort, floor=HYBRID_FLOOR)
            for name, (mode, sort) in runs.items()}


def http_rows(table: dict, model_dir: Path, pg_url: str, quick: bool) -> dict:
    """/api/similar and /api/search over HTTP (uvicorn in its own process), and /api/similar's throughput."""
    n, keys, name = table["n"], table["keys"], table["coll"].name
    server = ApiServer({
        "IB_DATABASE_URL": pg_url, "IB_BUCKET": name, "IB_MODEL": str(model_dir),
        "IB_S3_ENDPOINT_URL": "http://127.0.0.1:9000", "IB_S3_ACCESS_KEY_ID": "bench",
        "IB_S3_SECRET_ACCESS_KEY": "bench", "IB_MODEL_THREADS": "1",
    })
    rng = np.random.default_rng(7)
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            sample = [keys[i] for i in rng.choice(n, size=200 if not quick else 40, replace=False)]
            similar = [("/api/similar", {"key": key, "limit": K}) for key in sample]
            http_latency(client, similar[:20])  # warm-up
            similar_lat = http_latency(client, similar)
            cold = [("/api/search", {"q": f"{TEXTS[i % len(TEXTS)]} {i}", "limit": K})
                    for i in range(40 if not quick else 10)]
            search_cold = http_latency(client, cold)
            search_cached = http_latency(client, cold * (3 if not quick else 1))
        warm, load = ([("/api/similar", {"key": keys[i], "limit": K}) for i in rng.choice(n, size=size)]
                      for size in (WARM_REQUESTS, 2000 if not quick else 300))
        throughput(server.base, warm, concurrency=16)  # not counted: the pools fill, the statements get planned
        rps, errors, cpu_ms = throughput(server.base, load, concurrency=16, server_pid=server.process.pid)
    finally:
        server.stop()
    return {"similar": similar_lat, "search_cold": search_cold, "search_cached": search_cached, "rps": rps,
            "errors": errors, "load_requests": len(load), "cpu_ms": cpu_ms}


def bench_size(catalog: Catalog, n: int, *, model_id: str, model_dir: Path, pg_url: str, quick: bool) -> dict:
    """Every measure at n rows; the million-row point (SCALE=1m) takes the default ef_search and no HTTP."""
    full = n < MILLION
    table = load_table(catalog, n, model_id)
    efs = (40, 64, DEFAULT_HNSW_EF_SEARCH, 100, 128) if full and not quick else (40, 100) if full else (
        DEFAULT_HNSW_EF_SEARCH,)
    result = {key: value for key, value in table.items() if key not in ("coll", "keys", "vectors", "ids")}
    result |= vector_rows(catalog, table, efs, (50 if quick else 300) if full else 200, exact=full)
    result["words"] = word_rows(catalog, table, 40 if quick else 200 if full else 100, full=full)
    if full:
        result |= http_rows(table, model_dir, pg_url, quick)
    return result


def run(quick: bool = False) -> str:
    model_dir = ensure_test_model("b32")
    from shared.config import load_settings
    from shared.embedders import load

    model_id = load(str(model_dir), load_settings()).model_id
    sizes = bench_sizes((2_000,) if quick else (10_000, 100_000))
    results = []
    with bench_catalog("ib-bench-search-") as (catalog, pg_url):
        ((huge_pages,),) = catalog.db.run("SHOW huge_pages_status")
        for n in sizes:
            print(f"   search: {n:,} rows", file=sys.stderr, flush=True)
            results.append(bench_size(catalog, n, model_id=model_id, model_dir=model_dir, pg_url=pg_url,
                                      quick=quick))
            catalog.db.run(f"DROP TABLE {quote_ident(catalog.get_collection(f'bench-{n}').table)}")
            catalog.db.run("DELETE FROM ib_collections WHERE name = :name", name=f"bench-{n}")
    return render(results, quick, huge_pages=huge_pages)


def bench_sizes(sizes: tuple[int, ...]) -> tuple[int, ...]:
    """`sizes`, and the million-row point when `make bench SCALE=1m` asks for it."""
    return sizes + ((MILLION,) if os.environ.get("SCALE", "").lower() == "1m" else ())


def shared_buffers_mb() -> int:
    """A quarter of the machine's memory, as RDS and Aurora set shared_buffers by default (initdb's 128 MB
    would read a 100,000-photo collection's pages through the OS at every search)."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**20)


HUGE_PAGES = Path("/proc/sys/vm/nr_hugepages")
SHARED_MEMORY_BESIDES_BUFFERS_MB = 256  # PostgreSQL 18's other shared memory: ~200 MB beside 6 GB of buffers


def huge_page_kb() -> int | None:
    """The kernel's huge page size in kB (2,048 on x86-64), None where it has none."""
    meminfo = Path("/proc/meminfo")
    lines = meminfo.read_text().splitlines() if meminfo.exists() else []
    return next((int(line.split()[1]) for line in lines if line.startswith("Hugepagesize:")), None)


@contextmanager
def huge_pages_for(megabytes: int) -> Iterator[None]:
    """Huge pages reserved for a server's shared memory while the block runs, as RDS runs PostgreSQL on all its
    instance classes but micro, small and medium (huge_pages on); PostgreSQL's default, huge_pages = try, takes
    them when there are enough. A million rows' graph and table (3 GB) in 4-kB pages cost a page-table walk at
    most element reads: searches at 1,000,000 rows were ~15 % faster in 2-MB pages (p50 7.2 against 8.4 ms, ten
    restarts each), none faster at 100,000. Reserving needs root (vm.nr_hugepages); without it nothing changes.
    The earlier count is put back after."""
    size_kb = huge_page_kb()
    if size_kb is None or not os.access(HUGE_PAGES, os.W_OK):  # no huge pages, or not root
        yield
        return
    before, reserved = int(HUGE_PAGES.read_text()), False
    with suppress(OSError):  # /proc/sys is read-only in most containers
        HUGE_PAGES.write_text(str(before + math.ceil((megabytes + SHARED_MEMORY_BESIDES_BUFFERS_MB) * 1024 / size_kb)))
        reserved = True
    try:
        yield
    finally:
        if reserved:
            HUGE_PAGES.write_text(str(before))


@contextmanager
def bench_catalog(prefix: str) -> Iterator[tuple[Catalog, str]]:
    """(catalog, URL) on IB_BENCH_DATABASE_URL, else on an embedded PostgreSQL of the run's own (in huge pages
    when the run may reserve them: `huge_pages_for`)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, ExitStack() as pages:
        server = None
        pg_url = os.environ.get("IB_BENCH_DATABASE_URL")
        if not pg_url:
            buffers_mb = shared_buffers_mb()
            pages.enter_context(huge_pages_for(buffers_mb))
            server = EmbeddedPostgres(Path(tmp) / "pg")
            pg_url = server.start(shared_buffers_mb=buffers_mb)
        catalog = Catalog.from_url(pg_url)
        try:
            yield catalog, pg_url
        finally:
            catalog.db.close()
            if server:
                server.stop()


def render(results: list[dict], quick: bool, *, huge_pages: str) -> str:
    million = [ef for result in results if result["n"] >= MILLION for ef, *_ in result["hnsw"]]
    grown = f": {million[0]} at {MILLION:,} rows" if million else ""
    walked = ", ".join(f"{r['warm_s']:.1f} s at {r['n']:,} rows" for r in results)
    lines = [
        "## Search (`bench/bench_search.py`)",
        "",
        f"Command: `python -m bench.bench_search{' --quick' if quick else ''}` (part of `make bench`; "
        "`make bench SCALE=1m` adds the 1,000,000-row point). "
        "512-d halfvec rows with CLIP-like clustered vectors (shared direction + Zipf-sized clusters + noise; "
        "see `clustered_vectors`) and camera-roll keys (dated folders, some named after an event, camera file "
        "names whose counters wrap; `bench/hybrid_queries.py`), loaded by binary COPY, then the catalog's HNSW "
        f"index (m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}) built with maintenance_work_mem "
        f"{BUILD_MEMORY} and 2 parallel workers, and the keyword index (GIN over the names' words). Queries are "
        "held-out vectors from the same distribution, timed after one walk of the whole graph has read the index "
        "and the table into shared buffers, as in a collection in use whose index fits in memory (`warm_index`: an "
        f"iterative scan with a filter no row passes; {walked}); recall@30 is against an exact numpy scan of the "
        "stored half-precision vectors. HNSW times are `Catalog.search` end to end through pg8000 "
        "(one statement: `set_config` of ef_search and iterative scan for its transaction, then the query; "
        f"the server's default is `IB_HNSW_EF_SEARCH` = {DEFAULT_HNSW_EF_SEARCH}, the value up to 100,000 rows, grown "
        f"with the row count above{grown}). The embedded server runs with shared_buffers a quarter of the machine's "
        "memory, as RDS and Aurora set it by default (initdb's 128 MB read most index pages through the OS, in "
        "runs before 2026-12-03), in 2-MB huge pages when the run may reserve them (root: `huge_pages_for`), as RDS "
        f"runs it on all but its micro, small and medium classes: **huge pages {huge_pages}** in this run. "
        f"HTTP: uvicorn ({API_WORKERS} worker processes, one per core; httptools and uvloop) serving "
        "`functions/api.py`'s app, 30 results per answer, presigned URLs included; text queries encode with the "
        "ViT-B/32-shaped test model (1 thread) — *cold* = every text new, *cached* = repeated texts (LRU hit); "
        "they run in the default hybrid mode. The throughput run's load generator is asyncio on 16 keep-alive "
        f"sockets (`throughput`), timed after {WARM_REQUESTS} requests at the same concurrency that are not counted "
        "(a server under steady load: each worker has opened its pooled connections, each of PostgreSQL's new "
        "backends has parsed and planned its statements); its CPU per answer, the API's and PostgreSQL's say what "
        "bounds the rate: the three share this machine's cores.",
        "",
        "| rows | HNSW ef_search | p50 ms | p95 ms | recall@30 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for ef, p50, p95, rec in r["hnsw"]:
            lines.append(f"| {r['n']:,} | {ef} | {p50:.2f} | {p95:.2f} | {rec:.3f} |")
    lines += [
        "",
        "| rows | exact SQL scan p50 / p95 ms (recall) | numpy brute force p50 / p95 ms | "
        "load s | HNSW build s | keyword index build s | bytes / image (all) | of which HNSW | of which keyword "
        "index |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        exact = f"{r['exact'][0]:.1f} / {r['exact'][1]:.1f} ({r['exact_recall']:.3f})" if "exact" in r else "–"
        lines.append(
            f"| {r['n']:,} | {exact} | {r['brute'][0]:.2f} / {r['brute'][1]:.2f} | {r['load_s']:.1f} | "
            f"{r['build_s']:.1f} | {r['words_build_s']:.1f} | {r['bytes_per_image']:,.0f} | "
            f"{r['index_bytes_per_image']:,.0f} | {r['words_bytes_per_image']:,.0f} |"
        )
    lines += render_words(results)
    lines += [
        "",
        "| rows | `/api/similar` p50 / p95 ms | `/api/search` cold p50 / p95 ms | `/api/search` cached p50 / p95 ms "
        "| `/api/similar` req/s at concurrency 16 | CPU ms per answer: API / PostgreSQL / load generator "
        "| errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "similar" not in r:
            continue
        lines.append(
            f"| {r['n']:,} | {r['similar'][0]:.1f} / {r['similar'][1]:.1f} | "
            f"{r['search_cold'][0]:.1f} / {r['search_cold'][1]:.1f} | "
            f"{r['search_cached'][0]:.1f} / {r['search_cached'][1]:.1f} | {r['rps']:,.0f} | "
            f"{r['cpu_ms']['api']:.1f} / {r['cpu_ms']['postgres']:.1f} / {r['cpu_ms']['client']:.1f} | "
            f"{r['errors']} of {r['load_requests']:,} |"
        )
    lines += ["", throughput_note(results), "", storage_note(results)]
    return "\n".join(lines)


def throughput_note(results: list[dict]) -> str:
    """What the machine's cores allow: the API, PostgreSQL and the load generator share them, so the rate cannot pass
    cores / (their CPU per answer)."""
    measured = [r for r in results if "similar" in r]
    if not measured:
        return ""
    r, cores = measured[-1], os.cpu_count() or 1
    per_answer = sum(r["cpu_ms"].values())
    return (f"The three share this machine's {cores} cores: at {per_answer:.1f} CPU ms per answer (API + PostgreSQL + "
            f"load generator, {r['n']:,} rows), the cores allow at most {cores * 1000 / per_answer:,.0f} req/s; "
            f"300 req/s needs {cores * 1000 / 300:.1f} ms or less, PostgreSQL's share alone being "
            f"{r['cpu_ms']['postgres']:.1f}.")


def render_words(results: list[dict]) -> list[str]:
    kinds = list(KINDS)
    lines = [
        "",
        "Keyword and hybrid search (`hybrid.search`, issue 13): a first page of 30 as `/api/search` computes it, "
        "server side without text encoding (the registry read, the newest row id, the word and picture lists, "
        "fusion, the cutoff with floor 0.2, the page's rows); a clustered vector stands for each query's encoded "
        f"text. The query mix, drawn from the keys: {', '.join(f'{k} {v:.0%}' for k, v in KINDS.items())} "
        "(e.g. `IMG_2041`, `IMG_204`, `beach trip`, `2019-07-15`, `2019`). *found* = share of queries with a result.",
        "",
        "| rows | search | p50 ms | p95 ms | " + " | ".join(f"p95 {kind}" for kind in kinds) + " | found |",
        "|---:|---|---:|---:|" + "---:|" * len(kinds) + "---:|",
    ]
    for r in results:
        for name, m in r["words"].items():
            per_kind = " | ".join(f"{m['kinds'][kind][1]:.2f}" if kind in m["kinds"] else "–" for kind in kinds)
            lines.append(f"| {r['n']:,} | {name} | {m['all'][0]:.2f} | {m['all'][1]:.2f} | {per_kind} | "
                         f"{m['found']:.0%} |")
    return lines


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
