"""The grouping rules on chosen descriptors: a face joins its nearest person within the maximum distance, a
new person needs 3 faces, faces without a match wait and are tried later, a re-group keeps names, merges."""

from __future__ import annotations

import numpy as np
import pytest

from shared.people.grouping import (
    MAX_DISTANCE,
    MIN_FACES,
    Action,
    Decision,
    MemoryFaces,
    Neighbour,
    Rules,
    decide,
    is_core,
    merge,
    names_after_regroup,
    recognise,
    regroup,
    successors,
)


def axis(index: int, length: float = 1.0) -> np.ndarray:
    vector = np.zeros(128)
    vector[index] = length
    return vector


# People far apart (1.0 * sqrt(2) between centres); each face 0.1-0.2 from its person's centre.
CENTRES = {"ada": axis(0), "ben": axis(1), "cy": axis(2)}


def face_of(person: str, jitter: int) -> np.ndarray:
    return CENTRES[person] + axis(10 + jitter, 0.05 * (1 + jitter % 3))


def test_the_defaults_are_the_measured_ones():
    assert (MAX_DISTANCE, MIN_FACES) == (0.5, 3)


def test_a_face_joins_the_person_of_its_nearest_face_within_the_distance():
    neighbours = [Neighbour(1, 0.40, person=7), Neighbour(2, 0.20, person=8), Neighbour(3, 0.10, person=None)]
    assert decide(neighbours, deferred=False) == Decision(Action.JOIN, 8)


def test_faces_beyond_the_distance_are_no_match():
    far = [Neighbour(1, 0.51, person=7), Neighbour(2, 0.9, person=8), Neighbour(3, 0.7, person=None)]
    assert not is_core(far)
    assert decide(far, deferred=False) == Decision(Action.WAIT)
    assert decide(far, deferred=True) == Decision(Action.WAIT)
    assert decide(far, deferred=True, rules=Rules(max_distance=0.6)) == Decision(Action.JOIN, 7)


def test_a_new_person_needs_three_faces():
    two_close = [Neighbour(1, 0.2, None), Neighbour(2, 0.3, None)]  # with the face itself: 3
    assert is_core(two_close) and decide(two_close, deferred=False) == Decision(Action.NEW)
    one_close = [Neighbour(1, 0.2, None), Neighbour(2, 0.8, None)]
    assert not is_core(one_close)
    assert decide(one_close, deferred=True) == Decision(Action.WAIT)
    assert decide(one_close, deferred=True, rules=Rules(min_faces=2)) == Decision(Action.NEW)


def test_a_non_core_face_waits_for_the_core_faces_then_joins_a_person_it_matches():
    one_with_person = [Neighbour(1, 0.3, person=5)]
    assert decide(one_with_person, deferred=False) == Decision(Action.WAIT)
    assert decide(one_with_person, deferred=True) == Decision(Action.JOIN, 5)


def test_a_round_makes_people_of_three_faces_and_leaves_pairs_waiting():
    descriptors = {face: face_of("ada", face) for face in (1, 2, 3)}
    descriptors |= {face: face_of("ben", face) for face in (4, 5)}
    source = MemoryFaces(descriptors)
    waiting = recognise(sorted(descriptors), source)
    assert waiting == [4, 5]
    assert set(source.people) == {1, 2, 3} and len(set(source.people.values())) == 1


def test_a_waiting_face_is_tried_again_when_its_person_arrives():
    descriptors = {1: face_of("ben", 1), 2: face_of("ben", 2)}
    source = MemoryFaces(descriptors)
    assert recognise([1, 2], source) == [1, 2] and source.people == {}
    later = MemoryFaces(descriptors | {3: face_of("ben", 3)}, source.people)
    assert recognise([1, 2, 3], later) == []
    assert len(set(later.people.values())) == 1 and set(later.people) == {1, 2, 3}


def test_a_straggler_early_in_the_round_still_joins_the_person_made_later_in_it():
    # Face 1 is 0.48 from ada's face 2 and just over 0.5 from her others: not core, so it is deferred
    # until faces 2-4 made ada, then joins her through face 2.
    descriptors = {1: face_of("ada", 2) + axis(20, 0.48)} | {face: face_of("ada", face) for face in (2, 3, 4)}
    source = MemoryFaces(descriptors)
    assert [round(n.distance, 2) for n in source.neighbours(1)] == [0.48]
    assert not is_core(source.neighbours(1))
    assert recognise([1, 2, 3, 4], source) == []
    assert len(set(source.people.values())) == 1 and set(source.people) == {1, 2, 3, 4}


def test_a_face_joins_an_existing_person_and_new_people_get_new_ids():
    descriptors = {face: face_of("ada", face) for face in (1, 2, 3)} | {face: face_of("cy", face) for face in (4, 5, 6)}
    source = MemoryFaces(descriptors | {7: face_of("ada", 7)}, {1: 40, 2: 40, 3: 40})
    assert recognise([4, 5, 6, 7], source) == []
    assert source.people[7] == 40
    assert {source.people[face] for face in (4, 5, 6)} == {41}


def test_regroup_makes_one_group_per_person_and_leaves_the_lonely_waiting():
    descriptors = {face: face_of("ada", face) for face in range(1, 5)}
    descriptors |= {face: face_of("ben", face) for face in range(5, 8)}
    descriptors |= {8: face_of("cy", 8), 9: face_of("cy", 9)}
    groups = regroup(descriptors)
    assert set(groups) == set(range(1, 8))
    assert len({groups[face] for face in range(1, 5)}) == 1 and len({groups[face] for face in range(5, 8)}) == 1
    assert groups[1] != groups[5]


def test_names_are_kept_through_a_regroup():
    old = {1: 10, 2: 10, 3: 10, 4: 11, 5: 11, 6: 11, 7: None}
    new = {1: 2, 2: 2, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1}
    assert names_after_regroup(old, new, {10: "Ada", 11: "Ben"}) == {2: "Ada", 1: "Ben"}
    assert names_after_regroup(old, new, {10: "Ada"}) == {2: "Ada"}


def test_a_group_takes_the_name_most_of_its_faces_had():
    old = {1: 10, 2: 10, 3: 11, 4: None, 5: None}
    assert names_after_regroup(old, {face: 1 for face in old}, {10: "Ada", 11: "Ben"}) == {1: "Ada"}


def test_a_split_person_keeps_its_name_in_the_group_with_most_of_its_faces():
    old = {face: 10 for face in range(1, 6)}
    new = {1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    assert names_after_regroup(old, new, {10: "Ada"}) == {2: "Ada"}
    assert successors(old, new) == {2: 10}


def test_an_unnamed_plurality_does_not_hide_a_named_person():
    old = {1: 10, 2: 20, 3: 20}
    assert successors(old, {1: 1, 2: 1, 3: 1}) == {1: 20}
    assert names_after_regroup(old, {1: 1, 2: 1, 3: 1}, {10: "Ada"}) == {1: "Ada"}


def test_merging_moves_every_face_and_keeps_a_name():
    people = {1: 10, 2: 10, 3: 11, 4: 12}
    moved, names = merge(people, {10: "Ada", 11: "Ada L."}, source=11, into=10)
    assert moved == {1: 10, 2: 10, 3: 10, 4: 12} and names == {10: "Ada"}
    moved, names = merge(people, {11: "Ben"}, source=11, into=12)
    assert moved == {1: 10, 2: 10, 3: 12, 4: 12} and names == {12: "Ben"}
    with pytest.raises(ValueError, match="itself"):
        merge(people, {}, source=10, into=10)
