"""Page cursors: opaque to clients, a base64 JSON of the last row's position. `k` says which route
made it (`v` vector search, `r` recent), so one route refuses another's cursor."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from shared.api.errors import ApiError
from shared.queries import Hit


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> dict[str, Any]:
    """The cursor's fields; 400 naming `cursor` if it was not made by this route."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("i"), int):
            raise ValueError(kind)
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            400, "bad_parameter",
            "parameter 'cursor' is not a cursor from this route: pass the next_cursor of the previous "
            "answer unchanged, or leave it out for the first page",
        ) from None


def damaged_cursor() -> ApiError:
    return ApiError(400, "bad_parameter", "parameter 'cursor' is damaged: start again without it")


def vector_cursor(hits: list[Hit], limit: int) -> str | None:
    """The next page's cursor of a vector search, None after a short (last) page."""
    if len(hits) < limit:
        return None
    last = hits[-1]
    return encode_cursor({"k": "v", "d": last.distance, "i": last.id})


def vector_after(cursor: str | None) -> tuple[float, int] | None:
    """(distance, id) to continue after, None for the first page."""
    if not cursor:
        return None
    data = decode_cursor(cursor, "v")
    if not isinstance(data.get("d"), int | float):
        raise damaged_cursor()
    return float(data["d"]), int(data["i"])


def recent_cursor(hits: list[Hit], limit: int) -> str | None:
    """The next page's cursor of /api/recent, None after a short (last) page."""
    if len(hits) < limit:
        return None
    last = hits[-1]
    when = last.last_modified.isoformat() if last.last_modified else None
    return encode_cursor({"k": "r", "t": when, "i": last.id})


def recent_after(cursor: str | None) -> tuple[datetime | None, int] | None:
    """(last_modified, id) to continue after, None for the first page."""
    if not cursor:
        return None
    data = decode_cursor(cursor, "r")
    try:
        when = datetime.fromisoformat(data["t"]) if data.get("t") else None
    except (TypeError, ValueError):
        raise damaged_cursor() from None
    return when, int(data["i"])
