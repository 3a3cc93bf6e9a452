"""What the scheduled functions (backfill, OCR) share: which collections an event names, one at a time,
until one of them stops early because the Lambda deadline nears."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.config import get_settings

Summary = dict[str, Any]
RemainingMs = Callable[[], int] | None


def each_collection(event: Any, context: Any, run: Callable[[str, RemainingMs], Summary | None]) -> dict[str, Any]:
    """`run(collection, remaining_ms)` for each collection of `{"collections": [...]}` (default IB_BUCKET).

    A run that returns None is left out of the answer (nothing to do there); one that stopped early
    ends the loop, so the next scheduled run goes on from there.
    """
    names = (event if isinstance(event, dict) else {}).get("collections") or [get_settings().bucket]
    remaining = context.get_remaining_time_in_millis if context is not None else None
    results = []
    for name in names:
        summary = run(str(name), remaining)
        if summary is None:
            continue
        results.append(summary)
        if summary["stopped_early"]:
            break
    return {"collections": results}
