"""Calibrate a pack's 1:N operating threshold on non-mated searches at the gallery's size.

A 1:1 verification threshold is not a 1:N threshold: a non-mated search is compared with every
enrolled person, and the chance that *some* stranger scores above a fixed threshold grows with
the gallery. So the threshold is set where the false-positive identification rate (FPIR: the
share of searches of people not enrolled that return any candidate above it) meets a target
(default 1%), on searches against a gallery of the size the deployment has, and its growth with
gallery size is measured on sub-sampled galleries and fitted (threshold = a + b·ln N).

Non-mated searches come from two sources, pooled: probes of people not enrolled (held out), and
every mated probe searched with its own person removed from the gallery (its best wrong
candidate; a non-mated search at size N-1). Probes go through the real pipeline
(``FacePipeline.from_settings``), the quality gate applies as in the service (poor faces are not
searched unless ``--search-poor-faces``), and probes are degraded as in ``sprint.py``; the
threshold chosen is the highest over the conditions (``--calibrate-on max``, so FPIR meets the
target in each), or the pooled one, or one condition's.

The gallery is either an rfr data directory's (``--data-dir``: the deployed gallery, labelled by
custody reference = identity folder, e.g. one kept by ``sprint.py --keep-data-dir``) or built
from the dataset here. Embeddings are cached under ``benchmarks/results/cache/`` (never
committed), keyed by pack, settings, condition and file list, so re-runs are fast.

``--write`` puts the threshold in ``models/<pack>.toml`` (only the ``operating_threshold`` line
changes; comments are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import re
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import degrade as deg
from benchmarks.common import DEFAULT_LFW_ROOT, PROJECT_ROOT, RESULTS_DIR, stamp, write_json
from benchmarks.identification import (
    Probe,
    fnir_at,
    fpir_at,
    list_identities,
    make_split,
    mated_probes,
    pick_probe_face,
    threshold_at_fpir,
)
from service.config import Settings
from service.embeddings.pipeline import FacePipeline

CACHE_DIR = RESULTS_DIR / "cache"
TOP_K = 50  # a mate further down than the service returns is a miss


def log(message: str) -> None:
    sys.stderr.write(f"[calibrate {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- embeddings, cached ------------------------------------------------------------------------------


def _pipeline_fingerprint(pipeline: FacePipeline) -> str:
    m = pipeline.manifest
    s = pipeline.settings
    return json.dumps(
        {
            "pack": m.id,
            "detector": m.detector.sha256,
            "recognizer": m.recognizer.sha256,
            "landmarks": m.landmarks.sha256 if m.landmarks is not None else None,
            "detection": s.detection.model_dump(),
            "recognition": s.recognition.model_dump(),
            "quality": s.quality.model_dump(),
        },
        sort_keys=True,
    )


def _cache_path(kind: str, pipeline: FacePipeline, keys: Sequence[str], extra: str) -> Path:
    h = hashlib.sha256()
    h.update(_pipeline_fingerprint(pipeline).encode())
    h.update(extra.encode())
    for k in keys:
        h.update(k.encode() + b"\n")
    return CACHE_DIR / f"{kind}_{pipeline.pack_id}_{h.hexdigest()[:20]}.npz"


@dataclass(slots=True)
class ProbeSet:
    """One condition's probe embeddings: row i belongs to probes[i]; ``usable`` is the gate's verdict."""

    probes: list[Probe]
    found: NDArray[np.bool_]
    usable: NDArray[np.bool_]
    emb: NDArray[np.float32]
    seconds: float
    cached: bool


def embed_probes(pipeline: FacePipeline, probes: list[Probe], condition: str, seed: int) -> ProbeSet:
    keys = [p.key for p in probes]
    path = _cache_path("probes", pipeline, keys, f"{condition}|{seed}")
    dim = pipeline.manifest.embedding_dim
    if path.exists():
        with np.load(path) as z:
            return ProbeSet(probes, z["found"], z["usable"], z["emb"], float(z["seconds"]), True)
    steps = deg.parse_condition(condition)
    found = np.zeros(len(probes), bool)
    usable = np.zeros(len(probes), bool)
    emb = np.zeros((len(probes), dim), np.float32)
    started = time.perf_counter()
    for i, probe in enumerate(probes):
        out = deg.degrade_file(probe.path.read_bytes(), steps, deg.probe_rng(seed, condition, probe.key))
        faces = pipeline.analyse_bytes(out.data).faces
        pick = pick_probe_face([f.face.box for f in faces], out.face.centre)
        if pick is not None:
            found[i] = True
            usable[i] = faces[pick].quality.usable
            emb[i] = faces[pick].embedding
        if i % 100 == 99:
            log(f"  {condition}: {i + 1}/{len(probes)}")
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, found=found, usable=usable, emb=emb, seconds=np.array(seconds))
    return ProbeSet(probes, found, usable, emb, seconds, False)


@dataclass(slots=True)
class Gallery:
    people: list[str]  # one entry per subject
    emb: NDArray[np.float32]  # (templates, dim)
    owner: NDArray[np.int64]  # template -> subject index
    enrolled_image: dict[str, Path]
    source: str


def gallery_from_data_dir(data_dir: Path, pack: str, root: Path) -> Gallery:
    """The deployed gallery: every template of ``pack`` in an rfr data directory, by custody reference."""
    from sqlalchemy import select

    from service.db.models import CustodyImage, FaceTemplate, Subject
    from service.runtime import Storage

    storage = Storage.open(Settings(data_dir=data_dir, pack=pack))
    with storage.engine.connect() as conn:
        rows = conn.execute(
            select(Subject.custody_reference, FaceTemplate.embedding, CustodyImage.file_name)
            .join(Subject, Subject.id == FaceTemplate.subject_id)
            .join(CustodyImage, CustodyImage.id == FaceTemplate.custody_image_id)
            .where(FaceTemplate.pack_id == pack)
            .order_by(Subject.custody_reference, FaceTemplate.id)
        ).all()
    storage.close()
    if not rows:
        raise SystemExit(f"{data_dir}: no gallery templates for pack {pack}")
    people: list[str] = []
    owner: list[int] = []
    enrolled: dict[str, Path] = {}
    for ref, _, file_name in rows:
        if not people or people[-1] != ref:
            people.append(str(ref))
        owner.append(len(people) - 1)
        enrolled.setdefault(str(ref), root / str(ref) / str(file_name))
    emb = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]).astype(np.float32)
    return Gallery(people, emb, np.array(owner, np.int64), enrolled, f"rfr data directory {data_dir}")


def gallery_from_dataset(
    pipeline: FacePipeline, people: dict[str, list[Path]], names: list[str], attempts: int
) -> Gallery:
    """Enrol like the service (its custody-face rule), each person's first acceptable image; cached."""
    from service.services.gallery import choose_custody_face

    keys = [f"{n}:{len(people[n])}" for n in names]
    path = _cache_path("gallery", pipeline, keys, f"attempts={attempts}")
    if path.exists():
        with np.load(path) as z:
            chosen, emb = z["chosen"], z["emb"]
    else:
        chosen = np.full(len(names), -1, np.int64)
        emb = np.zeros((len(names), pipeline.manifest.embedding_dim), np.float32)
        started = time.perf_counter()
        for i, name in enumerate(names):
            for j, image in enumerate(people[name][:attempts]):
                faces = pipeline.analyse_bytes(image.read_bytes()).faces
                choice = choose_custody_face(faces)
                if not isinstance(choice, tuple):
                    chosen[i], emb[i] = j, choice.embedding
                    break
            if i % 500 == 499:
                log(f"  gallery: {i + 1}/{len(names)} ({(i + 1) / (time.perf_counter() - started):.1f} people/s)")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, chosen=chosen, emb=emb)
    ok = chosen >= 0
    kept = [n for n, good in zip(names, ok, strict=True) if good]
    enrolled = {n: people[n][int(j)] for n, j in zip(names, chosen, strict=True) if j >= 0}
    return Gallery(kept, emb[ok], np.arange(len(kept), dtype=np.int64), enrolled, "built from the dataset")


def probes_from_sprint(sprint_json: Path, data_dir: Path, pack: str, root: Path) -> tuple[dict[str, ProbeSet], int]:
    """The probe embeddings a ``sprint.py --keep-data-dir`` run left in its data directory (no re-embedding).

    The probe face is chosen by the sprint's rule: the degradation is re-run (seeded, cheap) to know
    where the named face went, then the stored face nearest that point is taken.
    """
    from sqlalchemy import select

    from service.db.models import ProbeFace, ProbeImage
    from service.runtime import Storage

    sprint = json.loads(sprint_json.read_text(encoding="utf-8"))
    seed = int(sprint["config"]["seed"])
    storage = Storage.open(Settings(data_dir=data_dir, pack=pack))
    sets: dict[str, ProbeSet] = {}
    n_mated = 0
    with storage.engine.connect() as conn:
        for cond in sprint["conditions"]:
            name = cond["name"]
            rfr = cond["systems"].get("rfr_nogate") or cond["systems"]["rfr"]
            listed = rfr["probes"]
            probes = [Probe(p["key"], p["person"], root / p["key"], bool(p["mated"])) for p in listed]
            n_mated = sum(1 for p in probes if p.mated)
            sid = int(rfr["timing"]["submission_id"])
            images = conn.execute(
                select(ProbeImage.id, ProbeImage.file_name).where(ProbeImage.submission_id == sid)
            ).all()
            index_of = {int(i): int(str(f).split("-")[1].split(".")[0]) for i, f in images}
            faces: dict[int, list[tuple[list[float], bool, bytes | None]]] = {}
            rows = conn.execute(
                select(ProbeFace.probe_image_id, ProbeFace.box, ProbeFace.usable, ProbeFace.embedding)
                .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
                .where(ProbeImage.submission_id == sid, ProbeFace.pack_id == pack)
                .order_by(ProbeFace.probe_image_id, ProbeFace.face_index)
            ).all()
            for image_id, box, usable, emb in rows:
                faces.setdefault(index_of[int(image_id)], []).append((list(box), bool(usable), emb))
            steps = deg.parse_condition(name)
            found = np.zeros(len(probes), bool)
            ok = np.zeros(len(probes), bool)
            dim = 0
            vectors: dict[int, NDArray[np.float32]] = {}
            for i, probe in enumerate(probes):
                these = faces.get(i, [])
                if not these:
                    continue
                out = deg.degrade_file(probe.path.read_bytes(), steps, deg.probe_rng(seed, name, probe.key))
                pick = pick_probe_face([f[0] for f in these], out.face.centre)
                stored = None if pick is None else these[pick][2]
                if pick is None or stored is None:
                    continue
                found[i], ok[i] = True, these[pick][1]
                vectors[i] = np.frombuffer(stored, dtype="<f4").astype(np.float32)
                dim = len(vectors[i])
            emb = np.zeros((len(probes), dim or 1), np.float32)
            for i, v in vectors.items():
                emb[i] = v
            sets[name] = ProbeSet(probes, found, ok, emb, 0.0, True)
    storage.close()
    return sets, n_mated


# -- scores -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Scores:
    """Per probe of one condition: its mate's score and rank, and its best wrong candidate's score."""

    mated: NDArray[np.bool_]
    mate: NDArray[np.float64]  # -inf when not searched / not enrolled
    mate_rank: NDArray[np.int64]  # 0 when not searched
    nonmate: NDArray[np.float64]  # best score over subjects other than the probe's person


def subject_scores(gallery: Gallery, emb: NDArray[np.float32]) -> NDArray[np.float32]:
    """(probes, subjects): each subject's best template score."""
    sims = emb @ gallery.emb.T
    if len(gallery.owner) == len(gallery.people) and np.array_equal(gallery.owner, np.arange(len(gallery.people))):
        return sims
    out = np.full((emb.shape[0], len(gallery.people)), -np.inf, np.float32)
    np.maximum.at(out.T, gallery.owner, sims.T)
    return out


def score_condition(
    gallery: Gallery, subject_of: dict[str, int], ps: ProbeSet, search_poor: bool, subset: NDArray[np.bool_] | None
) -> Scores:
    searched = ps.found & (ps.usable | search_poor)
    n = len(ps.probes)
    mated = np.array([p.mated for p in ps.probes])
    mate = np.full(n, -np.inf)
    rank = np.zeros(n, np.int64)
    nonmate = np.full(n, -np.inf)
    idx = np.flatnonzero(searched)
    if len(idx):
        s = subject_scores(gallery, ps.emb[idx]).astype(np.float64)
        if subset is not None:
            s[:, ~subset] = -np.inf
        for row, i in enumerate(idx):
            own = subject_of.get(ps.probes[i].person, -1)
            if own >= 0 and (subset is None or subset[own]):
                m = s[row, own]
                r = int(np.sum(s[row] > m)) + 1
                mate[i] = m if r <= TOP_K else -np.inf
                rank[i] = r
                s[row, own] = -np.inf
            nonmate[i] = float(np.max(s[row])) if s.shape[1] else -np.inf
    return Scores(mated, mate, rank, nonmate)


def nonmated_pool(sc: Scores) -> NDArray[np.float64]:
    """Held-out probes' best score plus every mated probe's best wrong candidate."""
    return np.concatenate([sc.nonmate[~sc.mated], sc.nonmate[sc.mated]])


def choose(thresholds: dict[str, float], rule: str) -> float:
    if rule == "max":
        finite = [thresholds[c] for c in thresholds if c != "pooled" and math.isfinite(thresholds[c])]
        return max(finite) if finite else thresholds["pooled"]
    return thresholds[rule]


def calibrate_at(
    gallery: Gallery,
    subject_of: dict[str, int],
    sets: dict[str, ProbeSet],
    target: float,
    search_poor: bool,
    subset: NDArray[np.bool_] | None = None,
) -> tuple[dict[str, float], dict[str, Scores]]:
    scores = {c: score_condition(gallery, subject_of, ps, search_poor, subset) for c, ps in sets.items()}
    thresholds = {c: threshold_at_fpir(nonmated_pool(sc), target) for c, sc in scores.items()}
    pooled = np.concatenate([nonmated_pool(sc) for sc in scores.values()])
    thresholds["pooled"] = threshold_at_fpir(pooled, target)
    return thresholds, scores


# -- writing the manifest ---------------------------------------------------------------------------

LINE = re.compile(r"^(operating_threshold\s*=\s*)([-+0-9.eE]+)([ \t]*(#.*)?)$", re.MULTILINE)


def write_threshold(manifest: Path, value: float, note: str) -> tuple[str, str]:
    """Replace only the ``operating_threshold = ...`` line (its old trailing comment too); keep the rest."""
    text = manifest.read_text(encoding="utf-8")
    matches = list(LINE.finditer(text))
    if len(matches) != 1:
        raise SystemExit(f"{manifest}: expected one 'operating_threshold = <number>' line, found {len(matches)}")
    old_line = matches[0].group(0)
    new_line = f"{matches[0].group(1)}{value:.3f}  # {note}"
    updated = text[: matches[0].start()] + new_line + text[matches[0].end() :]
    parsed = tomllib.loads(updated)  # still valid TOML, and the value reads back
    if abs(float(parsed["operating_threshold"]) - round(value, 3)) > 1e-9:
        raise SystemExit(f"{manifest}: the rewritten threshold does not read back")
    tmp = manifest.with_suffix(manifest.suffix + ".tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, manifest)
    return old_line, new_line


def committed_threshold(manifest: Path) -> float | None:
    """The manifest's ``operating_threshold`` in the last commit (``git show HEAD:...``), if any."""
    import subprocess

    try:
        rel = manifest.resolve().relative_to(PROJECT_ROOT)
        out = subprocess.run(
            ["git", "show", f"HEAD:{rel.as_posix()}"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            return None
        return float(tomllib.loads(out.stdout)["operating_threshold"])
    except (OSError, ValueError, KeyError, subprocess.SubprocessError, tomllib.TOMLDecodeError):
        return None


# -- report -----------------------------------------------------------------------------------------


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if not math.isfinite(x):
        return "any (too few searched)"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def plot(payload: dict[str, Any], prefix: Path) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    paths: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(7, 5))
    for c, rows in payload["tradeoff"].items():
        t = [r["threshold"] for r in rows]
        ax.plot(t, [r["fpir"] for r in rows], "-", label=f"FPIR {c}")
        ax.plot(t, [r["fnir"] for r in rows], "--", label=f"FNIR {c}")
    ax.axhline(payload["target_fpir"], color="grey", lw=0.8)
    ax.axvline(payload["threshold"], color="black", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1.0)
    ax.set_xlabel("threshold (cosine)")
    ax.set_ylabel("rate")
    ax.set_title(f"FPIR / FNIR vs threshold, gallery {payload['gallery_size']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = prefix.with_name(prefix.name + "_tradeoff.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths["trade-off"] = str(path)

    growth = payload["by_gallery_size"]
    if growth["points"]:
        fig, ax = plt.subplots(figsize=(7, 5))
        sizes = [p["size"] for p in growth["points"]]
        ax.errorbar(
            sizes,
            [p["threshold_mean"] for p in growth["points"]],
            yerr=[p["threshold_sd"] for p in growth["points"]],
            fmt="o",
            label="measured (mean ± sd over sub-samples)",
        )
        fit = growth["fit"]
        if fit:
            xs = np.geomspace(min(sizes), max(max(sizes), 20000), 50)
            ax.plot(xs, fit["a"] + fit["b"] * np.log(xs), "-", label=f"fit {fit['a']:.3f} + {fit['b']:.4f}·ln N")
        ax.set_xscale("log")
        ax.set_xlabel("gallery size N (people)")
        ax.set_ylabel(f"threshold at FPIR {payload['target_fpir']:g}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = prefix.with_name(prefix.name + "_gallery_size.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths["threshold vs gallery size"] = str(path)
    return paths


def markdown(payload: dict[str, Any]) -> str:
    st = payload["stamp"]
    lines = [
        f"# Threshold calibration: pack `{st['pack_id']}`",
        "",
        f"Gallery: {payload['gallery_size']} people ({payload['gallery_source']}). Probes per condition "
        f"({payload['probes']['source']}): "
        f"{payload['probes']['mated']} mated, {payload['probes']['nonmated']} non-mated (held out); non-mated "
        f"searches per condition: {payload['probes']['nonmated_searches']} (held-out + mated with the mate removed). "
        f"Target FPIR {payload['target_fpir']:g}, rule `{payload['rule']}`. Commit `{st['git_commit'][:12]}`, "
        f"{st['date_utc']}.",
        "",
        f"**Threshold {payload['threshold']:.3f}** at FPIR ≤ {100 * payload['target_fpir']:g}% on 1:N non-mated "
        f"searches against {payload['gallery_size']} people (manifest before this run: "
        f"{payload['current_threshold']}; in the last commit: {payload.get('committed_threshold')}).",
        "",
        "| condition | threshold at target | FPIR | FNIR at it | non-mated searched | mated usable |",
        "|---|---|---|---|---|---|",
    ]
    for c, v in payload["per_condition"].items():
        lines.append(
            f"| {c} | {_fmt(v['threshold'], False)} | {_fmt(v['fpir'])} | {_fmt(v['fnir'])} | "
            f"{v['nonmated_searched']} | {v['mated_usable']} |"
        )
    lines += ["", "## Trade-off at this gallery size", ""]
    conds = list(payload["tradeoff"])
    lines.append("| threshold | " + " | ".join(f"FPIR {c} | FNIR {c}" for c in conds) + " |")
    lines.append("|---|" + "---|---|" * len(conds))
    rows = payload["tradeoff"][conds[0]]
    for i, r in enumerate(rows):
        cells = [f"{r['threshold']:.3f}"]
        for c in conds:
            row = payload["tradeoff"][c][i]
            cells += [_fmt(row["fpir"]), _fmt(row["fnir"])]
        lines.append("| " + " | ".join(cells) + " |")
    growth = payload["by_gallery_size"]
    lines += ["", "## Threshold vs gallery size", ""]
    if growth["points"]:
        lines += [
            "| gallery size | threshold (mean ± sd) | FNIR at it (mean, pooled over conditions) |",
            "|---|---|---|",
        ]
        for p in growth["points"]:
            lines.append(
                f"| {p['size']} | {p['threshold_mean']:.3f} ± {p['threshold_sd']:.3f} | {_fmt(p['fnir_mean'])} |"
            )
        fit = growth["fit"]
        if fit:
            preds = ", ".join(f"{k}: {v:.3f}" for k, v in fit["predicted"].items())
            lines += [
                "",
                f"Fit: threshold = {fit['a']:.4f} + {fit['b']:.4f}·ln N (R² {fit['r2']:.3f}); predicted {preds} "
                "(beyond the largest measured size this is an extrapolation: re-calibrate on the real gallery).",
            ]
    if payload.get("written"):
        w = payload["written"]
        lines += ["", f"Written to `{w['file']}`:", "", f"    - {w['old']}", f"    + {w['new']}"]
    plots = payload.get("plots") or {}
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{k}]({Path(v).name})" for k, v in plots.items()) + "."]
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--pack", help="model pack (default: RFR_PACK or yunet_sface)")
    p.add_argument("--dataset", type=Path, default=DEFAULT_LFW_ROOT, help="folder of identity folders")
    p.add_argument("--data-dir", type=Path, help="take the gallery from this rfr data directory")
    p.add_argument(
        "--sprint-json",
        type=Path,
        help="with --data-dir: calibrate on that sprint's probes (their embeddings are in the data directory)",
    )
    p.add_argument("--gallery-size", type=int, default=0, help="without --data-dir: people to enrol (0 = all)")
    p.add_argument("--held-out", type=int, default=200, help="without --data-dir: people kept out of the gallery")
    p.add_argument("--seed", type=int, default=7, help="probe selection and degradation seed")
    p.add_argument("--mated", type=int, default=400, help="mated probes per condition")
    p.add_argument("--nonmated", type=int, default=200, help="held-out probes per condition")
    p.add_argument("--degrade", default="clean,mild,moderate", help="conditions, as in sprint.py")
    p.add_argument("--target-fpir", type=float, default=0.01)
    p.add_argument("--calibrate-on", default="max", help="max (over conditions), pooled, or a condition name")
    p.add_argument("--search-poor-faces", action="store_true", help="search faces the quality gate marks poor")
    p.add_argument("--sizes", default="125,250,500,1000", help="sub-sampled gallery sizes for the fit (plus the full)")
    p.add_argument("--repeats", type=int, default=10, help="random sub-galleries per size")
    p.add_argument("--predict", default="5749,10000,100000", help="gallery sizes to predict the threshold at")
    p.add_argument("--step", type=float, default=0.025, help="threshold step of the trade-off table")
    p.add_argument("--write", action="store_true", help="write the threshold to models/<pack>.toml")
    p.add_argument(
        "--write-at-size",
        type=int,
        help="with --write: use the fitted threshold at this gallery size instead of the measured one",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "calibration", help="output prefix (.json, .md, .png)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings(pack=args.pack) if args.pack else Settings()
    root = args.dataset.resolve()
    people = list_identities(root)
    pipeline = FacePipeline.from_settings(settings)
    pack = pipeline.pack_id
    conditions = [c.strip() for c in args.degrade.split(",") if c.strip()]
    for c in conditions:
        deg.parse_condition(c)

    if args.data_dir:
        gallery = gallery_from_data_dir(args.data_dir, pack, root)
        unknown = [p for p in gallery.people if p not in people]
        if unknown:
            raise SystemExit(
                f"{len(unknown)} custody references are not identity folders of {root}, e.g. {unknown[:3]}"
            )
        split = make_split(root, people, args.seed, 0, None, args.nonmated, gallery_people=gallery.people)
    else:
        split = make_split(root, people, args.seed, args.held_out, args.gallery_size or None, args.nonmated)
        log(f"embedding the gallery: {len(split.gallery_people)} people (cached after the first run)")
        gallery = gallery_from_dataset(pipeline, people, split.gallery_people, attempts=3)
    subject_of = {p: i for i, p in enumerate(gallery.people)}
    sets: dict[str, ProbeSet] = {}
    if args.sprint_json:
        if not args.data_dir:
            raise SystemExit("--sprint-json needs --data-dir (the sprint's kept data directory)")
        sets, n_mated = probes_from_sprint(args.sprint_json, args.data_dir, pack, root)
        conditions = list(sets)
        n_nonmated = len(next(iter(sets.values())).probes) - n_mated if sets else 0
        probe_source = f"the probes of {args.sprint_json.name} (embeddings stored by the service)"
    else:
        mated, _ = mated_probes(root, people, gallery.enrolled_image, args.mated, args.seed)
        probes = mated + split.nonmated
        n_mated, n_nonmated = len(mated), len(split.nonmated)
        probe_source = "embedded here with FacePipeline"
        for c in conditions:
            ps = embed_probes(pipeline, probes, c, args.seed)
            sets[c] = ps
            note = "cached" if ps.cached else f"{len(probes) / max(ps.seconds, 1e-9):.1f} images/s"
            log(f"{c}: {int(ps.found.sum())} named faces found, {int(ps.usable.sum())} usable ({note})")
    if args.calibrate_on not in {"max", "pooled", *conditions}:
        raise SystemExit(f"--calibrate-on must be max, pooled or one of {conditions}")
    log(f"gallery {len(gallery.people)} people ({gallery.source}); probes: {n_mated} mated + {n_nonmated}")

    target = args.target_fpir
    thresholds, scores = calibrate_at(gallery, subject_of, sets, target, args.search_poor_faces)
    chosen = choose(thresholds, args.calibrate_on)
    per_condition: dict[str, Any] = {}
    for c, sc in scores.items():
        pool = nonmated_pool(sc)
        resolved = math.isfinite(thresholds[c])
        per_condition[c] = {
            "threshold": thresholds[c],
            "fpir": fpir_at(pool, thresholds[c]) if resolved else None,
            "fnir": fnir_at(sc.mate[sc.mated], thresholds[c]) if resolved else None,
            "fpir_at_chosen": fpir_at(pool, chosen),
            "fnir_at_chosen": fnir_at(sc.mate[sc.mated], chosen),
            "nonmated_searched": int(np.sum(np.isfinite(pool))),
            "nonmated_searches": len(pool),
            "mated_usable": int(np.sum(sets[c].usable & sc.mated)),
        }
    all_pool = np.concatenate([nonmated_pool(sc) for sc in scores.values()])
    all_mate = np.concatenate([sc.mate[sc.mated] for sc in scores.values()])
    per_condition["pooled"] = {
        "threshold": thresholds["pooled"],
        "fpir": fpir_at(all_pool, thresholds["pooled"]),
        "fnir": fnir_at(all_mate, thresholds["pooled"]),
        "fpir_at_chosen": fpir_at(all_pool, chosen),
        "fnir_at_chosen": fnir_at(all_mate, chosen),
        "nonmated_searched": int(np.sum(np.isfinite(all_pool))),
        "nonmated_searches": len(all_pool),
        "mated_usable": sum(v["mated_usable"] for k, v in per_condition.items()),
    }
    grid = np.round(np.arange(0.25, 0.80 + 1e-9, args.step), 4)
    tradeoff = {
        c: [
            {
                "threshold": float(t),
                "fpir": fpir_at(nonmated_pool(sc), float(t)),
                "fnir": fnir_at(sc.mate[sc.mated], float(t)),
            }
            for t in grid
        ]
        for c, sc in scores.items()
    }
    tradeoff["pooled"] = [
        {"threshold": float(t), "fpir": fpir_at(all_pool, float(t)), "fnir": fnir_at(all_mate, float(t))} for t in grid
    ]
    sys.stdout.write(f"\ntrade-off at gallery size {len(gallery.people)} (FPIR / FNIR):\n")
    sys.stdout.write("threshold " + "".join(f"{c:>22}" for c in tradeoff) + "\n")
    for i, t in enumerate(grid):
        cells = "".join(f"{_fmt(tradeoff[c][i]['fpir']):>10} /{_fmt(tradeoff[c][i]['fnir']):>9}  " for c in tradeoff)
        sys.stdout.write(f"{t:9.3f} {cells}\n")

    # Threshold vs gallery size on random sub-galleries.
    rng = np.random.default_rng(args.seed)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip() and int(s) < len(gallery.people)})
    points: list[dict[str, Any]] = []
    for size in sizes:
        ts, fn = [], []
        for _ in range(args.repeats):
            subset = np.zeros(len(gallery.people), bool)
            subset[rng.choice(len(gallery.people), size=size, replace=False)] = True
            th, sub_scores = calibrate_at(gallery, subject_of, sets, target, args.search_poor_faces, subset)
            t = choose(th, args.calibrate_on)
            ts.append(t)
            # FNIR over mated probes whose person is in this sub-gallery.
            mates = np.concatenate(
                [
                    s.mate[s.mated & np.array([subset[subject_of.get(p.person, 0)] for p in sets[c].probes])]
                    for c, s in sub_scores.items()
                ]
            )
            fn.append(fnir_at(mates, t))
        points.append(
            {
                "size": size,
                "threshold_mean": float(np.mean(ts)),
                "threshold_sd": float(np.std(ts)),
                "fnir_mean": float(np.mean(fn)),
                "thresholds": [round(x, 4) for x in ts],
            }
        )
        log(f"gallery {size}: threshold {np.mean(ts):.3f} ± {np.std(ts):.3f}")
    points.append(
        {
            "size": len(gallery.people),
            "threshold_mean": chosen,
            "threshold_sd": 0.0,
            "fnir_mean": float(per_condition["pooled"]["fnir_at_chosen"]),
            "thresholds": [round(chosen, 4)],
        }
    )
    fit: dict[str, Any] | None = None
    if len(points) >= 3:
        x = np.log(np.array([float(p["size"]) for p in points]))
        y = np.array([float(p["threshold_mean"]) for p in points])
        b, a = np.polyfit(x, y, 1)
        resid = y - (a + b * x)
        r2 = 1.0 - float(np.sum(resid**2)) / max(float(np.sum((y - y.mean()) ** 2)), 1e-12)
        predict = [int(s) for s in args.predict.split(",") if s.strip()]
        fit = {
            "a": float(a),
            "b": float(b),
            "r2": r2,
            "predicted": {str(n): float(a + b * math.log(n)) for n in predict},
        }

    current = float(pipeline.manifest.operating_threshold)
    committed = committed_threshold(settings.models_dir / f"{pack}.toml")
    payload: dict[str, Any] = {
        "stamp": stamp(pack, benchmark="calibrate", load_average=os.getloadavg()),
        "gallery_size": len(gallery.people),
        "gallery_source": gallery.source,
        "dataset": str(root),
        "conditions": {c: deg.describe(deg.parse_condition(c)) for c in conditions},
        "probes": {
            "source": probe_source,
            "mated": n_mated,
            "nonmated": n_nonmated,
            "nonmated_searches": n_mated + n_nonmated,
        },
        "target_fpir": target,
        "rule": args.calibrate_on,
        "search_poor_faces": args.search_poor_faces,
        "threshold": chosen,
        "current_threshold": current,
        "committed_threshold": committed,
        "per_condition": per_condition,
        "tradeoff": tradeoff,
        "by_gallery_size": {"points": points, "fit": fit, "repeats": args.repeats},
    }
    if args.write:
        value = chosen
        where = f"gallery {len(gallery.people)}"
        if args.write_at_size:
            if not fit:
                raise SystemExit("--write-at-size needs the gallery-size fit (give --sizes)")
            value = fit["a"] + fit["b"] * math.log(args.write_at_size)
            where = f"gallery {args.write_at_size} (fitted)"
        value = math.ceil(value * 1000 - 1e-9) / 1000  # round up: never above the target FPIR by rounding
        manifest = settings.models_dir / f"{pack}.toml"
        date = dt.date.today().isoformat()
        note = f"calibrate.py {date}: FPIR {100 * target:g}% on 1:N non-mated searches, {where} ({args.calibrate_on})"
        old, new = write_threshold(manifest, value, note)
        payload["written"] = {"file": str(manifest), "old": old, "new": new, "value": value}
        log(f"{manifest}: {old!r} -> {new!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload["plots"] = plot(payload, args.out)
    write_json(args.out.with_suffix(".json"), payload)
    args.out.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    sys.stdout.write("\n" + markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
