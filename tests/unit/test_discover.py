"""The built-in Discover categories (shared/search/discover.py): enough of them, unique names, and each
query one plain text term of the search language."""

from __future__ import annotations

from shared.search.discover import CATEGORIES, find_category
from shared.search.query_language import parse

REQUIRED = {"screenshots", "documents", "receipts", "whiteboards", "pets", "food", "sunsets", "beaches",
            "mountains", "snow", "flowers", "cars"}


def test_at_least_the_issue_categories_with_unique_names() -> None:
    names = [category.name.casefold() for category in CATEGORIES]
    assert len(names) >= 12
    assert len(set(names)) == len(names)
    assert set(names) >= REQUIRED


def test_every_query_is_one_text_term() -> None:
    for category in CATEGORIES:
        terms = parse(category.query)
        assert [(term.kind, term.value, term.weight) for term in terms] == [("text", category.query, 1.0)]


def test_find_category_by_name() -> None:
    assert find_category(" receipts ") == CATEGORIES[2]
    assert find_category("no such category") is None
