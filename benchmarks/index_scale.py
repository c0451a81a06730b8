"""Gallery index at scale: search latency, build, memory, file size, save/load.

Synthetic seeded unit vectors (dim 128 = the default pack's SFace; ``--dim`` for others) stand in
for templates: an exact flat search costs the same whatever the vectors are. For each gallery
size the index is built by streaming batches into ``FaissGalleryIndex`` (as a rebuild from the
database would), then timed through its public ``search`` (locking and array checks included):

* one probe per call (p50/p95 over ``--single-probes`` calls, each a different probe), and
* a batch of ``--batch`` probes per call (p50/p95 over ``--batch-repeats`` calls),

for every OpenMP thread count in ``--threads`` and for two BLAS switch-over settings: the
service's (``configure_faiss_runtime``: BLAS from 3 probes per call) and faiss's own default.
Warm-up calls precede every timed series. At the largest size it also records build time, peak
and current RSS, the index file size, and save / load (with checksum) times.

Run from the project root::

    python -m benchmarks.index_scale                       # 10k, 100k, 1M; dim 128; k 50
    python -m benchmarks.index_scale --sizes 10000 --threads 1   # a quick look
    python -m benchmarks.index_scale --contend 1 --out benchmarks/results/index_scale_contended.json

With ``--factories`` it measures compressed, approximate types instead, on real LFW embeddings
among Gaussian distractors, against exact search (``benchmarks/index_recall.py``; issue 15)::

    nice -n 10 python -m benchmarks.index_scale --sizes 1000000,5000000 \
        --factories "Flat@5000000;IVF4096_HNSW32,SQ8;IVF4096_HNSW32,PQ32x4fs,Refine(SQ8)" \
        --out benchmarks/results/index_scale_approximate.json

``--contend 1`` keeps one core busy throughout (as the embedding worker does during a sprint);
multi-threaded faiss suffers most from that. The load average before and after is recorded:
timings from a machine that other jobs share are not comparable.

Writes ``benchmarks/results/index_scale.json`` (stamped with the git commit and date) and prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from benchmarks.common import default_out, git_commit, git_dirty, peak_rss_mib, stamp, write_json
from benchmarks.index_recall import combined as combined_recall
from benchmarks.index_recall import markdown as recall_markdown
from benchmarks.index_recall import parse_factories, run_recall
from benchmarks.index_recall import plot as plot_recall
from service.durable_files import sha256_file
from service.index import FaissGalleryIndex, configure_faiss_runtime
from service.index.persistence import INDEX_FILE

PACK = "synthetic"
BUILD_CHUNK = 100_000


# -- memory (Linux /proc; benchmarks.common has only the never-resetting ru_maxrss peak) -------------


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def current_rss_mib() -> float | None:
    return _status_mib("VmRSS")


def stage_peak_rss_mib() -> float | None:
    """Peak RSS since the last ``reset_peak_rss`` (VmHWM), falling back to the process peak."""
    value = _status_mib("VmHWM")
    return value if value is not None else peak_rss_mib()


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


# -- contention --------------------------------------------------------------------------------------


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


class Contention:
    """``n`` processes that each keep one core busy, standing in for the embedding worker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._stop = multiprocessing.Event()
        self._procs = [multiprocessing.Process(target=_spin, args=(self._stop,), daemon=True) for _ in range(n)]

    def __enter__(self) -> Contention:
        for proc in self._procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=10)


# -- data --------------------------------------------------------------------------------------------


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> NDArray[np.float32]:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def build_index(size: int, dim: int, seed: int, directory: Path | None) -> tuple[FaissGalleryIndex, float]:
    """Stream seeded batches into a new index; returns it and the seconds spent in ``add``."""
    index = FaissGalleryIndex(PACK, dim, directory)
    adding = 0.0
    for chunk, start in enumerate(range(0, size, BUILD_CHUNK)):
        n = min(BUILD_CHUNK, size - start)
        vectors = unit_vectors(np.random.default_rng([seed, chunk]), n, dim)
        ids = np.arange(start + 1, start + n + 1, dtype=np.int64)  # database keys start at 1
        began = time.perf_counter()
        index.add(ids, vectors)
        adding += time.perf_counter() - began
        del vectors, ids
    return index, adding


# -- timing ------------------------------------------------------------------------------------------


def percentiles_ms(samples: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "min_ms": round(float(ms.min()), 3),
        "max_ms": round(float(ms.max()), 3),
        "n": len(samples),
    }


def time_single(index: FaissGalleryIndex, probes: NDArray[np.float32], k: int, calls: int, warmup: int) -> list[float]:
    for i in range(warmup):
        index.search(probes[i % len(probes)], k)
    samples = []
    for i in range(calls):
        probe = probes[i % len(probes)]
        began = time.perf_counter()
        index.search(probe, k)
        samples.append(time.perf_counter() - began)
    return samples


def time_batch(
    index: FaissGalleryIndex, probes: NDArray[np.float32], k: int, repeats: int, budget_s: float
) -> list[float]:
    began = time.perf_counter()
    index.search(probes, k)  # warm-up
    first = time.perf_counter() - began
    # Slow settings (faiss's default switch-over at 1M) get at least 3 timed calls, not 10.
    n = max(3, min(repeats, int(budget_s / max(first, 1e-6))))
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        index.search(probes, k)
        samples.append(time.perf_counter() - began)
    return samples


def time_enrol_and_purge(index: FaissGalleryIndex, dim: int, seed: int, repeats: int = 5) -> dict[str, float]:
    """Median ms to add one template (an enrolment) and to remove one (a purge) at this size."""
    rng = np.random.default_rng([seed, 2 * 10**6])
    adds, removes = [], []
    for _ in range(repeats):
        new_id = np.array([index.max_id + 1], dtype=np.int64)
        vector = unit_vectors(rng, 1, dim)
        began = time.perf_counter()
        index.add(new_id, vector)
        adds.append(time.perf_counter() - began)
        began = time.perf_counter()
        index.remove(new_id)
        removes.append(time.perf_counter() - began)
    return {
        "add_one_ms": round(float(np.median(adds)) * 1000, 3),
        "remove_one_ms": round(float(np.median(removes)) * 1000, 3),
    }


def set_blas(mode: str, dim: int, threads: int, faiss_default_threshold: int) -> int:
    if mode == "service":
        return configure_faiss_runtime(dim=dim, omp_threads=threads).blas_threshold
    faiss.omp_set_num_threads(threads)
    faiss.cvar.distance_compute_blas_threshold = faiss_default_threshold
    return faiss_default_threshold


# -- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    faiss_default_threshold = int(faiss.cvar.distance_compute_blas_threshold)
    faiss_default_threads = int(faiss.omp_get_max_threads())
    probes = unit_vectors(np.random.default_rng([args.seed, 10**6]), args.batch, args.dim)
    sizes = sorted(args.sizes)
    rows: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    agreement: dict[str, Any] = {}
    baseline_rss = current_rss_mib()

    for size in sizes:
        gc.collect()
        reset_peak_rss()
        rss_before = current_rss_mib()
        save_here = size == sizes[-1] and not args.skip_save_load
        index, build_s = build_index(size, args.dim, args.seed, work if save_here else None)
        record: dict[str, Any] = {
            "size": size,
            "build_add_s": round(build_s, 3),
            "rss_before_build_mib": rss_before,
            "rss_after_build_mib": current_rss_mib(),
            "peak_rss_during_build_mib": stage_peak_rss_mib(),
            "vectors_mib": round(size * args.dim * 4 / 2**20, 1),
        }
        record.update(time_enrol_and_purge(index, args.dim, args.seed))
        print(f"[{size:>9,}] built in {build_s:.2f} s; timing searches", flush=True)

        answers: dict[str, NDArray[np.int64]] = {}
        for mode in args.blas:
            for threads in args.threads:
                threshold = set_blas(mode, args.dim, threads, faiss_default_threshold)
                single = time_single(index, probes, args.k, args.single_probes, args.warmup)
                batch = time_batch(index, probes, args.k, args.batch_repeats, args.batch_budget_s)
                answers[f"{mode}/{threads}"] = index.search(probes[:50], args.k)[1]
                row = {
                    "size": size,
                    "blas": mode,
                    "blas_threshold": threshold,
                    "omp_threads": threads,
                    "k": args.k,
                    "single_probe": percentiles_ms(single),
                    f"batch_{args.batch}": percentiles_ms(batch),
                }
                rows.append(row)
                print(
                    f"    blas={mode:<13} threads={threads}: 1 probe p50 {row['single_probe']['p50_ms']:.2f} ms,"
                    f" {args.batch} probes p50 {row[f'batch_{args.batch}']['p50_ms']:.1f} ms",
                    flush=True,
                )
        reference = next(iter(answers.values()))
        agreement[str(size)] = all(np.array_equal(reference, other) for other in answers.values())

        count = index.count
        if save_here:
            record.update(time_save(index, work))
        del index
        if save_here:
            record.update(time_load(work, args.dim, count))
        scale.append(record)
        gc.collect()

    return {
        "faiss_default_blas_threshold": faiss_default_threshold,
        "faiss_default_omp_threads": faiss_default_threads,
        "baseline_rss_mib": baseline_rss,
        "search": rows,
        "scale": scale,
        "same_top_k_ids_across_settings": agreement,
    }


def time_save(index: FaissGalleryIndex, work: Path) -> dict[str, Any]:
    began = time.perf_counter()
    manifest = index.save()
    save_s = time.perf_counter() - began
    began = time.perf_counter()
    sha256_file(work / INDEX_FILE)
    checksum_s = time.perf_counter() - began
    return {
        "index_file_bytes": manifest.index_bytes,
        "index_file_mib": round(manifest.index_bytes / 2**20, 1),
        "save_s": round(save_s, 3),
        "checksum_s": round(checksum_s, 3),
    }


def time_load(work: Path, dim: int, count: int) -> dict[str, Any]:
    """Load in a process that no longer holds the built index (the caller dropped it)."""
    gc.collect()
    rss_without_index = current_rss_mib()
    reset_peak_rss()
    began = time.perf_counter()
    loaded = FaissGalleryIndex.load(work, PACK, dim)
    load_s = time.perf_counter() - began
    if loaded.count != count:
        raise RuntimeError(f"loaded {loaded.count} templates, saved {count}")
    return {
        "load_s_including_checksum": round(load_s, 3),
        "rss_before_load_mib": rss_without_index,
        "rss_after_load_mib": current_rss_mib(),
        "peak_rss_during_load_mib": stage_peak_rss_mib(),
    }


def markdown(result: dict[str, Any], batch: int) -> str:
    lines = [
        f"| gallery | BLAS switch | OMP threads | 1 probe p50 ms | 1 probe p95 ms "
        f"| {batch} probes p50 ms | {batch} probes p95 ms | per probe in batch ms | batch calls |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["search"]:
        single, many = row["single_probe"], row[f"batch_{batch}"]
        label = "service (3 probes)" if row["blas"] == "service" else "faiss default"
        lines.append(
            f"| {row['size']:,} | {label} | {row['omp_threads']} | {single['p50_ms']:.2f} | {single['p95_ms']:.2f} "
            f"| {many['p50_ms']:.1f} | {many['p95_ms']:.1f} | {many['p50_ms'] / batch:.3f} | {many['n']} |"
        )
    lines += [
        "",
        "| gallery | build (add) s | vectors MiB | RSS after build MiB | peak RSS in build MiB "
        "| add 1 ms | remove 1 ms | index file MiB | save s | load s (incl. sha256) | RSS after load MiB "
        "| peak RSS in load MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in result["scale"]:

        def cell(key: str, rec: dict[str, Any] = rec) -> str:
            value = rec.get(key)
            return "–" if value is None else (f"{value:,.0f}" if key.endswith("mib") else f"{value}")

        lines.append(
            f"| {rec['size']:,} | {rec['build_add_s']} | {rec['vectors_mib']} | {cell('rss_after_build_mib')} "
            f"| {cell('peak_rss_during_build_mib')} | {rec['add_one_ms']} | {rec['remove_one_ms']} "
            f"| {rec.get('index_file_mib', '–')} | {cell('save_s')} "
            f"| {cell('load_s_including_checksum')} | {cell('rss_after_load_mib')} "
            f"| {cell('peak_rss_during_load_mib')} |"
        )
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=_int_list, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension (128 = SFace)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--batch", type=int, default=400, help="probes per batched search call")
    parser.add_argument("--threads", type=_int_list, default=[1, 2], help="OpenMP thread counts to compare")
    parser.add_argument(
        "--blas", type=lambda s: s.split(","), default=["service", "faiss_default"], help="service,faiss_default"
    )
    parser.add_argument("--single-probes", type=int, default=200, help="timed one-probe calls per setting")
    parser.add_argument("--batch-repeats", type=int, default=10, help="timed batch calls per setting (max)")
    parser.add_argument("--batch-budget-s", type=float, default=60.0, help="time budget per batch series")
    parser.add_argument("--warmup", type=int, default=20, help="untimed one-probe calls first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--contend", type=int, default=0, help="busy processes to run alongside (simulates the embedding worker)"
    )
    parser.add_argument("--skip-save-load", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the save/load test writes")
    parser.add_argument("--out", type=Path, default=None, help="default index_scale(_approximate).json")
    approximate = parser.add_argument_group("approximate types (benchmarks/index_recall.py)")
    approximate.add_argument(
        "--factories",
        type=parse_factories,
        default=None,
        help='index_factory strings separated by ";", each with an optional "@largest size"',
    )
    approximate.add_argument("--nprobe", type=_int_list, default=[16, 32, 64], help="nprobe values swept (IVF)")
    approximate.add_argument("--ef", type=_int_list, default=[64, 128, 256], help="efSearch values swept (HNSW)")
    approximate.add_argument("--k-factor", type=float, default=4.0, help="refine step's candidates per result")
    approximate.add_argument("--train-sample", type=int, default=0, help="0: the service's default")
    approximate.add_argument("--build-threads", type=int, default=2, help="OpenMP threads to train and add")
    approximate.add_argument("--recall-probes", type=int, default=0, help="LFW probes scored (0: all 1,680)")
    approximate.add_argument(
        "--replot",
        type=Path,
        nargs="+",
        default=None,
        metavar="RESULT",
        help="print one table and draw one plot (--out, .png) of earlier runs' results; measure nothing",
    )
    approximate.add_argument(
        "--threshold", type=float, default=0.477, help="score a hit must reach to count in 'recall >= threshold'"
    )
    return parser


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main_recall(args: argparse.Namespace) -> int:
    out = args.out or default_out("index_scale_approximate")
    load_before = os.getloadavg()
    # The code that runs is the code at the start; the stamp's commit is taken at each write.
    started_at = {"commit": git_commit(), "dirty": git_dirty()}

    def save(result: dict[str, Any]) -> None:
        payload = stamp(
            f"yunet_sface (dim {result.get('dim', 128)})",
            benchmark="index_scale_approximate",
            faiss_version=faiss.__version__,
            params={
                "sizes": args.sizes,
                "factories": [f"{f}@{limit}" if limit else f for f, limit in args.factories],
                "nprobe": args.nprobe,
                "ef": args.ef,
                "k_factor": args.k_factor,
                "train_sample": args.train_sample,
                "build_threads": args.build_threads,
                "search_threads": 1,
                "single_probes": args.single_probes,
                "batch": args.batch,
                "batch_repeats": args.batch_repeats,
                "seed": args.seed,
                "recall_probes": args.recall_probes,
                "threshold": args.threshold,
            },
            started_at=started_at,
            load_average_before=[round(v, 2) for v in load_before],
            load_average_now=[round(v, 2) for v in os.getloadavg()],
            **result,
        )
        write_json(out, payload)

    result = run_recall(args, log, save)
    save(result)
    print()
    print(recall_markdown(result, args.batch))
    png = plot_recall(result, out.with_suffix(".png"), args.batch)
    print(f"\nwrote {out}" + (f" and {png}" if png else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot:
        result = combined_recall(args.replot)
        print(recall_markdown(result, args.batch))
        png = plot_recall(result, (args.out or default_out("index_scale_approximate")).with_suffix(".png"), args.batch)
        print(f"\nwrote {png}" if png else "\nno plot: matplotlib is not installed")
        return 0
    if args.factories:
        return main_recall(args)
    args.out = args.out or default_out("index_scale")
    bad = set(args.blas) - {"service", "faiss_default"}
    if bad:
        raise SystemExit(f"unknown --blas value(s): {sorted(bad)}")
    work = Path(tempfile.mkdtemp(prefix="rfr-index-scale-", dir=args.work_dir))
    load_before = os.getloadavg()
    try:
        with Contention(args.contend):
            result = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    payload = stamp(
        f"{PACK} (dim {args.dim})",
        benchmark="index_scale",
        index="FaissGalleryIndex: IndexIDMap2(IndexFlatIP), exact inner product",
        faiss_version=faiss.__version__,
        params={
            "sizes": args.sizes,
            "dim": args.dim,
            "k": args.k,
            "batch": args.batch,
            "threads": args.threads,
            "blas": args.blas,
            "single_probes": args.single_probes,
            "batch_repeats_max": args.batch_repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "contend": args.contend,
        },
        environment={
            name: os.environ.get(name)
            for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
        },
        # VmHWM is reset before each stage, so the process peak is the largest stage peak.
        peak_rss_mib=max(
            (v for rec in result["scale"] for k, v in rec.items() if k.startswith("peak_rss") and v is not None),
            default=None,
        ),
        # Other processes competing for the 2 cores distort multi-thread timings most: keep an eye on this.
        load_average_before=[round(v, 2) for v in load_before],
        load_average_after=[round(v, 2) for v in load_after],
        **result,
    )
    out = write_json(args.out, payload)
    print()
    print(markdown(result, args.batch))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
