"""Hybrid search: picture matches (the vector index) and word matches (the keyword index) in one ranking,
with the adaptive cutoff, the date sorts and paging.

- Pictures: the nearest neighbours of the query vector (`queries.search`), as deep as the page needs and
  at least VECTOR_DEPTH, so the cutoff has something to count.
- Words: the rows whose names or text hold the query's words (`queries.word_matches`): whole words first,
  prefixes when those find too few; a name the query spells exactly first, then the matches most like the
  query vector (the newest without one).
- Fusion: reciprocal rank fusion, Σ 1/(60 + rank) over the two lists; an exact name or ID match first.
- Cutoff `auto`: a picture match is kept when its score is at least halfway from the model's floor to the
  best picture match's (floor 0 when a minus term is in the vector, as such scores run lower); word matches
  are always kept. `hidden` counts the picture matches held back among those looked at.
- Sort `newest`/`oldest`: the relevant set (what passes the cutoff, at most MAX_RESULTS) by the date the
  photo was taken, else its last-modified time; undated ones last.

Pages are slices of one ranking recomputed per request, so the same query gives the same pages while the
collection does not change.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from shared.config import DEFAULT_HNSW_EF_SEARCH
from shared.search.keywords import TermWords, WordQuery, all_of, query_words, word_query
from shared.search.query_language import QueryError, Term
from shared.store import faces, queries
from shared.store.catalog import Catalog, Collection

Mode = Literal["hybrid", "semantic", "keyword"]
Sort = Literal["relevance", "newest", "oldest"]
Cutoff = Literal["auto", "none"]
Reason = Literal["name", "text", "place", "tag", "visual"]

RRF_K = 60
MAX_RESULTS = 1000  # the relevant set a query ranks, sorts and pages through
VECTOR_DEPTH = 64  # picture matches looked at for a first page: the cutoff counts `hidden` among them
WORD_DEPTH = 300  # word matches fused with the pictures (a word in every name adds little past this)
CUTOFF_FRACTION = 0.5  # auto keeps scores at least this far from the floor to the best score


@dataclass(frozen=True)
class Plan:
    """What a parsed query asks of the two indexes."""

    mode: Mode
    words: WordQuery | None  # keyword matching (hybrid and keyword modes)
    required: str | None  # the quoted terms: a tsquery every result matches (every mode)
    exclude: tuple[str, ...]  # the stored images the query searches by: never results
    needs_vector: bool  # a text or image term without a minus, and a mode that compares pictures
    has_minus: bool  # a minus term is in the vector
    listing: bool = False  # person terms alone: their photos by date (the filters name the people)


def plan(terms: list[Term], mode: Mode, *, uploaded: bool = False) -> Plan:
    """The plan for `terms` in `mode` (plus an uploaded image); QueryError when the mode cannot use them.
    Person terms are filters (the caller puts their people into SearchFilters.people): alone, they list."""
    if any(term.kind == "person" for term in terms):
        terms = [term for term in terms if term.kind != "person"]
        if not terms and not uploaded:
            return Plan(mode, None, None, (), False, False, listing=True)
    images = [term for term in terms if term.kind == "image"]
    if mode == "keyword" and (images or uploaded):
        raise QueryError("mode keyword matches words only: drop the image term, or use mode hybrid or semantic")
    worded = [(term, TermWords(query_words(term.value), negative=term.weight < 0, prefix=term.kind == "text"))
              for term in terms if term.kind != "image"]
    quoted = [words for term, words in worded if term.kind == "keyword"]
    words = word_query([words for _, words in worded]) if mode != "semantic" else None
    vector_terms = [term for term in terms if term.kind != "keyword"]
    needs_vector = mode != "keyword" and (uploaded or any(term.weight > 0 for term in vector_terms))
    if mode == "keyword" and words is None:
        raise QueryError("mode keyword needs words to look for: letters or digits outside a minus term")
    if mode == "semantic" and not needs_vector:
        raise QueryError("mode semantic needs a text or similar: term without a minus")
    if not needs_vector and words is None:
        raise QueryError("nothing to look for: add a term without a minus that has letters or digits")
    return Plan(mode, words, all_of(quoted), tuple(term.value for term in images), needs_vector,
                any(term.weight < 0 for term in vector_terms))


def with_people(catalog: Catalog, collection: Collection, terms: list[Term],
                filters: queries.SearchFilters) -> queries.SearchFilters:
    """The filters with the people the query's person terms name (each the person of that name with the most
    faces); QueryError naming a name no person of the collection has."""
    people = list(filters.people)
    for term in terms:
        if term.kind != "person":
            continue
        found = faces.people_named(catalog, collection, term.value)
        if not found:
            raise QueryError(f"no person is named {term.value!r} in collection {collection.name!r}: name one "
                             "first in the People view (or PATCH /api/people/{id})")
        people.append(found[0])
    return replace(filters, people=tuple(dict.fromkeys(people)))


@dataclass(frozen=True)
class SearchRequest:
    """How a search is to be answered: sort, cutoff, page, and the filters every list takes."""

    sort: Sort = "relevance"
    cutoff: Cutoff = "auto"
    limit: int = 30
    offset: int = 0
    min_score: float | None = None
    filters: queries.SearchFilters = queries.SearchFilters()
    floor: float = 0.2  # the model's floor (Settings.search_floor_for)
    ef_search: int = DEFAULT_HNSW_EF_SEARCH


@dataclass(frozen=True)
class Page:
    rows: list[queries.PageRow]  # in order
    matched: dict[int, list[Reason]]  # id -> why it matched
    hidden: int  # picture matches the cutoff held back, among those looked at
    cutoff_score: float | None  # picture matches scoring lower were held back (auto cutoff or min_score)
    more: bool  # another page follows
    up_to: int | None = None  # the newest row id this ranking saw: later pages rank only rows up to it


def cutoff_score(best: float | None, floor: float, *, has_minus: bool) -> float | None:
    """cutoff=auto: halfway from the floor to the best picture match's score (the floor when the best is
    below it); None without picture matches. `cutoff_stop` is the same rule for the database."""
    if best is None:
        return None
    floor = 0.0 if has_minus else floor
    return floor + CUTOFF_FRACTION * (best - floor) if best > floor else floor


def cutoff_stop(floor: float, *, has_minus: bool, after: int) -> queries.StopRule:
    """cutoff_score as the rule that ends a deep picture list past its first `after` rows (queries.StopRule)."""
    return queries.StopRule(0.0 if has_minus else floor, CUTOFF_FRACTION, after)


def fuse(pictures: list[int], words: list[int], exact: set[int]) -> list[int]:
    """Reciprocal rank fusion of two rankings (ids, best first), exact name matches first."""
    score: dict[int, float] = defaultdict(float)
    for ranking in (pictures, words):
        for rank, item in enumerate(ranking, start=1):
            score[item] += 1.0 / (RRF_K + rank)
    return sorted(score, key=lambda item: (item not in exact, -score[item], item))


def _pictures(catalog: Catalog, collection: Collection, vector: np.ndarray | None, similar_to: str | None,
              request: SearchRequest, filters: queries.SearchFilters, depth: int,
              plan: Plan) -> tuple[list[queries.Nearest], list[queries.Nearest], float | None]:
    """(the picture list looked at: the first `depth`, the matches the cutoff keeps, the cutoff's score)."""
    hits = queries.nearest(catalog, collection, vector, limit=depth, min_score=request.min_score, filters=filters,
                           ef_search=request.ef_search, similar_to=similar_to)
    threshold = _threshold(hits, request, plan)
    return hits, [hit for hit in hits if threshold is None or hit.score >= threshold], threshold


def _words(catalog: Catalog, collection: Collection, words: WordQuery, filters: queries.SearchFilters,
           vector: np.ndarray | None, limit: int) -> tuple[list[queries.WordMatch], str]:
    """Word matches (and the tsquery that found them): whole words, then prefixes when those find fewer than
    `limit` (a prefix of a common word reads much more of the index); queries.ranked_page does the same in SQL."""
    found, total = queries.word_matches(catalog, collection, words.match, exact_name=words.exact_name, limit=limit,
                                        filters=filters, vector=vector)
    if total < limit and words.match_prefix:
        found, _ = queries.word_matches(catalog, collection, words.match_prefix, exact_name=words.exact_name,
                                        limit=limit, filters=filters, vector=vector)
        return found, words.match_prefix
    return found, words.match


def _word_order(matches: list[queries.WordMatch], *, by_vector: bool) -> list[int]:
    """Exact names first, then the most like the query vector, or the newest."""
    if by_vector:
        ranked = sorted(matches, key=lambda m: (not m.exact, m.distance if m.distance is not None else 2.0, m.id))
    else:
        ranked = sorted(matches, key=lambda m: (not m.exact, -(m.when if m.when is not None else -1e18), -m.id))
    return [match.id for match in ranked]


def search(catalog: Catalog, collection: Collection, plan: Plan, vector: np.ndarray | None,
           request: SearchRequest, *, similar_to: str | None = None) -> Page:
    """One page of a search: both lists, the cutoff, fusion or a date sort, then the page's rows. The pictures
    are compared with `vector`, or with the stored image `similar_to` (a lone similar: term, KeyError if it is not
    embedded). Without request.filters.up_to_id (a first page), it ranks every row and says up to which one."""
    filters = replace(request.filters, words=plan.required, exclude=plan.exclude)
    if plan.listing:
        return _listing(catalog, collection, filters, request)
    if plan.words is None and request.sort == "relevance":
        return _picture_search(catalog, collection, plan, vector, similar_to, request, filters)
    if plan.mode == "keyword" or request.sort != "relevance":  # words alone, or a date sort: ranked in SQL
        return _ranked_search(catalog, collection, plan, vector, similar_to, request, filters)
    if filters.up_to_id is None:
        filters = replace(filters, up_to_id=queries.last_id(catalog, collection))
    depth = min(MAX_RESULTS, max(VECTOR_DEPTH, request.offset + request.limit + 1))
    pictures, kept, threshold = _pictures(catalog, collection, vector, similar_to, request, filters, depth, plan) \
        if plan.needs_vector else ([], [], None)
    matches: list[queries.WordMatch] = []
    matched_by = plan.words.match if plan.words else None
    if plan.words is not None:
        matches, matched_by = _words(catalog, collection, plan.words, filters, vector, WORD_DEPTH)
    if not kept:
        order = _word_order(matches, by_vector=vector is not None)
    elif not matches:
        order = [hit.id for hit in kept]
    else:
        order = fuse([hit.id for hit in kept], _word_order(matches, by_vector=True),
                     {match.id for match in matches if match.exact})
    order = order[:MAX_RESULTS]
    page_ids = order[request.offset:request.offset + request.limit]
    rows = queries.page_rows(catalog, collection, page_ids, vector=vector, words=matched_by,
                             in_name=plan.words.in_name if plan.words else "",
                             in_text=plan.words.in_text if plan.words else "",
                             in_place=plan.words.in_place if plan.words else "",
                             in_tag=plan.words.in_tag if plan.words else "")
    return _page([rows[item] for item in page_ids if item in rows], request, {hit.id for hit in kept},
                 _hidden(pictures, threshold), threshold, total=len(order), up_to=filters.up_to_id)


def _threshold(pictures: list[queries.Nearest], request: SearchRequest, plan: Plan) -> float | None:
    """The auto cutoff's score for this picture list (None with cutoff=none or no pictures)."""
    if request.cutoff != "auto":
        return None
    return cutoff_score(pictures[0].score if pictures else None, request.floor, has_minus=plan.has_minus)


def _picture_search(catalog: Catalog, collection: Collection, plan: Plan, vector: np.ndarray | None,
                    similar_to: str | None, request: SearchRequest, filters: queries.SearchFilters) -> Page:
    """Pictures alone, best first: the list, the cutoff and the page's rows in one statement. The kept matches are a
    prefix of the list (best first), so the page is the statement's window of them."""
    depth = min(MAX_RESULTS, max(VECTOR_DEPTH, request.offset + request.limit + 1))
    cutoff = cutoff_stop(request.floor, has_minus=plan.has_minus, after=depth) if request.cutoff == "auto" else None
    found = queries.picture_page(catalog, collection, vector, similar_to=similar_to, depth=depth,
                                 offset=request.offset, limit=request.limit, min_score=request.min_score,
                                 cutoff=cutoff, filters=filters, ef_search=request.ef_search)
    up_to = filters.up_to_id if filters.up_to_id is not None else found.newest_id
    return _page([queries.PageRow(hit, False, False) for hit in found.rows], request,
                 {hit.id for hit in found.rows}, found.hidden, found.cutoff_score, total=found.kept, up_to=up_to)


def _ranked_search(catalog: Catalog, collection: Collection, plan: Plan, vector: np.ndarray | None,
                   similar_to: str | None, request: SearchRequest, filters: queries.SearchFilters) -> Page:
    """Words alone, or a date sort: the picture matches the cutoff keeps (every one, up to MAX_RESULTS: the list
    reads past its first VECTOR_DEPTH only as far as the cutoff keeps) and the word matches, ranked in SQL, one page
    back, in one statement."""
    words, pictures = _ranked_lists(plan, request, searches_pictures=vector is not None or similar_to is not None)
    found = queries.ranked_page(catalog, collection, pictures, words, order=request.sort, offset=request.offset,
                                limit=request.limit, most=MAX_RESULTS, filters=filters, vector=vector,
                                similar_to=similar_to)
    up_to = filters.up_to_id if filters.up_to_id is not None else found.newest_id
    return _page(found.rows, request, found.visual, found.hidden, found.cutoff_score, total=found.total, up_to=up_to)


def _ranked_lists(plan: Plan, request: SearchRequest, *,
                  searches_pictures: bool) -> tuple[queries.WordList | None, queries.PictureList | None]:
    """The word list and the picture list a search ranked in SQL takes its relevant set from."""
    words = pictures = None
    if plan.words is not None:
        # Prefixes below WORD_DEPTH whole-word matches, as `_words` looks at them: every mode finds the same words
        # (and a second scan for 845 matches of "beach trip" cost a keyword search a third of its time).
        words = queries.WordList(plan.words.match, plan.words.match_prefix, plan.words.exact_name, MAX_RESULTS,
                                 WORD_DEPTH, plan.words.in_name, plan.words.in_text, plan.words.in_place,
                                 plan.words.in_tag)
    if plan.needs_vector and searches_pictures:
        cutoff = cutoff_stop(request.floor, has_minus=plan.has_minus, after=VECTOR_DEPTH) \
            if request.cutoff == "auto" else None
        pictures = queries.PictureList(MAX_RESULTS, request.min_score, request.ef_search, cutoff)
    return words, pictures


def _hidden(pictures: list[queries.Nearest], threshold: float | None) -> int:
    """How many of the picture matches looked at score under the cutoff."""
    return sum(1 for hit in pictures if threshold is not None and hit.score < threshold)


def _page(rows: list[queries.PageRow], request: SearchRequest, visual: set[int] | frozenset[int], hidden: int,
          threshold: float | None, *, total: int, up_to: int | None) -> Page:
    """The Page of `rows` (in order): why each matched (`visual`: the picture matches the cutoff kept), how many
    picture matches the cutoff held back, whether more follow."""
    matched: dict[int, list[Reason]] = {
        row.hit.id: [reason for reason, found in (("name", row.in_name), ("text", row.in_text), ("place", row.in_place),
                                                  ("tag", row.in_tag), ("visual", row.hit.id in visual)) if found]
        for row in rows
    }
    applied = max((score for score in (threshold, request.min_score) if score is not None), default=None)
    return Page(rows, matched, hidden, applied,
                more=min(total, MAX_RESULTS) > request.offset + request.limit, up_to=up_to)


def _listing(catalog: Catalog, collection: Collection, filters: queries.SearchFilters,
             request: SearchRequest) -> Page:
    """A page of the rows the filters keep, by date: newest first (oldest with sort=oldest)."""
    if filters.up_to_id is None:  # a first page: it lists up to the newest row, and so do its later pages
        filters = replace(filters, up_to_id=queries.last_id(catalog, collection))
    ids = queries.dated_ids(catalog, collection, filters, newest=request.sort != "oldest",
                            limit=min(MAX_RESULTS, request.offset + request.limit + 1))
    page_ids = ids[request.offset:request.offset + request.limit]
    rows = queries.page_rows(catalog, collection, page_ids)
    page = [rows[item] for item in page_ids if item in rows]
    return Page(page, {row.hit.id: [] for row in page}, 0, None, more=len(ids) > request.offset + request.limit,
                up_to=filters.up_to_id)


def count(catalog: Catalog, collection: Collection, plan: Plan, vector: np.ndarray | None,
          request: SearchRequest) -> int:
    """How many results a query has: its relevant set (picture matches the cutoff keeps, and every word match),
    at most MAX_RESULTS, as a date sort pages through it. Saved searches and Discover store it."""
    filters = replace(request.filters, words=plan.required, exclude=plan.exclude)
    if plan.listing:
        return len(queries.dated_ids(catalog, collection, filters, newest=True, limit=MAX_RESULTS))
    words, pictures = _ranked_lists(plan, request, searches_pictures=vector is not None)
    if words is None and pictures is None:
        return 0
    found = queries.ranked_page(catalog, collection, pictures, words, order="newest", offset=0, limit=1,
                                most=MAX_RESULTS, filters=filters, vector=vector)
    return min(found.total, MAX_RESULTS)
