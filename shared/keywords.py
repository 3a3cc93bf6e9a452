"""Text for the keyword index, folded the same way when it is stored and when it is searched.

PostgreSQL's `simple` text-search configuration does no stemming and no accent folding (the embedded
server ships no `unaccent`), so folding happens here: case-folded (ß -> ss) and accents stripped, so
"grosse mauer" finds "Große Mauer".
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and accent-folded text: what the keyword index stores and what a keyword query looks for."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))
