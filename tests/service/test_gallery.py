"""Gallery enrolment, deletion and the persisted index, across restarts, on a real database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.config import Settings
from service.db.models import CustodyImage, FaceTemplate, Subject
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from tests.conftest import encode, lfw_path
from tests.service.conftest import ENROLLED, OPERATOR, auth, make_settings

PROBES = [("Colin_Powell", 3), ("Serena_Williams", 2), ("Hugo_Chavez", 3), ("Laura_Bush", 3), ("Jacques_Chirac", 2)]


def probe_matrix(pipeline: FacePipeline) -> np.ndarray:
    rows = []
    for name, number in PROBES:
        faces = pipeline.analyse_bytes(lfw_path(name, number).read_bytes()).faces
        rows.append(min(faces, key=lambda f: abs(f.face.box[0] + f.face.box[2] / 2 - 125)).embedding)
    return np.stack(rows)


def top_lists(runtime: Runtime, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    found = runtime.searcher.search(queries, runtime.pipeline.pack_id)
    return [[(h.custody_reference, round(h.score, 5)) for h in hits] for hits in found]


def restart(runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline) -> Runtime:
    return Runtime.build(make_settings(data_dir, database, settings.cache_dir), pipeline=pipeline)


def test_enrolment_is_idempotent_and_rejects_with_reasons(runtime: Runtime) -> None:
    again = runtime.gallery.enrol(OPERATOR, "Colin_Powell", lfw_path("Colin_Powell", 1).read_bytes(), "again.jpg")
    assert again.status == "already_enrolled"
    blank = encode(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (300, 300), (128, 128, 128)), "PNG")
    no_face = runtime.gallery.enrol(OPERATOR, "Nobody", blank, "blank.png")
    assert no_face.status == "rejected" and no_face.reason_code == "no_face"
    garbage = runtime.gallery.enrol(OPERATOR, "Nobody", b"not an image", "x.jpg")
    assert garbage.status == "rejected" and garbage.reason_code == "image_unreadable"
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(Subject.custody_reference == "Nobody")) == 0


def test_index_rebuilt_when_missing_or_corrupt_with_identical_results(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    queries = probe_matrix(pipeline)
    expected = top_lists(runtime, queries)
    assert [hits[0][0] for hits in expected] == [name for name, _ in PROBES]
    runtime.gallery.save_index()
    index_files = [p for p in runtime.settings.index_dir.iterdir() if p.is_file()]
    assert index_files, "the index is persisted under the data directory"

    reopened = restart(runtime, database, data_dir, settings, pipeline)
    assert reopened.holder.open_status.startswith("loaded"), reopened.holder.open_status
    assert top_lists(reopened, queries) == expected
    reopened.close()

    biggest = max(index_files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x5A
    biggest.write_bytes(bytes(data))
    corrupted = restart(runtime, database, data_dir, settings, pipeline)
    assert corrupted.holder.open_status.startswith("rebuilt"), corrupted.holder.open_status
    assert top_lists(corrupted, queries) == expected
    corrupted.close()

    for path in runtime.settings.index_dir.iterdir():
        path.unlink()
    missing = restart(runtime, database, data_dir, settings, pipeline)
    assert missing.holder.open_status.startswith("rebuilt"), missing.holder.open_status
    assert top_lists(missing, queries) == expected
    missing.close()


def test_deleted_subject_disappears_at_once_and_after_restart(
    runtime: Runtime,
    database: str,
    data_dir: Path,
    settings: Settings,
    pipeline: FacePipeline,
    tokens: dict[str, str],
) -> None:
    name = "Gerhard_Schroeder"
    assert name in ENROLLED
    extra = runtime.gallery.enrol(OPERATOR, name, lfw_path(name, 2).read_bytes(), f"{name}_0002.jpg")
    assert extra.status == "enrolled"
    faces = pipeline.analyse_bytes(lfw_path(name, 3).read_bytes()).faces
    query = min(faces, key=lambda f: abs(f.face.box[0] + f.face.box[2] / 2 - 125)).embedding[None, :]
    before = top_lists(runtime, query)[0]
    assert before[0][0] == name
    assert [ref for ref, _ in before].count(name) == 1, "two templates, one candidate"

    with runtime.factory() as session:
        subject_id = session.scalar(select(Subject.id).where(Subject.custody_reference == name))
        digests = list(session.scalars(select(CustodyImage.sha256).where(CustodyImage.subject_id == subject_id)))
    with TestClient(create_app(runtime=runtime), headers=auth(tokens, "adam")) as client:
        response = client.delete(f"/gallery/subjects/{subject_id}")
        assert response.status_code == 200, response.text
        assert response.json()["templates"] == 2 and response.json()["files"] == 2
        assert client.delete(f"/gallery/subjects/{subject_id}").status_code == 404
    assert name not in [ref for ref, _ in top_lists(runtime, query)[0]]
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(FaceTemplate.subject_id == subject_id)) == 0
    assert not any(runtime.store.exists(d) for d in digests)

    reopened = restart(runtime, database, data_dir, settings, pipeline)
    assert name not in [ref for ref, _ in top_lists(reopened, query)[0]]
    reopened.close()


def test_another_process_enrolling_is_seen_without_restart(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    other = restart(runtime, database, data_dir, settings, pipeline)
    outcome = other.gallery.enrol(OPERATOR, "Tom_Hanks", lfw_path("Tom_Hanks", 1).read_bytes(), "Tom_Hanks_0001.jpg")
    assert outcome.status == "enrolled"
    other.close()
    faces = pipeline.analyse_bytes(lfw_path("Tom_Hanks", 2).read_bytes()).faces
    query = min(faces, key=lambda f: abs(f.face.box[0] + f.face.box[2] / 2 - 125)).embedding[None, :]
    assert top_lists(runtime, query)[0][0][0] == "Tom_Hanks"


@pytest.mark.parametrize("field", ["custody_reference"])
def test_enrol_endpoint_requires_fields(runtime: Runtime, field: str, tokens: dict[str, str]) -> None:
    with TestClient(create_app(runtime=runtime), headers=auth(tokens, "adam")) as client:
        data = lfw_path("Al_Gore", 2).read_bytes()
        response = client.post("/gallery/enrol", files={"file": ("a.jpg", data, "image/jpeg")})
        assert response.status_code == 422 and field in response.json()["error"]["message"]
        response = client.post(
            "/gallery/enrol",
            files={"file": ("a.jpg", data, "image/jpeg")},
            data={"custody_reference": "Al_Gore", "source": "custody suite 3"},
        )
        assert response.status_code == 200 and response.json()["status"] == "enrolled"
