"""Clips for the tests (a pytest plugin of tests/conftest.py): the shared real clip, and degraded copies
made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.clips import DEGRADATIONS, Degradation, degrade

VIDEO = (Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "video").resolve()
CLIP = VIDEO / "short_hamilton_clip.mp4"


@pytest.fixture(scope="session")
def clip_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared clip in other containers and codecs, and degraded as a DVR would export it."""
    if not CLIP.is_file():
        pytest.fail(f"the shared clip is missing at {CLIP}")
    root = tmp_path_factory.mktemp("clips")
    made = {
        "cif": DEGRADATIONS["cif"],
        "dvr": DEGRADATIONS["dvr"],
        "low_fps": DEGRADATIONS["low_fps"],
        "compressed": DEGRADATIONS["compressed"],
        "blur": DEGRADATIONS["blur"],
        "mkv_hevc": Degradation("mkv_hevc", codec="hevc", suffix=".mkv", quality=30),
        "avi_mpeg4": Degradation("avi_mpeg4", codec="mpeg4", suffix=".avi", quality=5),
        "mov_mjpeg": Degradation("mov_mjpeg", codec="mjpeg", suffix=".mov", quality=8, size=(320, 180)),
        "ts_h264": Degradation("ts_h264", suffix=".ts"),
        "mkv_vp9": Degradation("mkv_vp9", codec="vp9", suffix=".mkv", size=(320, 180)),
    }
    return {name: degrade(CLIP, root / f"{name}{how.suffix}", how) for name, how in made.items()}
