"""Collection names, quoting, connection URLs and word folding: the store's rules that need no database."""

from __future__ import annotations

import pytest

from shared.store.catalog import Catalog, table_name_for
from shared.store.db import DatabaseUnavailable, connect_params, quote_ident


def test_table_names_are_sanitised_distinct_and_bounded() -> None:
    assert table_name_for("photos") == "img_photos"
    assert table_name_for("my-bucket") != table_name_for("my_bucket")
    assert table_name_for("My_Bucket") != table_name_for("my_bucket")
    long_a, long_b = "a" * 200, "a" * 199 + "b"
    assert len(table_name_for(long_a).encode()) <= 56
    assert table_name_for(long_a) != table_name_for(long_b)
    for hostile in ['x"; DROP TABLE ib_collections; --', "pg_catalog", "фото-😀", "a'b", "Robert');--"]:
        name = table_name_for(hostile)
        assert quote_ident(name) == f'"{name}"'
        assert name.startswith("img_")


def test_quote_ident_refuses_anything_unexpected() -> None:
    for bad in ['a"b', "pg_class", "1abc", "a" * 64, "a;b", "Ab"]:
        with pytest.raises(ValueError):
            quote_ident(bad)


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:
    cat = Catalog.from_url(f"postgresql://postgres@/postgres?host={tmp_path}")
    with pytest.raises(DatabaseUnavailable, match="IB_DATABASE_URL"):
        cat.list_collections()


def test_connect_params_parse_urls() -> None:
    assert connect_params("postgresql://u:p%40ss@db.example:6543/app?sslmode=require")["password"] == "p@ss"
    params = connect_params("postgresql://postgres@/postgres?host=/tmp/x")
    assert params["unix_sock"] == "/tmp/x/.s.PGSQL.5432"
    with pytest.raises(ValueError, match="postgresql://"):
        connect_params("mysql://x")


def test_keyword_text_is_folded_for_case_and_accents() -> None:
    from shared.search.keywords import fold

    assert fold("Große MAUER") == fold("grosse mauer") == "grosse mauer"
    assert fold("Crème Brûlée, Ærøskøbing") == "creme brulee, ærøskøbing"  # ø and æ are letters, not accents
    assert fold("IMG_2041.JPG") == "img_2041.jpg"
