"""Issue 16, item 1: what large requests cost the running service, in peak memory and time.

Starts ``rfr serve`` on loopback on a fresh data directory (the worker off, so only the requests
themselves are measured) and, sampling the server process's resident memory (``psutil``, every
20 ms, and the kernel's high-water mark ``VmHWM``, reset before each phase):

1. one ``POST /search`` of a 7000 x 7000 JPEG (an LFW face pasted on a plain canvas: about 0.8 MB,
   49 MP, under the 50 MP limit);
2. four such searches at once (the issue's bound: under 1.5 GB peak);
3. one ``POST /submissions/{id}/images`` of 40 stills of about 20 MB each (noise JPEGs, 800 MB).

Each phase reports the server's peak RSS, the rise over its idle RSS, and the wall time.
``--before-src`` first runs another checkout of the service (the commit before the change) on the
same requests, for before/after figures. Writes ``benchmarks/results/memory.{json,md}``.

    git worktree add /tmp/rfr-before 3affd36   # the commit before issue 16, item 1
    python -m benchmarks.request_memory --before-src /tmp/rfr-before
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import DEFAULT_LFW_ROOT, PROJECT_ROOT, RESULTS_DIR, lfw_image_path, stamp, write_json
from benchmarks.harness import ApiClient, Service, obtain_token, rfr_command, service_env

MIB = 1024.0 * 1024.0
SIDE = 7000


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    requests: int
    statuses: list[int]
    seconds: float
    peak_rss_mib: float  # sampled
    hwm_mib: float | None  # the kernel's high-water mark over the phase
    rise_mib: float  # peak over the idle RSS before the phase


def large_jpeg(lfw: Path) -> bytes:
    canvas = Image.new("RGB", (SIDE, SIDE), (120, 124, 118))
    canvas.paste(Image.open(lfw_image_path(lfw, "Colin_Powell", 2)).convert("RGB"), (4100, 2900))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def noise_jpeg(size: int, seed: int) -> bytes:
    """A decodable JPEG of about ``size`` bytes (noise compresses badly: about 1.2 bytes a pixel)."""
    side = int((size / 1.2) ** 0.5)
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "JPEG", quality=95)
    return out.getvalue()


class RssSampler:
    """The server's resident memory (its process and any children), every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss(self) -> int:
        import psutil

        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    @contextmanager
    def sampling(self) -> Iterator[None]:
        self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark of ``pid`` (``/proc/PID/clear_refs``; needs the same user or root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def measure(name: str, pid: int, sampler: RssSampler, calls: list[Callable[[], int]]) -> Phase:
    """Run ``calls`` at once (one thread each), sampling the server's memory."""
    idle = sampler.rss()
    hwm_ok = reset_hwm(pid)
    statuses: list[int] = [0] * len(calls)

    def run(i: int) -> None:
        statuses[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with sampler.sampling():
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    peak = sampler.peak / MIB
    phase = Phase(
        name,
        len(calls),
        statuses,
        round(seconds, 2),
        round(peak, 1),
        round(hwm, 1) if hwm_ok and (hwm := hwm_mib(pid)) is not None else None,
        round(peak - idle / MIB, 1),
    )
    print(f"  {name}: {phase}", file=sys.stderr)
    return phase


def run_service(
    args: argparse.Namespace, label: str, service_src: str | None, still: bytes, uploads: list[Any]
) -> dict[str, Any]:
    """Every phase against one checkout of the service, on a fresh data directory (a fresh server each)."""
    import httpx

    print(f"{label}: {service_src}", file=sys.stderr)
    data_dir = Path(tempfile.mkdtemp(prefix="rfr-bench-memory-"))
    env = service_env(
        data_dir,
        service_src=service_src,
        settings={"RFR_WORKER__ENABLED": "false", "RFR_RETENTION__ENABLED": "false"},
    )
    # -P: the checkout on PYTHONPATH is imported, not the one in the working directory.
    service = Service(rfr_command(args.rfr) if args.rfr else [sys.executable, "-P", "-m", "service.cli"], data_dir, env)
    token, token_note = obtain_token(service)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    form = {"case_reference": "BENCH/1", "purpose": "request memory"}
    warm = lfw_image_path(args.lfw, "Colin_Powell", 1).read_bytes()
    phases: list[Phase] = []
    idle: list[float] = []
    for name, kind, count in [
        ("one 7000x7000 JPEG search", "search", 1),
        ("four 7000x7000 JPEG searches at once", "search", 4),
        (f"one upload of {len(uploads)} x {args.file_mb:g} MB", "upload", 1),
    ]:
        # A fresh server for each phase: its peak is this phase's alone.
        with service.serve(data_dir / "serve.log") as (base_url, proc):
            api = ApiClient(base_url, token)
            api.wait_healthy(180, proc)
            submission = api.post_json("/submissions", form)
            api.close()
            sampler = RssSampler(proc.pid)

            def post(still: bytes, url: str = base_url) -> int:
                with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
                    files = {"file": ("still.jpg", still, "image/jpeg")}
                    return client.post("/search", data=form, files=files).status_code

            def upload(url: str = base_url, submission_id: int = submission["id"]) -> int:
                with httpx.Client(base_url=url, headers=headers, timeout=1200) as client:
                    return client.post(f"/submissions/{submission_id}/images", files=uploads).status_code

            post(warm)  # the first search pays for lazily built parts
            idle.append(sampler.rss() / MIB)
            calls: list[Callable[[], int]] = [partial(post, still)] * count if kind == "search" else [upload]
            phases.append(measure(name, proc.pid, sampler, calls))
    idle_mib = sum(idle) / len(idle)
    return {
        "label": label,
        "service_src": service_src,
        "token": token_note,
        "idle_rss_mib": round(idle_mib, 1),
        "phases": [asdict(p) for p in phases],
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Request memory (issue 16, item 1)",
        "",
        f"`python -m benchmarks.request_memory` at {payload['git_commit'][:10]} on {payload['processor']}, "
        f"{payload['cpu_count']} cores. The server's peak resident memory (psutil every 20 ms) and its "
        f"rise over the idle server's; the search still is {payload['search_still_bytes'] / 1e6:.2f} MB "
        f"of JPEG, the upload {payload['upload_bytes'] / 1e6:.0f} MB in all. Worker off: the requests alone.",
        "",
        "| service | phase | HTTP statuses | wall s | peak RSS MiB | rise MiB |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for run in payload["runs"]:
        for phase in run["phases"]:
            statuses = ", ".join(str(s) for s in phase["statuses"])
            lines.append(
                f"| {run['label']} | {phase['name']} | {statuses} | {phase['seconds']:.1f} "
                f"| {phase['peak_rss_mib']:.0f} | {phase['rise_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW_ROOT)
    parser.add_argument("--rfr", help="how to run rfr (default: this Python's -m service.cli)")
    parser.add_argument("--before-src", help="a checkout of the service before the change, run first for comparison")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--file-mb", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "memory.json")
    args = parser.parse_args()

    print("making the requests' files ...", file=sys.stderr)
    still = large_jpeg(args.lfw)
    uploads = [
        ("files", (f"noise-{i:02d}.jpg", noise_jpeg(int(args.file_mb * 1e6), i), "image/jpeg"))
        for i in range(args.files)
    ]
    runs = []
    if args.before_src:
        runs.append(run_service(args, "before", args.before_src, still, uploads))
    runs.append(run_service(args, "after", str(PROJECT_ROOT), still, uploads))
    payload: dict[str, Any] = {
        **stamp("yunet_sface"),
        "search_still_bytes": len(still),
        "upload_bytes": sum(len(part[1][1]) for part in uploads),
        "runs": runs,
    }
    write_json(args.out, payload)
    args.out.with_suffix(".md").write_text(markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
