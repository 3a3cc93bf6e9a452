"""Discover: the built-in categories the gallery offers without anyone typing a search (as ente's Discover).

Each is a saved search by picture: `query` is what the CLIP text tower embeds, written the way image
captions read ("a photo of ..."), which is the form CLIP models were trained to match; `name` is what the
gallery shows and what GET /api/discover names it by. Answers use the adaptive cutoff, so a library without
receipts shows an empty or small "Receipts" rather than its hundred least unlike photos.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str  # shown in the gallery; unique, case-insensitively
    query: str  # the text query, in the search language (shared/search/query_language.py)


CATEGORIES: tuple[Category, ...] = (
    Category("Screenshots", "a screenshot of a phone or computer screen"),
    Category("Documents", "a photo of a printed document or a page of text"),
    Category("Receipts", "a photo of a paper receipt from a shop or restaurant"),
    Category("Whiteboards", "a photo of a whiteboard with handwriting"),
    Category("Pets", "a photo of a pet dog or cat"),
    Category("Food", "a photo of a plate of food"),
    Category("Sunsets", "a photo of a sunset sky"),
    Category("Beaches", "a photo of a sandy beach and the sea"),
    Category("Mountains", "a photo of mountains"),
    Category("Snow", "a photo of a snowy landscape"),
    Category("Flowers", "a close-up photo of flowers"),
    Category("Cars", "a photo of a car"),
    Category("Selfies", "a selfie of a person"),
    Category("Cities", "a photo of a city skyline"),
    Category("Forests", "a photo of trees in a forest"),
    Category("Night", "a photo taken at night with city lights"),
    Category("Birthdays", "a photo of a birthday cake with candles"),
    Category("Babies", "a photo of a baby"),
    Category("Art", "a photo of a painting or artwork"),
    Category("Memes", "a meme with text over a picture"),
)


def find_category(name: str) -> Category | None:
    """The built-in category of this name (case-insensitive), or None."""
    wanted = name.strip().casefold()
    return next((category for category in CATEGORIES if category.name.casefold() == wanted), None)
