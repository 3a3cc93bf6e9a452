"""Faces grouped into people, incrementally, as Immich does it; pure rules that SQL can feed later.

The rules (Immich's facial recognition job, with dlib's Euclidean distances instead of ArcFace cosine):
- A face's *close* faces are the other faces within MAX_DISTANCE of it. A face is *core* when it and its close
  faces number at least MIN_FACES (Immich counts the face itself too), so a new person needs 3 faces.
- A face joins the person of its nearest close face that has a person. A core face with no such neighbour
  starts a new person. Any other face waits.
- Within a round, non-core faces are deferred until every core face of the round was decided (so people
  exist before the stragglers look for one); on that second look they join a person or keep waiting. A
  waiting face is tried again in a later round, when new photos may have brought its person.
- Re-grouping a collection forgets every person and runs one round over all its faces in a stable order;
  `successors` then tells which new group continues which old person, so ids and names survive.
- Merging moves every face of one person to another; the kept person takes the other's name if it had none.

MAX_DISTANCE = 0.5, measured on tests/fixtures/faces/ (faces.py has the table): a portrait against its
mirrored, cropped, rescaled, rotated, darkened, grey or re-compressed copies is 0.04-0.25 away (0.36 for a
37-px face, the smallest the detector returns), while Eileen Collins, Grace Hopper and the cameraman are
0.69-0.82 apart. dlib's own same-person threshold is 0.6 (99.38 % on LFW pairs); 0.5 leaves a margin below it
because joins chain (a face joins its nearest neighbour's person, whose faces then pull in their own
neighbours), and a person split in two is fixed with one merge while two people mixed in one are not
fixed as simply; dlib is also known to put different people of some groups closer than 0.6.

The rules are pure: `decide` takes a face's neighbours (`Neighbour`: face, distance, person) from wherever the
descriptors live, and `recognise` runs a round through a `FaceSource`. `MemoryFaces` is the in-memory source
for tests and small batches; a SQL source on pgvector answers the same questions with two queries per face,
as Immich does: the `MIN_FACES - 1` nearest other faces within MAX_DISTANCE (`ORDER BY descriptor <-> :d
LIMIT k`) and the nearest face within MAX_DISTANCE that has a person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

MAX_DISTANCE = 0.5  # Euclidean, between dlib descriptors: the farthest a face may be from a face of its person
MIN_FACES = 3  # faces a new person needs (a core face plus its close faces), as in Immich

FaceId = int  # a face's row id
PersonId = int  # a person's row id (or, after `regroup`, a new group's number)


@dataclass(frozen=True)
class Rules:
    max_distance: float = MAX_DISTANCE
    min_faces: int = MIN_FACES


@dataclass(frozen=True)
class Neighbour:
    """Another face near the one being decided."""
    face: FaceId
    distance: float
    person: PersonId | None  # None while that face has no person


class Action(Enum):
    JOIN = "join"  # take `person`
    NEW = "new"  # start a new person with this face
    WAIT = "wait"  # no person yet: try again later


@dataclass(frozen=True)
class Decision:
    action: Action
    person: PersonId | None = None  # the person joined, for JOIN


def is_core(neighbours: Sequence[Neighbour], rules: Rules = Rules()) -> bool:
    """Whether the face and its neighbours within the maximum distance are at least `min_faces`."""
    return 1 + sum(n.distance <= rules.max_distance for n in neighbours) >= rules.min_faces


def decide(neighbours: Sequence[Neighbour], *, deferred: bool, rules: Rules = Rules()) -> Decision:
    """What one face does, given the other faces near it (any order; farther than the maximum distance
    is ignored). The caller gives at least the `min_faces - 1` nearest faces and the nearest face that
    has a person. Before `deferred`, a non-core face waits for the core faces of its round."""
    close = sorted((n for n in neighbours if n.distance <= rules.max_distance), key=lambda n: n.distance)
    core = 1 + len(close) >= rules.min_faces
    if not core and not deferred:
        return Decision(Action.WAIT)
    nearest_person = next((n.person for n in close if n.person is not None), None)
    if nearest_person is not None:
        return Decision(Action.JOIN, nearest_person)
    return Decision(Action.NEW) if core else Decision(Action.WAIT)


class FaceSource(Protocol):
    """Where a round reads neighbours and writes people (memory here; SQL for a collection)."""

    def neighbours(self, face: FaceId) -> Sequence[Neighbour]: ...

    def assign(self, face: FaceId, person: PersonId) -> None: ...

    def new_person(self) -> PersonId: ...


def recognise(faces: Iterable[FaceId], source: FaceSource, rules: Rules = Rules()) -> list[FaceId]:
    """One round over `faces` (each without a person): core faces first, in the given order, then the
    deferred ones. Writes through `source`; returns the faces still waiting, in order."""
    deferred = []
    for face in faces:
        if not _apply(face, decide(source.neighbours(face), deferred=False, rules=rules), source):
            deferred.append(face)
    return [face for face in deferred
            if not _apply(face, decide(source.neighbours(face), deferred=True, rules=rules), source)]


def _apply(face: FaceId, decision: Decision, source: FaceSource) -> bool:
    """Carries the decision out; False when the face waits."""
    if decision.action is Action.JOIN and decision.person is not None:
        source.assign(face, decision.person)
    elif decision.action is Action.NEW:
        source.assign(face, source.new_person())
    return decision.action is not Action.WAIT


class MemoryFaces:
    """Descriptors and people in memory: a FaceSource for tests and small batches (all pairs, numpy)."""

    def __init__(self, descriptors: Mapping[FaceId, np.ndarray], people: Mapping[FaceId, PersonId] | None = None,
                 *, rules: Rules = Rules()):
        self.ids = list(descriptors)
        self.rows = {face: row for row, face in enumerate(self.ids)}
        self.matrix = np.stack([np.asarray(descriptors[face], dtype=np.float64) for face in self.ids]) \
            if self.ids else np.zeros((0, 128))
        self.people: dict[FaceId, PersonId] = dict(people or {})
        self.rules = rules
        self.last_person = max(self.people.values(), default=0)

    def neighbours(self, face: FaceId) -> list[Neighbour]:
        """The other faces within the maximum distance, nearest first."""
        distances = np.linalg.norm(self.matrix - self.matrix[self.rows[face]], axis=1)
        return [Neighbour(self.ids[row], float(distances[row]), self.people.get(self.ids[row]))
                for row in np.argsort(distances, kind="stable")
                if self.ids[row] != face and distances[row] <= self.rules.max_distance]

    def assign(self, face: FaceId, person: PersonId) -> None:
        self.people[face] = person

    def new_person(self) -> PersonId:
        self.last_person += 1
        return self.last_person


def regroup(descriptors: Mapping[FaceId, np.ndarray], rules: Rules = Rules()) -> dict[FaceId, PersonId]:
    """A full re-group in memory: every person forgotten, one round over all faces in id order. Returns
    face -> new group (1, 2, ...); faces left waiting are not in it."""
    source = MemoryFaces(descriptors, rules=rules)
    recognise(sorted(descriptors), source, rules)
    return source.people


def successors(old: Mapping[FaceId, PersonId | None], new: Mapping[FaceId, PersonId],
               keep: Callable[[PersonId], bool] = lambda person: True) -> dict[PersonId, PersonId]:
    """new group -> the old person it continues: the old person (among those `keep` accepts, e.g. the
    named ones) most of the group's faces had. An old person is continued by one group only: the group
    holding most of its faces (ties: the bigger group, then the lower group id)."""
    votes: dict[PersonId, Counter[PersonId]] = {}
    for face, group in new.items():
        person = old.get(face)
        if person is not None and keep(person):
            votes.setdefault(group, Counter())[person] += 1
    sizes = Counter(new.values())
    claims: dict[PersonId, list[tuple[int, int, PersonId]]] = {}
    for group, counter in votes.items():
        person, count = min(counter.items(), key=lambda item: (-item[1], item[0]))
        claims.setdefault(person, []).append((-count, -sizes[group], group))
    return {min(groups)[2]: person for person, groups in claims.items()}


def names_after_regroup(old: Mapping[FaceId, PersonId | None], new: Mapping[FaceId, PersonId],
                        names: Mapping[PersonId, str]) -> dict[PersonId, str]:
    """new group -> name: each group takes the name of the named old person most of its faces had."""
    chosen = successors(old, new, keep=lambda person: bool(names.get(person)))
    return {group: names[person] for group, person in chosen.items()}


def merge(people: Mapping[FaceId, PersonId], names: Mapping[PersonId, str], source: PersonId,
          into: PersonId) -> tuple[dict[FaceId, PersonId], dict[PersonId, str]]:
    """(face -> person, person -> name) after moving every face of `source` to `into`: `into` keeps its
    name, or takes `source`'s when it had none, and `source` is gone."""
    if source == into:
        raise ValueError("a person cannot be merged into itself")
    moved = {face: into if person == source else person for face, person in people.items()}
    named = {person: name for person, name in names.items() if person != source}
    if not names.get(into) and names.get(source):
        named[into] = names[source]
    return moved, named
