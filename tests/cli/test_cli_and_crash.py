"""The command-line contract, and a worker killed mid-sprint losing and duplicating nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from service.config import Settings
from service.db.engine import make_engine, session_factory
from service.db.models import Candidate, FaceTemplate, Job, ProbeFace, ProbeImage, Subject
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from tests.conftest import lfw_path
from tests.fixtures import OPERATOR, make_settings


def rfr(
    args: list[str],
    data_dir: Path,
    database: str,
    settings: Settings,
    stdin: int | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``rfr ARGS`` in a subprocess on ``data_dir`` and ``database`` (``env``: more RFR_ settings)."""
    env = {
        **os.environ,
        "RFR_DATA_DIR": str(data_dir),
        "RFR_DATABASE_URL": database,
        "RFR_CACHE_DIR": str(settings.cache_dir),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=stdin,
    )


def run(
    args: list[str],
    data_dir: Path,
    database: str,
    settings: Settings,
    stdin: str | None = None,
    expect: int = 0,
    env: dict[str, str] | None = None,
) -> Any:
    proc = rfr(args, data_dir, database, settings, stdin=subprocess.PIPE, env=env)
    out, err = proc.communicate(stdin, timeout=600)
    assert proc.returncode == expect, err
    return json.loads((out if expect == 0 else err).strip().splitlines()[-1])


def link_folder(root: Path, people: dict[str, list[int]]) -> Path:
    for name, numbers in people.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in numbers:
            (folder / f"{name}_{n:04d}.jpg").symlink_to(lfw_path(name, n))
    return root


def fresh_database(tmp_path: Path, database: str) -> str:
    """An empty database of the module's kind for a CLI test: PostgreSQL reset, or a new SQLite file."""
    if database.startswith("postgresql"):
        from tests.fixtures import reset_postgres

        reset_postgres(database)
        return database
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_cli_import_submit_results_search(tmp_path: Path, database: str, settings: Settings) -> None:
    data_dir = tmp_path / "data"
    database = fresh_database(tmp_path, database)
    gallery = link_folder(tmp_path / "gallery", {"Colin_Powell": [1], "Serena_Williams": [1], "Hugo_Chavez": [1]})
    (gallery / "Nobody").mkdir()
    (gallery / "Nobody" / "notes.jpg").write_bytes(b"not an image")
    summary = run(["gallery", "import", str(gallery), "--json", "-q"], data_dir, database, settings)
    assert summary["enrolled"] == 3 and summary["rejected"] == 1
    assert summary["rejected_images"][0]["code"] == "image_unreadable"
    again = run(["gallery", "import", str(gallery), "--json", "-q"], data_dir, database, settings)
    assert again["enrolled"] == 0 and again["already_enrolled"] == 3, "a re-run skips what is enrolled"

    probes = link_folder(tmp_path / "probes", {"Colin_Powell": [2], "Serena_Williams": [3]})
    (probes / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    submitted = run(
        [
            "submit",
            str(probes),
            "--case",
            "CASE-1",
            "--purpose",
            "test sprint",
            "--retailer",
            "Acme",
            "--json",
            "--wait",
            "-q",
        ],
        data_dir,
        database,
        settings,
    )
    assert submitted["status"] == "complete" and submitted["progress"]["done"] == 2
    assert submitted["progress"]["failed"] == 1 and submitted["rejected"][0]["code"] == "image_unreadable"
    results = run(["results", str(submitted["submission"]), "--json"], data_dir, database, settings)
    by_file = {Path(image["file"]).name: image for image in results["images"]}
    assert by_file["broken.jpg"]["status"] == "failed"
    for name in ("Colin_Powell", "Serena_Williams"):
        image = next(v for k, v in by_file.items() if k.startswith(name))
        assert image["status"] == "done" and image["retailer"] == "Acme"
        face = image["faces"][0]
        assert {"quality", "searched", "candidates"} <= set(face) and face["quality"]["usable"]
        top = face["candidates"][0]
        assert set(top) >= {"rank", "custody_reference", "score", "above_threshold"}
        assert top["rank"] == 1 and top["custody_reference"] == name and top["above_threshold"]
    found = run(
        ["search", str(lfw_path("Hugo_Chavez", 4)), "--case", "C-1", "--purpose", "a check", "--json"],
        data_dir,
        database,
        settings,
    )
    assert found["faces"][0]["candidates"][0]["custody_reference"] == "Hugo_Chavez"

    # Two people take the sprint to a confirmed match from the command line.
    password = "tangerine submarine 42\n"
    weak = rfr(
        ["users", "create", "boss", "--role", "admin", "--password-stdin"],
        data_dir,
        database,
        settings,
        stdin=subprocess.PIPE,
    )
    assert weak.communicate("changeme\n", timeout=120)[0] == "" and weak.returncode == 2, "a default password"
    tokens = {}
    for user, role in (("rita", "reviewer"), ("cora", "confirmer")):
        created = run(
            ["users", "create", user, "--role", role, "--password-stdin", "--token", "--json"],
            data_dir,
            database,
            settings,
            stdin=password,
        )
        tokens[user] = created["token"]
    colin = next(v for k, v in by_file.items() if k.startswith("Colin_Powell"))["faces"][0]
    top = colin["candidates"][0]
    reviewed = run(
        [
            "review",
            "decide",
            str(colin["id"]),
            "--action",
            "review",
            "--outcome",
            "possible_match",
            "--candidate",
            str(top["id"]),
            "--note",
            "same person",
            "--token",
            tokens["rita"],
        ],
        data_dir,
        database,
        settings,
    )
    assert reviewed["state"] == "awaiting_confirmation"
    reviewer_confirms = run(
        ["review", "decide", str(colin["id"]), "--action", "confirm", "--token", tokens["rita"]],
        data_dir,
        database,
        settings,
        expect=2,
    )
    assert reviewer_confirms["error"]["code"] == "forbidden", "a reviewer may not confirm"
    confirmed = run(
        ["review", "decide", str(colin["id"]), "--action", "confirm", "--token", tokens["cora"]],
        data_dir,
        database,
        settings,
    )
    assert confirmed["state"] == "confirmed"
    report = run(["report", str(submitted["submission"]), "--json"], data_dir, database, settings)
    assert report["images_supplied"] == 3 and report["confirmed_matches"] == 1
    assert report["distinct_subjects_confirmed"] == 1
    verified = run(["audit", "verify", "--json"], data_dir, database, settings)
    assert verified["ok"] and verified["events"] > 10


def test_worker_killed_mid_sprint_loses_and_duplicates_nothing(
    tmp_path: Path, database: str, settings: Settings, pipeline: FacePipeline
) -> None:
    if database.startswith("postgresql"):
        from tests.fixtures import reset_postgres

        reset_postgres(database)
    else:
        database = f"sqlite:///{tmp_path / 'crash.db'}"
    data_dir = tmp_path / "data"
    setup = Runtime.build(make_settings(data_dir, database, settings.cache_dir), pipeline=pipeline)
    for name, number in (("Colin_Powell", 1), ("George_W_Bush", 1), ("Tony_Blair", 2)):
        assert setup.gallery.enrol(OPERATOR, name, lfw_path(name, number).read_bytes(), "1.jpg").status == "enrolled"
    setup.gallery.save_index()
    setup.close()
    probes = link_folder(
        tmp_path / "probes",
        {"Colin_Powell": list(range(2, 12)), "George_W_Bush": list(range(2, 22)), "Tony_Blair": list(range(3, 13))},
    )
    total = 40
    proc = rfr(
        ["submit", str(probes), "--case", "CRASH", "--purpose", "kill test", "--json", "-q"],
        data_dir,
        database,
        settings,
    )
    engine = make_engine(database)
    factory = session_factory(engine)
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline:
        with factory() as session:
            done = session.scalar(select(func.count()).where(ProbeImage.status == "done")) or 0
        if done >= 5:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with factory() as session:
        done_at_kill = session.scalar(select(func.count()).where(ProbeImage.status == "done")) or 0
        total_images = session.scalar(select(func.count()).select_from(ProbeImage))
    assert 5 <= done_at_kill < total, "the kill landed mid-sprint"
    assert total_images == total, "every image was queued before processing started"

    resumed = Runtime.build(make_settings(data_dir, database, settings.cache_dir), pipeline=pipeline)
    resumed.worker.run_until_empty()
    with resumed.factory() as session:
        statuses = dict(session.execute(select(ProbeImage.status, func.count()).group_by(ProbeImage.status)).all())
        assert statuses == {"done": total}
        assert set(session.scalars(select(Job.status))) == {"done"}
        faces = session.execute(select(ProbeFace.probe_image_id, ProbeFace.face_index)).all()
        assert len(faces) == len(set(faces))
        per_image = dict(
            session.execute(
                select(ProbeImage.file_name, func.count(ProbeFace.id)).join(ProbeFace).group_by(ProbeImage.file_name)
            ).all()
        )
        ranks = session.execute(select(Candidate.probe_face_id, Candidate.rank)).all()
        assert len(ranks) == len(set(ranks))
    # Each image holds exactly the faces the pipeline finds in it: none lost, none doubled.
    for path in sorted(probes.rglob("*.jpg"))[::7]:
        expected = len(pipeline.analyse_bytes(path.read_bytes()).faces)
        assert per_image.get(str(path.relative_to(probes)), 0) == expected, path.name
    resumed.close()
    engine.dispose()


def test_a_gallery_import_killed_midway_is_resumed_by_running_it_again(
    tmp_path: Path, database: str, settings: Settings
) -> None:
    data_dir = tmp_path / "data"
    database = fresh_database(tmp_path, database)
    people = sorted(p.name for p in lfw_path("Colin_Powell", 1).parent.parent.iterdir() if p.is_dir())[:60]
    gallery = link_folder(tmp_path / "gallery", {name: [1] for name in people})
    proc = rfr(["gallery", "import", str(gallery), "--json"], data_dir, database, settings)
    engine = make_engine(database)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with engine.connect() as connection:
                    enrolled = connection.execute(select(func.count()).select_from(Subject)).scalar() or 0
            except DBAPIError:  # the schema is not made yet
                enrolled = 0
            if enrolled >= 10 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the import ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with engine.connect() as connection:
            before = connection.execute(select(func.count()).select_from(Subject)).scalar() or 0
        assert 10 <= before < len(people)
        again = run(["gallery", "import", str(gallery), "--json", "-q"], data_dir, database, settings)
        assert again["total"] == len(people) and again["already_enrolled"] >= before
        assert again["enrolled"] + again["already_enrolled"] + again["rejected"] == len(people)
        with engine.connect() as connection:
            references = connection.execute(select(Subject.custody_reference)).scalars().all()
            templates = connection.execute(select(func.count()).select_from(FaceTemplate)).scalar()
        assert sorted(references) == sorted(set(references)), "no record twice"
        assert len(references) == again["enrolled"] + again["already_enrolled"] == templates
    finally:
        engine.dispose()
