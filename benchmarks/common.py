"""Helpers shared by the benchmark scripts: result stamps, peak memory, paths, the pipeline."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from service.config import Settings
from service.embeddings.pipeline import FacePipeline

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
DEFAULT_LFW_ROOT = PROJECT_ROOT.parent / "shared" / "datasets" / "lfw"


def default_out(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def _git(*args: str) -> str | None:
    """The output of ``git ARGS`` run in the project, or ``None`` when git fails or is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str:
    """``git rev-parse HEAD`` of the project, or ``"uncommitted"`` when there is no commit (or no git)."""
    commit = _git("rev-parse", "HEAD")
    return commit if commit is not None and len(commit) == 40 else "uncommitted"


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD (the figures may not match the stamped commit)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return float(peak) / divisor


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def stamp(pack_id: str, **extra: Any) -> dict[str, Any]:
    """Provenance for a results file: commit, pack, date, machine and library versions."""
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "pack_id": pack_id,
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("numpy", "onnxruntime", "cv2", "dlib")},
        "argv": sys.argv,
        **extra,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def lfw_image_path(root: Path, name: str, number: int) -> Path:
    """``<root>/<Name>/<Name>_<NNNN>.jpg`` (NNNN 1-based, zero-padded to 4 digits)."""
    return root / name / f"{name}_{number:04d}.jpg"


def build_pipeline(intra_op_threads: int | None = None) -> FacePipeline:
    """``FacePipeline.from_settings(Settings())``, optionally overriding ONNX Runtime's intra-op threads."""
    settings = Settings()
    if intra_op_threads is not None:
        settings.runtime.intra_op_threads = intra_op_threads
    return FacePipeline.from_settings(settings)


def current_rss_mib() -> float | None:
    """Resident set size right now, in MiB (``None`` where /proc is unavailable)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None
