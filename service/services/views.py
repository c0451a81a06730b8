"""The services' typed read models: what a use case returns, and what the API and the pages show.

The routers use them as their ``response_model`` (the OpenAPI document), the pages render them and
the CLI prints them as JSON (``model_dump``; times as ISO 8601), so every door shows one shape.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Progress(BaseModel):
    total: int
    queued: int
    processing: int
    done: int
    failed: int
    footage_s: float = Field(default=0.0, description="seconds of footage in the submission's clips")
    footage_done_s: float = Field(default=0.0, description="seconds of that footage processed")


class SubmissionSummary(BaseModel):
    id: int
    case_reference: str
    purpose: str
    submitted_by: str
    search_poor_faces: bool
    pack_id: str
    created_at: datetime
    status: str = Field(description="open | queued | processing | complete")
    progress: Progress


class ImageError(BaseModel):
    code: str | None
    message: str | None


class ClipOut(BaseModel):
    """What the check of a clip found when it was uploaded."""

    container: str = Field(description="mp4 | mkv | avi | mpegts | mpeg")
    codec: str = Field(description="h264 | hevc | mpeg4 | mjpeg")
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int
    done_s: float = Field(default=0.0, description="seconds of footage processed so far")


class ProbeImageStatus(BaseModel):
    id: int
    file: str
    media: str = Field(default="image", description="image (a still) | video (a clip)")
    status: str = Field(description="queued | processing | done | failed")
    error: ImageError | None
    retailer: str
    store: str
    incident_reference: str
    captured_at: datetime | None = Field(description="when the still was taken; a clip's start")
    supplied_by: str
    witness_statement: bool
    camera: str = ""
    clip: ClipOut | None = None


class SubmissionDetail(SubmissionSummary):
    images: list[ProbeImageStatus]


class CandidateOut(BaseModel):
    id: int | None = Field(default=None, description="stored candidate id (submissions only)")
    rank: int
    custody_reference: str
    subject_id: int
    template_id: int | None
    score: float = Field(description="cosine similarity")
    above_threshold: bool = Field(description="score >= the pack's operating threshold")


class Quality(BaseModel):
    score: float
    usable: bool
    reasons: list[str]


class FaceOut(BaseModel):
    face_index: int
    box: list[float] = Field(description="x, y, width, height in image pixels")
    landmarks: list[list[float]]
    det_score: float
    quality: Quality
    searched: bool
    poor_face_override: bool
    candidates: list[CandidateOut]


class ReviewInfo(BaseModel):
    state: str = Field(description="unreviewed | awaiting_confirmation | confirmed")
    version: int = Field(description="send back as expected_version to detect concurrent decisions")
    outcome: str | None
    candidate_id: int | None
    first_reviewer: str | None


class StoredFaceOut(FaceOut):
    id: int
    threshold: float
    review: ReviewInfo
    time_s: float | None = Field(default=None, description="a clip's face: its shot's seconds from the clip's start")
    captured_at: datetime | None = Field(default=None, description="a clip's face: the clip's start plus time_s")


class ProbeImageResult(ProbeImageStatus):
    width: int | None = Field(default=None, description="pixels (none for a file that could not be read)")
    height: int | None = None
    faces: list[StoredFaceOut]


class PersonCandidateOut(BaseModel):
    id: int
    rank: int
    custody_reference: str
    subject_id: int
    score: float = Field(description="the person's fused score (see the person's fusion)")
    above_threshold: bool = Field(description="score >= the person's threshold")
    best_face_id: int | None = Field(description="the member face most like this subject")
    best_face_score: float


class ShotOut(BaseModel):
    time_s: float = Field(description="seconds from the clip's start")
    face: int = Field(description="the shot's face id")
    captured_at: datetime | None = Field(default=None, description="the clip's start plus time_s")


class TrackOut(BaseModel):
    """A person followed through a clip: when in view, and the best shots searched."""

    image_id: int = Field(description="the clip's probe image id")
    file: str
    start_s: float
    end_s: float
    shots: list[ShotOut]


class PersonOut(BaseModel):
    """The faces of one person across an incident's stills (or a clip's track), searched as one unit."""

    id: int
    incident_reference: str = Field(description="empty for a still without one: a person of one face")
    faces: list[int] = Field(description="the member faces' ids")
    searched: bool
    fusion: str = Field(description="max | wmean: how the members' scores are fused")
    threshold: float
    review: ReviewInfo
    candidates: list[PersonCandidateOut]
    track: TrackOut | None = Field(default=None, description="a clip's track: the person is its best shots")


class FaceInContext(BaseModel):
    """One probe face as a reviewer opens it: its still (every face on it) and its stored result."""

    submission_id: int
    case_reference: str
    image: ProbeImageResult
    face: StoredFaceOut


class PersonInContext(BaseModel):
    """One person of an incident (or a clip's track) as a reviewer opens it: the person, and the stills
    (or the clip) its member faces are on, each with every face on it."""

    submission_id: int
    case_reference: str
    person: PersonOut
    images: list[ProbeImageResult] = Field(description="the member faces' stills or clip, in id order")

    def members(self) -> list[tuple[ProbeImageResult, StoredFaceOut]]:
        """Each member face with the still (or clip) it is on."""
        return [(image, face) for image in self.images for face in image.faces if face.id in self.person.faces]


class SubmissionResults(SubmissionSummary):
    images: list[ProbeImageResult]
    persons: list[PersonOut] = Field(
        default_factory=list, description="the faces of each incident grouped into persons, once it is processed"
    )


class SearchResult(BaseModel):
    pack_id: str
    threshold: float
    width: int
    height: int
    faces: list[FaceOut]
    notice: str = "Candidates are investigative leads for a trained reviewer, never identifications."


class StoredSearch(BaseModel):
    """A held-back face searched on override: how many candidates it has now."""

    face_id: int
    candidates: int
    above_threshold: int


class SubjectOut(BaseModel):
    id: int
    custody_reference: str
    source: str
    lawful_basis: str
    conviction_status: str
    under_18: bool
    enrolled_at: datetime
    images: int
    image_ids: list[int] = Field(default_factory=list, description="the custody images' ids")
    views: list[str] = Field(default_factory=list, description="each custody image's view (front, left, ...)")
    image_dates: list[datetime] = Field(default_factory=list, description="when each custody image was enrolled")
    templates: int


class DeletedSubject(BaseModel):
    subject_id: int
    templates: int
    images: int
    files: int


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime


class DecisionOut(BaseModel):
    face_id: int
    decision_id: int
    state: str
    version: int
    outcome: str | None
    candidate_id: int | None


class PersonDecisionOut(BaseModel):
    person_id: int
    state: str
    version: int = Field(description="the person's new review version")
    outcome: str | None
    candidate_id: int | None = Field(description="the person's chosen candidate (a person candidate id)")
    faces: list[DecisionOut] = Field(description="the decision as recorded on each member face")
    skipped_faces: list[int] = Field(description="member faces already decided elsewhere, left as they are")


class DecisionHistoryItem(BaseModel):
    id: int
    action: str
    outcome: str | None
    candidate_id: int | None
    subject_id: int | None
    note: str
    username: str
    role: str
    from_state: str
    to_state: str
    at: datetime


class QueueItem(BaseModel):
    face_id: int
    submission_id: int
    case_reference: str = ""
    file: str
    face_index: int
    state: str
    first_reviewer: str | None
    outcome: str | None
    best_score: float = Field(default=0.0, description="the face's best candidate's score")
    above_threshold: bool = Field(default=False, description="a candidate is at or above the threshold")
    threshold: float = 0.0
    retain_until: datetime | None = Field(
        default=None, description="when the purge removes it unless confirmed (none: confirmed, or no retention)"
    )
    confirmer: str | None = Field(default=None, description="who confirmed it (the Confirmed tab)")
    subject_id: int | None = Field(default=None, description="the first decision's candidate's record")
    custody_reference: str | None = None


# The figures the Met reported for its sprints, in the order a report shows them, with their labels.
SPRINT_FIGURES = (
    ("Images supplied", "images_supplied"),
    ("Images with a face", "images_with_face"),
    ("Usable faces", "usable_faces"),
    ("Faces searched", "faces_searched"),
    ("Faces with a candidate above threshold", "faces_with_candidate_above_threshold"),
    ("Possible matches", "possible_matches"),
    ("Confirmed matches", "confirmed_matches"),
    ("Distinct subjects confirmed", "distinct_subjects_confirmed"),
)

# Where the rest of a sprint's work stands: what failed, what the gate held back, what awaits a
# decision and what was decided other than a match.
WORK_FIGURES = (
    ("Images failed", "images_failed"),
    ("Images still being processed", "images_in_progress"),
    ("Poor faces (below the quality gate)", "poor_faces"),
    ("Faces not searched", "faces_not_searched"),
    ("Searched faces with nothing above the threshold", "faces_with_nothing_above_threshold"),
    ("Faces awaiting a first decision", "faces_awaiting_review"),
    ("Faces awaiting confirmation", "faces_awaiting_confirmation"),
    ("No match", "no_matches"),
    ("Inconclusive", "inconclusive"),
)


class SprintReport(BaseModel):
    submission_id: int
    case_reference: str
    purpose: str = ""
    submitted_by: str = Field("", description="the analyst who submitted the sprint")
    submitted_at: datetime | None = None
    pack_id: str = Field("", description="the model pack its faces were searched with")
    threshold: float | None = Field(None, description="the operating threshold its faces were searched with")
    generated_at: datetime | None = Field(None, description="when this report was produced")
    generated_by: str = Field("", description="who asked for it")
    images_supplied: int
    images_failed: int
    images_with_face: int
    faces: int
    usable_faces: int
    faces_searched: int
    faces_with_candidate_above_threshold: int
    possible_matches: int
    confirmed_matches: int
    distinct_subjects_confirmed: int
    faces_awaiting_review: int
    faces_awaiting_confirmation: int
    images_in_progress: int = Field(0, description="queued or still being processed")
    poor_faces: int = Field(0, description="faces below the quality gate")
    faces_not_searched: int = Field(0, description="poor faces the submission did not override")
    faces_with_nothing_above_threshold: int = Field(0, description="searched faces with no candidate above it")
    no_matches: int = Field(0, description="faces decided no match (first decision or confirmed)")
    inconclusive: int = Field(0, description="faces decided inconclusive (first decision or confirmed)")
    images_purged: int = Field(0, description="of images_supplied: deleted by the retention purge, counted still")
    faces_purged: int = Field(0, description="of faces: deleted by the retention purge, counted still")
    purged_at: datetime | None = Field(None, description="when the retention purge last deleted probes of it")

    def figures(self) -> list[tuple[str, int]]:
        """The headline figures (``SPRINT_FIGURES``) with their values."""
        return [(label, int(getattr(self, key))) for label, key in SPRINT_FIGURES]

    def work(self) -> list[tuple[str, int]]:
        """Where the rest of the work stands (``WORK_FIGURES``) with their values."""
        return [(label, int(getattr(self, key))) for label, key in WORK_FIGURES]

    def purge_note(self) -> str | None:
        """What the retention purge deleted, said once for the page and the CLI (none if nothing was)."""
        if self.purged_at is None:
            return None
        return (
            f"{self.images_purged} image(s) and {self.faces_purged} face(s) without a confirmed match were purged "
            f"under the retention policy (last on {self.purged_at:%Y-%m-%d}); the figures still count them."
        )


class AuditEventOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, object]
    prev_hash: str
    hash: str
    mac: str | None = None


class AuditVerification(BaseModel):
    ok: bool
    events: int
    first_bad_seq: int | None
    problem: str | None
    kind: str | None = None
    anchored_from: int | None = None
    unanchored: int = 0
    checkpoint_seq: int | None = None


class PurgeResult(BaseModel):
    submissions: int
    images_deleted: int
    faces_deleted: int
    images_kept: int
    files_deleted: int
    unknown_faces_removed: int = Field(default=0, description="purged faces that left their unknown groups")
    unknown_groups_deleted: int = Field(default=0, description="unknown groups left empty")
    persons_deleted: int = Field(default=0, description="persons of an incident left without a face")
    orphan_files_deleted: int = Field(
        default=0, description="stored files no record named (an upload that died before its commit)"
    )


class Lead(BaseModel):
    face_id: int
    file: str
    retailer: str
    store: str
    incident_reference: str
    captured_at: datetime | None
    custody_reference: str
    score: float = Field(description="the confirmed candidate's cosine similarity")


class Disclosure(BaseModel):
    submission_id: int
    recipient: str
    notice: str
    leads: list[Lead] = Field(description="the sprint's confirmed matches: investigative leads")
