"""The table of one collection: its columns, its indexes, and the columns added since the first release.

This module only says what a collection's table looks like, so a new column is declared in one place. Every
statement on it lives in shared/store/: the registry and the writes of ingest in `catalog.py`, the reads
and searches in `queries.py`, the one lease claim in `leases.py`, the HNSW settings in `hnsw.py`, vector
values in `vectors.py`, and each feature's own statements in `neighbours.py` (duplicates), `moves.py`
(model moves) and `ocr_text.py` (the OCR stage).
"""

from __future__ import annotations

from shared.store.db import quote_ident

SEARCH_TSV = (
    "tsvector GENERATED ALWAYS AS (setweight(to_tsvector('simple', coalesce(name_words, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce(ocr_words, '') || ' ' || coalesce(exif_words, '')), 'B')) STORED"
)

# Columns added after the first release, as (name, SQL type): new tables are created with them, and
# older tables get them when a process first opens the catalog. Append; never reorder or remove.
ADDED_COLUMNS: list[tuple[str, str]] = [
    # The keyword index's sources, each folded by shared.search.keywords.fold and written by one writer: the
    # object key's words (recorded with the key), the words read in the picture (the OCR stage), and
    # the words about it (EXIF text: camera, description; read at ingest).
    ("name_words", "text"),
    ("ocr_words", "text"),
    ("exif_words", "text"),
    # Photo metadata read from EXIF at ingest (shared/ingest/exif.py): when it was taken (with the UTC offset the
    # camera recorded, in minutes, null when it recorded none), camera, place; and the SHA-256 of the
    # object's bytes, which finds exact duplicates and lets a copy reuse the stored vector.
    ("taken_at", "timestamptz"),
    ("taken_offset", "smallint"),
    ("camera", "text"),
    ("latitude", "double precision"),
    ("longitude", "double precision"),
    ("sha256", "text"),
    # The keyword index (shared/search/hybrid.py searches it): the name's words weigh A, the picture's text B.
    # Generated, so every writer of a source column keeps it current without knowing it exists.
    ("search_tsv", SEARCH_TSV),
    # The OCR stage (shared/ocr/stage.py): the text read in the picture and the etag it was read from;
    # state 'done' or 'failed' (given up), null while it waits; attempts, the last error, and when the row
    # may be claimed again (a lease while it is read, a backoff after a failure).
    ("ocr_text", "text"),
    ("ocr_etag", "text"),
    ("ocr_state", "text"),
    ("ocr_attempts", "integer NOT NULL DEFAULT 0"),
    ("ocr_error", "text"),
    ("ocr_next_attempt_at", "timestamptz"),
]

# Rows whose words the OCR stage has still to read: embedded, and not read (nor given up) for this content.
# The partial index below has exactly this predicate, so the stage's claims and the stats count stay cheap.
OCR_WAITING = "status = 'embedded' AND (ocr_state IS NULL OR ocr_etag IS DISTINCT FROM etag)"


def added_indexes_sql(table: str) -> list[str]:
    """CREATE INDEX IF NOT EXISTS statements for the added columns (run after they exist)."""
    q = quote_ident(table)
    return [
        # Exact duplicates and vector reuse look rows up by content hash.
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_sha256')} ON {q} (sha256) WHERE sha256 IS NOT NULL",
        # Newest/oldest by when the photo was taken, and the taken_after/taken_before filters.
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_taken')} ON {q} (taken_at DESC, id DESC) "
        "WHERE status = 'embedded'",
        # Keyword search: words of names, OCR and EXIF text (GIN over the generated tsvector).
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_words')} ON {q} USING gin (search_tsv)",
        # The OCR stage's work list (claims and the stats count).
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_ocr')} ON {q} (id) WHERE {OCR_WAITING}",
    ]


# HNSW graph parameters, chosen from bench/bench_tradeoff.py's table (issue 21): m 24 links per node and
# ef_construction 128. At 100,000 clustered rows m 24 reaches recall@30 0.990 at ef_search 100 where m 16 reaches
# 0.979 (and 0.986 at ef_search 64, against 0.970), so a million rows need a smaller ef_search for 0.95; it costs
# 20 % more index (5 elements of 1,638 B in an 8 KB page instead of 6 of 1,366 B) and build time (120 s against
# 101 s). An index keeps the parameters it was built with: older collections change on a rebuild.
HNSW_M = 24
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



def neighbours_table(table: str) -> str:
    """The name of the collection's table of nearest neighbours (shared/search/duplicates.py)."""
    return table + "_near"


def neighbours_table_sql(table: str) -> str:
    """Each embedded image's nearest neighbours within the duplicates radius, as found in the HNSW index
    for its content (etag) and model: a table of its own, so writing them never touches the vector index.
    `id` is the image's row id; readers join it to rows still embedded (no foreign key: dropping a
    collection's table stays one statement)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(neighbours_table(table))} (id bigint PRIMARY KEY, "
        "etag text, model_id text NOT NULL, near_ids bigint[] NOT NULL, near_distances real[] NOT NULL)"
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
        # A new table's ids start again at 1: neighbours left by an earlier table of that name are not its own.
        f"DROP TABLE IF EXISTS {quote_ident(neighbours_table(table))}",
        neighbours_table_sql(table),
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
