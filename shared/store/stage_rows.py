"""The rows a picture stage works on (OCR, faces), in SQL: claiming those still to read, recording a failure,
giving a row back, counting what waits.

Each stage keeps its state in its own columns of the collection's table, named by one prefix
(`<prefix>_state`, `_etag`, `_attempts`, `_error`, `_next_attempt_at`; shared/store/tables.py), so one set of
statements serves every stage. What a stage stores when it succeeds is its own (shared/store/ocr_text.py,
shared/store/faces.py); the stages themselves are shared/stage.py and its subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.store import leases
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.tables import FACES_WAITING, OCR_WAITING


@dataclass(frozen=True)
class StageColumns:
    """One stage's columns. Every field is a constant of the code (never user input)."""

    prefix: str  # "ocr", "faces"
    waiting: str  # the rows still to read (tables.OCR_WAITING, tables.FACES_WAITING)
    cleared_on_claim: str = ""  # assignments: the old results a claim clears (besides the state)

    @property
    def same_content(self) -> str:
        """The row's stage state was recorded for its current content."""
        return f"{self.prefix}_etag IS NOT DISTINCT FROM etag"

    @property
    def claimed_row(self) -> str:
        """The claimed row (:key), still holding the content (:etag) it was claimed for."""
        return f"key = :key AND etag IS NOT DISTINCT FROM :etag AND {self.prefix}_etag IS NOT DISTINCT FROM :etag"


OCR = StageColumns("ocr", OCR_WAITING, cleared_on_claim="ocr_text = NULL, ocr_words = NULL")
FACES = StageColumns("faces", FACES_WAITING)  # a picture's old faces are replaced when its new ones are stored


@dataclass(frozen=True)
class WaitingRow:
    """A claimed row: what a stage needs to read its picture."""

    image_id: int
    key: str
    etag: str | None
    attempts: int  # failed readings of this content so far


def claim_waiting(catalog: Catalog, collection: Collection, columns: StageColumns, limit: int, *,
                  lease_seconds: float = leases.LEASE_SECONDS, keys: Sequence[str] | None = None) -> list[WaitingRow]:
    """Claim up to `limit` rows the stage has still to read.

    The claim ties the row's stage state to its current etag: a picture replaced since its last reading
    starts again at 0 attempts (claimable at once, whatever its lease), and its old results are cleared.
    `keys`: only these (a work message's), so a message delivered twice is read once.
    """
    p, same = columns.prefix, columns.same_content
    only_keys = " AND key = ANY(CAST(:keys AS text[]))" if keys is not None else ""
    cleared = f", {columns.cleared_on_claim}" if columns.cleared_on_claim else ""
    rows = leases.claim(
        catalog.db, collection.table, waiting=columns.waiting + only_keys, lease_column=f"{p}_next_attempt_at",
        returning=f"id, key, etag, {p}_attempts", limit=limit, lease_seconds=lease_seconds,
        also_claimable=f"NOT ({same})",
        also_set=f"""{p}_attempts = CASE WHEN {same} THEN {p}_attempts ELSE 0 END,
                {p}_error = CASE WHEN {same} THEN {p}_error END, {p}_state = NULL, {p}_etag = etag{cleared}""",
        **({"keys": list(keys)} if keys is not None else {}),
    )
    return [WaitingRow(int(row_id), key, etag, int(attempts)) for row_id, key, etag, attempts in rows]


def mark_failed(catalog: Catalog, collection: Collection, columns: StageColumns, row: WaitingRow, error: str, *,
                max_attempts: int, retry_after_seconds: float) -> bool:
    """Record a failed reading: attempts + 1, the reason, when to retry; given up at `max_attempts`."""
    p = columns.prefix
    rows = catalog.db.run(
        f"""UPDATE {quote_ident(collection.table)} SET {p}_attempts = {p}_attempts + 1, {p}_error = :error,
                {p}_state = CASE WHEN {p}_attempts + 1 >= :max_attempts THEN 'failed' END,
                {p}_next_attempt_at = now() + make_interval(secs => :delay)
            WHERE {columns.claimed_row} RETURNING key""",
        error=error[:2000], max_attempts=int(max_attempts), delay=float(retry_after_seconds), key=row.key,
        etag=row.etag,
    )
    return bool(rows)


def release(catalog: Catalog, collection: Collection, columns: StageColumns, key: str, *,
            retry_after_seconds: float) -> None:
    """Give a claimed row back early (an outage): claimable again after the delay, no attempt counted."""
    p = columns.prefix
    catalog.db.run(
        f"UPDATE {quote_ident(collection.table)} SET {p}_next_attempt_at = now() + make_interval(secs => :delay) "
        f"WHERE key = :key AND {p}_state IS NULL",
        key=key, delay=float(retry_after_seconds),
    )


def count_waiting(catalog: Catalog, collection: Collection, columns: StageColumns) -> int:
    """Embedded pictures the stage has still to read (failed ones it will retry included)."""
    ((count,),) = catalog.db.run(f"SELECT count(*) FROM {quote_ident(collection.table)} WHERE {columns.waiting}")
    return int(count)
