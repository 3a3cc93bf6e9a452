"""The query language, the keyword index's words and the cutoff rule, without a database."""

from __future__ import annotations

import numpy as np
import pytest

from shared.search import hybrid
from shared.search.keywords import TermWords, name_words, query_words, word_query
from shared.search.query_language import QueryError, Term, combine, parse
from tests.fixtures.chosen import GREEN, RED, unit


def test_key_words_split_folders_names_humps_and_digits_without_the_extension() -> None:
    assert name_words("photos/2023/2023-06-04/IMG_2041.JPG") == "photos 2023 2023 06 04 img 2041 img2041"
    assert name_words("Urlaub/Große Mauer.heic") == "urlaub grosse mauer grossemauer"
    assert name_words("trips/myHolidayPhoto.png") == "trips my holiday photo myholidayphoto"
    assert name_words("DSC01234.ARW") == "dsc 01234 dsc01234"
    assert name_words("東京2019/写真.jpg") == "東京 2019 写真"
    assert query_words("IMG_2041.jpg") == ["img", "2041"]  # a typed file name drops its extension
    assert query_words("version 2.5") == ["version", "2", "5"]  # a number is no extension


def test_word_query_matches_all_words_prefixes_the_last_and_spells_the_exact_name() -> None:
    query = word_query([TermWords(["img", "204"])])
    assert query is not None
    assert query.match == "('img' & '204')" and query.match_prefix == "('img' & '204':*)"
    assert query.exact_name == "'img204':A"
    quoted_and_minus = word_query([TermWords(["tax", "return"], prefix=False), TermWords(["2019"], negative=True)])
    assert quoted_and_minus is not None and quoted_and_minus.match_prefix is None
    assert quoted_and_minus.match == "('tax' & 'return') & !('2019')"
    assert word_query([TermWords(["cat"], negative=True)]) is None  # nothing to look for


def test_parse_reads_terms_weights_quotes_and_images_like_rclip() -> None:
    terms = parse('2:red car - "tax return" + similar:photos/a b.jpg - 0.5:night + C++ code')
    assert terms == [Term("text", "red car", 2.0), Term("keyword", "tax return", -1.0),
                     Term("image", "photos/a b.jpg", 1.0), Term("text", "night", -0.5), Term("text", "C++ code", 1.0)]
    assert parse('"a - b" + c') == [Term("keyword", "a - b", 1.0), Term("text", "c", 1.0)]  # no split inside quotes


@pytest.mark.parametrize("q, problem", [
    ("   ", "blank"), ("red +", "empty"), ("- red + + blue", "empty"), ("2x:red", "weight"), ("0:red", "weight"),
    ("1.2.3:red", "weight"), ("500:red", "weight"), ("3:", "nothing"), ("similar:", "without a key"), ('""', "empty"),
])
def test_parse_refuses_empty_terms_and_malformed_weights(q: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse(q)


def test_combine_is_the_renormalised_weighted_sum_and_refuses_cancelling_terms() -> None:
    combined = combine([(2.0, RED * 3), (-1.0, GREEN)])
    assert np.allclose(combined, unit(2, -1, 0, 0))
    with pytest.raises(QueryError, match="cancel"):
        combine([(1.0, RED), (-1.0, RED * 5)])


def test_cutoff_rule_uses_floor_zero_when_a_minus_term_shrinks_the_scores() -> None:
    assert hybrid.cutoff_score(0.9, 0.2, has_minus=False) == pytest.approx(0.55)
    assert hybrid.cutoff_score(0.3, 0.2, has_minus=True) == pytest.approx(0.15)
    assert hybrid.cutoff_score(0.1, 0.2, has_minus=False) == 0.2  # the best below the floor: nothing kept
    assert hybrid.cutoff_score(None, 0.2, has_minus=False) is None


def test_person_terms_are_filters_alone_they_list() -> None:
    terms = parse('person:"Grace Hopper" + person:Eileen + beach')
    assert terms[:2] == [Term("person", "Grace Hopper", 1.0), Term("person", "Eileen", 1.0)]
    plan = hybrid.plan(terms, "hybrid")
    assert not plan.listing and plan.needs_vector and plan.words is not None
    alone = hybrid.plan(parse('person:"Grace Hopper" + person:Eileen'), "semantic")
    assert alone.listing and not alone.needs_vector and alone.words is None


@pytest.mark.parametrize(("q", "problem"), [
    ("person:", "names no person"), ('person:""', "names no person"), ('person:"Grace" beach', "names no person"),
    ("beach - person:Grace", "no minus sign or weight"), ("2:person:Grace", "no minus sign or weight"),
])
def test_person_terms_refuse_what_cannot_name_a_person(q: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse(q)
