"""Standard 10-fold LFW verification (``pairs.txt``) of the face pipeline, optionally of the dlib peer.

Run from the project root::

    python -m benchmarks.lfw_verification [--lfw-root ../shared/datasets/lfw] [--peer-lfw]

Protocol: 10 folds of 300 matched + 300 mismatched pairs. Each image is embedded once (cached in
memory). Score = cosine similarity of the L2-normalised embeddings. A fold's accuracy uses the
threshold that maximises accuracy on the other nine folds; we report the mean and the standard
deviation (ddof=1) over the ten folds, the threshold at a false-accept rate of 1e-3 over all
3,000 mismatched pairs, and the ROC (JSON + PNG beside ``--out``).

Which face: an LFW image can hold several faces; the named person's is roughly centred. We take
the detected face whose box centre is nearest the image centre, measured in units of the face's
size (distance / sqrt(box area)), so a large face slightly off-centre wins over a small face in
the background near the centre.

No face detected: we fall back to aligning with a default landmark set for the 250x250 LFW
frame, namely the per-coordinate median of the landmarks chosen on every image of this run where
a face was found (so the fallback follows the detector rather than a hand-typed template). The
number of fallbacks and the median landmarks are reported.

Variants (``--variants``, for investigation): ``base`` is the production path (pack manifest
colour order, one crop); ``flip`` averages the embeddings of the crop and its mirror image
before normalising; ``swap`` feeds the recognizer the other colour order than the manifest says.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import (
    DEFAULT_LFW_ROOT,
    build_pipeline,
    default_out,
    lfw_image_path,
    peak_rss_mib,
    stamp,
    write_json,
)
from service.embeddings.align import align_face
from service.embeddings.pipeline import FacePipeline

FAR_TARGET = 1e-3
VARIANTS = ("base", "flip", "swap", "swap_flip")

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Pair:
    fold: int
    first: tuple[str, int]
    second: tuple[str, int]
    same: bool


def read_pairs(path: Path) -> tuple[list[Pair], int]:
    """The pairs of ``pairs.txt`` with their fold; the header says ``folds pairs_per_class``."""
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    folds, per_class = (int(v) for v in lines[0].split())
    body = lines[1:]
    if len(body) != folds * per_class * 2:
        raise SystemExit(f"{path}: expected {folds * per_class * 2} pairs, found {len(body)}")
    pairs = []
    for index, line in enumerate(body):
        fold = index // (2 * per_class)
        parts = line.split("\t")
        if len(parts) == 3:
            pairs.append(Pair(fold, (parts[0], int(parts[1])), (parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair(fold, (parts[0], int(parts[1])), (parts[2], int(parts[3])), False))
        else:
            raise SystemExit(f"{path}: malformed line {index + 2}: {line!r}")
    return pairs, folds


def choose_central(boxes: Sequence[tuple[float, float, float, float]], width: int, height: int) -> int:
    """Index of the box nearest the image centre, distance measured in units of the box's size."""
    cx, cy = width / 2.0, height / 2.0
    costs = []
    for x, y, w, h in boxes:
        distance = float(np.hypot(x + w / 2.0 - cx, y + h / 2.0 - cy))
        costs.append(distance / max(float(np.sqrt(max(w * h, 1.0))), 1.0))
    return int(np.argmin(costs))


# --------------------------------------------------------------------------------------------
# Scoring


def best_threshold(scores: FloatArray, same: NDArray[np.bool_]) -> float:
    """The threshold (accept when score >= threshold) that maximises accuracy on these pairs."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order].astype(np.float64), same[order]
    n = len(s)
    # Splitting before index k accepts s[k:]: correct = positives in s[k:] + negatives in s[:k].
    pos_before = np.concatenate([[0], np.cumsum(y)])
    neg_before = np.concatenate([[0], np.cumsum(~y)])
    correct = (pos_before[-1] - pos_before) + neg_before
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] > s[:-1]  # only split between distinct scores
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        return float(s[0] - 1e-6)
    if k == n:
        return float(s[-1] + 1e-6)
    return float((s[k - 1] + s[k]) / 2.0)


def accuracy(scores: FloatArray, same: NDArray[np.bool_], threshold: float) -> float:
    return float(np.mean((scores >= threshold) == same))


def ten_fold(scores: FloatArray, same: NDArray[np.bool_], folds: NDArray[np.int64]) -> dict[str, Any]:
    per_fold, thresholds = [], []
    single = len(np.unique(folds)) == 1
    for fold in np.unique(folds):
        # With one fold only (a quick run) the threshold is fitted on that fold itself: optimistic.
        train = np.ones_like(same) if single else folds != fold
        threshold = best_threshold(scores[train], same[train])
        thresholds.append(threshold)
        test = folds == fold
        per_fold.append(accuracy(scores[test], same[test], threshold))
    acc = np.array(per_fold)
    return {
        "folds": len(per_fold),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "accuracy_per_fold": [round(a, 5) for a in per_fold],
        "threshold_per_fold": [round(t, 5) for t in thresholds],
    }


def threshold_at_far(scores: FloatArray, same: NDArray[np.bool_], far: float) -> dict[str, Any]:
    """Threshold accepting at most ``far`` of the mismatched pairs (score >= threshold), and the TAR there."""
    impostor = np.sort(scores[~same].astype(np.float64))[::-1]
    allowed = min(int(np.floor(far * len(impostor))), len(impostor) - 1)
    # Midway between the last impostor score we may accept and the first we must reject.
    upper = impostor[allowed - 1] if allowed > 0 else impostor[0] + 2e-6
    threshold = float((upper + impostor[allowed]) / 2.0)
    genuine = scores[same]
    return {
        "far_target": far,
        "threshold": threshold,
        "far": float(np.mean(scores[~same] >= threshold)),
        "false_accepts": int(np.sum(scores[~same] >= threshold)),
        "impostor_pairs": len(impostor),
        "tar": float(np.mean(genuine >= threshold)),
    }


def roc(scores: FloatArray, same: NDArray[np.bool_]) -> dict[str, list[float]]:
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    s, y = scores[order].astype(np.float64), same[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.ones(len(s), dtype=bool)
    last[:-1] = s[1:] < s[:-1]  # one point per distinct threshold
    tpr = np.concatenate([[0.0], tp[last] / max(int(y.sum()), 1)])
    fpr = np.concatenate([[0.0], fp[last] / max(int((~y).sum()), 1)])
    thr = np.concatenate([[float(s[0]) + 1e-6], s[last]])
    # Drop points in the middle of a vertical or horizontal run: the step curve stays the same.
    keep = np.ones(len(fpr), dtype=bool)
    inner_v = (fpr[1:-1] == fpr[:-2]) & (fpr[1:-1] == fpr[2:])
    inner_h = (tpr[1:-1] == tpr[:-2]) & (tpr[1:-1] == tpr[2:])
    keep[1:-1] = ~(inner_v | inner_h)
    fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {
        "fpr": [round(float(v), 6) for v in fpr],
        "tpr": [round(float(v), 6) for v in tpr],
        "threshold": [round(float(v), 6) for v in thr],
    }


def auc(curve: dict[str, list[float]]) -> float:
    return float(np.trapezoid(curve["tpr"], curve["fpr"]))


def evaluate(scores: FloatArray, same: NDArray[np.bool_], folds: NDArray[np.int64]) -> dict[str, Any]:
    result = ten_fold(scores, same, folds)
    result["at_far_1e-3"] = threshold_at_far(scores, same, FAR_TARGET)
    curve = roc(scores, same)
    result["auc"] = auc(curve)
    result["genuine_score_mean"] = float(scores[same].mean())
    result["impostor_score_mean"] = float(scores[~same].mean())
    return {"summary": result, "roc": curve}


# --------------------------------------------------------------------------------------------
# Embedding the images


@dataclass
class EmbedStats:
    images: int = 0
    multi_face: int = 0
    fallback: list[str] = field(default_factory=list)
    seconds: float = 0.0


class OursEmbedder:
    """Detect, pick the central face, align and embed, with the pipeline's own stages."""

    def __init__(self, pipeline: FacePipeline, variants: Sequence[str]) -> None:
        self.pipeline = pipeline
        self.variants = list(variants)
        self.stats = EmbedStats()
        self.chosen_landmarks: list[FloatArray] = []
        self._pending: dict[str, NDArray[np.uint8]] = {}

    def _embed(self, crop: NDArray[np.uint8]) -> dict[str, FloatArray]:
        rec = self.pipeline.recognizer
        swapped = np.ascontiguousarray(crop[:, :, ::-1])
        needed: list[NDArray[np.uint8]] = []
        for variant in self.variants:
            base = swapped if variant.startswith("swap") else crop
            needed.append(base)
            if variant.endswith("flip"):
                needed.append(np.ascontiguousarray(base[:, ::-1]))
        vectors = rec.embed(needed)
        out: dict[str, FloatArray] = {}
        i = 0
        for variant in self.variants:
            if variant.endswith("flip"):
                v = vectors[i] + vectors[i + 1]
                i += 2
            else:
                v = vectors[i]
                i += 1
            out[variant] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        return out

    def embed_path(self, key: str, path: Path) -> dict[str, FloatArray] | None:
        """Embeddings of the central face; ``None`` if no face was found (see ``finish``)."""
        start = time.perf_counter()
        image = self.pipeline.decode(path.read_bytes())
        faces = self.pipeline.detect(image)
        self.stats.images += 1
        if not faces:
            self._pending[key] = image
            self.stats.seconds += time.perf_counter() - start
            return None
        if len(faces) > 1:
            self.stats.multi_face += 1
        face = faces[choose_central([f.box for f in faces], image.shape[1], image.shape[0])]
        self.chosen_landmarks.append(face.landmarks)
        result = self._embed(align_face(image, face.landmarks))
        self.stats.seconds += time.perf_counter() - start
        return result

    def fallback_landmarks(self) -> FloatArray:
        return np.median(np.stack(self.chosen_landmarks), axis=0).astype(np.float32)

    def finish(self) -> dict[str, dict[str, FloatArray]]:
        """Embed the images without a detection, aligned on the median landmarks of this run."""
        landmarks = self.fallback_landmarks()
        out = {}
        for key, image in self._pending.items():
            self.stats.fallback.append(key)
            out[key] = self._embed(align_face(image, landmarks))
        return out


class PeerEmbedder:
    """The dlib peer (face_recognition's pipeline) with the same face choice and fallback rule."""

    def __init__(self) -> None:
        from benchmarks.dlib_peer import DlibPeer

        self.peer = DlibPeer()
        self.stats = EmbedStats()
        self.chosen_boxes: list[tuple[float, float, float, float]] = []
        self._pending: dict[str, NDArray[np.uint8]] = {}

    def embed_path(self, key: str, path: Path) -> dict[str, FloatArray] | None:
        from benchmarks.dlib_peer import rect_box

        start = time.perf_counter()
        rgb = self.peer.decode(path.read_bytes())
        rects = self.peer.detect(rgb)
        self.stats.images += 1
        if not rects:
            self._pending[key] = rgb
            self.stats.seconds += time.perf_counter() - start
            return None
        if len(rects) > 1:
            self.stats.multi_face += 1
        boxes = [rect_box(r) for r in rects]
        index = choose_central(boxes, rgb.shape[1], rgb.shape[0])
        self.chosen_boxes.append(boxes[index])
        descriptor = self.peer.describe(rgb, self.peer.landmarks(rgb, rects[index]))
        self.stats.seconds += time.perf_counter() - start
        return {"descriptor": descriptor}

    def fallback_box(self) -> tuple[float, float, float, float]:
        x, y, w, h = (float(v) for v in np.median(np.array(self.chosen_boxes), axis=0))
        return x, y, w, h

    def finish(self) -> dict[str, dict[str, FloatArray]]:
        rect = self.peer.rectangle(*self.fallback_box())
        out = {}
        for key, rgb in self._pending.items():
            self.stats.fallback.append(key)
            out[key] = {"descriptor": self.peer.describe(rgb, self.peer.landmarks(rgb, rect))}
        return out


Embedder = OursEmbedder | PeerEmbedder


def embed_all(
    embedder: Embedder, keys: Sequence[str], root: Path, label: str, progress_every: int = 500
) -> dict[str, dict[str, FloatArray]]:
    cache: dict[str, dict[str, FloatArray]] = {}
    start = time.perf_counter()
    for i, key in enumerate(keys, 1):
        name, number = key.rsplit("_", 1)
        result = embedder.embed_path(key, lfw_image_path(root, name, int(number)))
        if result is not None:
            cache[key] = result
        if i % progress_every == 0 or i == len(keys):
            elapsed = time.perf_counter() - start
            print(
                f"  [{label}] {i}/{len(keys)} images, {elapsed:.0f} s ({i / elapsed:.1f} img/s)",
                file=sys.stderr,
                flush=True,
            )
    cache.update(embedder.finish())
    return cache


def pair_scores(
    pairs: Sequence[Pair], cache: dict[str, dict[str, FloatArray]], variant: str, metric: Callable[..., float]
) -> FloatArray:
    return np.array(
        [metric(cache[key(p.first)][variant], cache[key(p.second)][variant]) for p in pairs], dtype=np.float32
    )


def key(image: tuple[str, int]) -> str:
    return f"{image[0]}_{image[1]:04d}"


def cosine(a: FloatArray, b: FloatArray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def neg_euclidean(a: FloatArray, b: FloatArray) -> float:
    return -float(np.linalg.norm(a - b))


# --------------------------------------------------------------------------------------------
# Output


def plot_roc(curves: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    lowest = 1.0
    for label, entry in curves.items():
        fpr = np.array(entry["roc"]["fpr"])
        tpr = np.array(entry["roc"]["tpr"])
        keep = fpr > 0
        shown = fpr >= FAR_TARGET / 2  # the y-range follows the curves from FAR 5e-4 on
        lowest = min(lowest, float(tpr[shown].min()) if shown.any() else 1.0)
        acc = entry["summary"]["accuracy_mean"] * 100
        ax.plot(fpr[keep], tpr[keep], label=f"{label} ({acc:.2f}%)")
        at = entry["summary"]["at_far_1e-3"]
        ax.plot([at["far"]], [at["tar"]], "o", color=ax.lines[-1].get_color())
    ax.axvline(FAR_TARGET, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(1.0 / 3000 / 2, 1.0)
    ax.set_ylim(max(0.0, np.floor(lowest * 100 - 1) / 100), 1.0)
    ax.set_xlabel("false accept rate (mismatched pairs)")
    ax.set_ylabel("true accept rate (matched pairs)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--lfw-root",
        type=Path,
        default=DEFAULT_LFW_ROOT,
        help="LFW root holding <Name>/ folders and protocol/pairs.txt (default ../shared/datasets/lfw)",
    )
    parser.add_argument("--pairs", type=Path, help="pairs file (default <lfw-root>/protocol/pairs.txt)")
    parser.add_argument("--out", type=Path, default=default_out("lfw_verification"), help="results JSON")
    parser.add_argument(
        "--variants",
        default="base",
        help=f"comma-separated embedding variants of ours, first is the headline: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--intra-op-threads", type=int, help="override ONNX Runtime intra-op threads")
    parser.add_argument("--folds", type=int, help="evaluate only the first N folds (quick runs)")
    parser.add_argument("--skip-ours", action="store_true", help="only the peer (with --peer-lfw)")
    parser.add_argument("--peer-lfw", action="store_true", help="also evaluate the dlib peer")
    parser.add_argument("--peer-folds", type=int, help="evaluate the peer on the first N folds only (it is slow)")
    return parser


def _fold_subset(pairs: list[Pair], n: int | None) -> list[Pair]:
    return pairs if n is None else [p for p in pairs if p.fold < n]


def _unique_keys(pairs: Sequence[Pair]) -> list[str]:
    return sorted({key(p.first) for p in pairs} | {key(p.second) for p in pairs})


def _arrays(pairs: Sequence[Pair]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    return np.array([p.same for p in pairs]), np.array([p.fold for p in pairs], dtype=np.int64)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.lfw_root
    pairs_path: Path = args.pairs or root / "protocol" / "pairs.txt"
    if not pairs_path.is_file():
        raise SystemExit(f"no pairs file at {pairs_path}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {VARIANTS}")
    all_pairs, n_folds = read_pairs(pairs_path)
    pairs = _fold_subset(all_pairs, args.folds)
    wall = time.perf_counter()

    pipeline = build_pipeline(args.intra_op_threads)
    results: dict[str, Any] = stamp(
        pipeline.pack_id,
        benchmark="lfw_verification",
        lfw_root=str(root.resolve()),
        pairs_file=str(pairs_path.resolve()),
        protocol={"folds": n_folds, "pairs": len(all_pairs), "evaluated_pairs": len(pairs)},
        intra_op_threads=pipeline.settings.runtime.intra_op_threads,
        face_choice="detected face nearest the image centre, distance / sqrt(box area)",
        score="cosine similarity",
        accuracy_std="sample standard deviation over folds (ddof=1)",
    )
    results["published"] = {
        "sface_fp32": 0.9940,
        "sface_int8": 0.9932,
        "dlib_resnet": 0.9938,
        "target": 0.993,
    }
    curves: dict[str, dict[str, Any]] = {}
    print(f"LFW verification: {len(pairs)} pairs in {len(pairs) // 600} folds, pack {pipeline.pack_id}")

    same, folds = _arrays(pairs)
    if not args.skip_ours:
        # Warm-up: the first runs of a session allocate and tune; not counted in the timings.
        warm = pipeline.decode(lfw_image_path(root, *pairs[0].first).read_bytes())
        for _ in range(3):
            pipeline.analyse(warm)
        ours = OursEmbedder(pipeline, variants)
        keys = _unique_keys(pairs)
        cache = embed_all(ours, keys, root, "ours")
        results["ours"] = {
            "images": len(keys),
            "images_with_several_faces": ours.stats.multi_face,
            "fallback_no_face": len(ours.stats.fallback),
            "fallback_images": ours.stats.fallback,
            "fallback_landmarks_250x250": [[round(float(v), 2) for v in pt] for pt in ours.fallback_landmarks()],
            "embed_seconds": round(ours.stats.seconds, 2),
            "variants": {},
        }
        for variant in variants:
            entry = evaluate(pair_scores(pairs, cache, variant, cosine), same, folds)
            results["ours"]["variants"][variant] = entry["summary"]
            curves[f"ours {pipeline.pack_id} {variant}" + (f", {args.folds} folds" if args.folds else "")] = entry
        head = results["ours"]["variants"][variants[0]]
        results["accuracy_mean"] = head["accuracy_mean"]
        results["accuracy_std"] = head["accuracy_std"]
        results["threshold_at_far_1e-3"] = head["at_far_1e-3"]["threshold"]
        results["manifest_operating_threshold"] = pipeline.manifest.operating_threshold

    if args.peer_lfw:
        peer_pairs = _fold_subset(pairs, args.peer_folds)
        peer_same, peer_folds = _arrays(peer_pairs)
        peer = PeerEmbedder()
        keys = _unique_keys(peer_pairs)
        warm_rgb = peer.peer.decode(lfw_image_path(root, *peer_pairs[0].first).read_bytes())
        peer.peer.analyse(warm_rgb)
        cache_peer = embed_all(peer, keys, root, "peer", progress_every=250)
        euclid_scores = pair_scores(peer_pairs, cache_peer, "descriptor", neg_euclidean)
        euclid = evaluate(euclid_scores, peer_same, peer_folds)
        cos = evaluate(pair_scores(peer_pairs, cache_peer, "descriptor", cosine), peer_same, peer_folds)
        euclid_summary = dict(euclid["summary"])
        at = dict(euclid_summary["at_far_1e-3"])
        at["distance"] = -at.pop("threshold")
        euclid_summary["at_far_1e-3"] = at
        euclid_summary["distance_per_fold"] = [-t for t in euclid_summary.pop("threshold_per_fold")]
        results["peer"] = {
            "pipeline": "dlib HOG (upsample 1) + 5-point shape predictor + ResNet descriptor (num_jitters=1)",
            "folds": len(np.unique(peer_folds)),
            "images": len(keys),
            "images_with_several_faces": peer.stats.multi_face,
            "fallback_no_face": len(peer.stats.fallback),
            "fallback_images": peer.stats.fallback,
            "fallback_box_250x250": [round(v, 1) for v in peer.fallback_box()],
            "embed_seconds": round(peer.stats.seconds, 2),
            "euclidean": euclid_summary,
            "cosine": cos["summary"],
        }
        peer_label = "peer dlib (euclidean" + (f", {results['peer']['folds']} folds)" if args.peer_folds else ")")
        curves[peer_label] = euclid
        if not args.skip_ours and len(peer_pairs) < len(pairs):
            # Ours on exactly the peer's folds, for a like-for-like comparison.
            sub = evaluate(pair_scores(peer_pairs, cache, variants[0], cosine), peer_same, peer_folds)
            results["ours_on_peer_folds"] = sub["summary"]

    results["wall_seconds"] = round(time.perf_counter() - wall, 1)
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    out: Path = args.out
    roc_json = out.with_name(out.stem + "_roc.json")
    roc_png = out.with_name(out.stem + "_roc.png")
    results["roc_json"] = str(roc_json)
    results["roc_png"] = str(roc_png)
    write_json(out, results)
    write_json(
        roc_json,
        {
            "git_commit": results["git_commit"],
            "pack_id": pipeline.pack_id,
            "date_utc": results["date_utc"],
            "curves": {label: entry["roc"] for label, entry in curves.items()},
        },
    )
    if curves:
        plot_roc(curves, roc_png, "LFW pairs ROC (10-fold protocol)")
    _summary(results, variants)
    print(f"wrote {out}, {roc_json}, {roc_png}")
    return 0


def _summary(results: dict[str, Any], variants: Sequence[str]) -> None:
    if "ours" in results:
        o = results["ours"]
        print(
            f"ours: {o['images']} images embedded in {o['embed_seconds']:.0f} s; "
            f"{o['images_with_several_faces']} with several faces; {o['fallback_no_face']} without a "
            "detected face (aligned on the median landmarks)"
        )
        for variant in variants:
            s = o["variants"][variant]
            at = s["at_far_1e-3"]
            print(
                f"  {variant:9s} accuracy {s['accuracy_mean'] * 100:.2f}% ± {s['accuracy_std'] * 100:.2f} "
                f"(std over {s['folds']} folds); threshold at FAR 1e-3: {at['threshold']:.4f} "
                f"(TAR {at['tar'] * 100:.2f}%, {at['false_accepts']}/{at['impostor_pairs']} false accepts); "
                f"AUC {s['auc']:.5f}"
            )
        print("  target >= 99.30%; published SFace 99.40% fp32 / 99.32% int8")
    if "peer" in results:
        p = results["peer"]
        e, c = p["euclidean"], p["cosine"]
        print(
            f"peer dlib: {p['images']} images in {p['embed_seconds']:.0f} s over {p['folds']} folds; "
            f"{p['fallback_no_face']} without a HOG detection (median box fallback)"
        )
        print(
            f"  euclidean accuracy {e['accuracy_mean'] * 100:.2f}% ± {e['accuracy_std'] * 100:.2f}; "
            f"distance at FAR 1e-3: {e['at_far_1e-3']['distance']:.4f} "
            f"(TAR {e['at_far_1e-3']['tar'] * 100:.2f}%)"
        )
        print(f"  cosine    accuracy {c['accuracy_mean'] * 100:.2f}% ± {c['accuracy_std'] * 100:.2f}")
        if "ours_on_peer_folds" in results:
            s = results["ours_on_peer_folds"]
            acc, std = s["accuracy_mean"] * 100, s["accuracy_std"] * 100
            print(f"  ours on the same folds: {acc:.2f}% ± {std:.2f}")
    print(f"peak RSS {results['peak_rss_mib']:.0f} MiB, wall {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
