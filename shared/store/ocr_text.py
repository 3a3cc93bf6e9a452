"""The OCR stage's own SQL: storing the text read. Claims, failures and give-backs are every stage's
(shared/store/stage_rows.py); the stage itself (reading pictures, retries, rounds) is shared/ocr/stage.py.
"""

from __future__ import annotations

from shared.search.keywords import fold
from shared.store.catalog import Catalog, Collection
from shared.store.db import quote_ident
from shared.store.stage_rows import OCR


def store_text(catalog: Catalog, collection: Collection, key: str, etag: str | None, text: str) -> bool:
    """The text read for the row's content, and its folded words for the keyword index; False if the
    picture was replaced or removed since the claim."""
    rows = catalog.db.run(
        f"""UPDATE {quote_ident(collection.table)} SET ocr_text = :text, ocr_words = :words, ocr_state = 'done',
                ocr_error = NULL, ocr_next_attempt_at = NULL
            WHERE {OCR.claimed_row} AND status = 'embedded' RETURNING key""",
        text=text, words=fold(text), key=key, etag=etag,
    )
    return bool(rows)
