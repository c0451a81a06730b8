"""The command-line contract of multi-view custody records and persons within an incident."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import func, select

from service.config import Settings
from service.db.engine import make_engine
from service.db.models import CustodyImage, Subject, Submission
from tests.cli.test_cli_and_crash import fresh_database, link_folder, run
from tests.conftest import cctv_still, lfw_path


def write_still(name: str, n: int, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cctv_still(name, n))


def test_views_of_a_record_and_persons_of_an_incident(tmp_path: Path, database: str, settings: Settings) -> None:
    data_dir = tmp_path / "data"
    database = fresh_database(tmp_path, database)
    # Every image in a subject's sub-folder is a view; the turned one (a -55 degree yaw) is accepted
    # beside the front one.
    gallery = link_folder(
        tmp_path / "gallery",
        {"Ricardo_Lagos": [1, 5], "Colin_Powell": [1], "Serena_Williams": [1], "Hugo_Chavez": [1]},
    )
    summary = run(["gallery", "import", str(gallery), "--json", "-q"], data_dir, database, settings)
    assert summary["enrolled"] == 5 and summary["rejected"] == 0, summary
    # A manifest names the views; a turned view listed before its record's front view still goes in.
    manifest = tmp_path / "views.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "custody_reference", "view", "source"])
        writer.writerow([lfw_path("Phil_Gramm", 2), "PG-1", "Right Profile", "custody suite"])
        writer.writerow([lfw_path("Phil_Gramm", 1), "PG-1", "front", "custody suite"])
        writer.writerow([lfw_path("Ricardo_Lagos", 5), "RL-2", "left", "custody suite"])
    summary = run(["gallery", "import", "--manifest", str(manifest), "--json", "-q"], data_dir, database, settings)
    assert summary["enrolled"] == 2 and summary["rejected"] == 1, summary
    assert summary["rejected_images"][0]["code"] == "no_front_view", "a turned view alone is not a record"
    engine = make_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Subject.custody_reference, CustodyImage.view).join(Subject).order_by(CustodyImage.id)
        ).all()
    engine.dispose()
    views: dict[str, list[str]] = {}
    for reference, view in rows:
        views.setdefault(reference, []).append(view)
    assert views["Ricardo_Lagos"] == ["front", "left"]
    assert views["PG-1"] == ["front", "right_profile"], "named views are kept as named, tidied"
    assert "RL-2" not in views

    # One incident's three CCTV stills of one man, another incident's still, and a still without one.
    probes = tmp_path / "probes"
    for n in (2, 3, 4):
        write_still("Colin_Powell", n, probes / "INC-1" / f"cam{n}.jpg")
    write_still("Hugo_Chavez", 2, probes / "INC-2" / "cam1.jpg")
    write_still("Serena_Williams", 2, probes / "loose.jpg")
    provenance = tmp_path / "provenance.csv"
    with provenance.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "incident_reference", "retailer"])
        for n in (2, 3, 4):
            writer.writerow([f"INC-1/cam{n}.jpg", "INC-1", "Acme"])
        writer.writerow(["INC-2/cam1.jpg", "INC-2", "Acme"])
    # A provenance CSV is checked whole by the one provenance model before anything is created.
    for header, row, message in (
        (["file", "retialer"], ["loose.jpg", "Acme"], "unknown provenance columns"),
        (["file", "captured_at"], ["INC-2/cam1.jpg", "last Tuesday"], "INC-2/cam1.jpg (CSV): captured_at is not"),
        (["file", "witness_statement"], ["loose.jpg", "maybe"], "witness_statement must be yes or no"),
        (["path", "retailer"], ["loose.jpg", "Acme"], "has no 'file' column"),
    ):
        bad = tmp_path / "bad.csv"
        with bad.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, row])
        args = ["submit", str(probes), "--case", "C", "--purpose", "p", "--provenance", str(bad), "-q"]
        error = run(args, data_dir, database, settings, expect=2)["error"]
        assert error["code"] == "invalid_request" and message in error["message"], error
    engine = make_engine(database)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Submission)).scalar() == 0, "nothing created"
    engine.dispose()
    submitted = run(
        [
            "submit",
            str(probes),
            "--case",
            "CASE-12",
            "--purpose",
            "test sprint",
            "--provenance",
            str(provenance),
            "--search-poor-faces",
            "--wait",
            "--json",
            "-q",
        ],
        data_dir,
        database,
        settings,
    )
    assert submitted["status"] == "complete" and submitted["progress"]["done"] == 5
    results = run(["results", str(submitted["submission"]), "--json"], data_dir, database, settings)
    assert len(results["images"]) == 5
    faces_of = {image["file"]: [f["id"] for f in image["faces"]] for image in results["images"]}
    persons = results["persons"]
    assert sorted(f for p in persons for f in p["faces"]) == sorted(f for fs in faces_of.values() for f in fs)
    powell = next(p for p in persons if p["incident_reference"] == "INC-1" and len(p["faces"]) == 3)
    assert sorted(powell["faces"]) == sorted(faces_of[f"INC-1/cam{n}.jpg"][0] for n in (2, 3, 4))
    assert set(powell["candidates"][0]) >= {"rank", "custody_reference", "score", "above_threshold"}
    assert [c["rank"] for c in powell["candidates"]] == list(range(1, len(powell["candidates"]) + 1))
    assert powell["candidates"][0]["custody_reference"] == "Colin_Powell"
    loose = next(p for p in persons if faces_of["loose.jpg"][0] in p["faces"])
    assert loose["incident_reference"] == "" and loose["faces"] == faces_of["loose.jpg"][:1]
    assert loose["candidates"][0]["custody_reference"] == "Serena_Williams"
    chavez = next(p for p in persons if p["incident_reference"] == "INC-2")
    assert chavez["candidates"][0]["custody_reference"] == "Hugo_Chavez"
