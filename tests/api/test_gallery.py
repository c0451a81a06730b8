"""The gallery over HTTP: deleting a subject, the enrol endpoint's required fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.config import Settings
from service.db.models import CustodyImage, FaceTemplate, Subject
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from tests.conftest import lfw_path
from tests.fixtures import ENROLLED, OPERATOR, auth, restart, top_lists


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
        assert response.json()["templates"] == 3, "two views and their fused template"
        assert response.json()["files"] == 2
        assert client.delete(f"/gallery/subjects/{subject_id}").status_code == 404
    assert name not in [ref for ref, _ in top_lists(runtime, query)[0]]
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(FaceTemplate.subject_id == subject_id)) == 0
    assert not any(runtime.store.exists(d) for d in digests)

    reopened = restart(runtime, database, data_dir, settings, pipeline)
    assert name not in [ref for ref, _ in top_lists(reopened, query)[0]]
    reopened.close()


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
