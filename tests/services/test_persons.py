"""Persons within an incident: grouped when the incident's last still is processed, searched as one unit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sqlalchemy import delete, select, update

from service.db.models import AuditEvent, ProbeFace, ProbePerson
from service.db.queries import confirmed_matches
from service.domain.provenance import ProbeProvenance
from service.domain.review import ReviewConflict, SelfConfirmation
from service.domain.roles import Principal, Role
from service.errors import InvalidRequest, NotFound
from service.runtime import Runtime
from service.services.submissions import Upload
from service.services.views import PersonOut, SubmissionResults
from tests.conftest import cctv_still, lfw_bgr, lfw_bytes

ANALYST = Principal(username="pia", role=Role.ANALYST, via="test")


def upload(name: str, n: int, incident: str = "", data: bytes | None = None) -> Upload:
    return Upload(f"{name}_{n}.jpg", data or lfw_bytes(name, n), ProbeProvenance(incident_reference=incident))


def submit(runtime: Runtime, uploads: list[Upload]) -> tuple[int, list[int]]:
    submission_id = runtime.submissions.create(ANALYST, "CASE/P/1", "persons test", search_poor_faces=True)
    ids = runtime.submissions.add_images(ANALYST, submission_id, uploads)
    runtime.worker.run_until_empty()
    return submission_id, ids


def results(runtime: Runtime, submission_id: int) -> SubmissionResults:
    return runtime.submissions.results(ANALYST, submission_id)


def face_ids_of(res: SubmissionResults, file_prefix: str) -> list[int]:
    return [f.id for image in res.images if image.file.startswith(file_prefix) for f in image.faces]


def main_faces(res: SubmissionResults) -> list[int]:
    """Each still's largest face (the LFW still's named person)."""
    return [max(image.faces, key=lambda f: f.box[2] * f.box[3]).id for image in res.images if image.faces]


def person_of(res: SubmissionResults, face_id: int) -> PersonOut:
    return next(p for p in res.persons if face_id in p.faces)


def test_an_incidents_faces_of_one_person_are_one_person_with_a_fused_candidate_list(runtime: Runtime) -> None:
    uploads = [upload("Colin_Powell", n, "INC-7", cctv_still("Colin_Powell", n, 90)) for n in (3, 4, 5, 6)]
    uploads += [upload("Hugo_Chavez", 5, "INC-7"), upload("Serena_Williams", 4)]
    submission_id, _ = submit(runtime, uploads)
    res = results(runtime, submission_id)
    powell = face_ids_of(res, "Colin_Powell")
    assert len(powell) == 4
    person = person_of(res, powell[0])
    assert sorted(person.faces) == sorted(powell), "the four stills of one man are one person"
    assert person.incident_reference == "INC-7" and person.searched and person.fusion == "hybrid"
    assert person.candidates[0].custody_reference == "Colin_Powell"
    assert [c.rank for c in person.candidates] == list(range(1, len(person.candidates) + 1))
    scores = [c.score for c in person.candidates]
    assert scores == sorted(scores, reverse=True)
    assert person.candidates[0].best_face_id in powell
    # The fused score lies between the members' exact scores against the subject; the best is kept.
    per_face = [
        next(c.score for c in f.candidates if c.custody_reference == "Colin_Powell")
        for image in res.images
        for f in image.faces
        if f.id in powell
    ]
    assert min(per_face) - 1e-4 <= person.candidates[0].score <= max(per_face) + 1e-4
    assert person.candidates[0].best_face_score == pytest.approx(max(per_face), abs=1e-4)
    chavez = person_of(res, face_ids_of(res, "Hugo_Chavez")[0])
    assert chavez.faces == face_ids_of(res, "Hugo_Chavez"), "another man of the incident is another person"
    assert chavez.candidates[0].custody_reference == "Hugo_Chavez"
    # A still without an incident reference: each face a person of one, with the face's own candidates.
    serena_face = next(f for image in res.images if image.file.startswith("Serena") for f in image.faces)
    serena = person_of(res, serena_face.id)
    assert serena.faces == [serena_face.id] and serena.incident_reference == ""
    assert [(c.custody_reference, c.score) for c in serena.candidates] == [
        (c.custody_reference, c.score) for c in serena_face.candidates
    ]
    assert len({face for p in res.persons for face in p.faces}) == sum(len(i.faces) for i in res.images)
    with runtime.factory() as session:
        searches = session.scalars(select(AuditEvent).where(AuditEvent.action == "person_search")).all()
        assert any(e.object_id == str(person.id) and e.details["face_ids"] == person.faces for e in searches)


def test_two_faces_of_one_still_are_two_persons(runtime: Runtime) -> None:
    ok, pair = cv2.imencode(".png", np.hstack([lfw_bgr("Colin_Powell", 7), lfw_bgr("Colin_Powell", 8)]))
    assert ok
    submission_id, _ = submit(runtime, [upload("Colin_Powell", 78, "INC-8", pair.tobytes())])
    res = results(runtime, submission_id)
    faces = [f.id for f in res.images[0].faces if f.quality.usable]
    assert len(faces) >= 2
    assert len({person_of(res, f).id for f in faces}) == len(faces)


def test_persons_wait_for_the_incident_and_later_stills_regroup_undecided_persons(runtime: Runtime) -> None:
    submission_id = runtime.submissions.create(ANALYST, "CASE/P/2", "persons test")
    runtime.submissions.add_images(ANALYST, submission_id, [upload("Hugo_Chavez", 6, "INC-9")])
    second = runtime.submissions.add_images(ANALYST, submission_id, [upload("Hugo_Chavez", 7, "INC-9")])
    tickets = runtime.worker.claim(limit=1)
    runtime.worker._store([runtime.worker._analyse(t) for t in tickets])
    assert results(runtime, submission_id).persons == [], "one still of the incident is still queued"
    runtime.worker.run_until_empty()
    res = results(runtime, submission_id)
    first = person_of(res, main_faces(res)[0])
    assert sorted(first.faces) == sorted(main_faces(res))
    runtime.submissions.add_images(ANALYST, submission_id, [upload("Hugo_Chavez", 8, "INC-9")])
    runtime.worker.run_until_empty()
    res = results(runtime, submission_id)
    again = person_of(res, main_faces(res)[0])
    assert len(again.faces) == 3, "the undecided person is rebuilt with the new still"
    assert sorted(again.faces) == sorted(main_faces(res)) and again.id != first.id
    assert second


def test_a_crash_before_the_persons_were_built_is_recovered(runtime: Runtime) -> None:
    submission_id, _ = submit(runtime, [upload("Serena_Williams", n, "INC-10") for n in (5, 6)])
    built = results(runtime, submission_id).persons
    with runtime.factory() as session, session.begin():
        session.execute(update(ProbeFace).where(ProbeFace.person_id.in_([p.id for p in built])).values(person_id=None))
        session.execute(delete(ProbePerson).where(ProbePerson.id.in_([p.id for p in built])))
    assert results(runtime, submission_id).persons == []
    runtime.worker.recover()
    rebuilt = results(runtime, submission_id).persons
    assert [sorted(p.faces) for p in rebuilt] == [sorted(p.faces) for p in built]
    assert [c.custody_reference for c in rebuilt[0].candidates] == [c.custody_reference for c in built[0].candidates]


REVIEWER = Principal(username="rae", role=Role.CONFIRMER, via="test")  # may review and confirm
CONFIRMER = Principal(username="cody", role=Role.CONFIRMER, via="test")


def test_a_person_is_reviewed_as_one_unit_and_its_confirmed_match_confirms_every_member(runtime: Runtime) -> None:
    uploads = [upload("Serena_Williams", n, "INC-11", cctv_still("Serena_Williams", n, 90)) for n in (7, 8, 9)]
    submission_id, _ = submit(runtime, uploads)
    res = results(runtime, submission_id)
    person = person_of(res, main_faces(res)[0])
    assert len(person.faces) == 3
    top = person.candidates[0]
    assert top.custody_reference == "Serena_Williams"
    reviewed = runtime.review.decide_person(
        REVIEWER, person.id, "review", "possible_match", top.id, "same woman", person.review.version
    )
    assert reviewed.state == "awaiting_confirmation" and sorted(d.face_id for d in reviewed.faces) == person.faces
    with pytest.raises(SelfConfirmation):
        runtime.review.decide_person(REVIEWER, person.id, "confirm")
    with pytest.raises(ReviewConflict):
        runtime.review.decide_person(CONFIRMER, person.id, "confirm", expected_version=person.review.version)
    confirmed = runtime.review.decide_person(CONFIRMER, person.id, "confirm", expected_version=reviewed.version)
    assert confirmed.state == "confirmed" and not confirmed.skipped_faces
    res = results(runtime, submission_id)
    members = [f for image in res.images for f in image.faces if f.id in person.faces]
    for face in members:
        assert face.review.state == "confirmed" and face.review.outcome == "possible_match"
        chosen = next(c for c in face.candidates if c.id == face.review.candidate_id)
        assert chosen.custody_reference == "Serena_Williams", "each face records the person's subject"
    assert person_of(res, person.faces[0]).review.state == "confirmed"
    with runtime.factory() as session:
        matched = {face.id for face, *_ in session.execute(confirmed_matches(submission_id=submission_id)).all()}
    assert matched == set(person.faces)
    shown = runtime.media.person_candidate_image(REVIEWER, top.id)
    assert shown.media_type == "image/jpeg" and shown.data == lfw_bytes("Serena_Williams", 1), "the front view"
    with runtime.factory() as session:
        viewed = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "person_candidate")).all()
        assert [e.object_id for e in viewed][-1:] == [str(top.id)] and viewed[-1].actor == REVIEWER.username
    with pytest.raises(InvalidRequest):
        runtime.review.decide_person(CONFIRMER, person.id, "reopen", candidate_id=top.id)
    with pytest.raises(NotFound):
        runtime.review.decide_person(REVIEWER, 10**9, "review", "no_match")
