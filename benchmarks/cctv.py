"""CCTV levers benchmark: what each lever does to search on CCTV-like stills, in one process, one run.

The levers (issue "find the offender in real CCTV stills"), each measured on and off:

* **landmarks**: CenterFace's five landmarks inside YuNet's boxes (``detection.refine_landmarks``);
* **flip**: the aligned crop and its mirror embedded and summed (``recognition.flip``);
* **persons**: an incident's 3-6 stills of one person searched as one unit, by the service's fusion
  rules (``service.domain.persons``: ``max``, each subject's best score over the faces; ``wmean``,
  the mean of the faces' scores weighted by quality, poor faces a quarter as much; ``hybrid``, the
  mean of those two) and, for comparison, ``meanemb``: the search of the faces' mean embedding;
* **views**: custody records with turned views beside the front one (views picked by the yaw read
  from the landmarks), scored by the best view (``max``), a fused template (``fused``: the
  normalised mean of the views), their mean score (``mean``), or the best of the views and the
  fused template (``max+fused``: what the service does);
* **the quality gate**: for every reason, how far the true person's rank falls on the faces that
  carry it (chance is half the gallery), which is what the gate is calibrated on.

And per group (R5): false negatives (mates not above the threshold) and false positives
(strangers above it) by sex, from ``lfw/protocol/lfw-sex.tsv``.

Protocol (seeded): LFW people with two or more images are split into enrolled people and held-out
strangers; 2,000 one-image people join the gallery as distractors. Of an enrolled person's images
(at most 12, clean) the most frontal one the enrolment gate accepts is the record's front view,
and the most turned acceptable one on each side (at least 15 degrees from the front, by the yaw
read from the landmarks) a turned view. An *incident* is 3-6 stills of one person drawn from the
images not used in the gallery (an image may be used twice, degraded differently:
CCTV frames of one incident are near-repeats), each degraded with a preset of
``benchmarks/degrade.py``. Strangers' incidents are built the same way from held-out people.

Each image is analysed once: YuNet's detection, then for each landmark source (YuNet's own,
CenterFace's) the quality verdict and the network's features of the crop and of its mirror, so
every combination of levers is scored on exactly the same faces. Search is exact (a brute-force
inner product, as the flat FAISS index). Run ``python -m benchmarks.cctv --help``; the default
run takes about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import degrade as deg
from benchmarks.common import DEFAULT_LFW_ROOT, RESULTS_DIR, stamp, write_json
from benchmarks.identification import list_identities, pick_probe_face, read_labels, threshold_at_fpir
from service.domain.persons import Fusion, evidence_weight, fuse

LANDMARKS = ("yunet", "centerface")
CONFIGS = {  # lever settings -> (landmark source, flip)
    "baseline": ("yunet", False),
    "flip": ("yunet", True),
    "landmarks": ("centerface", False),
    "landmarks+flip": ("centerface", True),
}
FUSIONS = (*(f.value for f in Fusion), "meanemb")
VIEW_RULES = ("one_view", "max", "fused", "mean", "max+fused")
REASONS = (
    "too_small",
    "blurred",
    "off_angle",
    "low_detector_score",
    "underexposed",
    "overexposed",
    "low_quality_score",
)
MEASURES = ("inter_eye_px", "sharpness", "yaw_deg", "pitch_deg", "det_score", "brightness", "score")
TOP_K = 10
TURNED_YAW_DEG = 15.0  # a view this far from the front one counts as turned


def log(message: str) -> None:
    sys.stderr.write(f"[cctv {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True, slots=True)
class Task:
    key: str  # unique: image key, condition and variant
    path: str
    condition: str  # "clean" or a degrade preset
    seed: int
    custody: bool  # pick the face as enrolment does, else the named person's face


# -- analysis (worker processes) ---------------------------------------------------------------------

_PIPELINE: Any = None


def _init_worker() -> None:
    global _PIPELINE
    from service.config import Settings
    from service.embeddings.pipeline import FacePipeline

    settings = Settings()
    settings.detection.refine_landmarks = True
    settings.recognition.flip = False
    _PIPELINE = FacePipeline.from_settings(settings)


def analyse(task: Task) -> dict[str, Any]:
    """One image: for each landmark source, the chosen face's quality, features and mirror's features."""
    from service.domain.faces import FaceRecord
    from service.embeddings.align import align_face
    from service.services.gallery import choose_custody_face

    pipeline = _PIPELINE
    data = Path(task.path).read_bytes()
    if task.condition == "clean":
        out = deg.degrade_file(data, (), np.random.default_rng(0))
    else:
        steps = deg.PRESETS[task.condition]
        out = deg.degrade_file(data, steps, deg.probe_rng(task.seed, task.condition, task.key))
    image = pipeline.decode(out.data)
    faces = pipeline.detector.detect(image)
    result: dict[str, Any] = {"key": task.key, "found": False}
    if not faces:
        return result
    if task.custody:
        dummy = np.zeros(pipeline.manifest.embedding_dim, np.float32)
        records = [
            FaceRecord(f, pipeline.quality.assess(f, align_face(image, f.landmarks)), dummy, pipeline.pack_id)
            for f in faces
        ]
        relaxed = [
            FaceRecord(
                r.face,
                type(r.quality)(r.quality.score, set(r.quality.reasons) <= {"off_angle", "low_quality_score"}, ()),
                dummy,
                r.pack_id,
            )
            for r in records
        ]
        choice = choose_custody_face(relaxed)  # turned views are judged later, by their yaw
        if isinstance(choice, tuple):
            return result
        pick = next(i for i, r in enumerate(relaxed) if r is choice)
    else:
        found = pick_probe_face([f.box for f in faces], out.face.centre)
        if found is None:
            return result
        pick = found
    face = faces[pick]
    refined = pipeline.landmarks.refine(image, [face])[0]
    result["found"] = True
    for name, candidate in (("yunet", face), ("centerface", refined)):
        crop = align_face(image, candidate.landmarks)
        verdict = pipeline.quality.assess(candidate, crop)
        features = pipeline.recognizer.features([crop, np.ascontiguousarray(crop[:, ::-1])])
        result[name] = {
            "plain": features[0],
            "mirror": features[1],
            "usable": verdict.usable,
            "reasons": list(verdict.reasons),
            "measures": {**verdict.measures, "det_score": candidate.det_score, "score": verdict.score},
        }
    return result


def run_tasks(tasks: list[Task], workers: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        for i, res in enumerate(pool.imap_unordered(analyse, tasks, chunksize=8)):
            results[res["key"]] = res
            if i % 500 == 499:
                rate = (i + 1) / (time.perf_counter() - started)
                log(f"  {i + 1}/{len(tasks)} images ({rate:.1f}/s)")
    return results


def cached_tasks(tasks: list[Task], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``run_tasks``, kept under ``benchmarks/results/cache/`` by the tasks and the pipeline's files."""
    digest = hashlib.sha256()
    digest.update(_fingerprint().encode())
    for task in tasks:
        digest.update(f"{task}\n".encode())
    path = RESULTS_DIR / "cache" / f"cctv_{digest.hexdigest()[:20]}.pkl"
    if path.is_file() and not args.no_cache:
        with path.open("rb") as fh:
            cached: dict[str, dict[str, Any]] = pickle.load(fh)
        return cached
    results = run_tasks(tasks, args.workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(results, fh)
    return results


def _fingerprint() -> str:
    from service.config import Settings
    from service.embeddings.packs import load_manifest

    settings = Settings()
    manifest = load_manifest(settings.models_dir, settings.pack)
    files = [m.sha256 for m in (manifest.detector, manifest.recognizer, manifest.landmarks) if m is not None]
    return json.dumps(
        {"files": files, "detection": settings.detection.model_dump(), "quality": settings.quality.model_dump()}
    )


# -- the protocol ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Incident:
    person: str
    enrolled: bool
    keys: list[str]  # task keys, one per still


@dataclass(slots=True)
class Protocol:
    front_of: dict[str, str]  # person -> the task key of the custody record's front view
    views_of: dict[str, list[str]]  # enrolled person -> task keys of turned views
    incidents: dict[str, list[Incident]]  # per condition
    enrolled: list[str]


def custody_tasks(
    root: Path, args: argparse.Namespace
) -> tuple[list[Task], dict[str, list[str]], list[str], list[str]]:
    """Phase 1: every candidate custody image (clean) of the enrolled people, and the distractors."""
    rng = np.random.default_rng(args.seed)
    people = list_identities(root)
    multi = sorted(p for p, imgs in people.items() if len(imgs) >= 2)
    single = sorted(p for p, imgs in people.items() if len(imgs) == 1)
    order = [multi[i] for i in rng.permutation(len(multi))]
    strangers = order[: args.strangers]
    enrolled = order[args.strangers : args.strangers + args.enrolled]
    picked = rng.choice(len(single), size=min(args.distractors, len(single)), replace=False)
    distractors = [single[i] for i in sorted(picked)]
    tasks: list[Task] = []
    images_of: dict[str, list[str]] = {}
    for person in [*enrolled, *distractors]:
        # At most 12 images per person are candidates (George W Bush alone has 530).
        images_of[person] = [f"custody|{_key(root, path)}" for path in people[person][:12]]
        tasks.extend(
            Task(f"custody|{_key(root, path)}", str(path), "clean", args.seed, True) for path in people[person][:12]
        )
    return tasks, images_of, enrolled, strangers


def _key(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def _yaw(res: dict[str, Any]) -> float:
    return float(res["yunet"]["measures"]["yaw_deg"])


def _enrolable(res: dict[str, Any], turned: bool) -> bool:
    """A front view must pass the gate; a turned view may be off-angle, nothing else."""
    if not res.get("found"):
        return False
    reasons = set(res["yunet"]["reasons"])
    return not (reasons - {"off_angle", "low_quality_score"}) if turned else not reasons


def build_protocol(
    root: Path,
    args: argparse.Namespace,
    custody: dict[str, dict[str, Any]],
    images_of: dict[str, list[str]],
    enrolled: list[str],
    strangers: list[str],
) -> tuple[Protocol, list[Task]]:
    """Phase 2: each record's front view (the most frontal acceptable image) and turned views (the most
    turned acceptable image on each side, at least ``TURNED_YAW_DEG`` from the front); the person's
    other images are the pool of their incidents' stills."""
    people = list_identities(root)
    front_of: dict[str, str] = {}
    views_of: dict[str, list[str]] = {}
    pools: dict[str, list[Path]] = {}
    for person, keys in images_of.items():
        fronts = [k for k in keys if _enrolable(custody[k], turned=False)]
        if not fronts:
            continue
        front = min(fronts, key=lambda k: abs(_yaw(custody[k])))
        front_of[person] = front
        if person not in enrolled:
            continue
        used = {front}
        turned = [k for k in keys if k != front and _enrolable(custody[k], turned=True)]
        left = [k for k in turned if _yaw(custody[k]) <= _yaw(custody[front]) - TURNED_YAW_DEG]
        right = [k for k in turned if _yaw(custody[k]) >= _yaw(custody[front]) + TURNED_YAW_DEG]
        views = []
        if left:
            views.append(min(left, key=lambda k: _yaw(custody[k])))
        if right:
            views.append(max(right, key=lambda k: _yaw(custody[k])))
        rest = [p for p in people[person] if f"custody|{_key(root, p)}" not in used | set(views)]
        if views and len(rest) < 1:
            views = []  # keep at least one image to search with
            rest = [p for p in people[person] if f"custody|{_key(root, p)}" != front]
        views_of[person] = views
        pools[person] = rest
    for person in strangers:
        pools[person] = list(people[person])
    incidents: dict[str, list[Incident]] = {}
    probe_tasks: list[Task] = []
    for condition in args.conditions:
        crng = np.random.default_rng([args.seed, len(condition)])
        incidents[condition] = []
        for person in [*enrolled, *strangers]:
            pool = pools.get(person, [])
            if not pool:
                continue
            size = int(crng.integers(args.min_stills, args.max_stills + 1))
            picks = [pool[int(i)] for i in crng.permutation(len(pool))]
            keys = []
            for n in range(size):
                path = picks[n % len(picks)]
                task_key = f"{condition}|{n // len(picks)}|{_key(root, path)}"
                keys.append(task_key)
                probe_tasks.append(Task(task_key, str(path), condition, args.seed, False))
            incidents[condition].append(Incident(person, person in front_of, keys))
    return Protocol(front_of, views_of, incidents, [p for p in enrolled if p in front_of]), probe_tasks


# -- scoring --------------------------------------------------------------------------------------


def embedding(res: dict[str, Any], config: str) -> NDArray[np.float32] | None:
    if not res.get("found"):
        return None
    source, flip = CONFIGS[config]
    part = res[source]
    features = np.asarray(part["plain"] + part["mirror"] if flip else part["plain"], dtype=np.float32)
    normalised: NDArray[np.float32] = (features / max(float(np.linalg.norm(features)), 1e-12)).astype(np.float32)
    return normalised


@dataclass(slots=True)
class Gallery:
    people: list[str]
    emb: NDArray[np.float32]  # (templates, dim)
    owner: NDArray[np.int64]
    yaw: NDArray[np.float64]


def build_gallery(
    proto: Protocol, results: dict[str, dict[str, Any]], config: str, views: bool
) -> tuple[Gallery, dict[str, int]]:
    people: list[str] = []
    rows: list[NDArray[np.float32]] = []
    owner: list[int] = []
    yaws: list[float] = []
    for person, front in proto.front_of.items():
        front_res = results[front]
        index = len(people)
        people.append(person)
        front_yaw = _yaw(front_res)
        emb = embedding(front_res, config)
        assert emb is not None
        rows.append(emb)
        owner.append(index)
        yaws.append(front_yaw)
        for view in proto.views_of.get(person, []) if views else []:
            view_emb = embedding(results[view], config)
            assert view_emb is not None
            rows.append(view_emb)
            owner.append(index)
            yaws.append(_yaw(results[view]))
    gallery = Gallery(people, np.stack(rows), np.array(owner, np.int64), np.array(yaws))
    return gallery, {p: i for i, p in enumerate(people)}


def subject_scores(gallery: Gallery, emb: NDArray[np.float32], rule: str) -> NDArray[np.float64]:
    """(queries, subjects) under a view rule: best view, fused template, or mean view score."""
    sims = (emb @ gallery.emb.T).astype(np.float64)
    n_subjects = len(gallery.people)
    if rule == "max+fused":  # the service's rule: the fused template is one more template of the subject
        return np.maximum(subject_scores(gallery, emb, "max"), subject_scores(gallery, emb, "fused"))
    if rule in {"one_view", "max"}:
        out = np.full((emb.shape[0], n_subjects), -np.inf)
        np.maximum.at(out.T, gallery.owner, sims.T)
        return out
    counts = np.bincount(gallery.owner, minlength=n_subjects).astype(np.float64)
    if rule == "mean":
        total = np.zeros((emb.shape[0], n_subjects))
        np.add.at(total.T, gallery.owner, sims.T)
        return total / counts
    assert rule == "fused"
    fused = np.zeros((n_subjects, gallery.emb.shape[1]))
    np.add.at(fused, gallery.owner, gallery.emb.astype(np.float64))
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    result: NDArray[np.float64] = emb.astype(np.float64) @ fused.T
    return result


@dataclass(slots=True)
class Ranked:
    """Per query: the mate's rank (0: not enrolled or not searched) and score, and the best other score."""

    enrolled: NDArray[np.bool_]
    searched: NDArray[np.bool_]
    rank: NDArray[np.int64]
    mate: NDArray[np.float64]
    top_other: NDArray[np.float64]
    top: NDArray[np.float64]


def rank_queries(scores: NDArray[np.float64], mates: list[int], searched: NDArray[np.bool_]) -> Ranked:
    n = len(mates)
    rank = np.zeros(n, np.int64)
    mate = np.full(n, -np.inf)
    other = np.full(n, -np.inf)
    top = np.full(n, -np.inf)
    for i, own in enumerate(mates):
        if not searched[i]:
            continue
        row = scores[i]
        top[i] = float(row.max())
        if own >= 0:
            mate[i] = row[own]
            rank[i] = int(np.sum(row > row[own])) + 1
            other[i] = float(np.max(np.delete(row, own))) if len(row) > 1 else -np.inf
        else:
            other[i] = top[i]
    return Ranked(np.array([m >= 0 for m in mates]), searched, rank, mate, other, top)


def rates(r: Ranked, threshold: float) -> dict[str, Any]:
    enrolled = r.enrolled
    n = int(enrolled.sum())
    strangers = ~enrolled
    hit1 = (r.rank == 1) & enrolled
    return {
        "enrolled": n,
        "strangers": int(strangers.sum()),
        "searched": int((r.searched & enrolled).sum()),
        "rank1": _rate(int(hit1.sum()), n),
        "rank10": _rate(int(((r.rank >= 1) & (r.rank <= TOP_K) & enrolled).sum()), n),
        "rank1_above": _rate(int((hit1 & (r.mate >= threshold)).sum()), n),
        "strangers_above": int((strangers & r.searched & (r.top >= threshold)).sum()),
    }


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


# -- the report -----------------------------------------------------------------------------------


def frame_queries(
    proto: Protocol, results: dict[str, dict[str, Any]], condition: str, config: str, subject_of: dict[str, int]
) -> tuple[list[dict[str, Any]], NDArray[np.float32]]:
    """Every still of the condition's incidents, with its person, quality and embedding."""
    source = CONFIGS[config][0]
    rows: list[dict[str, Any]] = []
    embs: list[NDArray[np.float32]] = []
    for n, incident in enumerate(proto.incidents[condition]):
        for key in incident.keys:
            res = results[key]
            emb = embedding(res, config)
            if emb is None:
                rows.append({"incident": n, "person": incident.person, "found": False})
                embs.append(np.zeros(1, np.float32))
                continue
            part = res[source]
            rows.append(
                {
                    "incident": n,
                    "person": incident.person,
                    "found": True,
                    "usable": bool(part["usable"]),
                    "reasons": part["reasons"],
                    "measures": part["measures"],
                    "mate": subject_of.get(incident.person, -1),
                }
            )
            embs.append(emb)
    dim = max(e.shape[0] for e in embs)
    matrix = np.stack([e if e.shape[0] == dim else np.zeros(dim, np.float32) for e in embs])
    return rows, matrix


def evaluate(
    proto: Protocol,
    results: dict[str, dict[str, Any]],
    condition: str,
    config: str,
    threshold: float,
    sex: dict[str, str],
    views: bool = False,
    view_rule: str = "one_view",
    person_threshold: float | None = None,
) -> dict[str, Any]:
    gallery, subject_of = build_gallery(proto, results, config, views)
    rows, embs = frame_queries(proto, results, condition, config, subject_of)
    mates = [r.get("mate", subject_of.get(r["person"], -1)) for r in rows]
    found = np.array([r["found"] for r in rows])
    usable = np.array([r.get("usable", False) for r in rows])
    scores = subject_scores(gallery, embs, view_rule)
    everything = rank_queries(scores, mates, found)
    gated = rank_queries(scores, mates, found & usable)
    clear = np.array([r["found"] and not r["reasons"] for r in rows])
    strict = rank_queries(scores, mates, found & clear)  # the gate before: every flagged face held back
    frame_threshold = threshold_at_fpir(everything.top[~everything.enrolled & found], 0.01)
    out: dict[str, Any] = {
        "gallery_subjects": len(gallery.people),
        "gallery_templates": len(gallery.owner),
        "frames": len(rows),
        "faces_found": int(found.sum()),
        "faces_usable": int((found & usable).sum()),
        "threshold": threshold,
        "frames_all": rates(everything, threshold),
        "frames_gated": rates(gated, threshold),
        "frames_strict_gate": rates(strict, threshold),
        "frame_threshold_fpir1": round(frame_threshold, 4),
    }
    # Persons: the incident's searched faces fused into one candidate list.
    weights = np.array(
        [evidence_weight(float(r["measures"]["score"]), r["usable"]) if r["found"] else 0.0 for r in rows]
    )
    persons: dict[str, Any] = {}
    incident_of = np.array([r["incident"] for r in rows])
    n_incidents = len(proto.incidents[condition])
    person_mates = [subject_of.get(i.person, -1) for i in proto.incidents[condition]]
    for rule in FUSIONS:
        fused = np.full((n_incidents, len(gallery.people)), -np.inf)
        has = np.zeros(n_incidents, bool)
        for n in range(n_incidents):
            members = np.flatnonzero((incident_of == n) & found)
            if not len(members):
                continue
            has[n] = True
            if rule != "meanemb":
                fused[n] = fuse(scores[members], weights[members], Fusion(rule), usable[members])
            else:
                mean = embs[members].mean(axis=0)
                mean /= max(float(np.linalg.norm(mean)), 1e-12)
                fused[n] = subject_scores(gallery, mean[None, :].astype(np.float32), view_rule)[0]
        ranked = rank_queries(fused, person_mates, has)
        calibrated = threshold_at_fpir(ranked.top[~ranked.enrolled & has], 0.01)
        persons[rule] = {
            **rates(ranked, threshold),
            "threshold_fpir1": round(calibrated, 4),
            "at_calibrated": rates(ranked, calibrated),
            "at_person_threshold": rates(ranked, threshold if person_threshold is None else person_threshold),
            "by_sex": by_sex(ranked, [i.person for i in proto.incidents[condition]], sex, calibrated),
        }
    out["persons"] = persons
    out["frames_by_sex"] = by_sex(everything, [r["person"] for r in rows], sex, threshold)
    out["gate"] = gate_report(rows, everything, len(gallery.people))
    return out


def by_sex(r: Ranked, persons: list[str], sex: dict[str, str], threshold: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for group in ("F", "M"):
        member = np.array([sex.get(p) == group for p in persons])
        mated = member & r.enrolled
        strangers = member & ~r.enrolled & r.searched
        misses = int((mated & ~(r.mate >= threshold)).sum())
        false = int((strangers & (r.top >= threshold)).sum())
        report[group] = {
            "mated": int(mated.sum()),
            "fnir": _rate(misses, int(mated.sum())),
            "strangers": int(strangers.sum()),
            "fpir": _rate(false, int(strangers.sum())),
        }
    return report


def gate_report(rows: list[dict[str, Any]], r: Ranked, gallery_size: int) -> dict[str, Any]:
    """Per quality reason and per measure bin: how the true person's rank holds up when searched."""
    enrolled = [i for i, row in enumerate(rows) if row["found"] and row["mate"] >= 0]
    chance = gallery_size / 2.0

    def summary(idx: list[int]) -> dict[str, Any]:
        ranks = r.rank[idx] if idx else np.array([], np.int64)
        return {
            "n": len(idx),
            "rank1": _rate(int((ranks == 1).sum()), len(idx)),
            "rank10": _rate(int(((ranks >= 1) & (ranks <= TOP_K)).sum()), len(idx)),
            "median_rank": float(np.median(ranks)) if len(idx) else None,
            "median_rank_over_chance": round(float(np.median(ranks)) / chance, 4) if len(idx) else None,
        }

    by_reason = {"(none)": summary([i for i in enrolled if not rows[i]["reasons"]])}
    for reason in REASONS:
        by_reason[reason] = summary([i for i in enrolled if reason in rows[i]["reasons"]])
        by_reason[f"only {reason}"] = summary([i for i in enrolled if rows[i]["reasons"] == [reason]])
    bins: dict[str, Any] = {}
    for measure in MEASURES:
        values = np.array([abs(float(rows[i]["measures"][measure])) for i in enrolled])
        if not len(values):
            continue
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 9)))
        bins[measure] = [
            {
                "from": round(float(lo), 3),
                "to": round(float(hi), 3),
                **summary([i for i, v in zip(enrolled, values, strict=True) if lo <= v <= hi]),
            }
            for lo, hi in itertools.pairwise(edges)
        ]
    return {"chance_median_rank": chance, "by_reason": by_reason, "by_measure": bins}


GROUP_THRESHOLDS = (0.25, 0.3, 0.35, 0.4)


def grouping_report(
    proto: Protocol, results: dict[str, dict[str, Any]], condition: str, config: str, pairs: int = 400
) -> list[dict[str, Any]]:
    """How the service groups an incident's faces into persons (``group_faces``), per threshold: two
    incidents of different people are pooled as one; how often faces of the two end up in one person
    (a reviewer deciding on it would decide for both), and what share of a person's own faces its
    largest person holds."""
    from service.domain.persons import MemberFace, group_faces

    rng = np.random.default_rng(len(condition))
    faces_of = [
        [e for e in (embedding(results[k], config) for k in incident.keys) if e is not None]
        for incident in proto.incidents[condition]
    ]
    faces_of = [f for f in faces_of if f]
    draws = [rng.choice(len(faces_of), 2, replace=False) for _ in range(pairs)]
    report = []
    for threshold in GROUP_THRESHOLDS:
        merged, share = 0, []
        for i, j in draws:
            members = [
                MemberFace(100 * side + k, 100 * side + k, e, 0.5, True)
                for side, faces in ((1, faces_of[i]), (2, faces_of[j]))
                for k, e in enumerate(faces)
            ]
            persons = group_faces(members, threshold)
            merged += any(len({f.face_id // 100 for f in p}) > 1 for p in persons)
            own = [p for p in persons if all(f.face_id // 100 == 1 for f in p)]
            share.append(max((len(p) for p in own), default=0) / len(faces_of[i]))
        report.append(
            {
                "threshold": threshold,
                "pooled_incidents": pairs,
                "two_people_in_one_person": merged,
                "largest_person_share": round(float(np.mean(share)), 3),
            }
        )
    return report


def read_sex(path: Path) -> dict[str, str]:
    """``{person: F | M}`` from LFW's ``lfw-sex.tsv`` (``read_labels``), empty without the file."""
    if not path.is_file():
        return {}
    return {name: row["sex"] for name, row in read_labels(path)[1].items() if row.get("sex") in {"F", "M"}}


# -- Markdown -------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(payload: dict[str, Any]) -> str:
    st = payload["stamp"]
    dirty = " (uncommitted changes)" if st.get("git_dirty") else ""
    lines = [
        "# CCTV levers (benchmarks/cctv.py)",
        "",
        f"Commit `{str(st.get('git_commit'))[:12]}`{dirty}, {st.get('date_utc')}, {st.get('processor')}; "
        f"seed {payload['seed']}; "
        f"pack threshold {payload['threshold']}. Rank-1 over every still of the incidents (enrolled people), "
        "strangers counted over stills or persons of held-out people. *Gate on*: only the faces the gate "
        "lets through are searched; *strict gate*: only faces free of every quality reason (the gate before "
        "its calibration).",
        "",
    ]
    for condition, per_config in payload["conditions"].items():
        lines += [
            f"## {condition}",
            "",
            "| levers | faces found | usable | rank-1 (poor searched) | rank-10 | rank-1 (gate on) | "
            "rank-1 (strict gate) | rank-1 above thr. | strangers' stills above thr. |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for config, res in per_config.items():
            a, g, strict = res["frames_all"], res["frames_gated"], res["frames_strict_gate"]
            lines.append(
                f"| {config} | {res['faces_found']}/{res['frames']} | {res['faces_usable']} | {_pct(a['rank1'])} | "
                f"{_pct(a['rank10'])} | {_pct(g['rank1'])} | {_pct(strict['rank1'])} | {_pct(a['rank1_above'])} | "
                f"{a['strangers_above']} of {a['strangers']} |"
            )
        lines += [
            "",
            "Persons (incidents of 3-6 stills), by fusion rule: at the pack's face threshold, at the threshold "
            "re-calibrated here at FPIR 1% over strangers' incidents, and at the pack's person threshold "
            f"({payload['person_threshold']}):",
            "",
            "| levers | rule | person rank-1 | rank-1 above face thr. | strangers above it | "
            "calibrated thr. | rank-1 above it | strangers above it | rank-1 above person thr. | strangers above it |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for config, res in per_config.items():
            for rule, p in res["persons"].items():
                c, t = p["at_calibrated"], p["at_person_threshold"]
                lines.append(
                    f"| {config} | {rule} | {_pct(p['rank1'])} | {_pct(p['rank1_above'])} | "
                    f"{p['strangers_above']} of {p['strangers']} | {p['threshold_fpir1']} | "
                    f"{_pct(c['rank1_above'])} | {c['strangers_above']} of {c['strangers']} | "
                    f"{_pct(t['rank1_above'])} | {t['strangers_above']} of {t['strangers']} |"
                )
        lines.append("")
    views = payload.get("views")
    if views:
        lines += [
            f"## Multi-view custody records ({views['condition']}, levers {views['config']})",
            "",
            f"{views['people_with_views']} enrolled people have turned views ({views['templates']} templates for "
            f"{views['subjects']} subjects). Scores over the stills of those people only, and over all strangers:",
            "",
            "| rule | rank-1 | rank-10 | rank-1 above thr. | strangers above pack thr. | thr. at FPIR 1% |",
            "|---|---|---|---|---|---|",
        ]
        for rule, res in views["rules"].items():
            a = res["frames_all"]
            lines.append(
                f"| {rule} | {_pct(a['rank1'])} | {_pct(a['rank10'])} | {_pct(a['rank1_above'])} | "
                f"{a['strangers_above']} of {a['strangers']} | {res['frame_threshold_fpir1']} |"
            )
        lines.append("")
    gate = payload.get("gate")
    if gate:
        lines += [
            f"## The quality gate ({gate['condition']}, levers {gate['config']}): the true person's rank "
            f"by reason (chance: median rank {gate['report']['chance_median_rank']:.0f})",
            "",
            "| reason | faces | rank-1 | rank-10 | median rank |",
            "|---|---|---|---|---|",
        ]
        for reason, s in gate["report"]["by_reason"].items():
            if s["n"]:
                lines.append(f"| {reason} | {s['n']} | {_pct(s['rank1'])} | {_pct(s['rank10'])} | {s['median_rank']} |")
        lines.append("")
    grouping = payload.get("grouping")
    if grouping:
        lines += [
            f"## Grouping an incident's faces into persons (the service's threshold: {payload['group_threshold']})",
            "",
            "Two incidents of different people pooled as one incident: how often a person holds faces of both, "
            "and the share of the first person's faces that its largest person holds.",
            "",
            "| condition | threshold | two people in one person | largest person's share |",
            "|---|---|---|---|",
        ]
        for condition, rows in grouping.items():
            for r in rows:
                lines.append(
                    f"| {condition} | {r['threshold']} | {r['two_people_in_one_person']} of {r['pooled_incidents']} | "
                    f"{_pct(r['largest_person_share'])} |"
                )
        lines.append("")
    sex = payload.get("by_sex")
    if sex:
        lines += [
            f"## By sex ({sex['condition']}, levers {sex['config']}, fusion {sex['rule']}, lfw/protocol/lfw-sex.tsv)",
            "",
            "| unit | group | mated | FNIR | strangers | FPIR |",
            "|---|---|---|---|---|---|",
        ]
        for unit in ("frames", "persons"):
            for group, g in sex[unit].items():
                lines.append(
                    f"| {unit} | {group} | {g['mated']} | {_pct(g['fnir'])} | {g['strangers']} | {_pct(g['fpir'])} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=DEFAULT_LFW_ROOT)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--enrolled", type=int, default=500, help="enrolled people probed")
    p.add_argument("--strangers", type=int, default=400, help="held-out people probed")
    p.add_argument("--distractors", type=int, default=2000, help="one-image people in the gallery")
    p.add_argument("--min-stills", type=int, default=3)
    p.add_argument("--max-stills", type=int, default=6)
    p.add_argument("--conditions", nargs="+", default=["moderate", "cctv"], choices=sorted(deg.PRESETS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-cache", action="store_true", help="analyse every image again")
    p.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/cctv_<pack>.json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from service.config import Settings
    from service.embeddings.packs import load_manifest

    settings = Settings()
    manifest = load_manifest(settings.models_dir, settings.pack)
    threshold = manifest.operating_threshold
    out = args.out or RESULTS_DIR / f"cctv_{manifest.id}.json"
    tasks, images_of, enrolled, strangers = custody_tasks(args.root, args)
    log(f"phase 1: {len(tasks)} custody images")
    started = time.perf_counter()
    results = cached_tasks(tasks, args)
    proto, probe_tasks = build_protocol(args.root, args, results, images_of, enrolled, strangers)
    log(f"phase 2: {len(probe_tasks)} probe stills")
    results.update(cached_tasks(probe_tasks, args))
    seconds = time.perf_counter() - started
    sex = read_sex(args.root / "protocol" / "lfw-sex.tsv")
    conditions: dict[str, dict[str, Any]] = {}
    for condition in args.conditions:
        conditions[condition] = {
            c: evaluate(proto, results, condition, c, threshold, sex, person_threshold=manifest.fused_threshold)
            for c in CONFIGS
        }
    best = next(  # the service's default levers
        name
        for name, (source, flip) in CONFIGS.items()
        if (source == "centerface") == settings.detection.refine_landmarks and flip == settings.recognition.flip
    )
    hardest = args.conditions[-1]
    view_people = {p for p, v in proto.views_of.items() if v}
    views_proto = Protocol(
        proto.front_of,
        proto.views_of,
        {c: [i for i in v if i.person in view_people or not i.enrolled] for c, v in proto.incidents.items()},
        proto.enrolled,
    )
    rules = {
        rule: evaluate(views_proto, results, hardest, best, threshold, sex, views=rule != "one_view", view_rule=rule)
        for rule in VIEW_RULES
    }
    multi_gallery, _ = build_gallery(proto, results, best, True)
    counts = np.bincount(multi_gallery.owner)
    main_result = conditions[hardest][best]
    payload = {
        "stamp": stamp(manifest.id),
        "seed": args.seed,
        "threshold": threshold,
        "person_threshold": manifest.fused_threshold,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "analysis_seconds": round(seconds, 1),
        "images": len(results),
        "conditions": conditions,
        "views": {
            "condition": hardest,
            "config": best,
            "people_with_views": int((counts > 1).sum()),
            "subjects": len(multi_gallery.people),
            "templates": len(multi_gallery.owner),
            "rules": {
                r: {k: v for k, v in res.items() if k in {"frames_all", "frame_threshold_fpir1"}}
                for r, res in rules.items()
            },
        },
        "gate": {"condition": hardest, "config": best, "report": main_result["gate"]},
        "grouping": {c: grouping_report(proto, results, c, best) for c in args.conditions},
        "group_threshold": settings.persons.group_threshold,
        "by_sex": {
            "condition": hardest,
            "config": best,
            "rule": settings.persons.fusion,
            "frames": main_result["frames_by_sex"],
            "persons": main_result["persons"][settings.persons.fusion]["by_sex"],
        },
    }
    write_json(out, payload)
    md = out.with_suffix(".md")
    md.write_text(markdown(payload), encoding="utf-8")
    log(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
