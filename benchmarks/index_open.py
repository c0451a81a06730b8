"""Issue 15, item 3: what a service pays to open a saved national-scale gallery index.

Builds one index of ``--size`` templates (``--factory``; the LFW gallery plus the Gaussian
distractors of ``benchmarks.index_recall``), saves it as the service does, frees it, then opens
it ``--opens`` times, each in a fresh Python process (a service starting), alternating
``--modes`` (memory-mapped, ``RFR_INDEX__MMAP`` on, and read into memory): the time of
``FaissGalleryIndex.load`` (the manifest, the file's size and sha256, faiss's read, memory-mapped
where the type allows, and the check of its ids against the manifest), then, in the same
process, the checksum alone and faiss's read alone, so the phases are known; the process's
resident memory by kind (its own pages, the mapped file's pages) after opening and after
``--probes`` one-probe searches at ``--nprobe``; and the first search's time against the
steady state. Nothing here reads the database: the figures are the index's own part of a start.

    python -m benchmarks.index_open --size 20000000 --factory "IVF4096_HNSW32,SQ8" --nprobe 2048 --opens 4 --drop-caches

The page cache is whatever the machine holds (the file was just written, so it starts warm);
``--drop-caches`` asks the kernel to drop it before each open where the process may.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss

from benchmarks.common import default_out, stamp, write_json
from benchmarks.index_recall import (
    PACK,
    K,
    _ms,
    _rss_split_mib,
    build_index,
    lfw_faces,
    single_probe_seconds,
)
from service.config import IndexSettings
from service.index import FaissGalleryIndex
from service.index.persistence import read_manifest, verify_index_file


def build(directory: Path, size: int, factory: str, seed: int) -> dict[str, Any]:
    """Build and save the index; its build figures."""
    faiss.omp_set_num_threads(2)
    tuning = IndexSettings(factory=factory, flat_below=0)
    index, train_s, add_s = build_index(directory, lfw_faces(), size, tuning, seed, log=print)
    began = time.perf_counter()
    manifest = index.save()
    return {
        "train_s": round(train_s, 1),
        "add_s": round(add_s, 1),
        "save_s": round(time.perf_counter() - began, 2),
        "index_file_mib": round(manifest.index_bytes / 2**20, 1),
        "memory_mapped_after_save": index.memory_mapped,
    }


def drop_caches() -> bool:
    """Ask the kernel to drop the page cache; whether it let this process."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def open_once(directory: Path, factory: str, nprobe: int, probes: int, mmap: bool) -> dict[str, Any]:
    """One start: run in a fresh process by ``--child``."""
    rss_start = _rss_split_mib()
    tuning = IndexSettings(factory=factory, flat_below=0, nprobe=nprobe, mmap=mmap)
    manifest = read_manifest(directory)
    began = time.perf_counter()
    index = FaissGalleryIndex.load(directory, PACK, manifest.dim, factory=factory, tuning=tuning)
    load_s = time.perf_counter() - began
    rss_opened = _rss_split_mib()
    began = time.perf_counter()
    path = verify_index_file(directory, manifest)
    sha256_s = time.perf_counter() - began
    flags = faiss.IO_FLAG_MMAP if index.memory_mapped else 0
    began = time.perf_counter()
    raw = faiss.read_index(str(path), flags)
    read_s = time.perf_counter() - began
    del raw
    gc.collect()
    queries = lfw_faces().probes[: probes + 1]
    began = time.perf_counter()
    index.search(queries[0], K)
    first_ms = (time.perf_counter() - began) * 1000.0
    steady = single_probe_seconds(index, queries[1:], warmup=0)
    return {
        "templates": index.count,
        "memory_mapped": index.memory_mapped,
        "load_s": round(load_s, 2),
        "of_which_sha256_s": round(sha256_s, 2),
        "of_which_faiss_read_s": round(read_s, 2),
        "rss_at_start_mib": rss_start,
        "rss_after_open_mib": rss_opened,
        "first_probe_ms": round(first_ms, 1),
        "next_probes": _ms(steady),
        "rss_after_probes_mib": _rss_split_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000_000)
    parser.add_argument("--factory", default="IVF4096_HNSW32,SQ8")
    parser.add_argument("--nprobe", type=int, default=512)
    parser.add_argument("--opens", type=int, default=3, help="fresh processes that open the saved index")
    parser.add_argument("--probes", type=int, default=200, help="one-probe searches after each open")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drop-caches", action="store_true", help="drop the page cache before each open")
    parser.add_argument(
        "--modes",
        default="mapped,in-memory",
        help="RFR_INDEX__MMAP on (mapped) and off (in-memory), alternated over the opens",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-in-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    if args.child is not None:
        opened = open_once(args.child, args.factory, args.nprobe, args.probes, mmap=not args.child_in_memory)
        print(json.dumps(opened), flush=True)
        return 0

    modes = [mode.strip() for mode in args.modes.split(",")]
    if not set(modes) <= {"mapped", "in-memory"}:  # refused before a build of several minutes
        raise SystemExit(f"--modes: mapped and/or in-memory, not {args.modes!r}")
    work = Path(tempfile.mkdtemp(prefix="rfr-index-open-", dir=args.work_dir))
    try:
        directory = work / "index"
        directory.mkdir()
        record: dict[str, Any] = {"size": args.size, "factory": args.factory, "nprobe": args.nprobe}
        record.update(build(directory, args.size, args.factory, args.seed))
        print(json.dumps(record), flush=True)
        gc.collect()
        opens = []
        for n in range(args.opens):
            mode = modes[n % len(modes)]
            dropped = drop_caches() if args.drop_caches else False
            child = [sys.executable, "-m", "benchmarks.index_open", "--child", str(directory)]
            child += ["--factory", args.factory, "--nprobe", str(args.nprobe), "--probes", str(args.probes)]
            child += ["--child-in-memory"] if mode == "in-memory" else []
            done = subprocess.run(child, check=True, capture_output=True, text=True)
            opened = {"mode": mode, "page_cache_dropped": dropped, **json.loads(done.stdout.strip().splitlines()[-1])}
            print(json.dumps(opened), flush=True)
            opens.append(opened)
        record["opens"] = opens
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = args.out or default_out("index_open")
    write_json(out, stamp(f"{PACK} (dim 128)", benchmark="index_open", faiss_version=faiss.__version__, **record))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
