"""Linking unknown faces: grouping quality on LFW, look-alike pairs, and time and memory at scale.

Run from the project root::

    python -m benchmarks.linking                 # LFW grouping + look-alikes + 10k and 100k faces
    python -m benchmarks.linking --sizes 10000   # a quicker scale test

1. **Grouping on LFW.** Every image of the 1,680 LFW people with two or more images goes through the
   production face pipeline (detect, quality gate, align, embed; the named person's face is the
   one nearest the image centre); only faces the quality gate passes are linked, as in the
   service. None is enrolled, so every face is an unknown. The faces arrive in a seeded random
   order and are linked incrementally by ``service.domain.linking.UnknownFaceIndex`` (the
   service's own code). We report pairwise precision and recall (over pairs of faces put in one
   group) and BCubed precision, recall and F, at the default setting and across settings, over
   ``--seeds`` arrival orders; the precision-recall curve is plotted to
   ``benchmarks/results/linking_pr.png``.
2. **Look-alikes.** The mismatched pairs of LFW's ``pairs.txt`` with the highest cosine scores:
   the named set of two-different-people pairs the tests check are never linked.
3. **Scale.** Synthetic unit vectors (seeded identities with a long-tailed number of appearances
   each, cosine ~0.65 between appearances of one identity) linked in bulk, 10k and 100k faces, each
   size in a fresh process: wall time, faces/s, the index's memory and the process's peak RSS,
   and the latency of linking one more face at that size (what the worker pays per face). The
   1-minute load average is recorded: timings from a machine other jobs share are noisy.

Writes ``benchmarks/results/linking.json`` (stamped with the git commit and pack) and the PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import DEFAULT_LFW_ROOT, RESULTS_DIR, default_out, peak_rss_mib, stamp, write_json
from benchmarks.linking_embed import LfwFaces, embed_lfw, embed_named_images, people_with_one, people_with_several
from service.config import LinkingSettings
from service.domain.linking import LinkRule, UnknownFaceIndex, normalised, pairwise_scores

DEFAULT = LinkingSettings()
DEFAULT_RULE = LinkRule(DEFAULT.threshold, DEFAULT.nearest, DEFAULT.margin, DEFAULT.merge_threshold)


def link_all(vectors: NDArray[np.float32], rule: LinkRule, block: int = 256) -> tuple[NDArray[np.int64], float]:
    """Group ids of ``vectors`` linked one after another in the given order, and the seconds it took."""
    index = UnknownFaceIndex(vectors.shape[1])
    counter = iter(range(1, 10**9))
    start = time.perf_counter()
    decisions = index.link(list(range(len(vectors))), vectors, rule, lambda: next(counter), block=block)
    seconds = time.perf_counter() - start
    del decisions
    groups = np.array([index.group_of(i) for i in range(len(vectors))], dtype=np.int64)
    return groups, seconds


def evaluate(
    labels: NDArray[np.str_], vectors: NDArray[np.float32], rule: LinkRule, seeds: Sequence[int]
) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(labels))
        groups, seconds = link_all(vectors[order], rule)
        scores = pairwise_scores(list(labels[order]), list(groups))
        sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
        wrong = 0  # faces not of their group's most frequent person: the wrong links an officer would chase
        for g in np.unique(groups):
            counts = np.unique(labels[order][groups == g], return_counts=True)[1]
            wrong += int(counts.sum() - counts.max())
        scores |= {
            "groups_of_two_or_more": int((sizes >= 2).sum()),
            "faces_in_groups": int(sizes[sizes >= 2].sum()),
            "largest_group": int(sizes.max()),
            "wrongly_placed_faces": wrong,
            "seconds": seconds,
        }
        runs.append(scores)
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    summary: dict[str, Any] = {
        "rule": {
            "threshold": rule.threshold,
            "nearest": rule.nearest,
            "margin": rule.margin,
            "merge": rule.merge_threshold,
        },
    }
    for key in keys:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        summary[key] = float(values.mean())
        if len(runs) > 1 and key in {"pairwise_precision", "pairwise_recall", "bcubed_f"}:
            summary[key + "_min"] = float(values.min())
            summary[key + "_max"] = float(values.max())
    return summary


def impure_groups(
    labels: NDArray[np.str_], vectors: NDArray[np.float32], rule: LinkRule, seed: int
) -> list[dict[str, Any]]:
    """The groups that mix people at ``rule`` (what a wrong link looks like), largest first."""
    order = np.random.default_rng(seed).permutation(len(labels))
    groups, _ = link_all(vectors[order], rule)
    out = []
    for g in np.unique(groups):
        people = labels[order][groups == g]
        names, counts = np.unique(people, return_counts=True)
        if len(names) > 1:
            out.append({"size": len(people), "people": {str(n): int(c) for n, c in zip(names, counts, strict=True)}})
    return sorted(out, key=lambda g: -g["size"])


def read_mismatches(path: Path) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 4:
            pairs.append(((parts[0], int(parts[1])), (parts[2], int(parts[3]))))
    return pairs


def lookalikes(root: Path, top: int) -> dict[str, Any]:
    """The highest-scoring mismatched pairs of pairs.txt (both faces found and usable)."""
    pairs = read_mismatches(root / "protocol" / "pairs.txt")
    keys = sorted({k for pair in pairs for k in pair})
    faces = embed_named_images(root, keys, "pairs")
    at = {(str(n), int(i)): j for j, (n, i) in enumerate(zip(faces.people, faces.numbers, strict=True))}
    ranked: list[tuple[float, str, str]] = []
    for a, b in pairs:
        ia, ib = at[a], at[b]
        if not (faces.usable[ia] and faces.usable[ib]):
            continue
        score = round(float(faces.embeddings[ia] @ faces.embeddings[ib]), 4)
        ranked.append((score, f"{a[0]}_{a[1]:04d}", f"{b[0]}_{b[1]:04d}"))
    ranked.sort(key=lambda r: -r[0])  # stable: equal scores keep pairs.txt order
    scored = [{"a": a, "b": b, "score": score} for score, a, b in ranked]
    scores = np.array([p["score"] for p in scored])
    return {
        "mismatched_pairs_scored": len(scored),
        "above_default_threshold": int((scores >= DEFAULT_RULE.threshold).sum()),
        "max_score": float(scores.max()),
        "top": scored[:top],
    }


# -- scale -------------------------------------------------------------------------------------


def synthetic(n: int, dim: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``n`` unit vectors of identities with a long-tailed number of appearances (1 + Zipf(2))."""
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(min(1 + rng.zipf(2.0) - 1, 200)))
    counts[-1] -= sum(counts) - n
    labels = np.repeat(np.arange(len(counts)), counts)
    centres = normalised(rng.standard_normal((len(counts), dim)))
    noise = rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    vectors = normalised(centres[labels] + 0.73 * noise)  # cosine ~0.65 between two appearances
    order = rng.permutation(n)
    return vectors[order], labels[order]


def scale_worker(n: int, dim: int, seed: int) -> dict[str, Any]:
    """One size in this (fresh) process: bulk link, then the per-face latency of one more."""
    base_rss = peak_rss_mib()
    vectors, labels = synthetic(n + 200, dim, seed)
    bulk, extra = vectors[:n], vectors[n:]
    index = UnknownFaceIndex(dim)
    counter = iter(range(1, 10**9))
    start = time.perf_counter()
    index.link(list(range(n)), bulk, DEFAULT_RULE, lambda: next(counter))
    seconds = time.perf_counter() - start
    single = []
    for j, vector in enumerate(extra):
        t0 = time.perf_counter()
        index.link([n + j], vector[None, :], DEFAULT_RULE, lambda: next(counter), same_still=True)
        single.append(time.perf_counter() - t0)
    groups = np.array([index.group_of(i) for i in range(n)], dtype=np.int64)
    quality = pairwise_scores(list(labels[:n]), list(groups))
    return {
        "faces": n,
        "dim": dim,
        "identities": len(np.unique(labels[:n])),
        "bulk_seconds": round(seconds, 3),
        "faces_per_second": round(n / seconds, 1),
        "one_more_face_ms_p50": round(1000 * float(np.percentile(single, 50)), 3),
        "one_more_face_ms_p95": round(1000 * float(np.percentile(single, 95)), 3),
        "index_mib": round(index.nbytes / 2**20, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_data_mib": round(base_rss, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "synthetic_pairwise_precision": round(quality["pairwise_precision"], 5),
        "synthetic_pairwise_recall": round(quality["pairwise_recall"], 5),
    }


def run_scale(sizes: Sequence[int], dim: int, seed: int) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.linking",
                "--scale-worker",
                str(n),
                "--dim",
                str(dim),
                "--seed",
                str(seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        sys.stderr.write(f"scale {n}: {result}\n")
        out.append(result)
    return out


# -- plot and report ---------------------------------------------------------------------------


def plot(sweep: list[dict[str, Any]], default: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    thresholds = [s["rule"]["threshold"] for s in sweep]
    left.plot([s["pairwise_recall"] for s in sweep], [s["pairwise_precision"] for s in sweep], "o-", label="pairwise")
    left.plot([s["bcubed_recall"] for s in sweep], [s["bcubed_precision"] for s in sweep], "s--", label="BCubed")
    for s in sweep[::2]:
        left.annotate(f"{s['rule']['threshold']:.2f}", (s["pairwise_recall"], s["pairwise_precision"]), fontsize=7)
    left.plot([default["pairwise_recall"]], [default["pairwise_precision"]], "r*", markersize=14, label="default")
    left.axhline(0.99, color="grey", linewidth=0.8, linestyle=":", label="precision 0.99")
    left.set_xlabel("recall")
    left.set_ylabel("precision")
    left.set_ylim(0.95, 1.002)
    left.set_title("precision-recall across the average-linkage threshold")
    left.legend(loc="lower left")
    left.grid(alpha=0.3)

    right.plot(thresholds, [s["pairwise_precision"] for s in sweep], "o-", label="pairwise precision")
    right.plot(thresholds, [s["pairwise_recall"] for s in sweep], "o--", label="pairwise recall")
    right.plot(thresholds, [s["bcubed_f"] for s in sweep], "s-", label="BCubed F")
    right.axvline(default["rule"]["threshold"], color="red", linewidth=1, label="default")
    right.set_xlabel("threshold (average cosine to a group; nearest member the same)")
    right.set_ylim(0.0, 1.02)
    right.set_title("by threshold")
    right.legend(loc="lower left")
    right.grid(alpha=0.3)
    fig.suptitle("Linking unknown faces: LFW, 1,680 people with 2+ images, none enrolled (mean of 3 arrival orders)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw-root", type=Path, default=DEFAULT_LFW_ROOT)
    parser.add_argument("--out", type=Path, default=default_out("linking"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="arrival orders of the faces")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="scale test sizes")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lookalikes", type=int, default=12, help="how many top mismatched pairs to list")
    parser.add_argument(
        "--no-distractors",
        dest="distractors",
        action="store_false",
        help="skip the run with LFW's 4,069 single-image people added (they can only be linked wrongly)",
    )
    parser.add_argument("--scale-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.scale_worker:
        sys.stdout.write(json.dumps(scale_worker(args.scale_worker, args.dim, args.seed)) + "\n")
        return 0

    faces: LfwFaces = embed_lfw(args.lfw_root, people_with_several(args.lfw_root))
    keep = faces.found & faces.usable
    labels = faces.people[keep]
    vectors = normalised(faces.embeddings[keep])
    per_person = np.unique(labels, return_counts=True)[1]
    dataset = {
        "people": len(np.unique(faces.people)),
        "images": len(faces.people),
        "faces_found": int(faces.found.sum()),
        "faces_usable": int(keep.sum()),
        "people_with_two_or_more_usable": int((per_person >= 2).sum()),
        "embedding_seconds": round(faces.seconds, 1),
    }
    sys.stderr.write(f"LFW: {dataset}\n")

    default = evaluate(labels, vectors, DEFAULT_RULE, args.seeds)
    sys.stderr.write(f"default {default}\n")
    sweep = []
    for threshold in np.round(np.arange(0.40, 0.801, 0.025), 3):
        merge = max(DEFAULT.merge_threshold, float(threshold) + 0.10)
        rule = LinkRule(float(threshold), float(threshold), DEFAULT.margin, merge)
        sweep.append(evaluate(labels, vectors, rule, args.seeds))
        sys.stderr.write(
            f"t={threshold:.3f} P={sweep[-1]['pairwise_precision']:.4f} R={sweep[-1]['pairwise_recall']:.4f} "
            f"F(BCubed)={sweep[-1]['bcubed_f']:.4f}\n"
        )
    variants = {}
    for name, rule in {
        "nearest_plus_0.05": LinkRule(
            DEFAULT.threshold, DEFAULT.threshold + 0.05, DEFAULT.margin, DEFAULT.merge_threshold
        ),
        "no_margin": LinkRule(DEFAULT.threshold, DEFAULT.nearest, 0.0, DEFAULT.merge_threshold),
        "never_merge": LinkRule(DEFAULT.threshold, DEFAULT.nearest, DEFAULT.margin, 1.01),
        "merge_0.60": LinkRule(DEFAULT.threshold, DEFAULT.nearest, DEFAULT.margin, 0.60),
        "merge_0.70": LinkRule(DEFAULT.threshold, DEFAULT.nearest, DEFAULT.margin, 0.70),
        "single_linkage_like": LinkRule(-1.0, DEFAULT.nearest, DEFAULT.margin, DEFAULT.merge_threshold),
    }.items():
        variants[name] = evaluate(labels, vectors, rule, args.seeds)
    impure = impure_groups(labels, vectors, DEFAULT_RULE, args.seeds[0])
    distracted: dict[str, Any] = {}
    if args.distractors:
        singles = embed_named_images(args.lfw_root, people_with_one(args.lfw_root), "singles")
        extra = singles.found & singles.usable
        all_labels = np.concatenate([labels, np.char.add("single:", singles.people[extra].astype(str))])
        all_vectors = np.concatenate([vectors, normalised(singles.embeddings[extra])])
        distracted = {"distractor_faces": int(extra.sum())} | evaluate(
            all_labels, all_vectors, DEFAULT_RULE, args.seeds
        )
        sys.stderr.write(f"with distractors {distracted}\n")
    looks = lookalikes(args.lfw_root, args.lookalikes)
    scale = run_scale(args.sizes, args.dim, args.seed) if args.sizes else []

    png = RESULTS_DIR / "linking_pr.png"
    plot(sweep, default, png)
    payload = {
        "stamp": stamp("yunet_sface", benchmark="linking"),
        "dataset": dataset,
        "default": default,
        "sweep": sweep,
        "variants": variants,
        "with_distractors": distracted,
        "impure_groups_at_default": impure[:20],
        "lookalike_pairs": looks,
        "scale": scale,
        "plot": str(png.relative_to(RESULTS_DIR.parent.parent)),
    }
    write_json(args.out, payload)
    print_markdown(payload)
    return 0


def print_markdown(payload: dict[str, Any]) -> None:
    d = payload["default"]
    w = sys.stdout.write
    w(f"\nLFW: {payload['dataset']}\n\n")
    w(
        "| setting | pairwise P | pairwise R | BCubed P | BCubed R | BCubed F | groups (2+) | wrong faces |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = [("default " + json.dumps(d["rule"]), d)] + [
        (f"threshold {s['rule']['threshold']:.3f}", s) for s in payload["sweep"]
    ]
    rows += [(name, v) for name, v in payload["variants"].items()]
    if payload["with_distractors"]:
        rows.append(
            (f"default + {payload['with_distractors']['distractor_faces']} distractors", payload["with_distractors"])
        )
    for name, s in rows:
        w(
            f"| {name} | {s['pairwise_precision']:.4f} | {s['pairwise_recall']:.4f} | {s['bcubed_precision']:.4f} | "
            f"{s['bcubed_recall']:.4f} | {s['bcubed_f']:.4f} | {s['groups_of_two_or_more']:.0f} | "
            f"{s['wrongly_placed_faces']:.1f} |\n"
        )
    w("\nlook-alike mismatched pairs (pairs.txt), highest scores:\n")
    for p in payload["lookalike_pairs"]["top"]:
        w(f"  {p['score']:.4f}  {p['a']}  {p['b']}\n")
    if payload["scale"]:
        w(
            "\n| faces | bulk s | faces/s | one more face p50 ms | p95 ms | index MiB | peak RSS MiB |\n"
            "|---|---|---|---|---|---|---|\n"
        )
        for s in payload["scale"]:
            w(
                f"| {s['faces']:,} | {s['bulk_seconds']} | {s['faces_per_second']} | {s['one_more_face_ms_p50']} | "
                f"{s['one_more_face_ms_p95']} | {s['index_mib']} | {s['peak_rss_mib']} |\n"
            )


if __name__ == "__main__":
    raise SystemExit(main())
