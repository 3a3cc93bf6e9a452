"""The one HNSW session setup: the index's query-time settings, in place before a statement's first scan.

A search, finding neighbours for duplicate groups and folding near-duplicates on a page each start with
`WITH {hnsw_session(...)}` and make their scan refer to `cfg.scan`. `set_config(..., true)` is SET LOCAL:
it lasts for the statement's own transaction, so a pooled connection never carries it to the next one,
and it costs no round trip of its own.
"""

from __future__ import annotations

from typing import Any, Literal

MAX_EF_SEARCH = 1000  # pgvector's bound of hnsw.ef_search


def hnsw_session(params: dict[str, Any], *, ef_search: int, iterative_scan: Literal["off", "relaxed_order"],
                 only_if: str = "") -> str:
    """The `cfg` CTE that sets hnsw.ef_search (its value into `params`) and hnsw.iterative_scan; with `only_if`
    (SQL from our code), `cfg` has no row unless it holds, so a scan that refers to `cfg` returns nothing.

    The caller's scan must refer to `cfg.scan` (e.g. `AND cfg.scan IS NOT NULL` in a lateral subquery):
    that is what orders the settings before the index scan."""
    params["ef"] = str(min(MAX_EF_SEARCH, int(ef_search)))
    return f"""cfg AS MATERIALIZED (
            SELECT set_config('hnsw.ef_search', :ef, true) AS ef,
                   set_config('hnsw.iterative_scan', '{iterative_scan}', true) AS scan
            {"WHERE " + only_if if only_if else ""})"""
