"""What every long-running job shares: the Lambda deadline, which errors are worth a retry, the backoff
of failed rows, and the loop of the scheduled functions over collections."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from shared.config import get_settings
from shared.embedders import EmbedderTemporaryError, ModelNotDeployed
from shared.images import ImageError
from shared.storage import ObjectTooLarge, StorageUnavailable
from shared.store.catalog import ModelChanged
from shared.store.db import DatabaseUnavailable

Summary = dict[str, Any]
RemainingMs = Callable[[], int] | None

# Handlers stop taking work this long before the Lambda deadline: a batch must finish and be recorded.
DEADLINE_MARGIN_MS = 60_000

# Worth retrying later: the message (or the claimed row) comes back. A collection whose model this
# deployment lacks (or that moved to another model mid-batch) is retried until a deployment has it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable, StorageUnavailable, EmbedderTemporaryError, ModelNotDeployed, ModelChanged,
)
# The object itself is unusable: mark the row failed.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ImageError, ObjectTooLarge)

RETRY_BASE_SECONDS = 60.0  # failed rows wait 1 min, 4 min, 16 min, ... before a sweep retries them
RETRY_MAX_SECONDS = 24 * 3600.0


class Deadline:
    """Seconds left before the Lambda deadline, less the margin; no deadline (CLI, tests) is infinite."""

    def __init__(self, remaining_ms: RemainingMs = None, margin_ms: int = DEADLINE_MARGIN_MS):
        self.remaining_ms, self.margin_ms = remaining_ms, margin_ms

    @classmethod
    def of(cls, context: Any, margin_ms: int = DEADLINE_MARGIN_MS) -> Deadline:
        return cls(context.get_remaining_time_in_millis if context is not None else None, margin_ms)

    def seconds_left(self) -> float:
        if self.remaining_ms is None:
            return math.inf
        return (self.remaining_ms() - self.margin_ms) / 1000.0

    def room_for(self, seconds: float) -> bool:
        """Whether one more round as long as `seconds` ends before the margin."""
        return self.seconds_left() - seconds > 0


def retry_delay(attempts: int) -> float:
    """Backoff before a sweep retries a failed row that has failed `attempts` times before."""
    return min(RETRY_BASE_SECONDS * 4 ** max(0, attempts), RETRY_MAX_SECONDS)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return f"{exc.reason}: {exc}"
    if isinstance(exc, ObjectTooLarge):
        return f"too_large: {exc}"
    return f"{type(exc).__name__}: {exc}"


def each_collection(event: Any, context: Any, run: Callable[[str, Deadline], Summary | None]) -> dict[str, Any]:
    """`run(collection, deadline)` for each collection of `{"collections": [...]}` (default IB_BUCKET).

    A run that returns None is left out of the answer (nothing to do there); one that stopped early
    ends the loop, so the next scheduled run goes on from there.
    """
    names = (event if isinstance(event, dict) else {}).get("collections") or [get_settings().bucket]
    deadline = Deadline.of(context)
    results = []
    for name in names:
        summary = run(str(name), deadline)
        if summary is None:
            continue
        results.append(summary)
        if summary["stopped_early"]:
            break
    return {"collections": results}
