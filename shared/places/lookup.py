"""A photo's place as the collection table stores it: one PlaceFinder per process (its data loads on the first
lookup), the columns of a place, and the names the place= filter compares."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from shared.places.geocode import Place, PlaceFinder, PlacesUnavailable
from shared.search.keywords import fold

log = logging.getLogger(__name__)

PLACE_COLUMNS = ("city", "state", "country", "country_code", "place_names", "place_words")
MAX_FILTER_PARTS = 4  # "city, state, country" and a little slack
MAX_FILTER_PART_CHARS = 200

_finder = PlaceFinder()


def place_finder() -> PlaceFinder:
    """The process's PlaceFinder: thread-safe, its data (31 MiB) loaded on first use."""
    return _finder


def place_names(*names: str | None) -> list[str]:
    """Folded names, as the place= filter compares them (case and accents ignored)."""
    return [fold(name).strip() for name in names if name and fold(name).strip()]


def place_columns(place: Place | None) -> dict[str, Any]:
    """The columns of a looked-up position: its place, or empty ones ('' words: looked up, nowhere named)."""
    if place is None:
        return {"city": None, "state": None, "country": None, "country_code": None, "place_names": None,
                "place_words": ""}
    return {**place.as_dict(),
            "place_names": place_names(place.city, place.state, place.country, place.country_code),
            "place_words": place.words}


def no_place() -> dict[str, Any]:
    """The columns of a photo without a position: nothing to look up (null words: the sweep skips it too)."""
    return {**place_columns(None), "place_words": None}


def places_of(positions: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]] | None:
    """The columns of each (latitude, longitude); None when the place data cannot be loaded (logged; the
    columns stay unset, so the sweep looks them up once it can)."""
    try:
        found = place_finder().find_many(positions)
    except PlacesUnavailable as exc:
        log.warning("places not looked up: %s", exc)
        return None
    return [place_columns(place) for place in found]


def place_of(latitude: float | None, longitude: float | None) -> dict[str, Any]:
    """The place columns for a photo's position at ingest ({} when the data cannot be loaded)."""
    if latitude is None or longitude is None:
        return no_place()
    found = places_of([(latitude, longitude)])
    return found[0] if found else {}


def filter_names(value: str) -> list[str] | None:
    """The place= filter's names: "Paris", or "Paris, France" (every part must name the photo's city, state,
    country or country code); None when the value names nothing. ValueError says what is wrong."""
    parts = [part.strip() for part in value.split(",")]
    if len(parts) > MAX_FILTER_PARTS:
        raise ValueError(f"has {len(parts)} comma-separated parts; give at most {MAX_FILTER_PARTS} "
                         "(city, state, country)")
    if any(len(part) > MAX_FILTER_PART_CHARS for part in parts):
        raise ValueError(f"has a part longer than {MAX_FILTER_PART_CHARS} characters")
    names = place_names(*parts)
    if value.strip() and (not names or len(names) != len([part for part in parts if part])):
        raise ValueError("names no place: give a city, state or country, e.g. Paris or Paris, France")
    return names or None
