"""The OCR stage's SQL: claiming rows whose words are still to be read, storing the text, recording a failure,
giving a row back. The stage itself (reading pictures, retries, rounds) is shared/ocr/stage.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.search.keywords import fold
from shared.store import leases
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.tables import OCR_WAITING

# The row's OCR state was recorded for its current content.
SAME_CONTENT = "ocr_etag IS NOT DISTINCT FROM etag"
# The claimed row, still holding the content it was claimed for.
CLAIMED_ROW = "key = :key AND etag IS NOT DISTINCT FROM :etag AND ocr_etag IS NOT DISTINCT FROM :etag"


def claim_waiting(catalog: Catalog, collection: Collection, limit: int, *,
                  lease_seconds: float = leases.LEASE_SECONDS,
                  keys: Sequence[str] | None = None) -> list[tuple[str, str | None, int]]:
    """Claim up to `limit` rows whose words are still to be read: (key, etag, attempts so far).

    The claim ties the row's OCR state to its current etag: a picture replaced since its last reading
    starts again at 0 attempts (claimable at once, whatever its lease), and its old text is cleared.
    `keys`: only these (an OCR work message's), so a message delivered twice is read once.
    """
    only_keys = " AND key = ANY(CAST(:keys AS text[]))" if keys is not None else ""
    rows = leases.claim(
        catalog.db, collection.table, waiting=OCR_WAITING + only_keys, lease_column="ocr_next_attempt_at",
        returning="key, etag, ocr_attempts", limit=limit, lease_seconds=lease_seconds,
        also_claimable=f"NOT ({SAME_CONTENT})",
        also_set=f"""ocr_attempts = CASE WHEN {SAME_CONTENT} THEN ocr_attempts ELSE 0 END,
                ocr_error = CASE WHEN {SAME_CONTENT} THEN ocr_error END,
                ocr_state = NULL, ocr_text = NULL, ocr_words = NULL, ocr_etag = etag""",
        **({"keys": list(keys)} if keys is not None else {}),
    )
    return [(key, etag, int(attempts)) for key, etag, attempts in rows]


def store_text(catalog: Catalog, collection: Collection, key: str, etag: str | None, text: str) -> bool:
    """The text read for the row's content, and its folded words for the keyword index; False if the
    picture was replaced or removed since the claim."""
    rows = catalog.db.run(
        f"""UPDATE {quote_ident(collection.table)} SET ocr_text = :text, ocr_words = :words, ocr_state = 'done',
                ocr_error = NULL, ocr_next_attempt_at = NULL
            WHERE {CLAIMED_ROW} AND status = 'embedded' RETURNING key""",
        text=text, words=fold(text), key=key, etag=etag,
    )
    return bool(rows)


def mark_failed(catalog: Catalog, collection: Collection, key: str, etag: str | None, error: str, *,
                max_attempts: int, retry_after_seconds: float) -> bool:
    """Record a failed reading: attempts + 1, the reason, when to retry; given up at `max_attempts`."""
    rows = catalog.db.run(
        f"""UPDATE {quote_ident(collection.table)} SET ocr_attempts = ocr_attempts + 1, ocr_error = :error,
                ocr_state = CASE WHEN ocr_attempts + 1 >= :max_attempts THEN 'failed' END,
                ocr_next_attempt_at = now() + make_interval(secs => :delay)
            WHERE {CLAIMED_ROW} RETURNING key""",
        error=error[:2000], max_attempts=int(max_attempts), delay=float(retry_after_seconds), key=key, etag=etag,
    )
    return bool(rows)


def release(catalog: Catalog, collection: Collection, key: str, *, retry_after_seconds: float) -> None:
    """Give a claimed row back early (an outage): claimable again after the delay, no attempt counted."""
    catalog.db.run(
        f"UPDATE {quote_ident(collection.table)} SET ocr_next_attempt_at = now() + make_interval(secs => :delay) "
        "WHERE key = :key AND ocr_state IS NULL",
        key=key, delay=float(retry_after_seconds),
    )
