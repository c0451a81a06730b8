"""1:N identification protocol shared by ``sprint.py`` and ``calibrate.py``.

The dataset is a folder of identity folders (LFW's layout). A *split* puts one image per person
(the first, in file-name order) in the gallery for every person except a seeded held-out set;
mated probes are other images of enrolled people, non-mated probes are images of held-out people.

Scores are similarity-like throughout (higher = more alike): the peer's euclidean distances are
negated before they get here, so one threshold rule (``score >= threshold``) serves both.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def list_identities(root: Path) -> dict[str, list[Path]]:
    """``{person: [images, sorted]}`` for every sub-folder of ``root`` that holds images."""
    people: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            people[folder.name] = images
    if not people:
        raise SystemExit(f"no identity folders with images under {root}")
    return people


@dataclass(frozen=True, slots=True)
class Probe:
    key: str  # path relative to the dataset root: stable across runs, used to seed degradations
    person: str
    path: Path
    mated: bool


@dataclass(slots=True)
class Split:
    gallery_people: list[str]  # to enrol, one image each (the first that the system accepts)
    held_out: list[str]
    nonmated: list[Probe]  # random order: a prefix is a random subsample
    available_nonmated: int  # every non-mated image the protocol could use
    notes: list[str] = field(default_factory=list)


def _round_robin(pools: dict[str, list[Path]], n: int, rng: np.random.Generator) -> list[tuple[str, Path]]:
    """Up to ``n`` images, one per person in a random order, then a second round, and so on."""
    people = sorted(p for p in pools if pools[p])
    order = [people[i] for i in rng.permutation(len(people))]
    shuffled = {p: [pools[p][i] for i in rng.permutation(len(pools[p]))] for p in order}
    picked: list[tuple[str, Path]] = []
    depth = 0
    while len(picked) < n:
        row = [(p, shuffled[p][depth]) for p in order if depth < len(shuffled[p])]
        if not row:
            break
        picked.extend(row[: n - len(picked)])
        depth += 1
    return picked


def make_split(
    root: Path,
    people: dict[str, list[Path]],
    seed: int,
    held_out: int,
    gallery_size: int | None,
    n_nonmated: int,
    gallery_people: Iterable[str] | None = None,
) -> Split:
    """Seeded split. ``gallery_people`` fixes the gallery (e.g. the one an rfr data directory holds)."""
    rng = np.random.default_rng(seed)
    names = sorted(people)
    notes: list[str] = []
    if gallery_people is not None:
        enrolled = set(gallery_people)
        out = [n for n in names if n not in enrolled]
        gallery_names = [n for n in names if n in enrolled]
    else:
        held = min(held_out, len(names) - 1)
        out_idx = set(rng.choice(len(names), size=held, replace=False).tolist()) if held > 0 else set()
        out = [names[i] for i in sorted(out_idx)]
        gallery_names = [names[i] for i in range(len(names)) if i not in out_idx]
        if gallery_size is not None and gallery_size < len(gallery_names):
            keep = sorted(rng.choice(len(gallery_names), size=gallery_size, replace=False).tolist())
            dropped = len(gallery_names) - gallery_size
            gallery_names = [gallery_names[i] for i in keep]
            notes.append(f"gallery sub-sampled to {gallery_size} people ({dropped} people neither enrolled nor probed)")
    nonmated_pools = {n: list(people[n]) for n in out}
    nonmated = [
        Probe(str(path.relative_to(root)), person, path, False)
        for person, path in _round_robin(nonmated_pools, n_nonmated, rng)
    ]
    return Split(
        gallery_people=gallery_names,
        held_out=out,
        nonmated=nonmated,
        available_nonmated=sum(len(v) for v in nonmated_pools.values()),
        notes=notes,
    )


def mated_probes(
    root: Path, people: dict[str, list[Path]], enrolled: dict[str, Path], n: int, seed: int
) -> tuple[list[Probe], int]:
    """Up to ``n`` mated probes (other images of enrolled people, one per person first) and how many exist."""
    pools = {p: [x for x in people[p] if x != image] for p, image in enrolled.items()}
    pools = {p: v for p, v in pools.items() if v}
    rng = np.random.default_rng([seed, 1])
    picked = _round_robin(pools, n, rng)
    probes = [Probe(str(path.relative_to(root)), person, path, True) for person, path in picked]
    return probes, sum(len(v) for v in pools.values())


# -- which detected face is the probe --------------------------------------------------------------


def pick_probe_face(
    boxes: Sequence[Sequence[float]], expected: tuple[float, float], tolerance: float = 1.5
) -> int | None:
    """The face of the named person: the detected box whose centre is nearest where that face should be.

    ``expected`` is the named face's centre (the image centre for LFW, moved by any crop, rotation
    or rescaling). The nearest box counts only if ``expected`` falls inside it once enlarged
    ``tolerance`` times about its centre; otherwise the detector found someone else (or nothing).
    """
    best, best_d = None, math.inf
    ex, ey = expected
    for i, (x, y, w, h) in enumerate(boxes):
        cx, cy = x + w / 2.0, y + h / 2.0
        d = math.hypot(cx - ex, cy - ey)
        if d < best_d and abs(cx - ex) <= tolerance * w / 2.0 and abs(cy - ey) <= tolerance * h / 2.0:
            best, best_d = i, d
    return best


# -- per-probe outcome and metrics -----------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What one probe image produced, for one system and condition."""

    key: str
    person: str
    mated: bool
    faces: int = 0  # faces detected in the image
    found: bool = False  # the named person's face was among them
    usable: bool = False  # it passed the quality gate (the peer has none: found == usable)
    searched: bool = False
    reasons: list[str] = field(default_factory=list)
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (reference, similarity), best first
    error: str | None = None

    @property
    def mate_rank(self) -> int | None:
        for i, (ref, _) in enumerate(self.candidates):
            if ref == self.person:
                return i + 1
        return None

    @property
    def mate_score(self) -> float:
        for ref, score in self.candidates:
            if ref == self.person:
                return score
        return -math.inf

    @property
    def best_nonmate(self) -> float:
        """The best candidate that is not the probe's person: a non-mated search at gallery size N-1."""
        for ref, score in self.candidates:
            if ref != self.person:
                return score
        return -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "person": self.person,
            "mated": self.mated,
            "faces": self.faces,
            "found": self.found,
            "usable": self.usable,
            "searched": self.searched,
            "reasons": self.reasons,
            "mate_rank": self.mate_rank if self.mated else None,
            "mate_score": _finite(self.mate_score) if self.mated else None,
            "top_score": _finite(self.candidates[0][1]) if self.candidates else None,
            "best_nonmate": _finite(self.best_nonmate),
            "error": self.error,
        }


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 5)


def threshold_at_fpir(nonmated_top: NDArray[np.float64], target: float) -> float:
    """The lowest threshold (``score >= t`` is a hit) at which at most ``target`` of non-mated searches hit.

    ``nonmated_top`` holds each non-mated search's best score (``-inf`` when nothing was searched).
    """
    scores = np.sort(np.asarray(nonmated_top, dtype=np.float64))[::-1]
    n = len(scores)
    if n == 0:
        return math.nan
    allowed = math.floor(target * n + 1e-9)
    if allowed >= n:
        return -math.inf
    if not math.isfinite(scores[allowed]):
        return -math.inf  # that many searches returned nothing: any threshold meets the target
    # Every score strictly above the (allowed+1)-th best may hit; that one must not.
    return float(np.nextafter(scores[allowed], math.inf))


def fpir_at(nonmated_top: NDArray[np.float64], threshold: float) -> float:
    arr = np.asarray(nonmated_top, dtype=np.float64)
    return float(np.mean(arr >= threshold)) if len(arr) else math.nan


def fnir_at(mate_scores: NDArray[np.float64], threshold: float) -> float:
    arr = np.asarray(mate_scores, dtype=np.float64)
    return float(np.mean(~(arr >= threshold))) if len(arr) else math.nan


def det_curve(
    mate_scores: NDArray[np.float64], nonmated_top: NDArray[np.float64], points: int = 400
) -> dict[str, list[float]]:
    """FNIR against FPIR over thresholds (NIST's DET for identification); misses count at every threshold."""
    finite = np.concatenate([mate_scores[np.isfinite(mate_scores)], nonmated_top[np.isfinite(nonmated_top)]])
    if len(finite) == 0:
        return {"threshold": [], "fpir": [], "fnir": []}
    grid = np.unique(np.quantile(finite, np.linspace(0, 1, points)))
    fpir = [fpir_at(nonmated_top, float(t)) for t in grid]
    fnir = [fnir_at(mate_scores, float(t)) for t in grid]
    return {
        "threshold": [round(float(t), 5) for t in grid],
        "fpir": [round(v, 6) for v in fpir],
        "fnir": [round(v, 6) for v in fnir],
    }


def cmc(ranks: Sequence[int | None], n: int, max_rank: int) -> list[float]:
    """Identification rate at ranks 1..max_rank over ``n`` mated searches (misses included)."""
    if n == 0:
        return []
    hist = np.zeros(max_rank + 1)
    for r in ranks:
        if r is not None and r <= max_rank:
            hist[r] += 1
    return [round(float(v), 5) for v in np.cumsum(hist)[1:] / n]


def rate(k: int, n: int) -> float | None:
    return None if n == 0 else round(k / n, 5)


def summarise(
    outcomes: Sequence[Outcome],
    threshold: float,
    max_rank: int,
    targets: Sequence[float] = (0.01, 0.003),
    extra_thresholds: Sequence[float] = (),
) -> dict[str, Any]:
    """Everything the report shows for one system under one condition (thresholds in similarity units)."""
    mated = [o for o in outcomes if o.mated]
    nonmated = [o for o in outcomes if not o.mated]
    n_m, n_n = len(mated), len(nonmated)
    ranks = [o.mate_rank for o in mated]
    mate_scores = np.array([o.mate_score for o in mated], dtype=np.float64)
    nm_top = np.array([o.candidates[0][1] if o.candidates else -math.inf for o in nonmated], dtype=np.float64)
    loo = np.array([o.best_nonmate for o in mated], dtype=np.float64)

    def count(items: Iterable[Outcome], attr: str) -> int:
        return sum(1 for o in items if getattr(o, attr))

    def within(r: int) -> int:
        return sum(1 for x in ranks if x is not None and x <= r)

    rank1_above = sum(1 for o in mated if o.mate_rank == 1 and o.mate_score >= threshold)
    listed_above = int(np.sum(mate_scores >= threshold))
    nm_above = int(np.sum(nm_top >= threshold))
    loo_above = int(np.sum(loo >= threshold))
    result: dict[str, Any] = {
        "images": {
            "supplied": len(outcomes),
            "with_a_face": count(outcomes, "faces"),
            "probe_face_found": count(outcomes, "found"),
            "usable": count(outcomes, "usable"),
            "searched": count(outcomes, "searched"),
            "failed": sum(1 for o in outcomes if o.error),
        },
        "mated": {
            "n": n_m,
            "with_a_face": count(mated, "faces"),
            "probe_face_found": count(mated, "found"),
            "usable": count(mated, "usable"),
            "searched": count(mated, "searched"),
            "rank1": within(1),
            "top10": within(10),
            "top50": within(min(50, max_rank)),
            "rank1_rate": rate(within(1), n_m),
            "top10_rate": rate(within(10), n_m),
            "top50_rate": rate(within(min(50, max_rank)), n_m),
            "rank1_above_threshold": rank1_above,
            "rank1_above_threshold_rate": rate(rank1_above, n_m),
            "listed_above_threshold": listed_above,
            "listed_above_threshold_rate": rate(listed_above, n_m),
            "fnir_at_threshold": rate(n_m - listed_above, n_m),
            "wrong_candidate_above_threshold": loo_above,
            "wrong_candidate_above_threshold_rate": rate(loo_above, n_m),
        },
        "nonmated": {
            "n": n_n,
            "with_a_face": count(nonmated, "faces"),
            "usable": count(nonmated, "usable"),
            "searched": count(nonmated, "searched"),
            "any_candidate_above_threshold": nm_above,
            "fpir": rate(nm_above, n_n),
            "fpir_of_searched": rate(nm_above, count(nonmated, "searched")),
        },
        "cmc": cmc(ranks, n_m, max_rank),
        "det": det_curve(mate_scores, nm_top),
        "fnir_at_fpir": {},
        "fnir_at_fpir_pooled": {},
        "at_thresholds": {},
    }
    pooled = np.concatenate([nm_top, loo])
    for target in targets:
        for key, scores in (("fnir_at_fpir", nm_top), ("fnir_at_fpir_pooled", pooled)):
            t = threshold_at_fpir(scores, target)
            result[key][f"{target:g}"] = {
                "threshold": _finite(t),
                "fpir": None if math.isnan(t) else round(fpir_at(scores, t), 5),
                "fnir": None if math.isnan(t) else round(fnir_at(mate_scores, t), 5),
                "nonmated_searches": len(scores),
                "resolved": len(scores) * target >= 1.0,
            }
    for t in extra_thresholds:
        result["at_thresholds"][f"{t:g}"] = {
            "fpir": rate(int(np.sum(nm_top >= t)), n_n),
            "fnir": rate(int(np.sum(~(mate_scores >= t))), n_m),
            "rank1_above": rate(sum(1 for o in mated if o.mate_rank == 1 and o.mate_score >= t), n_m),
            "wrong_candidate_above": rate(int(np.sum(loo >= t)), n_m),
        }
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.found and not o.usable:
            for r in o.reasons:
                reasons[r] = reasons.get(r, 0) + 1
    result["poor_face_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return result


# -- fairness (R5) ---------------------------------------------------------------------------------


def read_labels(path: Path) -> tuple[str, dict[str, dict[str, str]]]:
    """Per-person labels from a CSV with a ``name`` column (the identity folder) and any label columns,
    or from LFW's ``lfw-sex.tsv`` (``name<TAB>image<TAB>sex``, no header)."""
    if path.suffix == ".tsv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = {r[0]: {"sex": r[2].strip()} for r in csv.reader(fh, delimiter="\t") if len(r) >= 3}
        return path.name, rows
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "name" not in reader.fieldnames:
            raise SystemExit(f"{path}: the labels CSV needs a 'name' column (identity folder) and label columns")
        rows = {row["name"]: {k: (v or "").strip() for k, v in row.items() if k != "name"} for row in reader}
    return path.name, rows


def by_group(
    outcomes: Sequence[Outcome], labels: dict[str, dict[str, str]], threshold: float, min_n: int = 20
) -> dict[str, dict[str, dict[str, Any]]]:
    """FNIR (true person not listed above the threshold) and FPIR per label value, for every label column."""
    columns = sorted({c for row in labels.values() for c in row})
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        groups: dict[str, list[Outcome]] = {}
        for o in outcomes:
            value = labels.get(o.person, {}).get(column) or "(unlabelled)"
            groups.setdefault(value, []).append(o)
        report[column] = {}
        for value, items in sorted(groups.items()):
            mated = [o for o in items if o.mated]
            nonmated = [o for o in items if not o.mated]
            misses = sum(1 for o in mated if not (o.mate_score >= threshold))
            rank1_misses = sum(1 for o in mated if o.mate_rank != 1)
            hits = sum(1 for o in nonmated if o.candidates and o.candidates[0][1] >= threshold)
            report[column][value] = {
                "mated": len(mated),
                "fnir": rate(misses, len(mated)),
                "rank1_miss": rate(rank1_misses, len(mated)),
                "nonmated": len(nonmated),
                "fpir": rate(hits, len(nonmated)),
                "small_sample": len(mated) < min_n or len(nonmated) < min_n,
            }
    return report
