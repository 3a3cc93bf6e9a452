"""The table of one collection: its columns, its indexes, and the columns added since the first release.

The registry of collections and every read and write live in `catalog.py` and `queries.py`; this module
only says what a collection's table looks like, so a new column is declared in one place.
"""

from __future__ import annotations

from shared.db import quote_ident

# Columns added after the first release, as (name, SQL type): new tables are created with them, and
# older tables get them when a process first opens the catalog. Append; never reorder or remove.
ADDED_COLUMNS: list[tuple[str, str]] = [
    # The keyword index's sources, each folded by shared.keywords.fold and written by one writer: the
    # object key's words (recorded with the key), the words read in the picture (the OCR stage), and
    # the words about it (EXIF text: camera, description; read at ingest).
    ("name_words", "text"),
    ("ocr_words", "text"),
    ("exif_words", "text"),
]


def added_indexes_sql(table: str) -> list[str]:
    """CREATE INDEX IF NOT EXISTS statements for the added columns (run after they exist)."""
    return []


# HNSW graph parameters (bench/bench_search.py measures them): m 16 links per node, and a wider
# ef_construction than pgvector's default 64 for a better graph, i.e. more recall per query-time ef.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128


def hnsw_index_sql(table: str, column: str = "embedding", *, index: str | None = None,
                   concurrently: bool = False) -> str:
    """The one definition of a collection's vector index: HNSW, inner product, embedded rows only."""
    col = quote_ident(column)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
        f"{quote_ident(index or table + '_hnsw')} ON {quote_ident(table)} USING hnsw ({col} halfvec_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE {col} IS NOT NULL"
    )



def create_table_sql(table: str, dim: int) -> list[str]:
    """The statements that create a collection's table and its indexes."""
    q = quote_ident(table)
    return [
        f"""CREATE TABLE IF NOT EXISTS {q} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key text NOT NULL UNIQUE,
            etag text,
            size bigint,
            content_type text,
            width integer,
            height integer,
            last_modified timestamptz,
            sequencer text,
            event_time timestamptz,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'embedded', 'failed', 'deleted')),
            error text,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            embedding halfvec({int(dim)}),
            embedding_next halfvec
            {"".join(f", {quote_ident(name)} {kind}" for name, kind in ADDED_COLUMNS)}
        )""",
        hnsw_index_sql(table),
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_recent')} ON {q} "
        "(last_modified DESC, id DESC) WHERE status = 'embedded'",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_todo')} ON {q} (status, next_attempt_at) "
        "WHERE status IN ('pending', 'failed')",
        *added_indexes_sql(table),
    ]


def add_missing_columns_sql(tables: list[str], present: set[tuple[str, str]]) -> list[str]:
    """ALTER TABLE (and index) statements that bring older tables up to ADDED_COLUMNS."""
    statements = []
    for table in tables:
        missing = [(name, kind) for name, kind in ADDED_COLUMNS if (table, name) not in present]
        if missing:
            additions = ", ".join(f"ADD COLUMN IF NOT EXISTS {quote_ident(name)} {kind}" for name, kind in missing)
            statements += [f"ALTER TABLE {quote_ident(table)} {additions}", *added_indexes_sql(table)]
    return statements
