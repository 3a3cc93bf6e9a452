"""The one way work is claimed from a collection's table: FOR UPDATE SKIP LOCKED and a lease.

Three kinds of work use it: rows that need a vector (the backfill sweep), rows whose words are still to
be read (the OCR stage) and rows that lack the next model's vector (a model move). SKIP LOCKED keeps two
runs apart at the instant of claiming; the lease (a timestamp column set into the future) keeps them
apart while the work is done, and gives a crashed run's rows back when it runs out.
"""

from __future__ import annotations

from typing import Any

from shared.store.db import Database, quote_ident

LEASE_SECONDS = 600.0  # a claimed row is ours this long; a crashed run's rows come back after it


def claim(db: Database, table: str, *, waiting: str, lease_column: str, returning: str, limit: int,
          lease_seconds: float = LEASE_SECONDS, also_set: str = "", also_claimable: str = "",
          **params: Any) -> list[list[Any]]:
    """Claim up to `limit` rows (lowest ids first) that match `waiting` and whose `lease_column` has run out;
    returns the `returning` columns of each.

    `also_set`: more assignments made on the claimed rows; `also_claimable`: a condition that makes a row
    claimable while its lease still runs (the OCR stage: the picture was replaced). SQL fragments come from
    our code, never a caller's; their values go in `params`.
    """
    q, lease = quote_ident(table), quote_ident(lease_column)
    free = f"{lease} IS NULL OR {lease} <= now()" + (f" OR {also_claimable}" if also_claimable else "")
    return db.run(
        f"""UPDATE {q} SET {lease} = now() + make_interval(secs => :lease){", " + also_set if also_set else ""}
            WHERE id IN (
                SELECT id FROM {q}
                WHERE {waiting} AND ({free})
                ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
            RETURNING {returning}""",
        lease=float(lease_seconds), limit=int(limit), **params,
    )
