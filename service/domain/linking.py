"""Linking unknown faces into groups: the same unknown person seen at several retailers (plain numpy).

A face with no gallery candidate above threshold is an *unknown*. Each unknown belongs to exactly
one group (a group of one is a singleton, not shown to people). Linking is incremental: a new face
is compared with the faces already held and either joins one group or starts its own; nothing
already held is re-clustered.

The rule is conservative, because a wrong link sends officers after the wrong person:

* **Average linkage.** A face may join group ``g`` only if its mean cosine similarity to *all* of
  ``g``'s members (``x · sum(g) / |g|``) is at least ``threshold``, and its most similar member
  scores at least ``nearest``. One look-alike member cannot pull a stranger in (no chaining).
* **Ambiguity.** If several groups qualify, the face joins the best only if it leads the runner-up
  by ``margin``; otherwise it stays alone. Two existing groups are merged automatically only when
  the evidence is overwhelming: the face links to both at ``merge_threshold`` or more *and* the two
  groups link to each other by average linkage at ``threshold`` or more, and neither group has
  been decided by a reviewer (``may_merge``).
* **Cannot-link.** Faces of one still are different people: a face never joins a group that holds
  another face of the same still.

Embeddings are L2-normalised float32 rows; similarities are dot products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class LinkRule:
    """The linking rule's settings (calibrated by ``benchmarks/linking.py``)."""

    threshold: float  # average-linkage cosine needed to join a group
    nearest: float  # the most similar member must score at least this
    margin: float = 0.05  # lead over the runner-up group needed when several qualify
    merge_threshold: float = 1.01  # face-to-both-groups linkage needed for an automatic merge (> 1: never)

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be a cosine in [-1, 1]")
        if self.nearest < self.threshold:
            raise ValueError("nearest must be at least threshold (the best member scores at least the mean)")
        if self.margin < 0:
            raise ValueError("margin must not be negative")


@dataclass(frozen=True, slots=True)
class LinkDecision:
    """Where one new face went, and how sure the link is."""

    face_id: int
    group_id: int
    created: bool  # the face started a new group (alone)
    score: float | None  # its average cosine to the group's members when it joined (None: created)
    nearest_face_id: int | None  # the group member it resembles most
    nearest_score: float | None
    merged: tuple[int, ...] = ()  # groups merged into ``group_id`` because of this face
    ambiguous: tuple[int, ...] = ()  # groups that also qualified, when the face stayed alone or chose

    def to_dict(self) -> dict[str, object]:
        return {
            "face_id": self.face_id,
            "group_id": self.group_id,
            "created": self.created,
            "score": None if self.score is None else round(self.score, 4),
            "nearest_face_id": self.nearest_face_id,
            "nearest_score": None if self.nearest_score is None else round(self.nearest_score, 4),
            "merged": list(self.merged),
            "ambiguous": list(self.ambiguous),
        }


def normalised(vectors: NDArray[np.floating]) -> FloatArray:
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


@dataclass(slots=True)
class _Candidate:
    group: int
    mean: float
    nearest: float
    nearest_face: int


@dataclass
class UnknownFaceIndex:
    """Every unknown face in memory: its embedding, its group, and each group's sum of embeddings.

    Rows are appended; removed rows are blanked and compacted away once they are numerous.
    """

    dim: int
    _vectors: FloatArray = field(init=False, repr=False)
    _ids: NDArray[np.int64] = field(init=False, repr=False)
    _groups: NDArray[np.int64] = field(init=False, repr=False)
    _size: int = field(init=False, default=0)
    _dead: int = field(init=False, default=0)
    _row: dict[int, int] = field(init=False, default_factory=dict, repr=False)
    _members: dict[int, set[int]] = field(init=False, default_factory=dict, repr=False)
    _sums: dict[int, NDArray[np.float64]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.clear()

    # -- contents ----------------------------------------------------------------------------
    def clear(self) -> None:
        self._vectors = np.zeros((1024, self.dim), np.float32)
        self._ids = np.full(1024, -1, np.int64)
        self._groups = np.full(1024, -1, np.int64)
        self._size = 0
        self._dead = 0
        self._row = {}
        self._members = {}
        self._sums = {}

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._row

    def face_ids(self) -> list[int]:
        return list(self._row)

    def group_of(self, face_id: int) -> int | None:
        row = self._row.get(face_id)
        return None if row is None else int(self._groups[row])

    def groups(self) -> dict[int, set[int]]:
        return {g: set(members) for g, members in self._members.items()}

    def members(self, group: int) -> set[int]:
        return set(self._members.get(group, ()))

    def vector(self, face_id: int) -> FloatArray:
        return np.array(self._vectors[self._row[face_id]], dtype=np.float32)

    @property
    def nbytes(self) -> int:
        sums = sum(s.nbytes for s in self._sums.values())
        return int(self._vectors.nbytes + self._ids.nbytes + self._groups.nbytes + sums)

    def _grow(self, extra: int) -> None:
        need = self._size + extra
        if need <= len(self._ids):
            return
        capacity = max(need, 2 * len(self._ids))
        vectors = np.zeros((capacity, self.dim), np.float32)
        vectors[: self._size] = self._vectors[: self._size]
        ids = np.full(capacity, -1, np.int64)
        ids[: self._size] = self._ids[: self._size]
        groups = np.full(capacity, -1, np.int64)
        groups[: self._size] = self._groups[: self._size]
        self._vectors, self._ids, self._groups = vectors, ids, groups

    def _append(self, face_id: int, vector: FloatArray, group: int) -> None:
        if face_id in self._row:
            raise ValueError(f"face {face_id} is already held")
        self._grow(1)
        row = self._size
        self._vectors[row] = vector
        self._ids[row] = face_id
        self._groups[row] = group
        self._size += 1
        self._row[face_id] = row
        self._members.setdefault(group, set()).add(face_id)
        total = self._sums.get(group)
        self._sums[group] = (np.zeros(self.dim, np.float64) if total is None else total) + vector

    def add(self, face_ids: Sequence[int], vectors: NDArray[np.floating], groups: Sequence[int]) -> None:
        """Hold faces whose groups are already decided (loading from the database)."""
        matrix = normalised(vectors) if len(face_ids) else np.zeros((0, self.dim), np.float32)
        if not (len(face_ids) == len(matrix) == len(groups)):
            raise ValueError("face_ids, vectors and groups differ in length")
        self._grow(len(face_ids))
        for face_id, vector, group in zip(face_ids, matrix, groups, strict=True):
            self._append(int(face_id), vector, int(group))

    def remove(self, face_ids: Iterable[int]) -> set[int]:
        """Forget faces (purged, identified); returns the groups that changed."""
        touched: set[int] = set()
        for face_id in face_ids:
            row = self._row.pop(int(face_id), None)
            if row is None:
                continue
            group = int(self._groups[row])
            touched.add(group)
            members = self._members[group]
            members.discard(int(face_id))
            if members:
                self._sums[group] = self._sums[group] - self._vectors[row]
            else:
                del self._members[group]
                del self._sums[group]
            self._vectors[row] = 0.0
            self._ids[row] = -1
            self._groups[row] = -1
            self._dead += 1
        if self._dead > max(1024, self._size // 2):
            self._compact()
        return touched

    def _compact(self) -> None:
        live = np.flatnonzero(self._ids[: self._size] >= 0)
        self._vectors[: len(live)] = self._vectors[live]
        self._ids[: len(live)] = self._ids[live]
        self._groups[: len(live)] = self._groups[live]
        self._vectors[len(live) : self._size] = 0.0
        self._ids[len(live) : self._size] = -1
        self._groups[len(live) : self._size] = -1
        self._size = len(live)
        self._dead = 0
        self._row = {int(f): i for i, f in enumerate(self._ids[: self._size])}

    def move(self, face_ids: Iterable[int], group: int) -> None:
        """Put faces into ``group`` (a reviewer's split or merge)."""
        for face_id in face_ids:
            row = self._row[int(face_id)]
            old = int(self._groups[row])
            if old == group:
                continue
            vector = self._vectors[row]
            members = self._members[old]
            members.discard(int(face_id))
            if members:
                self._sums[old] = self._sums[old] - vector
            else:
                del self._members[old]
                del self._sums[old]
            self._groups[row] = group
            self._members.setdefault(group, set()).add(int(face_id))
            total = self._sums.get(group)
            self._sums[group] = (np.zeros(self.dim, np.float64) if total is None else total) + vector

    def assign(self, mapping: Mapping[int, int]) -> None:
        """Set every held face's group from ``mapping`` (face -> group) and rebuild the group sums."""
        rows = np.arange(self._size)
        live = rows[self._ids[: self._size] >= 0]
        for row in live:
            self._groups[row] = mapping[int(self._ids[row])]
        self._members = {}
        self._sums = {}
        for row in live:
            group = int(self._groups[row])
            self._members.setdefault(group, set()).add(int(self._ids[row]))
        for group, members in self._members.items():
            member_rows = [self._row[f] for f in members]
            self._sums[group] = self._vectors[member_rows].astype(np.float64).sum(axis=0)

    # -- measures ----------------------------------------------------------------------------
    def similarities(self, vector: NDArray[np.floating]) -> tuple[NDArray[np.int64], FloatArray]:
        """(face ids, cosine) of every held face to ``vector``."""
        x = normalised(vector)[0]
        live = np.flatnonzero(self._ids[: self._size] >= 0)
        return self._ids[live].copy(), (self._vectors[live] @ x).astype(np.float32)

    def cohesion(self, group: int) -> dict[int, float]:
        """Each member's mean cosine to the group's other members (how sure its link is)."""
        members = sorted(self._members.get(group, ()))
        if len(members) < 2:
            return {f: 1.0 for f in members}
        total = self._sums[group]
        rows = [self._row[f] for f in members]
        dots = self._vectors[rows].astype(np.float64) @ total
        sq = np.einsum("ij,ij->i", self._vectors[rows], self._vectors[rows]).astype(np.float64)
        return {f: float((d - s) / (len(members) - 1)) for f, d, s in zip(members, dots, sq, strict=True)}

    def representative(self, group: int) -> int | None:
        """The member nearest the group's centre (highest mean cosine to the others)."""
        scores = self.cohesion(group)
        if not scores:
            return None
        return max(sorted(scores), key=lambda f: scores[f])

    def linkage(self, a: int, b: int) -> float:
        """Average cosine between the members of two groups."""
        na, nb = len(self._members.get(a, ())), len(self._members.get(b, ()))
        if not na or not nb:
            return -1.0
        return float(self._sums[a] @ self._sums[b]) / (na * nb)

    # -- linking -----------------------------------------------------------------------------
    def _candidates(self, x: FloatArray, sims: FloatArray, rows: NDArray[np.int64], rule: LinkRule) -> list[_Candidate]:
        hit = sims >= rule.nearest
        best: dict[int, tuple[float, int]] = {}
        for row, score in zip(rows[hit], sims[hit], strict=True):
            group = int(self._groups[row])
            if group < 0:
                continue
            if group not in best or score > best[group][0]:
                best[group] = (float(score), int(self._ids[row]))
        out = []
        for group, (nearest, nearest_face) in best.items():
            mean = float(self._sums[group] @ x) / len(self._members[group])
            if mean >= rule.threshold:
                out.append(_Candidate(group, mean, nearest, nearest_face))
        out.sort(key=lambda c: (-c.mean, c.group))
        return out

    def link(
        self,
        face_ids: Sequence[int],
        vectors: NDArray[np.floating],
        rule: LinkRule,
        new_group: Callable[[], int],
        *,
        same_still: bool = False,
        may_merge: Callable[[int], bool] = lambda group: True,
        block: int = 256,
    ) -> list[LinkDecision]:
        """Link new faces one after another (each sees the ones before it) and hold them.

        ``same_still``: the faces come from one still, so no two of them may share a group.
        Similarities to the faces held before the call are computed a block at a time (one matrix
        product), which is what makes bulk linking fast; the decisions are those of linking the
        faces one by one.
        """
        matrix = normalised(vectors) if len(face_ids) else np.zeros((0, self.dim), np.float32)
        decisions: list[LinkDecision] = []
        for start in range(0, len(face_ids), block):
            stop = min(start + block, len(face_ids))
            held = self._size
            before = matrix[start:stop] @ self._vectors[:held].T if held else np.zeros((stop - start, 0), np.float32)
            for i in range(start, stop):
                x = matrix[i]
                sims = before[i - start]
                rows = np.arange(held, dtype=np.int64)
                if self._size > held:  # faces added earlier in this block
                    extra_rows = np.arange(held, self._size, dtype=np.int64)
                    sims = np.concatenate([sims, self._vectors[held : self._size] @ x])
                    rows = np.concatenate([rows, extra_rows])
                candidates = self._candidates(x, sims, rows, rule)
                if same_still:
                    taken = {d.group_id for d in decisions}
                    candidates = [c for c in candidates if c.group not in taken]
                decision = self._decide(int(face_ids[i]), x, candidates, rule, new_group, may_merge)
                decisions.append(decision)
        return decisions

    def _decide(
        self,
        face_id: int,
        x: FloatArray,
        candidates: list[_Candidate],
        rule: LinkRule,
        new_group: Callable[[], int],
        may_merge: Callable[[int], bool],
    ) -> LinkDecision:
        if not candidates:
            group = new_group()
            self._append(face_id, x, group)
            return LinkDecision(face_id, group, True, None, None, None)
        first = candidates[0]
        others = candidates[1:]
        if not others:
            self._append(face_id, x, first.group)
            return LinkDecision(face_id, first.group, False, first.mean, first.nearest_face, first.nearest)
        strong = [c for c in candidates if c.mean >= rule.merge_threshold]
        if len(strong) >= 2 and self._mergeable(strong, rule, may_merge):
            target = max(strong, key=lambda c: (len(self._members[c.group]), -c.group)).group
            merged = tuple(sorted(c.group for c in strong if c.group != target))
            self.move([f for g in merged for f in self._members[g]], target)
            self._append(face_id, x, target)
            mean = float(self._sums[target] @ x - float(x @ x)) / (len(self._members[target]) - 1)
            nearest = max(strong, key=lambda c: c.nearest)
            return LinkDecision(face_id, target, False, mean, nearest.nearest_face, nearest.nearest, merged)
        ambiguous = tuple(c.group for c in others)
        if first.mean - others[0].mean >= rule.margin:
            self._append(face_id, x, first.group)
            return LinkDecision(
                face_id, first.group, False, first.mean, first.nearest_face, first.nearest, ambiguous=ambiguous
            )
        group = new_group()
        self._append(face_id, x, group)
        return LinkDecision(face_id, group, True, None, None, None, ambiguous=(first.group, *ambiguous))

    def _mergeable(self, strong: list[_Candidate], rule: LinkRule, may_merge: Callable[[int], bool]) -> bool:
        if not all(may_merge(c.group) for c in strong):
            return False
        groups = [c.group for c in strong]
        return all(self.linkage(a, b) >= rule.threshold for i, a in enumerate(groups) for b in groups[i + 1 :])


def pairwise_scores(labels_true: Sequence[object], labels_pred: Sequence[object]) -> dict[str, float]:
    """Pairwise precision and recall, and BCubed precision, recall and F, of a clustering.

    Pairwise: of the pairs of faces put in one group, the share that are one person (precision);
    of the pairs that are one person, the share put in one group (recall). BCubed averages, per
    face, the share of its group that is its person and the share of its person in its group.
    """
    true = np.unique(np.asarray([str(v) for v in labels_true]), return_inverse=True)[1].astype(np.int64)
    pred = np.unique(np.asarray([str(v) for v in labels_pred]), return_inverse=True)[1].astype(np.int64)
    n = len(true)
    if n == 0:
        return {"pairwise_precision": 1.0, "pairwise_recall": 1.0, "bcubed_precision": 1.0, "bcubed_recall": 1.0}

    def pairs(counts: NDArray[np.int64]) -> int:
        return int((counts * (counts - 1) // 2).sum())

    _cells, cell_of, overlap_counts = np.unique(
        true * (int(pred.max()) + 1) + pred, return_inverse=True, return_counts=True
    )
    true_sizes = np.bincount(true)
    pred_sizes = np.bincount(pred)
    same_both = pairs(overlap_counts)
    same_pred = pairs(pred_sizes)
    same_true = pairs(true_sizes)
    overlap = overlap_counts[cell_of]
    bp = float(np.mean(overlap / pred_sizes[pred]))
    br = float(np.mean(overlap / true_sizes[true]))
    return {
        "pairwise_precision": same_both / same_pred if same_pred else 1.0,
        "pairwise_recall": same_both / same_true if same_true else 1.0,
        "pairs_linked": float(same_pred),
        "pairs_true": float(same_true),
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f": 2 * bp * br / (bp + br) if bp + br else 0.0,
    }
