"""Persons within an incident: the faces of one person across an incident's stills, searched as one unit.

A retailer's incident is often several stills of the same people. Searched one by one, each poor
still is a weak lead; fused, they are a strong one. Grouping and fusion are pure functions here:

* ``group_faces`` puts an incident's faces into persons by average-link agglomeration on cosine
  similarity, never joining two faces of one still (they are two people);
* ``fuse`` turns the members' scores against each gallery subject into the person's score.

Every face belongs to exactly one person; a face alone in its incident (or in a still without an
incident reference) is a person of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray


class Fusion(StrEnum):
    MAX = "max"  # each subject at its best score over the person's faces
    WEIGHTED_MEAN = "wmean"  # the faces' scores averaged, weighted by evidence_weight
    HYBRID = "hybrid"  # the mean of the two: the best face leads, the others confirm or temper it


# A face the quality gate would not search on its own still adds evidence to its person, at this
# fraction of the weight its quality score gives it.
POOR_FACE_WEIGHT = 0.25
MIN_WEIGHT = 0.05


@dataclass(frozen=True, slots=True)
class MemberFace:
    face_id: int
    image_id: int
    embedding: NDArray[np.float32]
    quality_score: float
    usable: bool


def evidence_weight(quality_score: float, usable: bool) -> float:
    """How much a face counts in its person's weighted score: its quality, less if the gate rejects it."""
    weight = max(MIN_WEIGHT, float(quality_score))
    return weight if usable else weight * POOR_FACE_WEIGHT


def group_faces(faces: list[MemberFace], threshold: float) -> list[list[MemberFace]]:
    """The incident's persons, each a list of faces, ordered by their first face id.

    Two groups join while the average cosine between their faces is at least ``threshold`` and
    no still holds a face of each; the most similar pair of groups joins first.
    """
    ordered = sorted(faces, key=lambda f: f.face_id)
    groups: list[list[int]] = [[i] for i in range(len(ordered))]
    if len(ordered) > 1:
        emb = np.stack([f.embedding for f in ordered]).astype(np.float64)
        sims = emb @ emb.T
        while True:
            best, pair = threshold, None
            for a in range(len(groups)):
                for b in range(a + 1, len(groups)):
                    if {ordered[i].image_id for i in groups[a]} & {ordered[i].image_id for i in groups[b]}:
                        continue
                    link = float(sims[np.ix_(groups[a], groups[b])].mean())
                    if link >= best:
                        best, pair = link, (a, b)
            if pair is None:
                break
            a, b = pair
            groups[a] = sorted(groups[a] + groups[b])
            del groups[b]
    persons = [[ordered[i] for i in g] for g in groups]
    return sorted(persons, key=lambda p: p[0].face_id)


def fuse(
    scores: NDArray[np.float64],
    weights: NDArray[np.float64],
    rule: Fusion,
    usable: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """The person's score per subject from its members' (members x subjects) scores.

    The best face (``max``, and ``hybrid``'s leading half) is taken among the faces the gate lets
    through when there is one (``usable``): a face it stops adds evidence to the weighted mean only.
    """
    leading = scores if usable is None or not usable.any() else scores[usable]
    best: NDArray[np.float64] = leading.max(axis=0)
    if rule is Fusion.MAX:
        return best
    w = np.maximum(weights, 1e-9)
    mean: NDArray[np.float64] = (scores * w[:, None]).sum(axis=0) / w.sum()
    if rule is Fusion.WEIGHTED_MEAN:
        return mean
    hybrid: NDArray[np.float64] = (best + mean) / 2.0
    return hybrid
