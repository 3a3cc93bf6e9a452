"""Duplicates: the same bytes under several keys, and pictures whose vectors (almost) coincide.

Three levels, each a set of groups with a suggested copy to keep:
- exact: the same SHA-256 of the object's bytes (computed at ingest; S3 ETags are no content hash for
  multipart uploads);
- near: cosine distance <= 0.01 (Immich's duplicate detection default): re-encodes, resizes, tiny edits;
- similar: cosine distance <= 0.06 (clip-retrieval deduplicates at similarity 0.94; Ente's similar-images
  view uses 0.04): bursts and retakes of one scene.

Near and similar groups come from the HNSW index: each image's nearest neighbours (one index scan per
image, inside the database) are found once for its content and model — at ingest, by the sweep for older
images, or by the request itself for the few still missing — and kept in a table of their own; a request
then joins the pairs within its threshold by union-find. Never an n² comparison, and a page costs a scan
of the stored lists, not an index scan per image.

Also here: folding near-duplicates of a search page into one item (`collapse=near`). The SQL (the neighbours
table, stored copies of the same bytes) is shared/store/neighbours.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Literal

import numpy as np

from shared.store import queries
from shared.store.catalog import Catalog, Collection
from shared.store.neighbours import (
    ANCHORS_PER_STATEMENT,
    count_missing,
    exact_sets,
    index_neighbours,
    near_hits,
    neighbour_pairs,
    similarities,
)
from shared.store.queries import Hit, SearchFilters

Level = Literal["exact", "near", "similar"]
INDEX_SECONDS = 10.0  # a request finds missing neighbour lists for about this long, then answers


@dataclass(frozen=True)
class Group:
    """One set of duplicates, the suggested keeper first."""

    level: Level
    items: list[Hit]

    @property
    def keep(self) -> Hit:
        return self.items[0]


def content_hash(data: bytes) -> str:
    """What makes two objects exact duplicates: the SHA-256 of their bytes, hex."""
    return hashlib.sha256(data).hexdigest()


# ---- grouping -----------------------------------------------------------------------------------


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def sets(self) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for item in self.parent:
            members.setdefault(self.find(item), []).append(item)
        return [sorted(ids) for ids in members.values() if len(ids) > 1]


def index_missing(catalog: Catalog, collection: Collection, *, seconds: float) -> int:
    """Neighbour lists for the images that lack one, for about `seconds` at most (whole statements);
    how many still lack one after that (the sweep, or the next request, does them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if index_neighbours(catalog, collection) < ANCHORS_PER_STATEMENT:
            return 0
    return count_missing(catalog, collection)


def group_sets(catalog: Catalog, collection: Collection, level: Level, threshold: float) -> tuple[list[list[int]], int]:
    """Every group's ids, biggest first (then by smallest id, so pages are stable), and how many images
    are not compared yet (near and similar: neighbour lists are made for up to INDEX_SECONDS first)."""
    if level == "exact":
        sets, waiting = exact_sets(catalog, collection), 0
    else:
        waiting = index_missing(catalog, collection, seconds=INDEX_SECONDS)
        union = UnionFind()
        for a, b in neighbour_pairs(catalog, collection, threshold):
            union.union(a, b)
        sets = union.sets()
    return sorted(sets, key=lambda ids: (-len(ids), ids[0])), waiting


def keep_order(hit: Hit) -> tuple[Any, ...]:
    """The keeper first: most pixels, then taken earliest (undated last), then the shortest key."""
    taken = hit.taken_at
    when = (taken if taken.tzinfo else taken.replace(tzinfo=UTC)).timestamp() if taken else 0.0
    return (-((hit.width or 0) * (hit.height or 0)), taken is None, when, len(hit.key), hit.key)


def group_page(catalog: Catalog, collection: Collection, level: Level, threshold: float, *, limit: int,
               after: tuple[int, int] | None = None) -> tuple[list[Group], tuple[int, int] | None, int, int]:
    """One page of groups, biggest first: (groups, position for the next page or None, total groups, images
    not compared yet). `after` is the (size, smallest id) of the previous page's last group."""
    listing, waiting = group_sets(catalog, collection, level, threshold)
    sets = listing if after is None else [ids for ids in listing if (-len(ids), ids[0]) > (-after[0], after[1])]
    page = sets[:limit]
    rows = queries.hits_by_id(catalog, collection, [i for ids in page for i in ids])
    groups = []
    for ids in page:
        members = sorted((rows[i] for i in ids if i in rows), key=keep_order)
        if len(members) > 1:  # a member deleted meanwhile may leave one
            groups.append(Group(level, members))
    following = (len(page[-1]), page[-1][0]) if len(sets) > limit else None
    return _scored(catalog, collection, groups), following, len(listing), waiting


def _scored(catalog: Catalog, collection: Collection, groups: list[Group]) -> list[Group]:
    """Each member's `score`: its cosine similarity to the group's keeper (1 for the keeper and for exact
    copies, which halfvec's rounding would show as 0.9999)."""
    pairs = [(hit.id, group.keep.id) for group in groups if group.level != "exact" for hit in group.items[1:]]
    scores = similarities(catalog, collection, pairs)
    return [Group(group.level, [replace(hit, score=round(float(scores.get(hit.id, 1.0)), 6)) for hit in group.items])
            for group in groups]


# ---- collapse=near on a search page -----------------------------------------------------------------


def collapse_near(catalog: Catalog, collection: Collection, hits: Sequence[Hit], threshold: float, *,
                  vector: np.ndarray | None = None, similar_to: str | None = None,
                  filters: SearchFilters | None = None) -> list[tuple[Hit, int]]:
    """The page's hits with near-duplicates folded: (hit, how many near-duplicates it stands for).

    Of a hit and its neighbours within `threshold` (that pass the same filters), the one closest to the
    query stands for them all (ties: the lower id); the others are left out here and on every other page,
    so the rule does not depend on paging. Without a query vector the lowest id stands for them.
    """
    if not hits:
        return []
    rows = near_hits(catalog, collection, [hit.id for hit in hits], threshold, vector=vector, similar_to=similar_to,
                     filters=filters)
    # (distance to the query, id): the lower stands for the group. No query: distances are NULL, ids decide.
    rank: dict[int, tuple[float, int]] = {}
    neighbours: dict[int, list[tuple[float, int]]] = {}
    for hit_id, own, other, other_distance in rows:
        rank[hit_id] = (float(own or 0.0), hit_id)
        if other is not None:
            neighbours.setdefault(hit_id, []).append((float(other_distance or 0.0), other))
    shown = []
    for hit in hits:
        near = neighbours.get(hit.id, [])
        if hit.id not in rank or all(rank[hit.id] < other for other in near):
            shown.append((hit, len(near)))
    return shown
