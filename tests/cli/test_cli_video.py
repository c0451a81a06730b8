"""The command-line contract for clips: ``rfr submit FOLDER`` takes clips beside stills, ``rfr results
ID --json`` gives each track as a person with its ``track``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from service.config import Settings
from tests.cli.test_cli_and_crash import fresh_database, rfr, run
from tests.clips import CLIP, VIDEO
from tests.conftest import lfw_path


def test_a_clip_goes_in_with_rfr_submit_and_comes_out_as_tracks(
    tmp_path: Path, database: str, settings: Settings
) -> None:
    data_dir = tmp_path / "data"
    database = fresh_database(tmp_path, database)
    gallery = tmp_path / "gallery"
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        (gallery / name).mkdir(parents=True)
        shutil.copy(VIDEO / f"{name}.png", gallery / name / f"{name}.png")
    (gallery / "Colin_Powell").mkdir()
    (gallery / "Colin_Powell" / "cp.jpg").symlink_to(lfw_path("Colin_Powell", 1))
    assert run(["gallery", "import", str(gallery), "--json", "-q"], data_dir, database, settings)["enrolled"] == 3

    probes = tmp_path / "probes"
    probes.mkdir()
    shutil.copy(CLIP, probes / "till-camera.mp4")
    (probes / "still.jpg").symlink_to(lfw_path("Colin_Powell", 2))
    (probes / "broken.mp4").write_bytes(CLIP.read_bytes()[:50_000])
    args = ["submit", str(probes), "--case", "CASE-V", "--purpose", "clip test", "--incident", "INC-9"]
    args += ["--captured-at", "2026-06-01T10:00:00+00:00", "--wait", "--json", "-q"]
    submitted = run(args, data_dir, database, settings)
    assert submitted["status"] == "complete", submitted
    assert [r["file"] for r in submitted["rejected"]] == ["broken.mp4"]
    assert submitted["rejected"][0]["code"] == "clip_unreadable"
    assert submitted["progress"]["footage_s"] > 9.0

    results = run(["results", str(submitted["submission"]), "--json"], data_dir, database, settings)
    by_file = {image["file"]: image for image in results["images"]}
    clip = by_file["till-camera.mp4"]
    assert clip["media"] == "video" and clip["status"] == "done" and clip["clip"]["codec"] == "h264"
    assert by_file["broken.mp4"]["status"] == "failed"
    tracks = [p for p in results["persons"] if p.get("track")]
    assert tracks and all(set(p) >= {"incident_reference", "faces", "candidates", "track"} for p in tracks)
    for person in tracks:
        track = person["track"]
        assert set(track) >= {"file", "start_s", "end_s", "shots"} and track["file"] == "till-camera.mp4"
        assert all(set(shot) >= {"time_s", "face"} for shot in track["shots"])
        assert sorted(s["face"] for s in track["shots"]) == sorted(person["faces"])
        assert person["incident_reference"] == "INC-9"
    assert sorted(f["id"] for f in clip["faces"]) == sorted(f for p in tracks for f in p["faces"])
    lin = [p for p in tracks if p["candidates"] and p["candidates"][0]["custody_reference"] == "lin-manuel-miranda"]
    assert lin and lin[0]["candidates"][0]["above_threshold"]
    # The still of the same incident is a person of its own stills, not of the clip's tracks.
    still = by_file["still.jpg"]["faces"][0]["id"]
    assert not any(still in p["faces"] for p in tracks)

    proc = rfr(["results", str(submitted["submission"])], data_dir, database, settings)
    out, _ = proc.communicate(timeout=120)
    assert "tracks of a clip" in out and "till-camera.mp4" in out and " at " in out
    # Faces count from 1 as on the pages, with the ids `rfr review decide` takes.
    assert re.search(r"face 1 \(id \d+\)", out) and re.search(r"\(candidate \d+\)", out)
    assert "face 0" not in out
