"""Issue 15, item 5: sprint throughput with 1 and 2 ``rfr worker`` processes on one PostgreSQL.

The multi-host deployment on one machine: ``rfr serve --no-worker`` on the API's data directory,
and N ``rfr worker`` processes, each on a data directory of its own (its own index replica, as on
its own host), all on one PostgreSQL database and one shared image store (``RFR_STORE__PATH``).

1. Enrols a gallery (the first LFW image of each probe person, ``rfr gallery import``).
2. For each round, for N in ``--workers`` (default 1 then 2, alternated so both see the same
   spells of a shared machine): starts N workers and waits until each has loaded the model and its
   replica, then submits ``--probes`` LFW stills over HTTP as one sprint (uploads of 50) and times
   it from the first upload to ``complete``; the workers are then stopped.
3. From the figures: how many workers a sprint of ``--target-stills`` (10,000) needs to finish
   within ``--target-hours`` (1) on this machine's cores — from the wall-clock rates, and from the
   CPU time the workers used per still (``/proc``), which a busy machine inflates far less.

    python -m benchmarks.workers --database-url postgresql+psycopg://rfr:rfr@127.0.0.1:5432/rfr_bench_workers

The database named is dropped and made anew (on its server, through the ``postgres`` database).
The load average before and after each run is recorded: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_LFW_ROOT, default_out, stamp, write_json
from benchmarks.harness import ApiClient, Service, obtain_token, rfr_command, service_env, upload_images, wait_complete
from benchmarks.service_overhead import people


def fresh_database(url: str) -> None:
    """Drop and create the database ``url`` names."""
    from sqlalchemy import create_engine, make_url, text

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def start_workers(count: int, root: Path, env: dict[str, str], logs: Path) -> list[subprocess.Popen[str]]:
    """``count`` ``rfr worker --json`` processes, each on its own data directory (its log in ``logs``);
    returns once all are ready."""
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data_dir = root / f"worker-{i + 1}"
        cmd = [*rfr_command(), "--data-dir", str(data_dir), "-v", "worker", "--json"]
        with (logs / f"worker-{i + 1}.log").open("a") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True))
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"rfr worker exited with status {proc.wait()} before it was ready")
        if "ready" not in json.loads(line):
            raise SystemExit(f"rfr worker said {line!r} instead of ready")
    return procs


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux: ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL database to drop and make anew")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW_ROOT)
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target-stills", type=int, default=10_000)
    parser.add_argument("--target-hours", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=default_out("workers"))
    parser.add_argument("--logs", type=Path, help="folder for the workers' logs (default: removed with the run)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    everyone = people(args.lfw)
    pool = [(name, path) for name, images in everyone.items() if len(images) >= 2 for path in images[1:]]
    probes = rng.sample(pool, min(args.probes, len(pool)))
    work = Path(tempfile.mkdtemp(prefix="rfr-bench-workers-"))
    gallery = work / "gallery"
    for name in sorted({name for name, _ in probes}):
        (gallery / name).mkdir(parents=True)
        (gallery / name / everyone[name][0].name).symlink_to(everyone[name][0])

    fresh_database(args.database_url)
    api_dir, shared = work / "api", work / "shared-images"
    shared.mkdir()
    store = {"RFR_STORE__PATH": str(shared), "RFR_WORKER__POLL_SECONDS": "0.05"}
    api_env = service_env(api_dir, database_url=args.database_url, settings=store)
    worker_env = service_env(
        work / "unused",
        database_url=args.database_url,
        settings={**store, "RFR_AUDIT__KEY_FILE": str(api_dir / "keys" / "audit.key")},
    )
    service = Service(rfr_command(), api_dir, api_env)
    enrolled = subprocess.run(
        service.command("gallery", "import", str(gallery), "--json", "-q"),
        env=api_env,
        capture_output=True,
        text=True,
        check=True,
    )
    gallery_summary = json.loads(enrolled.stdout.strip().splitlines()[-1])
    token, note = obtain_token(service, "bench-analyst")
    if token is None:
        raise SystemExit(note)
    files = [(path.name, path.read_bytes(), "image/jpeg") for _, path in probes]

    runs: list[dict[str, Any]] = []
    with service.serve(options=["--no-worker"]) as (url, server):
        client = ApiClient(url, token, timeout=300)
        try:
            client.wait_healthy(180, server)
            for round_number in range(args.rounds):
                for count in args.workers:
                    procs = start_workers(count, work, worker_env, args.logs or work / "logs")
                    try:
                        load_before = os.getloadavg()[0]
                        pids = [server.pid, *(p.pid for p in procs)]
                        cpu_before = [cpu_seconds(pid) for pid in pids]
                        body = {"case_reference": f"BENCH/W{count}/{round_number}", "purpose": "worker throughput"}
                        sid = int(client.post_json("/submissions", body)["id"])
                        started = time.perf_counter()
                        upload_images(client, sid, files, chunk=50)
                        status = wait_complete(client, sid, poll_s=0.1)
                        seconds = time.perf_counter() - started
                        cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu_before, strict=True)]
                    finally:
                        stop_workers(procs)
                    run = {
                        "round": round_number + 1,
                        "workers": count,
                        "stills": len(files),
                        "done": status["progress"]["done"],
                        "failed": status["progress"]["failed"],
                        "seconds": round(seconds, 2),
                        "stills_per_s": round(len(files) / seconds, 2),
                        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                        # CPU each process used during the sprint: what a core of its own would need.
                        "api_cpu_s": round(cpu[0], 2),
                        "workers_cpu_s": [round(c, 2) for c in cpu[1:]],
                        "worker_cpu_ms_per_still": round(1000 * sum(cpu[1:]) / len(files), 1),
                    }
                    runs.append(run)
                    print(json.dumps(run), file=sys.stderr)
        finally:
            client.close()

    rates = {count: [r["stills_per_s"] for r in runs if r["workers"] == count] for count in args.workers}
    best = {count: max(values) for count, values in rates.items()}
    median = {count: sorted(values)[len(values) // 2] for count, values in rates.items()}
    needed_rate = args.target_stills / (args.target_hours * 3600)
    # Per worker, at the most workers measured (each with a core of its own at best), the slower of the runs.
    most = max(args.workers)
    per_worker = min(rates[most]) / most
    # Load-independent: the workers' CPU per still (the median run), so the cores a sprint needs.
    cpu_per_still = sorted(r["worker_cpu_ms_per_still"] for r in runs)[len(runs) // 2] / 1000
    report: dict[str, Any] = {
        **stamp("yunet_sface"),
        "cpu_count": os.cpu_count(),
        "database": "postgresql",
        "gallery": gallery_summary,
        "probes": len(files),
        "runs": runs,
        "stills_per_s": {"median": median, "best": best},
        "speed_up_2_over_1": round(median[2] / median[1], 2) if 1 in median and 2 in median else None,
        "target": {
            "stills": args.target_stills,
            "hours": args.target_hours,
            "stills_per_s_needed": round(needed_rate, 2),
            "per_worker_stills_per_s_used": round(per_worker, 2),
            "workers_needed": max(1, math.ceil(needed_rate / per_worker)),
            "hours_with_one_worker": round(args.target_stills / min(rates[min(args.workers)]) / 3600, 2),
            "worker_cpu_s_per_still_median": round(cpu_per_still, 4),
            "worker_cores_needed_by_cpu": max(
                1, math.ceil(args.target_stills * cpu_per_still / (args.target_hours * 3600))
            ),
            "worker_core_hours_by_cpu": round(args.target_stills * cpu_per_still / 3600, 3),
        },
    }
    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("stills_per_s", "speed_up_2_over_1", "target")}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
