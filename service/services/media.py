"""Audited image serving (R1): every view of a probe still, a probe face or a custody image is recorded
in the same transaction that reads it, and only for someone allowed to see it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.image_store import ImageStore
from service.db.models import Candidate, CustodyImage, FaceTemplate, PersonCandidate, ProbeFace, ProbeImage
from service.domain.clips import CLIP
from service.domain.roles import Principal
from service.domain.views import FRONT
from service.errors import NotFound
from service.services import audit
from service.services.submissions import Decoder, visible_submission

# How far around a face its review crop reaches, as a fraction of the face box's longer side.
CROP_MARGIN = 0.35

# Leading bytes of the formats a still may be stored in, and their media types.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def media_type(data: bytes) -> str:
    """The image's or clip's media type from its leading bytes (``application/octet-stream`` if unknown)."""
    if data[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}.get(data[8:12], "application/octet-stream")
    if data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    if data[:1] == b"\x47" and data[188:189] == b"\x47":
        return "video/mp2t"
    if data[:4] == b"\x00\x00\x01\xba":
        return "video/mpeg"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), "application/octet-stream")


@dataclass(frozen=True, slots=True)
class ClipFile:
    """A stored clip, served from its file (so a player can ask for byte ranges)."""

    path: Path
    media_type: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    media_type: str

    @classmethod
    def of(cls, data: bytes) -> Media:
        return cls(data, media_type(data))


def _front_view(session: Session, subject_id: int) -> CustodyImage | None:
    """The subject's first front view (its first image if it has none)."""
    return session.scalars(
        select(CustodyImage)
        .where(CustodyImage.subject_id == subject_id)
        .order_by(CustodyImage.view != FRONT, CustodyImage.id)
        .limit(1)
    ).first()


def _jpeg(pixels: NDArray[np.uint8]) -> Media:
    import cv2  # only here: the storage tier's other commands never load OpenCV

    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise NotFound("the face could not be encoded")
    return Media(encoded.tobytes(), "image/jpeg")


def _template_of(session: Session, custody: CustodyImage) -> FaceTemplate | None:
    """The template of a custody image's face (its box and landmarks)."""
    return session.scalars(select(FaceTemplate).where(FaceTemplate.custody_image_id == custody.id).limit(1)).first()


class MediaService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        store: ImageStore,
        decode: Decoder,
        decode_slots: threading.Semaphore | None = None,
    ) -> None:
        self.factory = factory
        self.store = store
        self.decode = decode
        self.decode_slots = decode_slots or threading.Semaphore(1)

    def _probe(self, session: Session, actor: Principal, image_id: int) -> ProbeImage:
        image = session.get(ProbeImage, image_id)
        if image is None:
            raise NotFound(f"probe image {image_id} not found")
        visible_submission(session, actor, image.submission_id)
        if not self.store.exists(image.sha256):
            raise NotFound(f"probe image {image_id} has no stored file")
        return image

    def probe_image(self, actor: Principal, image_id: int) -> Media:
        """The stored still, for someone who may see its submission."""
        with self.factory() as session, session.begin():
            image = self._probe(session, actor, image_id)
            audit.append(
                session, actor, "probe_image_viewed", "probe_image", image_id, submission_id=image.submission_id
            )
            return Media.of(self.store.get(image.sha256))

    def clip(self, actor: Principal, image_id: int, *, record_view: bool = True) -> ClipFile:
        """The stored clip, unchanged, for someone who may see its submission; the view is audited with the
        clip's sha256 (``record_view`` False: a player's later byte range of a view already recorded)."""
        with self.factory() as session, session.begin():
            image = self._probe(session, actor, image_id)
            if image.media != CLIP:
                raise NotFound(f"probe image {image_id} is not a clip")
            if record_view:
                audit.append(
                    session,
                    actor,
                    "probe_clip_viewed",
                    "probe_image",
                    image_id,
                    submission_id=image.submission_id,
                    clip_sha256=image.sha256,
                )
            path = self.store.path_for(image.sha256)
        with path.open("rb") as head:
            return ClipFile(path, media_type(head.read(256)), image.sha256)

    def _face_still(
        self, actor: Principal, face_id: int, *, crop: bool, aligned: bool = False
    ) -> tuple[Path, list[float], list[list[float]]]:
        """The still a probe face is in (a clip's face: its shot), the face's box and landmarks; the view
        is audited."""
        with self.factory() as session, session.begin():
            face = session.get(ProbeFace, face_id)
            if face is None:
                raise NotFound(f"probe face {face_id} not found")
            image = self._probe(session, actor, face.probe_image_id)
            audit.append(
                session,
                actor,
                "probe_image_viewed",
                "probe_face",
                face_id,
                crop=crop,
                probe_image_id=image.id,
                **({"aligned": True} if aligned else {}),
            )
            return self.store.path_for(face.frame_sha256 or image.sha256), list(face.box), list(face.landmarks)

    def face_still(self, actor: Principal, face_id: int) -> Media:
        """The whole still a probe face was found in: the still itself, or a clip's shot (audited)."""
        return Media.of(self._face_still(actor, face_id, crop=False)[0].read_bytes())

    def face_crop(self, actor: Principal, face_id: int) -> Media:
        """A probe face cropped with a margin from its still (a clip's face: its shot), as JPEG (audited
        like the still). A large still is decoded at working size, as it was analysed, and the face's
        box (in the still's own pixels) scaled to it."""
        path, box, _ = self._face_still(actor, face_id, crop=True)
        with self.decode_slots:
            still = self.decode(path)
            pixels = still.pixels
            x, y, w, h = (v * still.scale for v in box)
            margin = CROP_MARGIN * max(w, h)
            x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
            x1 = min(pixels.shape[1], int(x + w + margin))
            y1 = min(pixels.shape[0], int(y + h + margin))
            return _jpeg(pixels[y0:y1, x0:x1])

    def aligned_face(self, actor: Principal, face_id: int) -> Media:
        """A probe face aligned for the comparison view (``comparison_crop``), audited like the still."""
        path, box, landmarks = self._face_still(actor, face_id, crop=True, aligned=True)
        return self._aligned(path, box, landmarks)

    def candidate_image(self, actor: Principal, candidate_id: int) -> Media:
        """The custody image behind a candidate: its template's image, else (a fused template, or one
        deleted) the subject's front view."""
        with self.factory() as session, session.begin():
            custody, _ = self._candidate_custody(session, actor, candidate_id, aligned=False)
            return Media.of(self.store.get(custody.sha256))

    def aligned_candidate(self, actor: Principal, candidate_id: int) -> Media:
        """The face of a candidate's custody image aligned for the comparison view at the probe's scale
        (by its landmarks; by its box for a template enrolled before they were kept), audited."""
        with self.factory() as session, session.begin():
            face = self._face_of(*self._candidate_custody(session, actor, candidate_id, aligned=True))
        return self._aligned(*face)

    def _candidate_custody(
        self, session: Session, actor: Principal, candidate_id: int, *, aligned: bool
    ) -> tuple[CustodyImage, FaceTemplate | None]:
        """A candidate's custody image and that image's template (the view is audited)."""
        candidate = session.get(Candidate, candidate_id)
        if candidate is None:
            raise NotFound(f"candidate {candidate_id} not found")
        custody = None
        if candidate.template_id is not None:
            template = session.get(FaceTemplate, candidate.template_id)
            if template is not None and template.custody_image_id is not None:
                custody = session.get(CustodyImage, template.custody_image_id)
        custody = custody or _front_view(session, candidate.subject_id)
        if custody is None:
            raise NotFound(f"candidate {candidate_id} has no custody image")
        audit.append(
            session,
            actor,
            "candidate_image_viewed",
            "candidate",
            candidate_id,
            subject_id=candidate.subject_id,
            probe_face_id=candidate.probe_face_id,
            **({"aligned": True} if aligned else {}),
        )
        return custody, _template_of(session, custody)

    def _face_of(
        self, custody: CustodyImage, template: FaceTemplate | None
    ) -> tuple[Path, list[float] | None, list[list[float]] | None]:
        """Where a custody image's face is: its file, and its template's box and landmarks (if kept)."""
        box = list(template.box) if template is not None and template.box else None
        landmarks = list(template.landmarks) if template is not None and template.landmarks else None
        return self.store.path_for(custody.sha256), box, landmarks

    def _aligned(self, path: Path, box: list[float] | None, landmarks: list[list[float]] | None) -> Media:
        """The face in the image at ``path`` (box and landmarks in its own pixels) as a comparison crop."""
        from service.embeddings.align import comparison_crop  # only here: the storage tier never loads OpenCV

        with self.decode_slots:
            still = self.decode(path)
            scale = still.scale
            points = np.asarray(landmarks, dtype=np.float32) * scale if landmarks else None
            x, y, w, h = [v * scale for v in box] if box else [0.0, 0.0, float(still.width), float(still.height)]
            return _jpeg(comparison_crop(still.pixels, points, (x, y, w, h)))

    def person_candidate_image(self, actor: Principal, candidate_id: int) -> Media:
        """The front view of the subject a person's candidate names (the view is audited)."""
        with self.factory() as session, session.begin():
            custody, _ = self._person_candidate_custody(session, actor, candidate_id, aligned=False)
            return Media.of(self.store.get(custody.sha256))

    def aligned_person_candidate(self, actor: Principal, candidate_id: int) -> Media:
        """The face of a person's candidate's front view aligned for the comparison view, audited."""
        with self.factory() as session, session.begin():
            face = self._face_of(*self._person_candidate_custody(session, actor, candidate_id, aligned=True))
        return self._aligned(*face)

    def _person_candidate_custody(
        self, session: Session, actor: Principal, candidate_id: int, *, aligned: bool
    ) -> tuple[CustodyImage, FaceTemplate | None]:
        candidate = session.get(PersonCandidate, candidate_id)
        if candidate is None:
            raise NotFound(f"person candidate {candidate_id} not found")
        custody = _front_view(session, candidate.subject_id)
        if custody is None:
            raise NotFound(f"person candidate {candidate_id} has no custody image")
        audit.append(
            session,
            actor,
            "candidate_image_viewed",
            "person_candidate",
            candidate_id,
            subject_id=candidate.subject_id,
            person_id=candidate.person_id,
            **({"aligned": True} if aligned else {}),
        )
        return custody, _template_of(session, custody)

    def custody_image(self, actor: Principal, image_id: int) -> Media:
        with self.factory() as session, session.begin():
            image = session.get(CustodyImage, image_id)
            if image is None:
                raise NotFound(f"custody image {image_id} not found")
            audit.append(session, actor, "custody_image_viewed", "custody_image", image_id, subject_id=image.subject_id)
            return Media.of(self.store.get(image.sha256))
