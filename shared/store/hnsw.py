"""The one HNSW session setup: the index's query-time settings, in place before a statement's first scan.

A search, finding neighbours for duplicate groups and folding near-duplicates on a page each start with
`WITH {hnsw_session(...)}` and make their scan refer to `cfg.scan`. `set_config(..., true)` is SET LOCAL:
it lasts for the statement's own transaction, so a pooled connection never carries it to the next one,
and it costs no round trip of its own.
"""

from __future__ import annotations

from typing import Any, Literal

MAX_EF_SEARCH = 1000  # pgvector's bound of hnsw.ef_search


# ef_search grows with the collection: the configured value (IB_HNSW_EF_SEARCH) holds up to GROWTH_ROWS rows,
# then it grows as (rows / GROWTH_ROWS) ** GROWTH_POWER, so the default 80 at 100,000 rows is 186 at a million:
# there recall@30 was 0.955-0.961 at 186 in two builds of m 24, ef_construction 100, against 0.947-0.962 at 149
# over four (too close to 0.95), for ~1 ms a query; a fixed 80 would fall below 0.9
# (bench/bench_tradeoff.py measures it). The row count is the planner's estimate (pg_class.reltuples, kept by
# autovacuum's ANALYZE): read in the same statement, no round trip.
GROWTH_ROWS = 100_000
GROWTH_POWER = 0.366


def grown_ef_sql(rows_sql: str) -> str:
    """SQL: the ef_search for a table of `rows_sql` rows, from the `:ef` parameter (the value at GROWTH_ROWS)."""
    return (f"LEAST({MAX_EF_SEARCH}, GREATEST(CAST(:ef AS int), round(CAST(:ef AS int) * "
            f"power(GREATEST({rows_sql}, 1) / {GROWTH_ROWS}.0, {GROWTH_POWER}))))::int")


def ef_search_for(catalog: Any, rows: int, ef_search: int) -> int:
    """The ef_search a search of a `rows`-row collection runs with (the benchmarks report it)."""
    return int(catalog.db.run(f"SELECT {grown_ef_sql('CAST(:rows AS float8)')}", ef=str(ef_search), rows=rows)[0][0])


def hnsw_session(params: dict[str, Any], *, ef_search: int, iterative_scan: Literal["off", "relaxed_order"],
                 only_if: str = "", grow_with: str | None = None) -> str:
    """The `cfg` CTE that sets hnsw.ef_search (its value into `params`) and hnsw.iterative_scan; with `only_if`
    (SQL from our code), `cfg` has no row unless it holds, so a scan that refers to `cfg` returns nothing; with
    `grow_with` (a table's quoted name), ef_search grows with that table's size (grown_ef_sql).

    The caller's scan must refer to `cfg.scan` (e.g. `AND cfg.scan IS NOT NULL` in a lateral subquery):
    that is what orders the settings before the index scan."""
    params["ef"] = str(min(MAX_EF_SEARCH, int(ef_search)))
    ef = ":ef"
    if grow_with is not None:
        params["hnsw_table"] = grow_with
        ef = grown_ef_sql("(SELECT reltuples FROM pg_class WHERE oid = CAST(:hnsw_table AS regclass))") + "::text"
    return f"""cfg AS MATERIALIZED (
            SELECT set_config('hnsw.ef_search', {ef}, true) AS ef,
                   set_config('hnsw.iterative_scan', '{iterative_scan}', true) AS scan
            {"WHERE " + only_if if only_if else ""})"""
