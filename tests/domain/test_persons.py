"""service.domain.persons: grouping an incident's faces into persons, and fusing their scores."""

from __future__ import annotations

import numpy as np
import pytest

from service.domain.persons import POOR_FACE_WEIGHT, Fusion, MemberFace, evidence_weight, fuse, group_faces


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def face(face_id: int, image_id: int, *values: float, quality: float = 0.8, usable: bool = True) -> MemberFace:
    return MemberFace(face_id, image_id, unit(*values), quality, usable)


def ids(persons: list[list[MemberFace]]) -> list[list[int]]:
    return [[f.face_id for f in p] for p in persons]


def test_similar_faces_of_different_stills_are_one_person_and_others_stay_apart() -> None:
    faces = [face(1, 10, 1, 0, 0), face(2, 11, 0.9, 0.1, 0), face(3, 12, 0, 1, 0), face(4, 13, 0.95, 0, 0.05)]
    assert ids(group_faces(faces, 0.5)) == [[1, 2, 4], [3]]


def test_two_faces_of_one_still_are_never_one_person() -> None:
    faces = [face(1, 10, 1, 0, 0), face(2, 10, 1, 0.01, 0), face(3, 11, 1, 0.02, 0)]
    persons = ids(group_faces(faces, 0.5))
    assert [1, 2] not in persons and len(persons) == 2
    assert all(not ({1, 2} <= set(p)) for p in persons)


def test_nothing_joins_below_the_threshold_and_input_order_does_not_matter() -> None:
    faces = [face(3, 12, 0, 1, 0), face(1, 10, 1, 0, 0), face(2, 11, 1, 1, 0)]
    assert ids(group_faces(faces, 0.99)) == [[1], [2], [3]]
    assert ids(group_faces(faces, 0.5)) == ids(group_faces(list(reversed(faces)), 0.5))
    assert group_faces([], 0.5) == []


def test_fusion_rules() -> None:
    scores = np.array([[0.6, 0.2], [0.3, 0.4]])
    assert fuse(scores, np.array([1.0, 1.0]), Fusion.MAX).tolist() == [0.6, 0.4]
    assert fuse(scores, np.array([3.0, 1.0]), Fusion.WEIGHTED_MEAN) == pytest.approx([0.525, 0.25])


def test_the_best_face_is_one_the_gate_lets_through() -> None:
    scores = np.array([[0.3, 0.2], [0.9, 0.1]])  # the second face is gated: its 0.9 may be noise
    usable = np.array([True, False])
    weights = np.array([1.0, 0.25])
    assert fuse(scores, weights, Fusion.MAX, usable).tolist() == [0.3, 0.2]
    assert fuse(scores, weights, Fusion.HYBRID, usable) == pytest.approx([(0.3 + 0.42) / 2, (0.2 + 0.18) / 2])
    assert fuse(scores, weights, Fusion.MAX, np.array([False, False])).tolist() == [0.9, 0.2], "none usable: all"


def test_a_poor_face_counts_with_a_low_weight() -> None:
    assert evidence_weight(0.8, True) == pytest.approx(0.8)
    assert evidence_weight(0.8, False) == pytest.approx(0.8 * POOR_FACE_WEIGHT)
    assert evidence_weight(0.0, True) > 0, "every face adds some evidence"
