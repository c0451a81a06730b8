"""Compressed, approximate gallery indexes against exact search, on real face embeddings at scale.

Run through ``python -m benchmarks.index_scale --factories ...`` (issue 15, item 2). For each
gallery size and each ``index_factory`` string it builds a ``FaissGalleryIndex`` the way a rebuild
from the database does (trained on a uniform sample, then every template streamed in), and
reports recall@1 and recall@50 against exact search, the real probes' mate found at rank 1,
single-probe p50/p95, the 400-probe batch time, index memory, and train, build, save and open
times, sweeping ``nprobe`` (inverted files) or ``efSearch`` (graphs) on the one built index.

The data:

* **probes**: the second image of every LFW person with two or more images (one image each),
  embedded by the production pipeline (``benchmarks.linking_embed``, cached);
* **gallery**: every other LFW image (the real part, ids 1..R), then **distractors** up to the
  gallery size: a Gaussian fitted to all of LFW's embeddings (their mean and full 128x128
  covariance) sampled in chunks of 500,000 from seeded generators, each row then L2-normalised.
  Nothing but one chunk is held besides the index being built; the exact answer is computed by
  streaming the same chunks (regenerated from their seeds) past all the probes (faiss ``knn``).

A Gaussian blob is easier to tell apart from a face than another face is, and has no clusters of
one person's images, so recall on a real custody gallery may differ; the real images' own mates
(``mate@1``) show whether identification suffers.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from benchmarks.common import DEFAULT_LFW_ROOT
from service.config import IndexSettings
from service.index import FaissGalleryIndex, configure_faiss_runtime

PACK = "lfw+gaussian"
CHUNK = 500_000
K = 50


@dataclass(frozen=True, slots=True)
class Faces:
    probes: NDArray[np.float32]  # (P, d)
    probe_people: NDArray[np.str_]
    gallery: NDArray[np.float32]  # (R, d) real gallery images, ids 1..R
    gallery_people: NDArray[np.str_]
    mean: NDArray[np.float64]
    chol: NDArray[np.float32]  # Cholesky factor of the fitted covariance

    @property
    def dim(self) -> int:
        return int(self.probes.shape[1])


def lfw_faces(root: Path = DEFAULT_LFW_ROOT) -> Faces:
    from benchmarks.linking_embed import embed_lfw, people_with_several

    data = embed_lfw(root, people_with_several(root, minimum=1))
    found = data.found
    people, embeddings = data.people[found], data.embeddings[found].astype(np.float32)
    seen: dict[str, int] = {}
    is_probe = np.zeros(people.size, dtype=bool)
    for row, person in enumerate(people):  # the second found image of a person is its probe
        seen[str(person)] = seen.get(str(person), 0) + 1
        is_probe[row] = seen[str(person)] == 2
    real = embeddings.astype(np.float64)
    mean = real.mean(axis=0)
    cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    return Faces(
        probes=np.ascontiguousarray(embeddings[is_probe]),
        probe_people=people[is_probe],
        gallery=np.ascontiguousarray(embeddings[~is_probe]),
        gallery_people=people[~is_probe],
        mean=mean,
        chol=np.linalg.cholesky(cov).astype(np.float32),
    )


def distractors(faces: Faces, count: int, seed: int) -> Iterator[NDArray[np.float32]]:
    """``count`` Gaussian distractors in chunks of ``CHUNK`` rows, the same for the same seed."""
    for chunk, start in enumerate(range(0, count, CHUNK)):
        n = min(CHUNK, count - start)
        z = np.random.default_rng([seed, 15, chunk]).standard_normal((n, faces.dim), dtype=np.float32)
        x = z @ faces.chol.T
        x += faces.mean.astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def gallery_chunks(faces: Faces, size: int, seed: int) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """The whole gallery of ``size`` templates as (ids, vectors): the real images, then distractors."""
    real = faces.gallery.shape[0]
    yield np.arange(1, real + 1, dtype=np.int64), faces.gallery
    start = real + 1
    for block in distractors(faces, size - real, seed):
        yield np.arange(start, start + block.shape[0], dtype=np.int64), block
        start += block.shape[0]


def exact_top_k(faces: Faces, size: int, seed: int, k: int = K) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact top-k (scores, ids) of every probe over the streamed gallery: faiss's exact
    brute-force ``knn`` per chunk (blocked BLAS), merged across chunks."""
    probes = faces.probes
    best_s = np.full((probes.shape[0], k), -np.inf, dtype=np.float32)
    best_i = np.full((probes.shape[0], k), -1, dtype=np.int64)
    for ids, block in gallery_chunks(faces, size, seed):
        take = min(k, block.shape[0])
        scores, rows = faiss.knn(probes, block, take, metric=faiss.METRIC_INNER_PRODUCT)
        cand_s = np.concatenate([best_s, scores], axis=1)
        cand_i = np.concatenate([best_i, ids[rows]], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_s, best_i


def training_sample(faces: Faces, size: int, n: int, seed: int) -> NDArray[np.float32]:
    """A uniform sample of ``n`` of the gallery's templates: real rows in their share, the rest
    distractors (independent draws, so the first rows of the stream are as uniform as any)."""
    real = faces.gallery.shape[0]
    n_real = round(n * real / size)
    rng = np.random.default_rng([seed, 99])
    parts = [faces.gallery[rng.choice(real, size=min(n_real, real), replace=False)]]
    need = n - parts[0].shape[0]
    for block in distractors(faces, need, seed):
        parts.append(block)
    return np.ascontiguousarray(np.concatenate(parts))


def recall_at(found: NDArray[np.int64], truth: NDArray[np.int64], k: int) -> float:
    """k-recall@k: the share of exact search's top k the index returns in its own top k."""
    if k == 1:
        return float(np.mean(found[:, 0] == truth[:, 0]))
    hits = [np.intersect1d(found[i, :k], truth[i, :k]).size for i in range(found.shape[0])]
    return float(np.mean(hits) / k)


def nn_recall_at(found: NDArray[np.int64], truth: NDArray[np.int64], k: int) -> float:
    """1-recall@k, FAISS's "R@k": the share of probes whose exact nearest neighbour is in the top k."""
    return float(np.mean((found[:, :k] == truth[:, :1]).any(axis=1)))


def recall_above(found: NDArray[np.int64], truth_s: NDArray[np.float32], truth: NDArray[np.int64], at: float) -> float:
    """Of the exact top-k hits scoring at least ``at`` (candidates a person would see marked), the
    fraction the index returns in its own top k (over all probes together)."""
    wanted = found_n = 0
    for row in range(found.shape[0]):
        strong = truth[row][truth_s[row] >= at]
        wanted += strong.size
        found_n += np.intersect1d(found[row], strong).size
    return float(found_n / wanted) if wanted else 1.0


def mate_at(found: NDArray[np.int64], faces: Faces, k: int = 1) -> float:
    """Fraction of probes with a real image of the same person among their top ``k`` hits."""
    top = found[:, :k]
    real = faces.gallery.shape[0]
    ok = (top >= 1) & (top <= real)
    people = np.where(ok, faces.gallery_people[np.clip(top - 1, 0, real - 1)], "")
    return float(np.mean((people == faces.probe_people[:, None]).any(axis=1)))


def _ms(samples: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "n": len(samples),
    }


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_split_mib() -> dict[str, float]:
    """The process's resident memory by kind: its own (anonymous) pages and mapped files' pages."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return out


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def sweep_values(index: FaissGalleryIndex, nprobes: Sequence[int], efs: Sequence[int]) -> list[dict[str, int]]:
    if index.exact:
        return [{}]
    if index.inverted_lists:
        return [{"nprobe": n} for n in nprobes]
    return [{"ef_search": e} for e in efs]


def single_probe_seconds(index: FaissGalleryIndex, probes: NDArray[np.float32], warmup: int) -> list[float]:
    """Each probe searched alone (after ``warmup`` untimed ones): seconds per call."""
    for probe in probes[:warmup]:
        index.search(probe, K)
    seconds = []
    for probe in probes:
        began = time.perf_counter()
        index.search(probe, K)
        seconds.append(time.perf_counter() - began)
    return seconds


def build_index(
    directory: Path, faces: Faces, size: int, tuning: IndexSettings, seed: int, log: Any
) -> tuple[FaissGalleryIndex, float, float]:
    """The index of ``tuning.factory`` over the gallery of ``size``, as a rebuild from the database
    makes it (trained on a uniform sample, then every template streamed in); train and add seconds."""
    factory = tuning.factory
    index = FaissGalleryIndex(PACK, faces.dim, directory, factory=factory, tuning=tuning)
    train_s = 0.0
    if not index.is_trained:
        sample = training_sample(faces, size, index.train_size(size), seed)
        began = time.perf_counter()
        index.train(sample, gallery_size=size)
        train_s = time.perf_counter() - began
        log(f"  {factory}: trained on {sample.shape[0]:,} in {train_s:.1f} s")
        del sample
    add_s = 0.0
    for ids, block in gallery_chunks(faces, size, seed):
        began = time.perf_counter()
        index.add(ids, block)
        add_s += time.perf_counter() - began
        del ids, block
    return index, train_s, add_s


def measure_config(
    factory: str,
    faces: Faces,
    size: int,
    truth: NDArray[np.int64],
    truth_s: NDArray[np.float32],
    args: Any,
    work: Path,
    log: Any,
) -> dict[str, Any]:
    """Build, time and score one index type at one gallery size."""
    tuning = IndexSettings(factory=factory, flat_below=0, refine_k_factor=args.k_factor, train_sample=args.train_sample)
    gc.collect()
    rss_before = _rss_mib()
    _reset_peak()
    faiss.omp_set_num_threads(args.build_threads)
    directory = work / "index"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    index, train_s, add_s = build_index(directory, faces, size, tuning, args.seed, log)
    gc.collect()
    record: dict[str, Any] = {
        "size": size,
        "factory": factory,
        **({"refine_k_factor": args.k_factor} if "refine" in factory.lower() else {}),
        "build_threads": args.build_threads,
        "train_s": round(train_s, 2),
        "add_s": round(add_s, 2),
        "rss_before_mib": round(rss_before, 1),
        "index_rss_mib": round(_rss_mib() - rss_before, 1),
        "peak_rss_in_build_mib": round(_peak_mib(), 1),
    }
    log(f"  {factory}: {size:,} added in {add_s:.1f} s, index {record['index_rss_mib']:,.0f} MiB of RSS")

    configure_faiss_runtime(dim=faces.dim, omp_threads=1)  # the service's search settings
    single_probes = faces.probes[: args.single_probes]
    batch = faces.probes[: args.batch]
    sweeps = []
    for knob in sweep_values(index, args.nprobe, args.ef):
        index.tune(tuning.model_copy(update=knob))
        single = single_probe_seconds(index, single_probes, args.warmup)
        batch_s = []
        for _ in range(args.batch_repeats):
            began = time.perf_counter()
            index.search(batch, K)
            batch_s.append(time.perf_counter() - began)
        found = index.search(faces.probes, K)[1]
        row: dict[str, Any] = {
            **knob,
            "recall_at_1": round(recall_at(found, truth, 1), 4),
            "recall_at_50": round(recall_at(found, truth, K), 4),
            "nn_recall_at_50": round(nn_recall_at(found, truth, K), 4),
            "recall_above_threshold": round(recall_above(found, truth_s, truth, args.threshold), 4),
            "mate_at_1": round(mate_at(found, faces), 4),
            f"mate_at_{K}": round(mate_at(found, faces, K), 4),
            "single_probe": _ms(single),
            f"batch_{args.batch}": _ms(batch_s),
        }
        sweeps.append(row)
        log(
            f"    {knob or 'exact'}: recall@1 {row['recall_at_1']:.4f} @50 {row['recall_at_50']:.4f} "
            f"R@50 {row['nn_recall_at_50']:.4f}, "
            f"1 probe p50 {row['single_probe']['p50_ms']:.2f} p95 {row['single_probe']['p95_ms']:.2f} ms, "
            f"{args.batch} probes {row[f'batch_{args.batch}']['p50_ms']:.0f} ms"
        )
    record["sweep"] = sweeps

    if not args.skip_save_load:
        began = time.perf_counter()
        manifest = index.save()
        record["save_s"] = round(time.perf_counter() - began, 2)
        record["index_file_mib"] = round(manifest.index_bytes / 2**20, 1)
        count = index.count
        del index
        gc.collect()
        rss = _rss_mib()
        began = time.perf_counter()
        loaded = FaissGalleryIndex.load(directory, PACK, faces.dim, factory=factory, tuning=tuning)
        record["open_s_including_sha256"] = round(time.perf_counter() - began, 2)
        record["rss_after_open_mib"] = round(_rss_mib() - rss, 1)
        record["memory_mapped"] = loaded.memory_mapped
        record["rss_after_open_split_mib"] = {k: round(v, 1) for k, v in _rss_split_mib().items()}
        if loaded.count != count:
            raise RuntimeError(f"opened {loaded.count} templates, saved {count}")
        if loaded.memory_mapped:  # searches served from the mapped file, timed as the built index's were
            knob = {k: v for k, v in sweeps[-1].items() if k in ("nprobe", "ef_search")}
            loaded.tune(tuning.model_copy(update=knob))
            mapped_single = single_probe_seconds(loaded, single_probes, args.warmup)
            found = loaded.search(faces.probes, K)[1]
            record["opened_search"] = {
                **knob,
                "single_probe": _ms(mapped_single),
                "recall_at_50": round(recall_at(found, truth, K), 4),
            }
        del loaded
        log(
            f"  {factory}: saved {record['index_file_mib']:,.0f} MiB in {record['save_s']} s, "
            f"opened in {record['open_s_including_sha256']} s"
        )
    else:
        del index
    shutil.rmtree(directory, ignore_errors=True)
    gc.collect()
    return record


def diagnostics(faces: Faces, seed: int) -> dict[str, float]:
    """How much structure an inverted file can use: the participation ratio of the real embeddings'
    covariance (effective dimensions), and the recall@50 of a 64-list inverted file searched in 32
    lists on the real gallery images alone against as many Gaussian distractors."""
    real = faces.gallery.astype(np.float64)
    eig = np.linalg.eigvalsh(np.cov(real, rowvar=False))
    out: dict[str, float] = {"participation_ratio": round(float(eig.sum() ** 2 / (eig**2).sum()), 1)}
    gaussian = next(distractors(faces, faces.gallery.shape[0], seed))
    for name, gallery in (("real", faces.gallery), ("gaussian", gaussian)):
        _, truth = faiss.knn(faces.probes, gallery, K, metric=faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(faces.dim), faces.dim, 64, faiss.METRIC_INNER_PRODUCT)
        index.train(gallery)
        index.add(gallery)
        index.nprobe = 32
        _, found = index.search(faces.probes, K)
        out[f"ivf64_nprobe32_recall_at_50_{name}"] = round(recall_at(found, truth, K), 4)
    return out


def parse_factories(text: str) -> list[tuple[str, int | None]]:
    """``"Flat@5000000;IVF4096_HNSW32,SQ8;HNSW32,SQ8@1000000"``: types separated by ``;``, each
    with an optional ``@`` largest gallery size to build it at."""
    out: list[tuple[str, int | None]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        factory, _, limit = part.partition("@")
        out.append((factory.strip(), int(limit.replace("_", "")) if limit else None))
    return out


def run_recall(args: Any, log: Any, save: Any) -> dict[str, Any]:
    """Every (size, type) of ``args``; ``save(result)`` is called after each, so a cut run keeps its figures."""
    faces = lfw_faces()
    if args.recall_probes and args.recall_probes < faces.probes.shape[0]:
        keep = np.random.default_rng([args.seed, 7]).choice(faces.probes.shape[0], args.recall_probes, replace=False)
        keep.sort()
        faces = replace(faces, probes=np.ascontiguousarray(faces.probes[keep]), probe_people=faces.probe_people[keep])
    log(f"{faces.probes.shape[0]:,} LFW probes, {faces.gallery.shape[0]:,} real gallery images")
    work = Path(tempfile.mkdtemp(prefix="rfr-index-recall-", dir=args.work_dir))
    result: dict[str, Any] = {
        "probes": int(faces.probes.shape[0]),
        "real_gallery": int(faces.gallery.shape[0]),
        "distractors": "Gaussian fitted to LFW's embeddings (mean, full covariance), sampled in chunks, L2-normalised",
        "k": K,
        "threshold": args.threshold,
        "diagnostics": diagnostics(faces, args.seed),
        "exact": {},
        "configs": [],
    }
    log(f"diagnostics: {result['diagnostics']}")
    try:
        for size in sorted(args.sizes):
            faiss.omp_set_num_threads(args.build_threads)
            began = time.perf_counter()
            truth_s, truth = exact_top_k(faces, size, args.seed)
            elapsed = time.perf_counter() - began
            exact_mate = mate_at(truth, faces)
            exact_mate_k = mate_at(truth, faces, K)
            strong = int((truth_s >= args.threshold).sum())
            result["exact"][str(size)] = {
                "exact_top_k_s": round(elapsed, 1),
                "mean_gap_rank_49_50": round(float(np.mean(truth_s[:, K - 2] - truth_s[:, K - 1])), 6),
                "exact_mate_at_1": round(exact_mate, 4),
                f"exact_mate_at_{K}": round(exact_mate_k, 4),
                "exact_hits_above_threshold": strong,
            }
            log(f"[{size:>11,}] exact top-{K}: {elapsed:.0f} s, mate@1 {exact_mate:.4f}, {strong} hits >= threshold")
            for factory, limit in args.factories:
                if limit is not None and size > limit:
                    continue
                result["configs"].append(measure_config(factory, faces, size, truth, truth_s, args, work, log))
                save(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def combined(paths: Sequence[Path]) -> dict[str, Any]:
    """The configurations of several runs on the same probes as one result, for one table and plot.

    A run written before its records named their refine step's k-factor lends them its own.
    Runs whose exact search disagrees at a size (other probes, distractors or seed) are refused.
    """
    merged: dict[str, Any] = {"configs": [], "exact": {}}
    for path in paths:
        run = json.loads(path.read_text(encoding="utf-8"))
        for size, exact in run["exact"].items():
            seen = merged["exact"].setdefault(size, exact)
            if seen["exact_mate_at_1"] != exact["exact_mate_at_1"]:
                raise SystemExit(f"{path}: exact search at {size} differs from the runs before it")
        for rec in run["configs"]:
            if "refine" in rec["factory"].lower():
                rec.setdefault("refine_k_factor", run["params"]["k_factor"])
            merged["configs"].append(rec)
    return merged


def _label(rec: dict[str, Any]) -> str:
    """The index type, with its refine step's k-factor where it has one."""
    k_factor = rec.get("refine_k_factor")
    return rec["factory"] if k_factor is None else f"{rec['factory']} (k-factor {k_factor:g})"


def _cell(value: float | None) -> str:
    """A 4-decimal figure, or a dash for one an older run did not measure."""
    return "–" if value is None else f"{value:.4f}"


def markdown(result: dict[str, Any], batch: int) -> str:
    lines = [
        f"| gallery | index | knob | recall@1 | recall@50 | R@50 | recall ≥ threshold | mate@1 (exact) "
        f"| mate@50 (exact) | 1 probe p50 / p95 ms | {batch} probes s "
        "| index RSS MiB | file MiB | train s | add s | save s | open s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in result["configs"]:
        exact_row = result["exact"][str(rec["size"])]
        exact, exact_k = exact_row["exact_mate_at_1"], exact_row.get(f"exact_mate_at_{K}")
        for row in rec["sweep"]:
            knob = ", ".join(f"{k} {v}" for k, v in row.items() if k in ("nprobe", "ef_search")) or "exact"
            if rec.get("refine_k_factor") is not None:
                knob += f", k-factor {rec['refine_k_factor']:g}"
            single, many = row["single_probe"], row[f"batch_{batch}"]
            opened = rec.get("open_s_including_sha256", "–")
            lines.append(
                f"| {rec['size']:,} | `{rec['factory']}` | {knob} | {row['recall_at_1']:.4f} "
                f"| {row['recall_at_50']:.4f} | {_cell(row.get('nn_recall_at_50'))} "
                f"| {row['recall_above_threshold']:.4f} | {row['mate_at_1']:.4f} ({exact:.4f}) "
                f"| {_cell(row.get(f'mate_at_{K}'))} ({_cell(exact_k)}) "
                f"| {single['p50_ms']:.2f} / {single['p95_ms']:.2f} | {many['p50_ms'] / 1000:.2f} "
                f"| {rec['index_rss_mib']:,.0f} | {rec.get('index_file_mib', '–')} "
                f"| {rec['train_s']} | {rec['add_s']} | {rec.get('save_s', '–')} | {opened} |"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path, batch: int) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = sorted({rec["size"] for rec in result["configs"]})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for rec in (r for r in result["configs"] if r["size"] == size):
            xs = [row["single_probe"]["p95_ms"] for row in rec["sweep"]]
            ys = [row["recall_at_50"] for row in rec["sweep"]]
            line = ax.plot(xs, ys, marker="o", label=f"{_label(rec)}, {rec['index_rss_mib'] / 1024:.1f} GiB")[0]
            nn = [row.get("nn_recall_at_50") for row in rec["sweep"]]
            if all(value is not None for value in nn):
                ax.plot(xs, nn, marker="x", linestyle="--", color=line.get_color(), label=f"{_label(rec)} R@50")
        ax.axhline(0.99, color="grey", linestyle=":")
        ax.axvline(50, color="grey", linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel("one probe p95, ms (1 thread)")
        ax.set_ylabel("recall@50 (solid), R@50 (dashed) against exact search")
        ax.set_title(f"{size:,} templates")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
