"""A sprint end to end through the HTTP API on a real database, index and model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db.models import Candidate, Job, ProbeFace, ProbeImage, Submission
from service.runtime import Runtime
from tests.conftest import encode, far_too_small_still, lfw_path, lfw_rgb
from tests.fixtures import ENROLLED, NOT_ENROLLED, auth


@pytest.fixture(scope="module")
def client(runtime: Runtime, tokens: dict[str, str]) -> Iterator[TestClient]:
    """A client signed in as the analyst 'ana'."""
    with TestClient(create_app(runtime=runtime), headers=auth(tokens, "ana")) as test_client:
        yield test_client


def upload(client: TestClient, submission_id: int, files: list[Path], **form: str) -> Any:
    parts = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
    response = client.post(f"/submissions/{submission_id}/images", files=parts, data=form)
    assert response.status_code == 202, response.text
    return response.json()


def new_submission(client: TestClient, **extra: object) -> int:
    body = {"case_reference": "CASE/2026/0042", "purpose": "identify shop theft suspects", **extra}
    response = client.post("/submissions", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "open"
    return int(response.json()["id"])


def counts(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.factory() as session:
        images = session.scalar(select(func.count()).select_from(ProbeImage)) or 0
        submissions = session.scalar(select(func.count()).select_from(Submission)) or 0
    files = sum(1 for p in runtime.store.root.rglob("*") if p.is_file()) if runtime.store.root.exists() else 0
    return int(images), int(submissions), files


def main_face(faces: list[dict[str, Any]], width: int = 250) -> dict[str, Any]:
    return min(faces, key=lambda f: abs(f["box"][0] + f["box"][2] / 2 - width / 2))


def test_sprint_ranks_enrolled_people_first_and_strangers_below_threshold(client: TestClient, runtime: Runtime) -> None:
    submission_id = new_submission(client)
    mated = [lfw_path(name, n) for name in ENROLLED[:6] for n in (2, 3)]
    strangers = [lfw_path(name, 1) for name in NOT_ENROLLED]
    provenance = json.dumps(
        {p.name: {"store": f"store-{i}", "incident_reference": f"INC-{i}"} for i, p in enumerate(mated)}
    )
    first = upload(
        client,
        submission_id,
        mated,
        retailer="Acme Stores",
        provenance=provenance,
        captured_at="2026-10-01T14:30:00+00:00",
    )
    second = upload(client, submission_id, strangers, retailer="Bargain Mart")
    assert len(first["image_ids"]) == len(mated) and len(second["image_ids"]) == len(strangers)

    status = client.get(f"/submissions/{submission_id}").json()
    assert status["status"] == "queued" and status["progress"]["queued"] == len(mated) + len(strangers)
    assert runtime.worker.run_until_empty() == len(mated) + len(strangers)
    status = client.get(f"/submissions/{submission_id}").json()
    assert status["status"] == "complete" and status["progress"]["done"] == len(mated) + len(strangers)

    results = client.get(f"/submissions/{submission_id}/results").json()
    by_file = {image["file"]: image for image in results["images"]}
    rank_one = 0
    for path in mated:
        image = by_file[path.name]
        assert image["status"] == "done" and image["retailer"] == "Acme Stores"
        assert image["incident_reference"].startswith("INC-") and image["captured_at"].startswith("2026-10-01")
        face = main_face(image["faces"])
        assert face["searched"] and len(face["candidates"]) <= 20
        ranks = [c["rank"] for c in face["candidates"]]
        assert ranks == list(range(1, len(ranks) + 1))
        subjects = [c["subject_id"] for c in face["candidates"]]
        assert len(subjects) == len(set(subjects)), "a subject appears once per candidate list"
        scores = [c["score"] for c in face["candidates"]]
        assert scores == sorted(scores, reverse=True)
        top = face["candidates"][0]
        rank_one += top["custody_reference"] == path.parent.name
    assert rank_one == len(mated), f"rank-1 hits {rank_one} of {len(mated)}"
    for path in strangers:
        for face in by_file[path.name]["faces"]:
            assert not any(c["above_threshold"] for c in face["candidates"]), path.name


def test_one_off_search_returns_candidates(client: TestClient) -> None:
    data = lfw_path("Serena_Williams", 4).read_bytes()
    form = {"case_reference": "CASE/1", "purpose": "test search"}
    response = client.post("/search", files={"file": ("probe.jpg", data, "image/jpeg")}, data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pack_id"] == "yunet_sface" and 0 < body["threshold"] < 1
    face = body["faces"][0]
    assert face["candidates"][0]["custody_reference"] == "Serena_Williams"
    assert face["candidates"][0]["above_threshold"] is True
    assert "never identifications" in body["notice"]


def test_poor_faces_are_kept_but_not_searched_unless_asked(client: TestClient, runtime: Runtime) -> None:
    from PIL import ImageFilter

    def first_face(name: str, data: bytes, mime: str, override: bool = False) -> dict[str, Any]:
        submission_id = new_submission(client, search_poor_faces=override)
        response = client.post(f"/submissions/{submission_id}/images", files=[("files", (name, data, mime))])
        assert response.status_code == 202
        runtime.worker.run_until_empty()
        face: dict[str, Any] = client.get(f"/submissions/{submission_id}/results").json()["images"][0]["faces"][0]
        return face

    tiny = far_too_small_still("Colin_Powell", 4)
    for override in (False, True):
        face = first_face("tiny.png", tiny, "image/png", override)
        assert face["quality"]["usable"] is False and "far_too_small" in face["quality"]["reasons"]
        assert face["searched"] is override
        assert face["poor_face_override"] is override
        assert bool(face["candidates"]) is override
    # A blurred face is flagged, and searched all the same: its person still ranks near the top.
    blurred = encode(lfw_rgb("Colin_Powell", 4).filter(ImageFilter.GaussianBlur(3.5)), "JPEG")
    face = first_face("blurred.jpg", blurred, "image/jpeg")
    assert face["quality"]["usable"] is True and "blurred" in face["quality"]["reasons"]
    assert face["searched"] is True and face["poor_face_override"] is False and face["candidates"]


def test_bad_uploads_get_typed_errors_and_store_nothing(client: TestClient, runtime: Runtime) -> None:
    submission_id = new_submission(client)
    before = counts(runtime)
    good = lfw_path("Colin_Powell", 5).read_bytes()
    cases = [
        ([("files", ("notes.txt", b"hello, not an image", "text/plain"))], 422, "image_unreadable"),
        ([("files", ("empty.jpg", b"", "image/jpeg"))], 422, "image_unreadable"),
        (
            [("files", ("ok.jpg", good, "image/jpeg")), ("files", ("cut.jpg", good[:2000], "image/jpeg"))],
            422,
            "image_unreadable",
        ),
        (
            [("files", ("huge.jpg", b"\xff" * (runtime.settings.images.max_bytes + 1), "image/jpeg"))],
            413,
            "payload_too_large",
        ),
    ]
    for files, status, code in cases:
        response = client.post(f"/submissions/{submission_id}/images", files=files)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"] and error["request_id"]
    response = client.post("/submissions/999999/images", files=[("files", ("ok.jpg", good, "image/jpeg"))])
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = client.post(
        f"/submissions/{submission_id}/images",
        data={"provenance": "{bad json"},
        files=[("files", ("ok.jpg", good, "image/jpeg"))],
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert counts(runtime) == before, "a bad request stores nothing"


def test_malformed_requests_and_unknown_ids(client: TestClient, runtime: Runtime, tokens: dict[str, str]) -> None:
    before = counts(runtime)
    response = client.post("/submissions", json={"case_reference": "X"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert "purpose" in response.json()["error"]["message"]
    response = client.post("/submissions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    for url, user in (
        ("/submissions/424242", "ana"),
        ("/submissions/424242/results", "ana"),
        ("/gallery/subjects/424242", "adam"),
        ("/nowhere", "ana"),
    ):
        response = client.get(url, headers=auth(tokens, user))
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", url
    assert client.get("/submissions/abc").status_code == 422
    assert counts(runtime) == before


def test_openapi_schema_is_complete(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/submissions",
        "/submissions/{submission_id}",
        "/submissions/{submission_id}/images",
        "/submissions/{submission_id}/results",
        "/search",
        "/gallery/enrol",
        "/gallery/subjects/{subject_id}",
    ):
        assert path in schema["paths"], path
    results = schema["paths"]["/submissions/{submission_id}/results"]["get"]["responses"]
    assert "200" in results and "404" in results
    assert "CandidateOut" in schema["components"]["schemas"]


def test_results_are_stored_once_per_face(runtime: Runtime) -> None:
    with runtime.factory() as session:
        faces = session.execute(select(ProbeFace.probe_image_id, ProbeFace.face_index)).all()
        assert len(faces) == len(set(faces))
        pairs = session.execute(select(Candidate.probe_face_id, Candidate.subject_id)).all()
        assert len(pairs) == len(set(pairs))


def test_the_api_docs_load_nothing_from_outside(client: TestClient) -> None:
    """/docs and /redoc work on a network without internet: every script and stylesheet is the service's own."""
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200, page
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), (page, assets)
        for asset in assets:
            if asset.endswith((".js", ".css")):
                response = client.get(asset)
                assert response.status_code == 200 and len(response.content) > 10_000, asset


def test_the_same_still_sent_twice_is_stored_and_processed_once(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    submission_id = new_submission(client)
    twice, once = lfw_path("Hugo_Chavez", 3), lfw_path("Laura_Bush", 2)
    first = upload(client, submission_id, [twice, once, twice])["image_ids"]
    assert first[0] == first[2] and first[0] != first[1]
    again = upload(client, submission_id, [twice])["image_ids"]
    assert again == [first[0]], "a still already in the submission names the image it is"
    with runtime.factory() as session:
        stored = session.scalar(select(func.count()).where(ProbeImage.submission_id == submission_id))
        jobs = session.scalar(
            select(func.count()).select_from(Job).join(ProbeImage).where(ProbeImage.submission_id == submission_id)
        )
    assert (stored, jobs) == (2, 2)
    runtime.worker.run_until_empty()
    assert client.get(f"/submissions/{submission_id}").json()["progress"]["done"] == 2
    # Another submission may hold the same still: it is its own probe there.
    other = new_submission(client)
    assert upload(client, other, [twice])["image_ids"] != [first[0]]
    events = client.get(
        "/audit",
        params={"action": "images_uploaded", "object_id": str(submission_id)},
        headers=auth(tokens, "audrey"),
    ).json()
    assert [e["details"].get("duplicates") for e in events] == [
        [{"file": twice.name, "image_id": first[0]}],
        [{"file": twice.name, "image_id": first[0]}],
    ]
    assert events[1]["details"]["image_ids"] == []


ZONED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _times(value: Any) -> list[str]:
    """Every string in a JSON document that starts as an ISO 8601 date-time."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _times(v)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    return [value] if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d", value) else []


def test_provenance_is_stored_exactly_and_every_time_comes_back_with_its_zone(
    client: TestClient, runtime: Runtime
) -> None:
    submission_id = new_submission(client)
    first, second = lfw_path("Hugo_Chavez", 4), lfw_path("Laura_Bush", 3)
    later = {"store": "Market Sq", "witness_statement": "yes", "captured_at": "2026-06-01T10:00:00-05:00"}
    upload(
        client,
        submission_id,
        [first, second],
        retailer="Acme Stores",
        store="High St",
        captured_at="2026-06-01T10:00:00+01:00",
        witness_statement="no",
        provenance=json.dumps({second.name: later}),
    )
    runtime.worker.run_until_empty()
    results = client.get(f"/submissions/{submission_id}/results").json()
    by_file = {image["file"]: image for image in results["images"]}
    one, two = by_file[first.name], by_file[second.name]
    assert (one["captured_at"], one["witness_statement"], one["store"]) == ("2026-06-01T09:00:00Z", False, "High St")
    assert (two["captured_at"], two["witness_statement"], two["store"]) == ("2026-06-01T15:00:00Z", True, "Market Sq")
    assert two["retailer"] == "Acme Stores", "the form fields stand where the file's JSON is silent"
    documents = [results, client.get(f"/submissions/{submission_id}").json(), client.get("/submissions").json()]
    times = [t for document in documents for t in _times(document)]
    assert len(times) >= 4 and all(ZONED.match(t) for t in times), [t for t in times if not ZONED.match(t)]

    # Text that is not text, too long, a yes/no that is neither, a time that is a number: a typed
    # 422 naming the field, and nothing stored.
    before = counts(runtime)
    still = [("files", (first.name, first.read_bytes(), "image/jpeg"))]
    cases: list[tuple[dict[str, str], str]] = [
        ({"provenance": json.dumps({first.name: {"store": {"a": 1}}})}, "store must be text, not an object"),
        ({"provenance": json.dumps([{"captured_at": 1780000000}])}, "captured_at must be an ISO 8601 date-time"),
        ({"provenance": json.dumps([{"retailer": "r" * 100_000}])}, "retailer is 100000 characters long"),
        ({"provenance": json.dumps([{"witness_statement": "maybe"}])}, "witness_statement must be yes or no"),
        ({"provenance": json.dumps(["Acme"])}, "must be an object"),
        ({"witness_statement": "maybe"}, "witness_statement must be yes or no"),
        ({"captured_at": "1780000000"}, "captured_at is not an ISO 8601 date"),
        ({"retailer": "r" * 100_000}, "retailer"),
    ]
    for form, message in cases:
        response = client.post(f"/submissions/{submission_id}/images", files=still, data=form)
        assert response.status_code == 422, (form, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and message in error["message"], (form, error)
    assert counts(runtime) == before, "refused provenance stores nothing"
