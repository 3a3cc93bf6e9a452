"""Duplicate groups at 10k and 100k images: finding every image's nearest neighbours in the HNSW index
(once, as the sweep does), the same for a batch at ingest, a page of GET /api/duplicates (near, similar,
exact), `collapse=near` on a search page, and how many planted near-duplicates the grouping finds against
an exact scan.

Data: bench_search's CLIP-like clustered 512-d vectors, loaded by binary COPY with the catalog's HNSW
index, plus planted copies: 3 % of the images get 1-3 near-copies (noise giving cosine distance
~0.001-0.005, as re-encodes and resizes do with a real CLIP), and 1 % of them an exact copy (the same
SHA-256 and vector).

    python -m bench.bench_duplicates [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench.bench_search import DIM, bench_catalog, build_index, clustered_vectors, copy_rows, percentiles
from shared.search import duplicates
from shared.store import neighbours
from shared.store.catalog import Catalog
from shared.store.db import quote_ident
from shared.store.queries import search

NEAR, SIMILAR = 0.01, 0.06


def planted(n: int, seed: int = 1) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    """Vectors with near-copies appended: (vectors, (original, copy) row pairs, rows that are exact copies)."""
    rng = np.random.default_rng(seed)
    base = clustered_vectors(n, seed=seed)
    originals = rng.choice(n, size=n * 3 // 100, replace=False)
    copies, pairs = [], []
    for original in originals:
        for _ in range(int(rng.integers(1, 4))):
            noise = rng.normal(size=DIM) * rng.uniform(0.04, 0.1) / np.sqrt(DIM)  # distance ~0.001-0.005
            copy = base[original] + noise
            copies.append(copy / np.linalg.norm(copy))
            pairs.append((int(original), n + len(copies) - 1))
    exact = [int(i) for i in rng.choice(n, size=n // 100, replace=False)]
    vectors = np.vstack([base, np.array(copies, dtype=np.float32), base[exact]])
    pairs += [(original, n + len(copies) + j) for j, original in enumerate(exact)]
    return vectors.astype(np.float32), pairs, exact


def ground_truth(vectors: np.ndarray, threshold: float, block: int = 2048) -> set[tuple[int, int]]:
    """Every pair within `threshold` (exact scan of the stored half-precision vectors), as (low, high) rows."""
    halves = vectors.astype(np.float16).astype(np.float32)
    found: set[tuple[int, int]] = set()
    for start in range(0, len(halves), block):
        sims = halves[start:start + block] @ halves.T
        for a, b in np.argwhere(sims >= 1 - threshold):
            if start + a < b:
                found.add((int(start + a), int(b)))
    return found


def bench_size(catalog: Catalog, n: int, *, quick: bool) -> dict:
    vectors, pairs, exact = planted(n)
    coll = catalog.ensure_collection(f"bench-dups-{n}", "bench", DIM)
    table = quote_ident(coll.table)
    catalog.db.run(f"DROP INDEX IF EXISTS {quote_ident(coll.table + '_hnsw')}")
    copy_rows(catalog, coll, vectors)
    # Hashes before the index is built (an update with the HNSW index in place re-inserts every vector).
    # Row i has id i + 1; an exact copy gets its original's hash.
    total = len(vectors)
    catalog.db.run(f"UPDATE {table} SET sha256 = md5(id::text)")
    catalog.db.run(
        f"""UPDATE {table} AS t SET sha256 = md5(u.original::text)
            FROM unnest(CAST(:copies AS bigint[]), CAST(:originals AS bigint[])) AS u(id, original)
            WHERE t.id = u.id""",
        copies=[total - len(exact) + j + 1 for j in range(len(exact))], originals=[i + 1 for i in exact])
    build_index(catalog, coll)
    catalog.db.run(f"ANALYZE {table}")
    result: dict = {"n": total}
    started = time.perf_counter()
    while duplicates.index_neighbours(catalog, coll):  # what the sweep does for images embedded before
        pass
    result["index_s"] = time.perf_counter() - started
    batches = []  # what ingest adds per batch of 16 new images: their lists found again
    keys = [row[0] for row in catalog.db.run(f"SELECT key FROM {table} ORDER BY random() LIMIT 160")]
    catalog.db.run(f"UPDATE {quote_ident(coll.table + '_near')} SET etag = 'old' WHERE id IN "
                   f"(SELECT id FROM {table} WHERE key = ANY(:keys))", keys=keys)
    for start in range(0, len(keys), 16):
        began = time.perf_counter()
        duplicates.index_neighbours(catalog, coll, keys=keys[start:start + 16])
        batches.append((time.perf_counter() - began) * 1000)
    result["batch_ms"] = percentiles(batches)
    for level, threshold in (("near", NEAR), ("similar", SIMILAR)):
        pages = []
        for _ in range(3):
            began = time.perf_counter()
            _, _, count, waiting = duplicates.group_page(catalog, coll, level, threshold, limit=20)
            pages.append(time.perf_counter() - began)
        result[f"{level}_s"], result[f"{level}_groups"] = min(pages), count
        assert waiting == 0
    began = time.perf_counter()
    _, _, result["exact_groups"], _ = duplicates.group_page(catalog, coll, "exact", 0.0, limit=20)
    result["exact_ms"] = (time.perf_counter() - began) * 1000
    if n <= 10_000:  # an exact O(n²) scan for the ground truth: affordable at 10k
        truth = ground_truth(vectors, NEAR)
        found_sets, _ = duplicates.group_sets(catalog, coll, "near", NEAR)
        together = {row - 1: index for index, ids in enumerate(found_sets) for row in ids}
        hit = sum(1 for a, b in truth if a in together and together.get(a) == together.get(b))
        result["pair_recall"] = hit / len(truth) if truth else 1.0
        result["truth_pairs"] = len(truth)
    queries = clustered_vectors(30, seed=99)
    plain, folded = [], []
    for query in queries:
        started = time.perf_counter()
        hits = search(catalog, coll, query, limit=30, ef_search=100)
        plain.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        duplicates.collapse_near(catalog, coll, hits, NEAR, vector=query)
        folded.append((time.perf_counter() - started) * 1000)
    result["search_ms"], result["collapse_ms"] = percentiles(plain), percentiles(folded)
    result["planted"] = len(pairs)
    return result


def run(quick: bool = False) -> str:
    sizes = (2_000,) if quick else (10_000, 100_000)
    results = []
    with bench_catalog("ib-bench-dups-") as (catalog, _):
        for n in sizes:
            print(f"   duplicates: {n:,} rows", file=sys.stderr, flush=True)
            results.append(bench_size(catalog, n, quick=quick))
            coll = catalog.get_collection(f"bench-dups-{n}")
            catalog.db.run(f"DROP TABLE {quote_ident(coll.table)}, {quote_ident(coll.table + '_near')}")
            catalog.db.run("DELETE FROM ib_collections WHERE name = :name", name=coll.name)
    return render(results, quick)


def render(results: list[dict], quick: bool) -> str:
    lines = [
        "## Duplicates (`bench/bench_duplicates.py`)",
        "",
        f"Command: `python -m bench.bench_duplicates{' --quick' if quick else ''}` (part of `make bench`). "
        "bench_search's clustered 512-d vectors with the catalog's HNSW index, plus planted copies: 3 % of the "
        "images get 1-3 near-copies (cosine distance ~0.001-0.005) and 1 % an exact copy (same SHA-256). "
        f"*Find all* is `duplicates.index_neighbours` until none is left (what the sweep does once for images "
        f"embedded before this release): each image's {neighbours.NEIGHBOURS} nearest neighbours within "
        f"{neighbours.RADIUS} from the HNSW index (ef_search {neighbours.EF_SEARCH}, "
        f"{neighbours.ANCHORS_PER_STATEMENT:,} images per statement) into the neighbours table. *Per ingest "
        "batch*: the same for 16 new images, as ingest does after storing them. *A page*: "
        "`duplicates.group_page` (20 groups) with every list stored: the pairs within the threshold, checked "
        "against the current vectors, union-find, the rows and their similarity to the keeper. Recall: of all "
        "pairs within 0.01 by an exact scan of the stored halfvecs, the share the near grouping puts in one "
        "group. `collapse=near`: the extra time on a 30-result search page.",
        "",
        "| images | find all s (ms / image) | per ingest batch of 16 p50 / p95 ms | near (≤ 0.01): a page s | "
        "groups | similar (≤ 0.06): a page s | groups | exact: a page ms | groups | recall of pairs ≤ 0.01 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        recall = f"{r['pair_recall']:.3f} of {r['truth_pairs']:,}" if "pair_recall" in r else "–"
        lines.append(
            f"| {r['n']:,} | {r['index_s']:.1f} ({r['index_s'] * 1000 / r['n']:.2f}) | "
            f"{r['batch_ms'][0]:.0f} / {r['batch_ms'][1]:.0f} | {r['near_s']:.2f} | {r['near_groups']:,} | "
            f"{r['similar_s']:.2f} | {r['similar_groups']:,} | {r['exact_ms']:.0f} | {r['exact_groups']:,} | "
            f"{recall} |"
        )
    lines += [
        "",
        "| images | search page p50 / p95 ms | `collapse=near` extra p50 / p95 ms |",
        "|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['search_ms'][0]:.1f} / {r['search_ms'][1]:.1f} | "
                     f"{r['collapse_ms'][0]:.1f} / {r['collapse_ms'][1]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
