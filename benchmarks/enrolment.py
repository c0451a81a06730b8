"""Issue 15, item 3: ``rfr gallery import`` streams — its memory does not grow with the import.

For each size in ``--sizes`` it makes a folder of that many LFW people (one folder each, holding a
link to the person's first image: a custody record of one view), then runs ``rfr gallery import
FOLDER --json -q`` as a subprocess on a fresh data directory (the embedded SQLite default),
sampling the process's resident memory (``/proc/<pid>/status``) every ``--sample-seconds``. It
reports the images enrolled per second, the peak resident memory, the growth from a quarter to
nine tenths of the way through (per 1,000 images: what a million-record import would add), the
last sample (after the final save and the summary) and the series itself, then
runs the same import again: every image is then recognised by its digest before any model runs,
which is what resuming an import stopped midway costs for the part already done.

    python -m benchmarks.enrolment --sizes 1000,4000

A million records at the measured rate is an extrapolation (LFW holds 5,749 people); the memory
figures show whether it would fit. The load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_LFW_ROOT, default_out, stamp, write_json
from benchmarks.harness import rfr_command, service_env
from benchmarks.service_overhead import people


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def gallery_folder(root: Path, lfw: Path, size: int) -> int:
    """``size`` LFW people under ``root``, one folder each with a link to their first image."""
    everyone = people(lfw)
    names = sorted(everyone)[:size]
    for name in names:
        (root / name).mkdir(parents=True)
        first = everyone[name][0]
        (root / name / first.name).symlink_to(first)
    return len(names)


def run_import(command: list[str], env: dict[str, str], sample_seconds: float) -> dict[str, Any]:
    """One ``rfr gallery import``: its summary, wall time and resident memory over time."""
    samples: list[tuple[float, float]] = []
    # Its output goes to files, not pipes: a summary larger than a pipe's buffer would block it.
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        began = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
        while proc.poll() is None:
            value = rss_mib(proc.pid)
            if value is not None:
                samples.append((time.perf_counter() - began, value))
            time.sleep(sample_seconds)
        wall = time.perf_counter() - began
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {err[-2000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    return {"summary": summary, "wall_s": round(wall, 1), "rss": samples}


def memory_figures(samples: list[tuple[float, float]], images: int) -> dict[str, Any]:
    """Peak, the growth from a quarter to nine tenths of the run (the enrolment loop, before the
    final save and summary) per 1,000 images, the median fiftieth's growth per 1,000 images, the
    last sample, and the series (at most 50 points)."""
    if not samples:
        return {}
    end = samples[-1][0]

    def at(fraction: float) -> tuple[float, float]:
        return min(samples, key=lambda s: abs(s[0] - end * fraction))

    quarter, late = at(0.25), at(0.9)
    span_images = images * (late[0] - quarter[0]) / end if end else 0.0
    # The growth of the typical fiftieth of the run: one allocator's step (an arena doubling) does not move it.
    fiftieths = [at(i / 50) for i in range(51)]
    rates = sorted(b[1] - a[1] for a, b in itertools.pairwise(fiftieths))
    step = max(1, len(samples) // 50)
    return {
        "peak_rss_mib": round(max(v for _, v in samples), 1),
        "rss_at_quarter_mib": round(quarter[1], 1),
        "rss_at_nine_tenths_mib": round(late[1], 1),
        "rss_at_end_mib": round(samples[-1][1], 1),
        "growth_per_1000_images_mib": round((late[1] - quarter[1]) / span_images * 1000, 2) if span_images else 0.0,
        "median_growth_per_1000_images_mib": round(rates[len(rates) // 2] * 50 / images * 1000, 2) if images else 0.0,
        "rss_series": [[round(t, 1), round(v, 1)] for t, v in samples[::step]],
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW_ROOT)
    parser.add_argument("--sizes", default="1000,4000", help="LFW people (custody records) per import")
    parser.add_argument("--sample-seconds", type=float, default=0.25)
    parser.add_argument("--rfr", default=None, help="command to run (default: this Python's -m service.cli)")
    parser.add_argument("--out", type=Path, default=default_out("enrolment"))
    args = parser.parse_args()

    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="rfr-enrol-") as tmp:
            folder, data_dir = Path(tmp) / "gallery", Path(tmp) / "data"
            records = gallery_folder(folder, args.lfw, size)
            env = service_env(data_dir)
            command = [*rfr_command(args.rfr), "gallery", "import", str(folder), "--json", "-q"]
            before = loadavg()
            first = run_import(command, env, args.sample_seconds)
            again = run_import(command, env, args.sample_seconds)
            counts = first["summary"]
            enrolled = int(counts["enrolled"])
            run = {
                "records": records,
                "enrolled": enrolled,
                "rejected": int(counts["rejected"]),
                "wall_s": first["wall_s"],
                "images_per_s": round(records / first["wall_s"], 2),
                **memory_figures(first["rss"], records),
                "rerun_wall_s": again["wall_s"],
                "rerun_already_enrolled": int(again["summary"]["already_enrolled"]),
                "rerun_images_per_s": round(records / again["wall_s"], 1),
                "rerun_peak_rss_mib": round(max((v for _, v in again["rss"]), default=0.0), 1),
                "loadavg_before": before,
                "loadavg_after": loadavg(),
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    payload = {**stamp("yunet_sface", database="sqlite"), "runs": runs}
    write_json(args.out, payload)
    print(markdown(runs))


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| records | enrolled | wall s | images/s | peak RSS MiB | RSS 1/4 → 9/10 → end MiB "
        "| growth MiB per 1,000 (median) | re-run s (already enrolled) | re-run images/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['records']:,} | {r['enrolled']:,} | {r['wall_s']} | {r['images_per_s']} | {r['peak_rss_mib']} "
            f"| {r['rss_at_quarter_mib']} → {r['rss_at_nine_tenths_mib']} → {r['rss_at_end_mib']} "
            f"| {r['growth_per_1000_images_mib']} ({r['median_growth_per_1000_images_mib']}) "
            f"| {r['rerun_wall_s']} ({r['rerun_already_enrolled']:,}) | {r['rerun_images_per_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
