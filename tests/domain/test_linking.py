"""service.domain.linking on synthetic embeddings (plain numpy): who joins a group, who is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.domain.linking import LinkRule, UnknownFaceIndex, normalised, pairwise_scores

E = np.eye(4, dtype=np.float32)


def at_cosine(axis: int, other: int, cos: float) -> np.ndarray:
    """A unit vector at cosine ``cos`` to basis vector ``axis``, leaning towards basis vector ``other``."""
    return normalised(cos * E[axis] + np.sqrt(1 - cos**2) * E[other])


def counter(start: int = 100) -> itertools.count[int]:
    return itertools.count(start)


def person(rng: np.random.Generator, centre: np.ndarray, n: int, noise: float = 0.5) -> np.ndarray:
    return normalised(centre[None, :] + noise * rng.standard_normal((n, centre.size)) / np.sqrt(centre.size))


def test_linking_is_incremental_and_refuses_chaining() -> None:
    rng = np.random.default_rng(7)
    rule = LinkRule(threshold=0.6, nearest=0.6, margin=0.05, merge_threshold=0.75)
    index = UnknownFaceIndex(128)
    ids = iter(range(1000, 2000))
    a = normalised(rng.standard_normal(128))[0]
    faces_a = person(rng, a, 6)
    first = index.link(list(range(6)), faces_a, rule, lambda: next(ids))
    assert len({d.group_id for d in first}) == 1 and first[0].created and all(not d.created for d in first[1:])
    held = {f: index.vector(f) for f in range(6)}
    # A stranger close to ONE member only (a blend) does not get in: average linkage, no chaining.
    stranger = normalised(faces_a[0] + 1.3 * normalised(rng.standard_normal(128))[0])[0]
    assert float(stranger @ faces_a[0]) >= 0.6 > float(np.mean(faces_a[1:] @ stranger))
    (alone,) = index.link([99], stranger[None, :], rule, lambda: next(ids))
    assert alone.created
    # New faces join without touching what is held.
    (joined,) = index.link([7], person(rng, a, 1), rule, lambda: next(ids))
    assert joined.group_id == first[0].group_id and joined.score is not None and joined.score >= 0.6
    assert all(np.array_equal(index.vector(f), v) for f, v in held.items())
    # Two faces of one still never share a group.
    twins = index.link([200, 201], person(rng, a, 2), rule, lambda: next(ids), same_still=True)
    assert twins[0].group_id != twins[1].group_id
    # Removing faces keeps the group sums right.
    index.remove([0, 1, 2])
    assert (
        abs(
            index.linkage(first[0].group_id, first[0].group_id)
            - np.mean(
                [
                    [float(index.vector(x) @ index.vector(y)) for y in index.members(first[0].group_id)]
                    for x in index.members(first[0].group_id)
                ]
            )
        )
        < 1e-5
    )


def test_automatic_merge_needs_overwhelming_evidence_and_no_reviewer_decision() -> None:
    rng = np.random.default_rng(3)
    rule = LinkRule(threshold=0.55, nearest=0.55, margin=0.05, merge_threshold=0.7)
    centre = normalised(rng.standard_normal(128))[0]
    faces = person(rng, centre, 2, noise=0.3)
    for allowed in (False, True):

        def may_merge(group: int, ok: bool = allowed) -> bool:
            return ok

        index = UnknownFaceIndex(128)
        index.add([1], faces[:1], [10])
        index.add([2], faces[1:], [20])  # one person, held in two groups
        (d,) = index.link([3], person(rng, centre, 1, noise=0.3), rule, lambda: 30, may_merge=may_merge)
        if allowed:
            assert d.merged and index.group_of(1) == index.group_of(2) == d.group_id
        else:
            assert not d.merged and index.group_of(1) != index.group_of(2)


def test_pairwise_and_bcubed_scores() -> None:
    perfect = pairwise_scores(["a", "a", "b"], [1, 1, 2])
    assert perfect["pairwise_precision"] == perfect["pairwise_recall"] == perfect["bcubed_f"] == 1.0
    merged = pairwise_scores(["a", "a", "b"], [1, 1, 1])
    assert merged["pairwise_precision"] == pytest.approx(1 / 3) and merged["pairwise_recall"] == 1.0
    apart = pairwise_scores(["a", "a", "b"], [1, 2, 3])
    assert apart["pairwise_recall"] == 0.0 and apart["bcubed_precision"] == 1.0


def test_the_rule_refuses_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        LinkRule(threshold=1.5, nearest=1.6)
    with pytest.raises(ValueError, match="nearest"):
        LinkRule(threshold=0.6, nearest=0.5)
    with pytest.raises(ValueError, match="margin"):
        LinkRule(threshold=0.6, nearest=0.6, margin=-0.01)


@pytest.mark.parametrize(("cos", "joins"), [(0.61, True), (0.59, False)])
def test_a_face_joins_only_at_the_threshold(cos: float, joins: bool) -> None:
    rule = LinkRule(threshold=0.6, nearest=0.6)
    index = UnknownFaceIndex(4)
    index.add([1], E[:1], [10])
    ids = counter()
    (decision,) = index.link([2], at_cosine(0, 1, cos), rule, lambda: next(ids))
    assert (decision.group_id == 10) is joins and decision.created is not joins
    if joins:
        assert decision.score == pytest.approx(cos, abs=1e-5) and decision.nearest_face_id == 1
    else:
        assert decision.group_id == 100 and decision.score is None and index.members(100) == {2}


@pytest.mark.parametrize(("nearest", "joins"), [(0.70, True), (0.75, False)])
def test_the_most_similar_member_must_reach_nearest(nearest: float, joins: bool) -> None:
    # Members along two orthogonal axes; the face halfway between is at 0.707 to each (mean 0.707).
    rule = LinkRule(threshold=0.5, nearest=nearest)
    index = UnknownFaceIndex(4)
    index.add([1, 2], E[:2], [10, 10])
    (decision,) = index.link([3], normalised(E[0] + E[1]), rule, lambda: 99)
    assert (decision.group_id == 10) is joins


def test_average_linkage_keeps_out_a_face_close_to_one_member_only() -> None:
    rule = LinkRule(threshold=0.6, nearest=0.6)
    index = UnknownFaceIndex(4)
    index.add([1, 2], E[:2], [10, 10])  # members along two orthogonal axes
    (stranger,) = index.link([3], at_cosine(0, 2, 0.9), rule, lambda: 20)  # 0.9 to one member, 0 to the other
    assert stranger.created and stranger.group_id == 20, "no chaining through one look-alike member"
    (between,) = index.link([4], normalised(E[0] + E[1]), rule, lambda: 30)  # 0.707 to both
    assert between.group_id == 10 and between.score == pytest.approx(0.7071, abs=1e-4)


def test_two_qualifying_groups_need_the_margin() -> None:
    rule = LinkRule(threshold=0.5, nearest=0.5, margin=0.05)
    index = UnknownFaceIndex(4)
    index.add([1, 2], E[:2], [10, 20])
    (tied,) = index.link([3], normalised(E[0] + E[1]), rule, lambda: 30)
    assert tied.created and tied.group_id == 30 and set(tied.ambiguous) == {10, 20}
    index.remove([3])
    (leaning,) = index.link([4], normalised(E[0] + 0.8 * E[1]), rule, lambda: 40)
    assert leaning.group_id == 10 and not leaning.created and leaning.ambiguous == (20,)
    assert index.members(10) == {1, 4} and index.members(20) == {2}


def test_faces_of_one_still_are_never_linked() -> None:
    rule = LinkRule(threshold=0.5, nearest=0.5)
    index = UnknownFaceIndex(4)
    index.add([1], E[:1], [10])
    ids = counter()
    same = np.stack([E[0], E[0], E[0]])
    decisions = index.link([2, 3, 4], same, rule, lambda: next(ids), same_still=True)
    groups = [d.group_id for d in decisions]
    assert len(set(groups)) == 3 and groups[0] == 10, groups
    fresh = UnknownFaceIndex(4)
    fresh.add([1], E[:1], [10])
    together = fresh.link([5, 6], same[:2], rule, lambda: next(ids))
    assert {d.group_id for d in together} == {10}, "without same_still identical faces do join"
