"""Vector values between Python and PostgreSQL: pgvector-python's adapters against hand-written text.

Writes: each 512-d unit vector goes in as one statement's parameter (`CAST(:v AS halfvec)`, as
`store_embedding` sends it): the hand-written `%.6g` text, a numpy array through pgvector's registered
adapter (`Vector` text, full float32 digits) and a `HalfVector` (float16 digits). Reads: every row's
halfvec in one statement, as numpy float32 arrays: through pgvector's `HalfVector` in-adapter, and as
`embedding::text` split by numpy. Also the conversion alone, without the database.

    python -m bench.bench_vectors [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pg8000.converters import make_param
from pgvector import HalfVector

from bench.bench_search import bench_catalog
from shared.store.catalog import Catalog
from shared.store.db import quote_ident

DIM = 512
TABLE = "bench_vector_values"
ROUNDS = 3


def literal(vector: np.ndarray) -> str:
    """The hand-written text form the catalog used before pgvector-python (6 significant digits)."""
    return "[" + ",".join(f"{value:.6g}" for value in vector.tolist()) + "]"


WRITES: dict[str, Callable[[np.ndarray], Any]] = {
    "hand-written text (`%.6g`)": literal,
    "pgvector: numpy array (registered adapter)": lambda vector: vector,
    "pgvector: `HalfVector(array)`": HalfVector,
}


def read_text(catalog: Catalog) -> list[np.ndarray]:
    rows = catalog.db.run(f"SELECT embedding::text FROM {TABLE} ORDER BY id")
    return [np.array(text[1:-1].split(","), dtype=np.float32) for (text,) in rows]


def read_adapter(catalog: Catalog) -> list[np.ndarray]:
    rows = catalog.db.run(f"SELECT embedding FROM {TABLE} ORDER BY id")
    return [value.to_numpy().astype(np.float32) for (value,) in rows]


READS: dict[str, Callable[[Catalog], list[np.ndarray]]] = {
    "pgvector: `HalfVector` in-adapter, `.to_numpy()`": read_adapter,
    "hand-written: `embedding::text` split by numpy": read_text,
}


def unit_vectors(n: int) -> np.ndarray:
    vectors = np.random.default_rng(7).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def time_write(catalog: Catalog, vectors: np.ndarray, convert: Callable[[np.ndarray], Any]) -> tuple[float, float]:
    """(µs per vector to convert alone, µs per vector for a one-row INSERT with the conversion)."""
    with catalog.db.connection() as conn:  # the text pg8000 sends: the registered adapter's, or ours
        started = time.perf_counter()
        for vector in vectors:
            make_param(conn.py_types, convert(vector))
        alone = (time.perf_counter() - started) / len(vectors) * 1e6
    catalog.db.run(f"TRUNCATE {TABLE}")

    def insert_all(conn: Any) -> None:
        for vector in vectors:
            conn.run(f"INSERT INTO {TABLE} (embedding) VALUES (CAST(:v AS halfvec))", v=convert(vector))

    started = time.perf_counter()
    catalog.db.run_with_retry(insert_all)
    return alone, (time.perf_counter() - started) / len(vectors) * 1e6


def time_read(catalog: Catalog, read: Callable[[Catalog], list[np.ndarray]], vectors: np.ndarray) -> float:
    """ms to read every row's vector as numpy float32, checked against what was written."""
    started = time.perf_counter()
    values = read(catalog)
    took = (time.perf_counter() - started) * 1000
    np.testing.assert_allclose(np.vstack(values), vectors, atol=1e-3)
    return took


def run(quick: bool = False) -> str:
    n = 1000 if quick else 10_000
    vectors = unit_vectors(n)
    with bench_catalog("ib-bench-vectors-") as (catalog, _url):
        catalog.ensure_schema()
        catalog.db.run(f"DROP TABLE IF EXISTS {quote_ident(TABLE)}")
        catalog.db.run(f"CREATE TABLE {TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                       f"embedding halfvec({DIM}))")
        # Interleaved rounds, best of each: the machine is shared, and the slowest rounds measure the neighbours.
        rounds = [{label: time_write(catalog, vectors, convert) for label, convert in WRITES.items()}
                  for _ in range(ROUNDS)]
        writes = {label: (min(r[label][0] for r in rounds), min(r[label][1] for r in rounds)) for label in WRITES}
        print("   writes done", file=sys.stderr, flush=True)
        read_rounds = [{label: time_read(catalog, read, vectors) for label, read in READS.items()}
                       for _ in range(ROUNDS)]
        reads = {label: min(r[label] for r in read_rounds) for label in READS}
    return "\n".join([
        "## Vector values (`bench/bench_vectors.py`)",
        "",
        f"{n:,} unit {DIM}-d vectors through the embedded PostgreSQL. *Write*: one `INSERT … CAST(:v AS halfvec)` "
        "per vector (as `store_embedding` sends one), with the conversion; *convert alone*: the Python side only. "
        f"*Read*: every row's halfvec in one statement, as numpy float32 arrays. Best of {ROUNDS} interleaved rounds. "
        "The store sends vectors as hand-written text and reads them through pgvector's `HalfVector` "
        "(shared/store/vectors.py).",
        "",
        "| write path | convert alone µs / vector | write µs / vector |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {alone:.0f} | {total:.0f} |" for label, (alone, total) in writes.items()),
        "",
        f"| read path | {n:,} vectors ms |",
        "| --- | ---: |",
        *(f"| {label} | {took:.0f} |" for label, took in reads.items()),
    ])


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
