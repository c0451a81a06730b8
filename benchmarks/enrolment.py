"""Issue 15, item 3: ``rfr gallery import`` streams — its memory does not grow with the import.

For each size in ``--sizes`` it makes a folder of that many LFW people (one folder each, holding a
link to the person's first image: a custody record of one view), then runs ``rfr gallery import
FOLDER --json -q`` as a subprocess on a fresh data directory (the embedded SQLite default),
sampling the process's resident memory (``/proc/<pid>/status``) every ``--sample-seconds``. It
reports the images enrolled per second, the peak resident memory, and the growth from a quarter
of the way through to the end (per 1,000 images: what a million-record import would add), then
runs the same import again: every image is then recognised by its digest before any model runs,
which is what resuming an import stopped midway costs for the part already done.

    python -m benchmarks.enrolment --sizes 1000,4000

A million records at the measured rate is an extrapolation (LFW holds 5,749 people); the memory
figures show whether it would fit. The load average before and after is recorded.
"""

from __future__ import annotations

import argparse
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
    began = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        value = rss_mib(proc.pid)
        if value is not None:
            samples.append((time.perf_counter() - began, value))
        time.sleep(sample_seconds)
    out, err = proc.communicate()
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {err[-2000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    return {"summary": summary, "wall_s": round(wall, 1), "rss": samples}


def memory_figures(samples: list[tuple[float, float]], images: int) -> dict[str, float]:
    """Peak, and the growth from a quarter of the run to its end, per 1,000 images."""
    if not samples:
        return {}
    end = samples[-1][0]
    quarter = min(samples, key=lambda s: abs(s[0] - end / 4))
    last = samples[-1]
    growth = last[1] - quarter[1]
    span_images = images * 0.75
    return {
        "peak_rss_mib": round(max(v for _, v in samples), 1),
        "rss_at_quarter_mib": round(quarter[1], 1),
        "rss_at_end_mib": round(last[1], 1),
        "growth_per_1000_images_mib": round(growth / span_images * 1000, 2) if span_images else 0.0,
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
        "| records | enrolled | wall s | images/s | peak RSS MiB | RSS 1/4 → end MiB | growth MiB per 1,000 "
        "| re-run s (already enrolled) | re-run images/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['records']:,} | {r['enrolled']:,} | {r['wall_s']} | {r['images_per_s']} | {r['peak_rss_mib']} "
            f"| {r['rss_at_quarter_mib']} → {r['rss_at_end_mib']} | {r['growth_per_1000_images_mib']} "
            f"| {r['rerun_wall_s']} ({r['rerun_already_enrolled']:,}) | {r['rerun_images_per_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
