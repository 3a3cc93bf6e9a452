"""Faces and people in SQL: the faces stage's claims and writes, grouping through the HNSW index on the
descriptors, and the reads and writes of the People API (list, one person, name, merge, re-group, forget).

A collection has a faces table and a people table (shared/store/tables.py `faces_table_sql`). The stage
(shared/people/stage.py) claims rows as the OCR stage does (shared/store/stage_rows.py),
stores each picture's faces with the etag they were found in, and then groups the new faces: `SqlFaces`
answers shared/people/grouping.py's questions with one statement per face (the nearest faces within
MAX_DISTANCE and the nearest that has a person), and every grouping write holds the collection's people
lock (an advisory lock), so two workers never start the same person twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.people import grouping
from shared.people.grouping import FaceId, Neighbour, PersonId, Rules
from shared.store.catalog import REGISTRY, Catalog, Collection
from shared.store.db import quote_ident
from shared.store.hnsw import hnsw_session
from shared.store.stage_rows import FACES
from shared.store.tables import faces_table, people_table
from shared.store.vectors import vector_literal

NEIGHBOURS = 8  # nearest faces asked for per face: MIN_FACES - 1 are needed, more lets a waiting face be seen
EF_SEARCH = 64
RULES = Rules()  # grouping.MAX_DISTANCE and MIN_FACES
TEMPORARY_PEOPLE = -(2**62)  # the first of a regroup's new groups, before they become people


def _faces(collection: Collection) -> str:
    return quote_ident(faces_table(collection.table))


def _people(collection: Collection) -> str:
    return quote_ident(people_table(collection.table))


# ---- the stage's rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFace:
    box: tuple[float, float, float, float]
    score: float
    descriptor: np.ndarray


def store_faces(catalog: Catalog, collection: Collection, image_id: int, key: str, etag: str | None,
                faces: Sequence[StoredFace]) -> tuple[list[FaceId], set[PersonId]] | None:
    """The faces found in the row's content, in place of any found before: (new face ids, people who lost a
    face). None if the picture was replaced or removed since the claim."""
    def write(conn: Any) -> tuple[list[FaceId], set[PersonId]] | None:
        if not conn.run(f"UPDATE {quote_ident(collection.table)} SET faces_state = 'done', faces_error = NULL, "
                        f"faces_next_attempt_at = NULL WHERE {FACES.claimed_row} AND status = 'embedded' "
                        "RETURNING id", key=key, etag=etag):
            return None
        old = conn.run(f"DELETE FROM {_faces(collection)} WHERE image_id = :image RETURNING person_id", image=image_id)
        if not faces:
            return [], {person for (person,) in old if person is not None}
        conn.run(f"UPDATE {REGISTRY} SET faces_found = true WHERE name = :name AND NOT faces_found",
                 name=collection.name)
        rows = conn.run(
            f"""INSERT INTO {_faces(collection)} (image_id, box, score, descriptor)
                SELECT :image, ARRAY[u.left_edge, u.top_edge, u.right_edge, u.bottom_edge]::real[], u.score,
                       CAST(u.descriptor AS vector)
                FROM unnest(CAST(:lefts AS real[]), CAST(:tops AS real[]), CAST(:rights AS real[]),
                            CAST(:bottoms AS real[]), CAST(:scores AS real[]), CAST(:descriptors AS text[]))
                     WITH ORDINALITY AS u(left_edge, top_edge, right_edge, bottom_edge, score, descriptor, n)
                ORDER BY u.n RETURNING id""",
            image=image_id, lefts=[f.box[0] for f in faces], tops=[f.box[1] for f in faces],
            rights=[f.box[2] for f in faces], bottoms=[f.box[3] for f in faces], scores=[f.score for f in faces],
            descriptors=[vector_literal(f.descriptor) for f in faces],
        )
        return [int(row[0]) for row in rows], {person for (person,) in old if person is not None}

    return catalog.db.transaction(write)


# ---- grouping -----------------------------------------------------------------------------------------


def _lock_people(conn: Any, collection: Collection) -> None:
    """The collection's people lock, until the transaction ends: one grouping write at a time."""
    conn.run("SELECT pg_advisory_xact_lock(hashtext(:name))", name=people_table(collection.table))


class SqlFaces:
    """grouping.FaceSource on a collection's faces table, inside a transaction holding the people lock.
    Remembers the people it touched and the waiting faces it saw near the faces it was asked about."""

    def __init__(self, conn: Any, collection: Collection, rules: Rules = RULES, *, temporary: bool = False):
        self.conn, self.collection, self.rules = conn, collection, rules
        self.touched: set[PersonId] = set()
        self.assigned: set[FaceId] = set()
        self.waiting_seen: set[FaceId] = set()
        # regroup: new people are negative numbers, made real afterwards; increasing, as real ids would be, so
        # grouping.successors breaks ties the same way (the group made first).
        self.temporary = temporary
        self._next_temporary = itertools.count(TEMPORARY_PEOPLE)

    def neighbours(self, face: FaceId) -> list[Neighbour]:
        faces = _faces(self.collection)
        params: dict[str, Any] = {"face": int(face), "k": NEIGHBOURS, "max_distance": float(self.rules.max_distance)}
        session = hnsw_session(params, ef_search=EF_SEARCH, iterative_scan="relaxed_order")
        target = f"(SELECT descriptor FROM {faces} WHERE id = :face)"
        nearest = (f"SELECT id, descriptor <-> {target} AS distance, person_id FROM {faces} "
                   "WHERE id <> :face AND cfg.scan IS NOT NULL {extra} "
                   f"ORDER BY descriptor <-> {target} LIMIT {{limit}}")
        rows = self.conn.run(
            f"""WITH {session}
                SELECT DISTINCT n.id, n.distance, n.person_id FROM cfg CROSS JOIN LATERAL (
                    ({nearest.format(extra="", limit=":k")})
                    UNION ALL
                    ({nearest.format(extra="AND person_id IS NOT NULL", limit="1")})
                ) AS n WHERE n.distance <= :max_distance ORDER BY n.distance, n.id""",
            **params,
        )
        found = [Neighbour(int(row_id), float(distance), None if person is None else int(person))
                 for row_id, distance, person in rows]
        self.waiting_seen.update(n.face for n in found if n.person is None)
        return found

    def assign(self, face: FaceId, person: PersonId) -> None:
        self.conn.run(f"UPDATE {_faces(self.collection)} SET person_id = :person WHERE id = :face",
                      person=int(person), face=int(face))
        self.touched.add(person)
        self.assigned.add(face)

    def new_person(self) -> PersonId:
        if self.temporary:
            return next(self._next_temporary)
        ((person,),) = self.conn.run(f"INSERT INTO {_people(self.collection)} DEFAULT VALUES RETURNING id")
        return int(person)


@dataclass
class Grouped:
    assigned: int = 0  # faces given a person
    new_people: int = 0
    waiting: int = 0  # faces still without one
    people: set[PersonId] = field(default_factory=set)  # people who gained faces


def group_faces(catalog: Catalog, collection: Collection, faces: Sequence[FaceId], *, rules: Rules = RULES,
                lost: Iterable[PersonId] = ()) -> Grouped:
    """One incremental round (grouping.recognise) over new faces, then over the waiting faces near them (a new
    face may complete their person); the people touched (and those in `lost`, who lost faces) recounted."""
    def run(conn: Any) -> Grouped:
        _lock_people(conn, collection)
        source = SqlFaces(conn, collection, rules)
        before = _last_person(conn, collection)
        waiting = grouping.recognise(sorted(faces), source, rules)
        nearby = sorted(source.waiting_seen - set(faces) - source.assigned)  # seen waiting, and waiting still
        waiting += grouping.recognise(nearby, source, rules)
        refresh_people(conn, collection, source.touched | set(lost))
        new = sum(person > before for person in source.touched)
        return Grouped(len(faces) + len(nearby) - len(waiting), new, len(waiting), source.touched)

    if not faces and not lost:
        return Grouped()
    return catalog.db.transaction(run)


def _last_person(conn: Any, collection: Collection) -> int:
    return int(conn.run(f"SELECT COALESCE(max(id), 0) FROM {_people(collection)}")[0][0])


def refresh_people(conn: Any, collection: Collection, people: Iterable[PersonId]) -> None:
    """Face counts and covers (the best-scoring face) of these people; people left without faces go."""
    ids = [int(person) for person in people]
    if not ids:
        return
    faces, persons = _faces(collection), _people(collection)
    conn.run(
        f"""UPDATE {persons} AS p SET face_count = c.n, cover_face = c.cover
            FROM (SELECT person_id, count(*) AS n, (array_agg(id ORDER BY score DESC, id))[1] AS cover
                  FROM {faces} WHERE person_id = ANY(CAST(:ids AS bigint[])) GROUP BY person_id) AS c
            WHERE p.id = c.person_id""",
        ids=ids,
    )
    conn.run(f"DELETE FROM {persons} AS p WHERE p.id = ANY(CAST(:ids AS bigint[])) "
             f"AND NOT EXISTS (SELECT 1 FROM {faces} WHERE person_id = p.id)", ids=ids)


def regroup(catalog: Catalog, collection: Collection, *, rules: Rules = RULES) -> Grouped:
    """Every face grouped again from scratch in id order; each new group continues the old person most of its
    faces had (named people first), so ids and names survive; old people continued by no group go."""
    def run(conn: Any) -> Grouped:
        _lock_people(conn, collection)
        faces, persons = _faces(collection), _people(collection)
        old = {int(face): person for face, person in conn.run(f"SELECT id, person_id FROM {faces}")}
        named = {int(person) for (person,) in conn.run(f"SELECT id FROM {persons} WHERE name IS NOT NULL")}
        conn.run(f"UPDATE {faces} SET person_id = NULL WHERE person_id IS NOT NULL")
        source = SqlFaces(conn, collection, rules, temporary=True)
        waiting = grouping.recognise(sorted(old), source, rules)
        new = {int(face): int(group) for face, group in conn.run(
            f"SELECT id, person_id FROM {faces} WHERE person_id IS NOT NULL")}
        final = {}
        continued = _continued(old, new, named)
        for group in sorted(set(new.values())):  # the order groups were made
            final[group] = continued.get(group) or \
                int(conn.run(f"INSERT INTO {persons} DEFAULT VALUES RETURNING id")[0][0])
        conn.run(f"""UPDATE {faces} AS f SET person_id = m.person FROM unnest(CAST(:groups AS bigint[]),
                     CAST(:people AS bigint[])) AS m(grp, person) WHERE f.person_id = m.grp""",
                 groups=list(final), people=list(final.values()))
        kept = set(final.values())
        conn.run(f"DELETE FROM {persons} WHERE NOT (id = ANY(CAST(:kept AS bigint[])))", kept=sorted(kept))
        refresh_people(conn, collection, kept)
        return Grouped(len(new), len(kept - set(continued.values())), len(waiting), kept)

    return catalog.db.transaction(run)


def _continued(old: dict[FaceId, PersonId | None], new: dict[FaceId, PersonId],
               named: set[PersonId]) -> dict[PersonId, PersonId]:
    """new group -> the old person it continues: named people first (their names survive), then the others."""
    chosen = grouping.successors(old, new, keep=lambda person: person in named)
    taken = set(chosen.values())
    rest = {face: group for face, group in new.items() if group not in chosen}
    chosen.update(grouping.successors(old, rest, keep=lambda person: person not in taken))
    return chosen


def merge(catalog: Catalog, collection: Collection, source: PersonId, into: PersonId) -> bool:
    """Every face of `source` moves to `into`, which keeps its name or takes `source`'s when it has none;
    `source` goes. False when either person does not exist."""
    def run(conn: Any) -> bool:
        _lock_people(conn, collection)
        persons = _people(collection)
        names = dict(conn.run(f"SELECT id, name FROM {persons} WHERE id = ANY(CAST(:ids AS bigint[]))",
                              ids=[int(source), int(into)]))
        if len(names) < 2:
            return False
        _, named = grouping.merge({}, {person: name for person, name in names.items() if name}, source, into)
        conn.run(f"UPDATE {_faces(collection)} SET person_id = :into WHERE person_id = :source",
                 into=int(into), source=int(source))
        conn.run(f"UPDATE {persons} SET name = :name WHERE id = :into", name=named.get(into), into=int(into))
        conn.run(f"DELETE FROM {persons} WHERE id = :source", source=int(source))
        refresh_people(conn, collection, [into])
        return True

    return catalog.db.transaction(run)


def prune(catalog: Catalog, collection: Collection) -> int:
    """Delete the faces of pictures removed, replaced (read again by the stage) or purged, and recount their
    people; how many faces went."""
    def run(conn: Any) -> int:
        _lock_people(conn, collection)
        gone = conn.run(
            f"""DELETE FROM {_faces(collection)} AS f WHERE NOT EXISTS (
                    SELECT 1 FROM {quote_ident(collection.table)} AS t WHERE t.id = f.image_id
                    AND t.status = 'embedded' AND t.faces_etag IS NOT DISTINCT FROM t.etag)
                RETURNING f.person_id""")
        refresh_people(conn, collection, {person for (person,) in gone if person is not None})
        return len(gone)

    return catalog.db.transaction(run)


def forget(catalog: Catalog, collection: Collection) -> int:
    """Delete every face and person of the collection; its pictures wait for the faces stage again (which
    finds them anew unless IB_FACES is off). How many faces were deleted."""
    def run(conn: Any) -> int:
        _lock_people(conn, collection)
        ((count,),) = conn.run(f"SELECT count(*) FROM {_faces(collection)}")
        conn.run(f"TRUNCATE {_faces(collection)}, {_people(collection)}")
        conn.run(f"UPDATE {quote_ident(collection.table)} SET faces_state = NULL, faces_etag = NULL, "
                 "faces_attempts = 0, faces_error = NULL, faces_next_attempt_at = NULL "
                 "WHERE faces_etag IS NOT NULL OR faces_state IS NOT NULL")
        return int(count)

    return catalog.db.transaction(run)


# ---- reads of the People API --------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    faces: int
    cover_key: str | None  # the image of its cover face
    cover_box: tuple[float, ...] | None


PERSON_SQL = """SELECT p.id, p.name, p.face_count, t.key, f.box FROM {people} AS p
    LEFT JOIN {faces} AS f ON f.id = p.cover_face LEFT JOIN {table} AS t ON t.id = f.image_id"""


def _person_sql(collection: Collection) -> str:
    return PERSON_SQL.format(people=_people(collection), faces=_faces(collection),
                             table=quote_ident(collection.table))


def _person(row: Sequence[Any]) -> Person:
    person_id, name, count, key, box = row
    return Person(int(person_id), name, int(count), key, None if box is None else tuple(float(v) for v in box))


def list_people(catalog: Catalog, collection: Collection, *, min_faces: int, limit: int) -> list[Person]:
    """People with at least `min_faces` faces, most faces first (then the oldest person)."""
    rows = catalog.db.run(f"{_person_sql(collection)} WHERE p.face_count >= :min_faces "
                          "ORDER BY p.face_count DESC, p.id LIMIT :limit", min_faces=int(min_faces), limit=int(limit))
    return [_person(row) for row in rows]


def get_person(catalog: Catalog, collection: Collection, person: int) -> Person | None:
    rows = catalog.db.run(f"{_person_sql(collection)} WHERE p.id = :person", person=int(person))
    return _person(rows[0]) if rows else None


def rename(catalog: Catalog, collection: Collection, person: int, name: str | None) -> bool:
    """Name a person (None: unnamed); False when there is no such person."""
    return bool(catalog.db.run(f"UPDATE {_people(collection)} SET name = :name WHERE id = :person RETURNING id",
                               name=name, person=int(person)))


def people_named(catalog: Catalog, collection: Collection, name: str) -> list[int]:
    """Ids of the people with this name (any case), most faces first."""
    rows = catalog.db.run(f"SELECT id FROM {_people(collection)} WHERE lower(name) = lower(:name) "
                          "ORDER BY face_count DESC, id", name=name)
    return [int(row[0]) for row in rows]


@dataclass(frozen=True)
class FaceOfPerson:
    person: int
    name: str | None
    box: tuple[float, ...]


def people_of_row_sql(collection: Collection, row: str) -> str:
    """SQL: the people found in the current content of the image row `row` (a quoted table name or alias),
    left to right, as a JSON array of [person id, name, box]; null without any. A column of every answer's rows
    (queries.hit_sql), so a page needs no statement of its own for them: a plain null in a collection where no
    face was ever stored (planning the subquery costs ~0.2 ms a statement, its rows as much again)."""
    if not collection.faces_found:
        return "NULL::json"
    return f"""(SELECT json_agg(json_build_array(f.person_id, p.name, f.box) ORDER BY f.box[1], f.id)
            FROM {_faces(collection)} AS f JOIN {_people(collection)} AS p ON p.id = f.person_id
            WHERE f.image_id = {row}.id AND {row}.faces_etag IS NOT DISTINCT FROM {row}.etag)"""


def faces_of_people(found: list[list[Any]] | None) -> tuple[FaceOfPerson, ...]:
    """The FaceOfPerson list from people_of_row_sql's JSON (pg8000 hands it over parsed)."""
    return tuple(FaceOfPerson(int(person), name, tuple(float(v) for v in box)) for person, name, box in found or ())


def faces_of_image(catalog: Catalog, collection: Collection, key: str) -> list[tuple[int, tuple[float, ...], float,
                                                                                   int | None]]:
    """(face id, box, score, person) of the faces found in a picture's current content (tests, tools)."""
    rows = catalog.db.run(
        f"""SELECT f.id, f.box, f.score, f.person_id FROM {_faces(collection)} AS f
            JOIN {quote_ident(collection.table)} AS t ON t.id = f.image_id
            WHERE t.key = :key AND t.faces_etag IS NOT DISTINCT FROM t.etag ORDER BY f.id""",
        key=key,
    )
    return [(int(face), tuple(float(v) for v in box), float(score), None if person is None else int(person))
            for face, box, score, person in rows]


def person_filter_sql(table: str, params: dict[str, Any], people: Sequence[int]) -> str:
    """SQL: the row's current content has a face of every one of `people` (their ids into `params`)."""
    params["people"], params["people_count"] = [int(person) for person in people], len(set(people))
    return (f"(id IN (SELECT image_id FROM {quote_ident(faces_table(table))} "
            "WHERE person_id = ANY(CAST(:people AS bigint[])) GROUP BY image_id "
            "HAVING count(DISTINCT person_id) = :people_count) AND faces_etag IS NOT DISTINCT FROM etag)")
