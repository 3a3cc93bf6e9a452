"""The table of one collection: its columns, its indexes, and the columns added since the first release.

This module only says what a collection's table looks like, so a new column is declared in one place. Every
statement on it lives in shared/store/: the registry and the writes of ingest in `catalog.py`, the reads
and searches in `queries.py`, the one lease claim in `leases.py`, the HNSW settings in `hnsw.py`, vector
values in `vectors.py`, and each feature's own statements in `neighbours.py` (duplicates), `moves.py`
(model moves), `ocr_text.py` (the OCR stage) and `faces.py` (faces and people).
"""

from __future__ import annotations

from shared.store.db import quote_ident

# The keyword index's sources, one column each, and the weight that tells `matched` which one a word came
# from: A the name, B the picture's text (OCR, EXIF), C the place, D the photo's own tags and caption.
SEARCH_SOURCES = ("name_words", "ocr_words", "exif_words", "place_words", "tag_words")
SEARCH_TSV = (
    "tsvector GENERATED ALWAYS AS (setweight(to_tsvector('simple', coalesce(name_words, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce(ocr_words, '') || ' ' || coalesce(exif_words, '')), 'B') || "
    "setweight(to_tsvector('simple', coalesce(place_words, '')), 'C') || "
    "setweight(to_tsvector('simple', coalesce(tag_words, '')), 'D')) STORED"
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
    # When the backfill's bucket listing last saw the object (shared/store/plans.py): rows not seen by a whole
    # listing, and not touched since it began, lost their object (a missed remove event).
    ("listed_at", "timestamptz"),
    # Where the photo was taken, named offline from its GPS position (shared/places/geocode.py): city and
    # state (null when only the country is known), country and its ISO code; `place_names` the folded names
    # the place= filter compares; `place_words` the keyword index's source ('' when looked up and nowhere:
    # null means not looked up yet, which the sweep fills for rows with a position).
    ("city", "text"),
    ("state", "text"),
    ("country", "text"),
    ("country_code", "text"),
    ("place_names", "text[]"),
    ("place_words", "text"),
    # Keywords and a caption written into the photo (IPTC, XMP; shared/ingest/tags.py): `tags` null means
    # not read yet (the sweep reads rows from before), empty means none; `tag_words` the index's source.
    ("tags", "text[]"),
    ("caption", "text"),
    ("tag_words", "text"),
    # The faces stage (shared/people/stage.py), as the OCR stage's columns: the etag its faces were found in,
    # state 'done' or 'failed' (given up), null while it waits; attempts, the last error, the lease/backoff.
    # The faces themselves are in the collection's faces table (`faces_table_sql`).
    ("faces_etag", "text"),
    ("faces_state", "text"),
    ("faces_attempts", "integer NOT NULL DEFAULT 0"),
    ("faces_error", "text"),
    ("faces_next_attempt_at", "timestamptz"),
]

# Rows whose words the OCR stage has still to read: embedded, and not read (nor given up) for this content.
# The partial index below has exactly this predicate, so the stage's claims and the stats count stay cheap.
OCR_WAITING = "status = 'embedded' AND (ocr_state IS NULL OR ocr_etag IS DISTINCT FROM etag)"
# Rows whose faces the faces stage has still to find (the same rule as OCR_WAITING, with its own partial index).
FACES_WAITING = "status = 'embedded' AND (faces_state IS NULL OR faces_etag IS DISTINCT FROM etag)"


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
        # The faces stage's work list.
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_ft')} ON {q} (id) WHERE {FACES_WAITING}",
        # The Places list: counts by place from the index alone (an index-only scan, 3x faster at 100,000 rows).
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_places')} ON {q} (country, state, city, country_code, id) "
        "WHERE status = 'embedded' AND country IS NOT NULL",
        # The place= filter (place_names @> the asked names).
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_place')} ON {q} USING gin (place_names) "
        "WHERE place_names IS NOT NULL",
    ]


# HNSW graph parameters, chosen from bench/bench_tradeoff.py's table (issue 21): m 24 links per node and
# ef_construction 100. At a million clustered rows m 24 reaches recall@30 0.947-0.962 (three builds) at the grown
# ef_search 149 where m 16 (ef_construction 128) reaches 0.933, for 20 % more index (5 elements of 1,638 B in an
# 8 KB page instead of 6 of 1,366 B). ef_construction 100 rather than 128 builds a million rows in 826-879 s
# instead of 947-985 s (the goal is 900), for 0.002 less recall at 100,000 rows (0.983-0.985 at ef_search 80) and
# up to 0.015 at a million (0.965-0.966 at 128): little margin above 0.95 there (issue 21's next step).
# An index keeps the parameters it was built with: older collections change on a rebuild.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 100


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


def faces_table(table: str) -> str:
    """The name of the collection's table of faces (shared/store/faces.py)."""
    return table + "_faces"


def people_table(table: str) -> str:
    """The name of the collection's table of people (faces grouped, shared/people/grouping.py)."""
    return table + "_people"


# dlib's descriptors: 128 numbers, compared by Euclidean distance (shared/people/faces.py).
FACE_DESCRIPTOR_SIZE = 128


def faces_table_sql(table: str, *, fresh: bool = False) -> list[str]:
    """The faces and people tables of a collection. A face: the image row's id, its box (left, top, right,
    bottom as fractions 0..1 of the picture), the detector's score, the descriptor (HNSW, Euclidean as dlib
    compares them) and its person (null while it waits for one). A person: a name (null until named), the
    face that stands for it and how many faces it has. No foreign keys: dropping a collection's tables stays
    one statement each, and readers join faces to rows still embedded for the content they were found in.
    `fresh`: a new collection's tables (ids start again at 1, so older tables of that name go first)."""
    faces, people = faces_table(table), people_table(table)
    return [
        *([f"DROP TABLE IF EXISTS {quote_ident(faces)}", f"DROP TABLE IF EXISTS {quote_ident(people)}"]
          if fresh else []),
        f"""CREATE TABLE IF NOT EXISTS {quote_ident(faces)} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            image_id bigint NOT NULL,
            box real[] NOT NULL,
            score real NOT NULL,
            descriptor vector({FACE_DESCRIPTOR_SIZE}) NOT NULL,
            person_id bigint,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_fv')} ON {quote_ident(faces)} "
        f"USING hnsw (descriptor vector_l2_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_fi')} ON {quote_ident(faces)} (image_id)",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_fp')} ON {quote_ident(faces)} (person_id, image_id) "
        "WHERE person_id IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS {quote_ident(people)} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text,
            cover_face bigint,
            face_count integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_pn')} ON {quote_ident(people)} (lower(name)) "
        "WHERE name IS NOT NULL",
    ]


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
        *faces_table_sql(table, fresh=True),
    ]


def add_missing_columns_sql(tables: list[str], present: set[tuple[str, str]]) -> list[str]:
    """ALTER TABLE (and index) statements that bring older tables up to ADDED_COLUMNS."""
    statements = []
    for table in tables:
        missing = {name for name, _ in ADDED_COLUMNS if (table, name) not in present}
        if not missing:
            continue
        q = quote_ident(table)
        if "search_tsv" not in missing and missing & set(SEARCH_SOURCES):
            # The generated index column reads every source: made again with the new ones (a one-time rewrite;
            # its GIN index goes with it and added_indexes_sql makes it again).
            statements.append(f"ALTER TABLE {q} DROP COLUMN IF EXISTS search_tsv")
            missing.add("search_tsv")
        # Generated columns last, in a statement of their own: they read the sources added before them.
        for generated in (False, True):
            additions = [f"ADD COLUMN IF NOT EXISTS {quote_ident(name)} {kind}" for name, kind in ADDED_COLUMNS
                         if name in missing and ("GENERATED" in kind) == generated]
            if additions:
                statements.append(f"ALTER TABLE {q} {', '.join(additions)}")
        statements += added_indexes_sql(table)
    return statements
