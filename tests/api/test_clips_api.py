"""Clips through the HTTP API: upload with provenance, tracks in the results, the clip played back in
byte ranges (each view audited once, with the clip's sha256), bad clips refused with nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db.image_store import sha256_bytes
from service.db.models import AuditEvent
from service.runtime import Runtime
from tests.api.test_sprint_api import counts, new_submission
from tests.clips import CLIP, VIDEO
from tests.fixtures import OPERATOR, auth


@pytest.fixture(scope="module")
def client(runtime: Runtime, tokens: dict[str, str]) -> Iterator[TestClient]:
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        runtime.gallery.enrol(OPERATOR, name, (VIDEO / f"{name}.png").read_bytes(), f"{name}.png")
    with TestClient(create_app(runtime=runtime), headers=auth(tokens, "ana")) as test_client:
        yield test_client


def test_a_clip_uploaded_over_http_comes_back_as_tracks(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    submission_id = new_submission(client)
    provenance = json.dumps({CLIP.name: {"retailer": "Corner Shop", "camera": "till", "store": "Leeds 4"}})
    response = client.post(
        f"/submissions/{submission_id}/images",
        files=[("files", (CLIP.name, CLIP.read_bytes(), "video/mp4"))],
        data={"incident_reference": "INC-H", "captured_at": "2026-06-01T10:00:00Z", "provenance": provenance},
    )
    assert response.status_code == 202, response.text
    [image_id] = response.json()["image_ids"]
    detail = client.get(f"/submissions/{submission_id}").json()
    assert detail["images"][0]["media"] == "video" and detail["images"][0]["clip"]["frames"] == 275
    assert detail["progress"]["footage_s"] == pytest.approx(9.18, abs=0.05)
    runtime.worker.run_until_empty()
    results = client.get(f"/submissions/{submission_id}/results").json()
    assert results["progress"]["footage_done_s"] == results["progress"]["footage_s"]
    tracks = [p for p in results["persons"] if p["track"]]
    assert tracks and all(p["track"]["image_id"] == image_id for p in tracks)
    assert results["images"][0]["store"] == "Leeds 4"
    top = [p["candidates"][0] for p in tracks if p["candidates"]]
    assert any(c["custody_reference"] == "lin-manuel-miranda" and c["above_threshold"] for c in top)
    reviewer = auth(tokens, "rita")

    # The clip, unchanged, played in byte ranges: one audited view with its sha256.
    before = _clip_views(runtime, image_id)
    whole = client.get(f"/probe-images/{image_id}/clip", headers=reviewer)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == CLIP.read_bytes() and "no-store" in whole.headers["cache-control"]
    start = client.get(f"/probe-images/{image_id}/clip", headers=reviewer | {"Range": "bytes=0-1023"})
    assert start.status_code == 206 and len(start.content) == 1024
    later = client.get(f"/probe-images/{image_id}/clip", headers=reviewer | {"Range": "bytes=5000-9999"})
    assert later.status_code == 206 and later.content == CLIP.read_bytes()[5000:10000]
    views = _clip_views(runtime, image_id)[len(before) :]
    assert len(views) == 2, "the whole file and the first range each start a view; a later range does not"
    assert all(v["clip_sha256"] == sha256_bytes(CLIP.read_bytes()) for v in views)
    # A still is not a clip; another analyst's clip is not found.
    assert client.get(f"/probe-images/{image_id}/clip", headers=auth(tokens, "ann")).status_code == 404


def _clip_views(runtime: Runtime, image_id: int) -> list[dict[str, object]]:
    with runtime.factory() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "probe_clip_viewed")).all()
        return [e.details for e in events if e.object_id == str(image_id)]


def test_bad_clips_over_http_are_refused_with_nothing_stored(client: TestClient, runtime: Runtime) -> None:
    submission_id = new_submission(client)
    data = CLIP.read_bytes()
    before = counts(runtime)
    for name, body in [("cut.mp4", data[: len(data) // 3]), ("zero.mp4", b""), ("noise.mkv", b"\x1a\x45\xdf\xa3" * 99)]:
        response = client.post(
            f"/submissions/{submission_id}/images",
            files=[("files", ("good.mp4", data, "video/mp4")), ("files", (name, body, "video/mp4"))],
        )
        assert response.status_code == 422, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == "clip_unreadable" and name in error["message"]
    assert counts(runtime) == before
