"""Access control, the two-person review workflow, the audit trail and retention, on real data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select, update

from service.app import create_app
from service.db.models import (
    AuditEvent,
    Candidate,
    FaceTemplate,
    Job,
    ProbeFace,
    ProbeImage,
    ReviewDecision,
    Submission,
)
from service.domain.faces import COMPARISON_SIZE
from service.domain.roles import Principal, Role
from service.errors import InvalidRequest
from service.runtime import Runtime
from tests.conftest import far_too_small_still, lfw_path
from tests.fixtures import OPERATOR, PASSWORD, USERS, auth


@pytest.fixture(scope="module")
def client(runtime: Runtime, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


def submit(client: TestClient, tokens: dict[str, str], runtime: Runtime, files: list[Path], user: str = "ana") -> int:
    headers = auth(tokens, user)
    response = client.post(
        "/submissions", json={"case_reference": "OP-BELLEVILLE", "purpose": "retail theft"}, headers=headers
    )
    assert response.status_code == 201, response.text
    sid = int(response.json()["id"])
    parts = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
    response = client.post(
        f"/submissions/{sid}/images",
        files=parts,
        headers=headers,
        data={"retailer": "Acme", "store": "Leeds", "incident_reference": "INC-7"},
    )
    assert response.status_code == 202, response.text
    runtime.worker.run_until_empty()
    return sid


def faces_of(client: TestClient, tokens: dict[str, str], sid: int, user: str = "rita") -> list[dict[str, Any]]:
    response = client.get(f"/submissions/{sid}/results", headers=auth(tokens, user))
    assert response.status_code == 200, response.text
    return [face for image in response.json()["images"] for face in image["faces"] if face["searched"]]


def decide(client: TestClient, tokens: dict[str, str], user: str, face_id: int, **body: object) -> Response:
    response: Response = client.post(f"/faces/{face_id}/decisions", json=body, headers=auth(tokens, user))
    return response


def test_sprint_to_confirmed_match_with_two_people(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    sid = submit(client, tokens, runtime, [lfw_path("Hugo_Chavez", 5), lfw_path("Laura_Bush", 5)])
    faces = faces_of(client, tokens, sid)
    hugo = next(f for f in faces if f["candidates"][0]["custody_reference"] == "Hugo_Chavez")
    top = hugo["candidates"][0]
    assert hugo["review"]["state"] == "unreviewed"

    image = client.get(f"/candidates/{top['id']}/image", headers=auth(tokens, "rita"))
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    assert "no-store" in image.headers["cache-control"]

    first = decide(
        client,
        tokens,
        "rita",
        hugo["id"],
        action="review",
        outcome="possible_match",
        candidate_id=top["id"],
        note="same scar, same ears",
    )
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "awaiting_confirmation"
    # A reviewer may not confirm at all; a confirmer may not confirm someone else's... own review.
    assert decide(client, tokens, "rob", hugo["id"], action="confirm").status_code == 403
    confirmed = decide(client, tokens, "cora", hugo["id"], action="confirm", note="agree")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "confirmed"
    # Reversible only by a new, recorded decision.
    assert decide(client, tokens, "rita", hugo["id"], action="review", outcome="no_match").status_code == 409

    report = client.get(f"/submissions/{sid}/report", headers=auth(tokens, "ana")).json()
    assert report["images_supplied"] == 2 and report["images_with_face"] == 2
    assert report["faces_searched"] >= 2 and report["usable_faces"] >= 2
    assert report["faces_with_candidate_above_threshold"] >= 1
    assert report["possible_matches"] == 1 and report["confirmed_matches"] == 1
    assert report["distinct_subjects_confirmed"] == 1

    history = client.get(f"/faces/{hugo['id']}/decisions", headers=auth(tokens, "carl")).json()
    assert [(h["action"], h["username"]) for h in history] == [("review", "rita"), ("confirm", "cora")]

    disclosed = client.post(
        f"/submissions/{sid}/disclosures",
        headers=auth(tokens, "cora"),
        json={"recipient": "DC Smith, Leeds CID", "reason": "investigation"},
    )
    assert disclosed.status_code == 200 and disclosed.json()["leads"][0]["custody_reference"] == "Hugo_Chavez"

    events = client.get("/audit", params={"object_id": str(hugo["id"])}, headers=auth(tokens, "audrey")).json()
    assert [e["details"]["decision"] for e in events if e["action"] == "review_decision"] == ["review", "confirm"]
    everything = client.get("/audit", params={"limit": 5000}, headers=auth(tokens, "audrey")).json()
    actions = {e["action"] for e in everything}
    assert {
        "submission_created",
        "images_uploaded",
        "search",
        "results_viewed",
        "candidate_image_viewed",
        "review_decision",
        "disclosure",
        "gallery_enrolled",
    } <= actions
    search = next(e for e in everything if e["action"] == "search" and e["details"].get("submission_id") == sid)
    assert search["actor"] == "ana" and search["role"] == "analyst"
    for key in ("purpose", "case_reference", "probe_sha256", "pack", "threshold", "candidates_returned"):
        assert key in search["details"], key
    disclosure = next(e for e in everything if e["action"] == "disclosure")
    assert disclosure["details"]["recipient"] == "DC Smith, Leeds CID"
    assert client.get("/audit/verify", headers=auth(tokens, "audrey")).json()["ok"] is True


ALIGNED_VIEWS = ("probe_image_viewed", "candidate_image_viewed")


def test_a_review_page_and_the_api_read_one_face_or_person_alone_and_audit_it_alike(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    sid = submit(client, tokens, runtime, [lfw_path("Colin_Powell", 6), lfw_path("Serena_Williams", 3)])
    results = client.get(f"/submissions/{sid}/results", headers=auth(tokens, "rita")).json()
    face = next(f for image in results["images"] for f in image["faces"] if f["searched"])
    person = next(p for p in results["persons"] if face["id"] in p["faces"])
    cookie = {"Cookie": f"rfr_session={tokens['rita']}"}

    read = client.get(f"/faces/{face['id']}", headers=auth(tokens, "rita"))
    assert read.status_code == 200, read.text
    context = read.json()
    assert (context["submission_id"], context["case_reference"]) == (sid, "OP-BELLEVILLE")
    assert context["face"] == face, "the face reads as it does in the submission's results"
    assert face in context["image"]["faces"] and context["image"]["retailer"] == "Acme"
    page = client.get(f"/ui/review/faces/{face['id']}", headers=cookie)
    assert page.status_code == 200 and face["candidates"][0]["custody_reference"] in page.text

    read = client.get(f"/persons/{person['id']}", headers=auth(tokens, "rita"))
    assert read.status_code == 200, read.text
    assert read.json()["person"] == person
    assert {f["id"] for image in read.json()["images"] for f in image["faces"]} >= set(person["faces"])
    assert client.get(f"/ui/review/persons/{person['id']}", headers=cookie).status_code == 200

    events = client.get("/audit", params={"limit": 5000}, headers=auth(tokens, "audrey")).json()
    mine = [e for e in events if e["details"].get("submission") == sid or e["object_id"] == str(sid)]
    viewed = [(e["action"], e["object_id"], e["actor"]) for e in mine if e["action"].endswith("_viewed")]
    assert viewed.count(("face_viewed", str(face["id"]), "rita")) == 2, "the page writes the API read's event"
    assert viewed.count(("person_viewed", str(person["id"]), "rita")) == 2
    assert [v for v in viewed if v[0] == "results_viewed"] == [("results_viewed", str(sid), "rita")], (
        "opening one face is not a read of the whole submission"
    )
    # The comparison view: both faces aligned into squares of one size, each view audited as such.
    top = face["candidates"][0]
    compare = client.get(f"/ui/review/faces/{face['id']}/compare/{top['id']}", headers=cookie)
    assert (
        compare.status_code == 200 and top["custody_reference"] in compare.text and "between the eyes" in compare.text
    )
    for url in (f"/ui/faces/{face['id']}/aligned", f"/ui/candidates/{top['id']}/aligned"):
        aligned = client.get(url, headers=cookie)
        assert aligned.status_code == 200 and aligned.headers["content-type"] == "image/jpeg", url
        pixels = cv2.imdecode(np.frombuffer(aligned.content, np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.shape == (COMPARISON_SIZE, COMPARISON_SIZE, 3)
    other = next(f for image in results["images"] for f in image["faces"] if f["searched"] and f["id"] != face["id"])
    wrong = client.get(f"/ui/review/faces/{face['id']}/compare/{other['candidates'][0]['id']}", headers=cookie)
    assert wrong.status_code == 404
    with runtime.factory() as session:
        template = session.get(FaceTemplate, top["template_id"])
        assert template is not None and template.landmarks is not None and len(template.landmarks) == 5
        aligned_views = session.scalars(
            select(AuditEvent).where(AuditEvent.actor == "rita", AuditEvent.action.in_(ALIGNED_VIEWS))
        ).all()
    assert {(e.action, e.object_id) for e in aligned_views if e.details.get("aligned")} >= {
        ("probe_image_viewed", str(face["id"])),
        ("candidate_image_viewed", str(top["id"])),
    }
    # Another analyst's face is not found; an auditor reads no results.
    assert client.get(f"/faces/{face['id']}", headers=auth(tokens, "ann")).status_code == 404
    assert client.get(f"/persons/{person['id']}", headers=auth(tokens, "audrey")).status_code == 403
    assert client.get("/faces/2147483647", headers=auth(tokens, "rita")).status_code == 404


def test_the_queue_puts_faces_above_the_threshold_first_with_what_triage_needs(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    sid = submit(client, tokens, runtime, [lfw_path("John_Ashcroft", 2), lfw_path("Colin_Powell", 8)])
    results = client.get(f"/submissions/{sid}/results", headers=auth(tokens, "rita")).json()
    faces = {f["id"]: f for image in results["images"] for f in image["faces"] if f["searched"]}
    queue = client.get("/review/queue", params={"limit": 1000}, headers=auth(tokens, "rita")).json()
    flags = [q["above_threshold"] for q in queue]
    assert flags == sorted(flags, reverse=True), "faces with a candidate above the threshold come first"
    mine = [q for q in queue if q["submission_id"] == sid]
    assert {q["face_id"] for q in mine} == set(faces)
    created = datetime.fromisoformat(results["created_at"])
    for q in mine:
        face = faces[q["face_id"]]
        assert q["best_score"] == max(c["score"] for c in face["candidates"])
        assert q["above_threshold"] == any(c["above_threshold"] for c in face["candidates"])
        assert q["case_reference"] == "OP-BELLEVILLE" and q["threshold"] == face["threshold"]
        assert datetime.fromisoformat(q["retain_until"]) == created + timedelta(days=runtime.settings.retention.days)
    powell = next(q for q in mine if q["above_threshold"])
    assert any(not q["above_threshold"] for q in mine), "John Ashcroft is not enrolled"
    below = client.get(
        "/review/queue", params={"limit": 1000, "above_threshold": False}, headers=auth(tokens, "rita")
    ).json()
    assert (
        below
        and not any(q["above_threshold"] for q in below)
        and powell["face_id"] not in {q["face_id"] for q in below}
    )

    # The Confirmed tab names who confirmed it and the record chosen.
    top = faces[powell["face_id"]]["candidates"][0]
    body = {"action": "review", "outcome": "possible_match", "candidate_id": top["id"]}
    assert decide(client, tokens, "rita", powell["face_id"], **body).status_code == 200
    assert decide(client, tokens, "carl", powell["face_id"], action="confirm").status_code == 200
    confirmed = client.get(
        "/review/queue", params={"state": "confirmed", "limit": 1000}, headers=auth(tokens, "cora")
    ).json()
    entry = next(q for q in confirmed if q["face_id"] == powell["face_id"])
    assert (entry["first_reviewer"], entry["confirmer"]) == ("rita", "carl")
    assert (entry["custody_reference"], entry["subject_id"]) == ("Colin_Powell", top["subject_id"])
    assert entry["retain_until"] is None, "a confirmed match is kept"


def test_nobody_confirms_their_own_review(client: TestClient, runtime: Runtime, tokens: dict[str, str]) -> None:
    sid = submit(client, tokens, runtime, [lfw_path("Ariel_Sharon", 6)])
    face = faces_of(client, tokens, sid)[0]
    assert decide(client, tokens, "cora", face["id"], action="review", outcome="inconclusive").status_code == 200
    refused = decide(client, tokens, "cora", face["id"], action="confirm")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "self_confirmation"
    refused = decide(client, tokens, "cora", face["id"], action="overturn")
    assert refused.status_code == 403
    unexplained = decide(client, tokens, "carl", face["id"], action="overturn", note="  ")
    assert unexplained.status_code == 422 and unexplained.json()["error"]["code"] == "note_required"
    overturned = decide(client, tokens, "carl", face["id"], action="overturn", note="look again")
    assert overturned.status_code == 200 and overturned.json()["state"] == "unreviewed"
    bad = decide(client, tokens, "rita", face["id"], action="review", outcome="possible_match")
    assert bad.status_code == 422, "a possible match names its candidate"
    # A possible match against the score needs its reason; one above the threshold does not.
    below = next(c for c in face["candidates"] if not c["above_threshold"])
    body = {"action": "review", "outcome": "possible_match", "candidate_id": below["id"]}
    refused = decide(client, tokens, "rita", face["id"], **body)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "note_required"
    assert "below the threshold" in refused.json()["error"]["message"]
    explained = decide(client, tokens, "rita", face["id"], **body, note="same tattoo on the left hand")
    assert explained.status_code == 200, explained.text
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(ReviewDecision.probe_face_id == face["id"])) == 3


def test_threshold_override_needs_confirmer_and_reason(client: TestClient, tokens: dict[str, str]) -> None:
    data = lfw_path("Colin_Powell", 7).read_bytes()
    form = {"case_reference": "C-9", "purpose": "lower threshold test", "threshold": "0.2"}
    files = {"file": ("p.jpg", data, "image/jpeg")}
    assert client.post("/search", files=files, data=form, headers=auth(tokens, "ana")).status_code == 403
    no_reason = client.post("/search", files=files, data=form, headers=auth(tokens, "cora"))
    assert no_reason.status_code == 422
    ok = client.post(
        "/search", files=files, data={**form, "override_reason": "wanted for violence"}, headers=auth(tokens, "cora")
    )
    assert ok.status_code == 200 and ok.json()["threshold"] == 0.2
    events = client.get("/audit", params={"action": "threshold_override"}, headers=auth(tokens, "audrey")).json()
    assert events and events[-1]["actor"] == "cora" and events[-1]["details"]["reason"] == "wanted for violence"


def test_login_logout_and_failed_login_are_audited(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    bad = client.post("/auth/login", json={"username": "rita", "password": "wrong password here"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
    good = client.post("/auth/login", json={"username": "rita", "password": PASSWORD})
    assert good.status_code == 200
    token = good.json()["token"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "reviewer"
    assert client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/auth/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    events = client.get("/audit", params={"object_type": "user"}, headers=auth(tokens, "audrey")).json()
    kinds = [e["action"] for e in events]
    assert "login_failed" in kinds and "login" in kinds


def test_disabled_user_is_refused(client: TestClient, runtime: Runtime, tokens: dict[str, str]) -> None:
    operator = Principal("operator:test", Role.ADMIN, via="cli-operator")
    runtime.users.create(operator, "dora", "analyst", PASSWORD)
    token = runtime.users.issue_token(operator, "dora")
    assert client.get("/submissions", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.post("/users/dora/disable", headers=auth(tokens, "adam")).status_code == 204
    assert client.get("/submissions", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/auth/login", json={"username": "dora", "password": PASSWORD}).status_code == 401


# -- every role is refused what it may not do -------------------------------------------------

A, R, C, U, D = "analyst", "reviewer", "confirmer", "auditor", "admin"
READERS = {A, R, C}


def endpoint_table() -> list[tuple[str, str, dict[str, Any], set[str]]]:
    """Every authenticated route, as (method, path template, request kwargs, roles allowed)."""
    still = lfw_path("Al_Gore", 3).read_bytes()
    return [
        ("GET", "/submissions", {}, READERS),
        ("POST", "/submissions", {"json": {"case_reference": "R", "purpose": "roles"}}, {A}),
        ("GET", "/submissions/{submission_id}", {}, READERS),
        ("POST", "/submissions/{submission_id}/images", {"files": [("files", ("x.jpg", b"", "image/jpeg"))]}, {A}),
        ("GET", "/submissions/{submission_id}/results", {}, READERS),
        ("GET", "/submissions/{submission_id}/report", {}, READERS),
        ("POST", "/submissions/{submission_id}/disclosures", {"json": {"recipient": "r", "reason": "t"}}, {R, C}),
        (
            "POST",
            "/search",
            {"files": {"file": ("s.jpg", still, "image/jpeg")}, "data": {"case_reference": "R", "purpose": "roles"}},
            {A, C},
        ),
        (
            "POST",
            "/gallery/enrol",
            {"files": {"file": ("g.jpg", b"", "image/jpeg")}, "data": {"custody_reference": "X"}},
            {D},
        ),
        ("GET", "/gallery/subjects", {}, {R, C, D}),
        ("GET", "/gallery/subjects/{subject_id}", {}, {R, C, D}),
        ("DELETE", "/gallery/subjects/{subject_id}", {}, {D}),
        ("POST", "/faces/{face_id}/decisions", {"json": {"action": "review", "outcome": "bogus"}}, {R, C}),
        ("GET", "/faces/{face_id}/decisions", {}, {R, C}),
        ("GET", "/faces/{face_id}", {}, READERS),
        ("POST", "/faces/{face_id}/search", {"json": {"reason": ""}}, {C}),
        ("GET", "/persons/{person_id}", {}, READERS),
        ("POST", "/persons/{person_id}/decisions", {"json": {"action": "review", "outcome": "bogus"}}, {R, C}),
        ("GET", "/review/queue", {}, {R, C}),
        ("GET", "/probe-images/{image_id}/image", {}, READERS),
        ("GET", "/probe-images/{image_id}/clip", {}, READERS),
        ("GET", "/candidates/{candidate_id}/image", {}, {R, C}),
        ("GET", "/person-candidates/{candidate_id}/image", {}, {R, C}),
        ("GET", "/audit", {}, {U}),
        ("GET", "/audit/verify", {}, {U}),
        ("GET", "/audit/export", {"params": {"recipient": "regulator"}}, {U}),
        ("POST", "/retention/purge", {"params": {"days": 3650}}, {D}),
        ("GET", "/users", {}, {D}),
        ("POST", "/users", {"json": {"username": "zed", "role": "analyst", "password": "weak"}}, {D}),
        ("POST", "/users/{username}/disable", {}, {D}),
        ("POST", "/users/{username}/enable", {}, {D}),
        ("POST", "/users/{username}/reset", {"json": {"password": "weak"}}, {D}),
        ("POST", "/users/{username}/tokens", {}, {D}),
        ("GET", "/auth/me", {}, {A, R, C, U, D}),
        ("GET", "/unknowns", {}, READERS),
        ("GET", "/unknowns/{group_id}", {}, READERS),
        ("POST", "/unknowns/{group_id}/confirm", {"json": {}}, {R, C}),
        ("POST", "/unknowns/{group_id}/split", {"json": {"face_ids": [1]}}, {R, C}),
        ("POST", "/unknowns/merge", {"json": {"group_ids": [999998, 999999]}}, {R, C}),
        ("GET", "/subjects/{subject_id}/appearances", {}, READERS),
        ("GET", "/prolific", {}, READERS),
        ("POST", "/auth/logout", {}, set()),  # checked separately: it ends the caller's own session
    ]


PUBLIC = {("GET", "/health"), ("POST", "/auth/login")}


def test_every_role_is_refused_what_it_may_not_do(client: TestClient, runtime: Runtime, tokens: dict[str, str]) -> None:
    sid = submit(client, tokens, runtime, [lfw_path("Gloria_Macapagal_Arroyo", 6)])
    face = faces_of(client, tokens, sid)[0]
    with runtime.factory() as session:
        image_id = session.scalar(select(ProbeImage.id).where(ProbeImage.submission_id == sid))
    ids = {
        "submission_id": sid,
        "face_id": face["id"],
        "candidate_id": face["candidates"][0]["id"],
        "image_id": int(image_id or 0),
        "subject_id": 999999,
        "username": "nobody-here",
        "group_id": 999999,
        "person_id": client.get(f"/submissions/{sid}/results", headers=auth(tokens, "rita")).json()["persons"][0]["id"],
    }
    table = endpoint_table()
    schema = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert routes - PUBLIC == {(m, p) for m, p, _, _ in table}, "the table covers every route"
    users_by_role = {role.value: name for name, role in reversed(USERS.items())}
    for method, template, kwargs, allowed in table:
        path = template.format(**ids)
        anonymous = client.request(method, path, **kwargs)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        if template == "/auth/logout":
            continue
        for role, user in users_by_role.items():
            response = client.request(method, path, headers=auth(tokens, user), **kwargs)
            if role in allowed:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.status_code)
                assert response.json()["error"]["code"] == "forbidden"
    # An analyst sees only their own submissions.
    assert client.get(f"/submissions/{sid}", headers=auth(tokens, "ann")).status_code == 404
    assert client.get(f"/probe-images/{image_id}/image", headers=auth(tokens, "ann")).status_code == 404
    assert all(s["submitted_by"] == "ann" for s in client.get("/submissions", headers=auth(tokens, "ann")).json())


def test_health_is_public_and_holds_no_personal_data(client: TestClient) -> None:
    body = client.get("/health").json()
    assert set(body) == {"status", "pack_id", "gallery_templates", "index"}


# -- tamper evidence ---------------------------------------------------------------------------


# -- retention ---------------------------------------------------------------------------------


def test_purge_removes_every_trace_of_unconfirmed_probes(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    sid = submit(
        client,
        tokens,
        runtime,
        [lfw_path("Serena_Williams", 7), lfw_path("Hans_Blix", 1), lfw_path("Vladimir_Putin", 4)],
    )
    faces = faces_of(client, tokens, sid)
    serena = next(f for f in faces if f["candidates"][0]["custody_reference"] == "Serena_Williams")
    assert (
        decide(
            client,
            tokens,
            "rob",
            serena["id"],
            action="review",
            outcome="possible_match",
            candidate_id=serena["candidates"][0]["id"],
        ).status_code
        == 200
    )
    assert decide(client, tokens, "carl", serena["id"], action="confirm").status_code == 200
    report = client.get(f"/submissions/{sid}/report", headers=auth(tokens, "ana")).json()
    assert report["images_supplied"] == 3 and report["confirmed_matches"] == 1 and report["purged_at"] is None
    with runtime.factory() as session:
        images = session.execute(select(ProbeImage.id, ProbeImage.sha256).where(ProbeImage.submission_id == sid)).all()
        kept_image = session.scalar(select(ProbeFace.probe_image_id).where(ProbeFace.id == serena["id"]))
        # Age the submission past the retention period.
        session.execute(
            update(Submission).where(Submission.id == sid).values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
        session.commit()
    purged_ids = [i for i, _ in images if i != kept_image]
    purged_digests = [d for i, d in images if i != kept_image]
    # A retention shorter than a day would delete every unreviewed probe: refused, nothing deleted.
    for days in ("1e-300", "0.5", "0", "nan"):
        refused = client.post("/retention/purge", params={"days": days}, headers=auth(tokens, "adam"))
        assert refused.status_code == 422, (days, refused.text)
    with pytest.raises(InvalidRequest):
        runtime.retention.purge(OPERATOR, days=1e-300)
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(ProbeImage.id.in_(purged_ids))) == len(purged_ids)
    stats = client.post("/retention/purge", headers=auth(tokens, "adam")).json()
    assert stats["images_deleted"] >= 2 and stats["images_kept"] >= 1

    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(ProbeImage.id.in_(purged_ids))) == 0
        assert session.scalar(select(func.count()).where(ProbeFace.probe_image_id.in_(purged_ids))) == 0
        assert session.scalar(select(func.count()).where(Job.probe_image_id.in_(purged_ids))) == 0
        orphan_candidates = session.scalar(
            select(func.count()).select_from(Candidate).where(~Candidate.probe_face_id.in_(select(ProbeFace.id)))
        )
        assert orphan_candidates == 0
        remaining = session.scalars(select(ProbeFace).where(ProbeFace.probe_image_id == kept_image)).all()
        assert [f.id for f in remaining] == [serena["id"]], "only the confirmed face survives"
        assert remaining[0].embedding is not None
    for digest in purged_digests:
        assert not runtime.store.exists(digest)
    assert kept_image is not None
    assert runtime.store.exists(images[[i for i, _ in images].index(kept_image)][1])
    event = client.get("/audit", params={"action": "purge"}, headers=auth(tokens, "audrey")).json()[-1]
    assert event["details"]["images_deleted"] == stats["images_deleted"]
    assert "sha256" not in json.dumps(event["details"]), "the trail keeps no image hash of purged probes"
    assert client.get("/audit/verify", headers=auth(tokens, "audrey")).json()["ok"] is True

    # The sprint's report still counts what was supplied and found (counts only; the faces are gone).
    after = client.get(f"/submissions/{sid}/report", headers=auth(tokens, "ana")).json()
    awaiting = {"faces_awaiting_review", "faces_awaiting_confirmation"}
    unchanged = {"purged_at", "images_purged", "faces_purged", "generated_at", "submitted_at"} | awaiting
    assert {k: v for k, v in after.items() if k not in unchanged} == {
        k: v for k, v in report.items() if k not in unchanged
    }
    assert after["images_purged"] == len(purged_ids) and after["faces_purged"] == report["faces"] - 1
    assert after["purged_at"] is not None and after["faces_awaiting_review"] == 0
    # A second purge finds nothing more to delete and changes no figure.
    client.post("/retention/purge", headers=auth(tokens, "adam"))
    again = client.get(f"/submissions/{sid}/report", headers=auth(tokens, "ana")).json()
    changing = {"purged_at", "generated_at"}
    assert {k: v for k, v in again.items() if k not in changing} == {
        k: v for k, v in after.items() if k not in changing
    }


BEYOND_64_BITS = 2**63  # one past the largest version, sequence number or offset the database holds
BEYOND_32_BITS = 2**31  # one past the largest id


def test_ids_and_offsets_beyond_64_bits_are_refused_not_a_500(client: TestClient, tokens: dict[str, str]) -> None:
    users_by_role = {role.value: name for name, role in reversed(USERS.items())}
    checked = 0
    for method, template, kwargs, allowed in endpoint_table():
        if "{" not in template or not allowed:
            continue
        user = users_by_role[sorted(allowed)[0]]
        # Ids are 32-bit INTEGER columns on PostgreSQL: one past that bound is refused too, not a 500.
        for beyond in (BEYOND_32_BITS, BEYOND_64_BITS):
            path = re.sub(r"\{\w+\}", str(beyond), template)
            response = client.request(method, path, headers=auth(tokens, user), **kwargs)
            assert response.status_code in (404, 422), (method, path, response.status_code, response.text[:200])
        checked += 1
    assert checked >= 20
    headers = auth(tokens, "adam")
    for query in ("offset=1e20", f"offset={BEYOND_64_BITS}", "offset=-1"):
        assert client.get(f"/gallery/subjects?{query}", headers=headers).status_code == 422, query
    assert client.get(f"/audit?after_seq={BEYOND_64_BITS}", headers=auth(tokens, "audrey")).status_code == 422
    reviewer = auth(tokens, "rita")
    bodies = [
        ("/unknowns/merge", {"group_ids": [BEYOND_64_BITS, 1]}),
        ("/unknowns/1/split", {"face_ids": [BEYOND_64_BITS]}),
        ("/unknowns/1/confirm", {"expected_version": BEYOND_64_BITS}),
        ("/faces/1/decisions", {"action": "review", "outcome": "possible_match", "candidate_id": BEYOND_64_BITS}),
        ("/faces/1/decisions", {"action": "review", "outcome": "no_match", "expected_version": BEYOND_64_BITS}),
    ]
    for path, body in bodies:
        response = client.post(path, json=body, headers=reviewer)
        assert response.status_code == 422, (path, response.status_code, response.text[:200])


def test_the_audit_trail_pages_filters_by_date_names_its_export_and_tells_web_from_api(
    client: TestClient, runtime: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api.security import csrf_for

    AUDIT_PAGE = 10
    monkeypatch.setattr("service.web.pages.AUDIT_PAGE", AUDIT_PAGE)  # pages of ten: this trail holds several

    # A page sign-in and a page's image load are "web"; the same reads by bearer token are "api".
    form = client.get("/login")
    client.cookies.set("rfr_login_csrf", form.cookies["rfr_login_csrf"])
    signed_in = client.post(
        "/login",
        data={"username": "rita", "password": PASSWORD, "next": "/ui", "csrf": form.cookies["rfr_login_csrf"]},
        follow_redirects=False,
    )
    client.cookies.clear()
    found = re.search(r"rfr_session=([^;]+)", signed_in.headers.get("set-cookie", ""))
    assert signed_in.status_code == 303 and found, signed_in.text
    session = found.group(1)
    sid = submit(client, tokens, runtime, [lfw_path("Laura_Bush", 6)])
    face = faces_of(client, tokens, sid)[0]
    cookie = {"Cookie": f"rfr_session={session}"}
    assert client.get(f"/candidates/{face['candidates'][0]['id']}/image", headers=cookie).status_code == 200
    assert (
        client.get(f"/candidates/{face['candidates'][0]['id']}/image", headers=auth(tokens, "rita")).status_code == 200
    )
    auditor = auth(tokens, "audrey")
    logins = client.get("/audit", params={"action": "login", "user": "rita"}, headers=auditor).json()
    assert logins[-1]["details"]["via"] == "web"
    views = client.get(
        "/audit",
        params={"action": "candidate_image_viewed", "object_id": str(face["candidates"][0]["id"])},
        headers=auditor,
    ).json()
    assert [e["details"]["via"] for e in views] == ["web", "api"]

    # Dates: the API takes times with their zone; none are in the future.
    now = datetime.now(UTC)
    recent = client.get("/audit", params={"since": (now - timedelta(minutes=10)).isoformat()}, headers=auditor)
    assert recent.status_code == 200 and views[-1]["seq"] in {e["seq"] for e in recent.json()}
    future = client.get("/audit", params={"since": (now + timedelta(days=1)).isoformat()}, headers=auditor).json()
    assert future == []
    assert client.get("/audit", params={"since": "2026-01-01T00:00:00"}, headers=auditor).status_code == 422

    # The page: a count of all matching events, and older pages.
    total = len(client.get("/audit", params={"limit": 5000}, headers=auditor).json())
    assert total > 2 * AUDIT_PAGE
    page_cookie = {"Cookie": f"rfr_session={tokens['audrey']}"}
    first = client.get("/ui/audit", headers=page_cookie)
    caption = re.search(
        r'id="audit-count">(\d+) of (\d+) matching event\(s\)[^:]*: events (\d+) back to (\d+)', first.text
    )
    assert caption is not None, first.text[:2000]
    shown, matching, newest, oldest = map(int, caption.groups())
    assert shown == AUDIT_PAGE and matching >= total and newest - oldest == AUDIT_PAGE - 1
    older = client.post(
        "/ui/audit", headers=page_cookie, data={"csrf": csrf_for(tokens["audrey"]), "before_seq": str(oldest)}
    )
    assert older.status_code == 200 and f"events {oldest - 1} back to" in older.text
    today = now.date().isoformat()
    dated = client.post(
        "/ui/audit",
        headers=page_cookie,
        data={"csrf": csrf_for(tokens["audrey"]), "since": today, "until": today, "action": "login"},
    )
    assert dated.status_code == 200 and "rita" in dated.text
    none = client.post(
        "/ui/audit", headers=page_cookie, data={"csrf": csrf_for(tokens["audrey"]), "until": "2001-01-01"}
    )
    assert "No matching event" in none.text

    exported = client.get("/audit/export", params={"recipient": "regulator", "format": "csv"}, headers=auditor)
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == f'attachment; filename="audit-{now:%Y-%m-%d}.csv"'
    assert exported.text.splitlines()[0].startswith("seq,at,actor")


def test_a_confirmation_on_the_pages_needs_the_comparison_of_the_chosen_candidate(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    from service.services.review import ComparisonRequired

    sid = submit(client, tokens, runtime, [lfw_path("Serena_Williams", 5)])
    face = next(f for f in faces_of(client, tokens, sid) if f["candidates"][0]["above_threshold"])
    top = face["candidates"][0]
    body = {"action": "review", "outcome": "possible_match", "candidate_id": top["id"]}
    assert decide(client, tokens, "rita", face["id"], **body).status_code == 200
    carl = runtime.users.authenticate(tokens["carl"], via="web")
    with pytest.raises(ComparisonRequired):
        runtime.review.decide(carl, face["id"], "confirm", require_comparison=True)
    runtime.media.candidate_image(carl, top["id"])  # the custody image alone is not the comparison
    runtime.media.aligned_candidate(runtime.users.authenticate(tokens["cora"]), top["id"])  # nor another's view
    assert not runtime.review.has_compared(carl, face["id"])
    runtime.media.aligned_candidate(carl, top["id"])
    assert runtime.review.has_compared(carl, face["id"])
    assert runtime.review.decide(carl, face["id"], "confirm", require_comparison=True).state == "confirmed"


def test_a_face_the_gate_held_back_is_searched_anyway_only_by_a_confirmer_with_a_reason(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    headers = auth(tokens, "ana")
    sid = client.post(
        "/submissions", json={"case_reference": "OP-TINY", "purpose": "retail theft"}, headers=headers
    ).json()["id"]
    tiny = far_too_small_still("Colin_Powell", 4)
    sent = client.post(
        f"/submissions/{sid}/images", files=[("files", ("tiny.png", tiny, "image/png"))], headers=headers
    )
    assert sent.status_code == 202
    runtime.worker.run_until_empty()
    [face] = [
        f for i in client.get(f"/submissions/{sid}/results", headers=headers).json()["images"] for f in i["faces"]
    ]
    assert not face["searched"] and not face["candidates"] and "far_too_small" in face["quality"]["reasons"]
    # The page says why it was not searched and offers "search anyway" to a confirmer only.
    page = f"/ui/review/faces/{face['id']}"
    as_cora = client.get(page, headers={"Cookie": f"rfr_session={tokens['cora']}"}).text
    as_rita = client.get(page, headers={"Cookie": f"rfr_session={tokens['rita']}"}).text
    assert "Not searched" in as_rita and 'id="search-anyway"' not in as_rita and 'id="btn-possible"' not in as_rita
    assert 'id="search-anyway"' in as_cora
    url = f"/faces/{face['id']}/search"
    for user in ("ana", "rita", "audrey"):
        assert client.post(url, json={"reason": "wanted"}, headers=auth(tokens, user)).status_code == 403, user
    assert client.post(url, json={"reason": ""}, headers=auth(tokens, "cora")).status_code == 422
    searched = client.post(url, json={"reason": "the only image of a violent offender"}, headers=auth(tokens, "cora"))
    assert searched.status_code == 200, searched.text
    assert searched.json()["candidates"] >= 1 and searched.json()["face_id"] == face["id"]
    assert client.post(url, json={"reason": "again"}, headers=auth(tokens, "cora")).status_code == 409
    after = client.get(f"/faces/{face['id']}", headers=auth(tokens, "rita")).json()["face"]
    assert after["searched"] and after["poor_face_override"]
    assert len(after["candidates"]) == searched.json()["candidates"]
    assert [c["rank"] for c in after["candidates"]] == list(range(1, len(after["candidates"]) + 1))
    events = client.get(
        "/audit", params={"action": "search", "object_id": str(face["id"])}, headers=auth(tokens, "audrey")
    ).json()
    assert [e["details"]["override_reason"] for e in events] == ["the only image of a violent offender"]
    assert events[0]["actor"] == "cora" and events[0]["details"]["poor_face_override"] is True
