"""Page cursors: opaque to clients, a base64 JSON of the last row's position. `k` says which route
made it (`s` search: where the next page starts in its ranking, `r` recent, `d` duplicates), so one route
refuses another's cursor."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from shared.api.errors import ApiError
from shared.store.db import fits_bigint
from shared.store.queries import Hit


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> dict[str, Any]:
    """The cursor's fields; 400 naming `cursor` if it was not made by this route."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        # A hand-edited cursor must not carry a row id PostgreSQL's bigint cannot hold (nor a bool).
        if not isinstance(data, dict) or data.get("k") != kind or type(data.get("i")) is not int \
                or not fits_bigint(data["i"]):
            raise ValueError(kind)
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):  # deeply nested JSON: RecursionError
        raise ApiError(
            400, "bad_parameter",
            "parameter 'cursor' is not a cursor from this route: pass the next_cursor of the previous "
            "answer unchanged, or leave it out for the first page",
        ) from None


def damaged_cursor() -> ApiError:
    return ApiError(400, "bad_parameter", "parameter 'cursor' is damaged: start again without it")


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


def duplicates_cursor(position: tuple[int, int] | None) -> str | None:
    """The next page's cursor of /api/duplicates: the (size, smallest id) of the page's last group."""
    return None if position is None else encode_cursor({"k": "d", "s": position[0], "i": position[1]})


def duplicates_after(cursor: str | None) -> tuple[int, int] | None:
    """(size, smallest id) to continue after, None for the first page."""
    if not cursor:
        return None
    data = decode_cursor(cursor, "d")
    if type(data.get("s")) is not int:
        raise damaged_cursor()
    return int(data["s"]), int(data["i"])


def search_cursor(offset: int, up_to_id: int) -> str:
    """The next page's cursor of a search: where it starts in the query's ranking, and the newest row id the
    first page could see (later pages rank only those rows)."""
    return encode_cursor({"k": "s", "i": offset, "n": up_to_id})


def search_position(cursor: str | None, most: int) -> tuple[int, int | None]:
    """(offset, newest row id) to continue from; (0, None) for the first page. 400 for an offset past `most`,
    the end of any ranking."""
    if not cursor:
        return 0, None
    data = decode_cursor(cursor, "s")
    offset, up_to = data["i"], data.get("n")
    if not 0 <= offset <= most or type(up_to) is not int or not fits_bigint(up_to):
        raise damaged_cursor()
    return offset, up_to
