"""Audited image serving (R1): every view of a probe still, a probe face or a custody image is recorded
in the same transaction that reads it, and only for someone allowed to see it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.image_store import ImageStore
from service.db.models import Candidate, CustodyImage, FaceTemplate, PersonCandidate, ProbeFace, ProbeImage
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
    """The image's media type from its leading bytes (``application/octet-stream`` if unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), "application/octet-stream")


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


class MediaService:
    def __init__(self, factory: sessionmaker[Session], store: ImageStore, decode: Decoder) -> None:
        self.factory = factory
        self.store = store
        self.decode = decode

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

    def face_crop(self, actor: Principal, face_id: int) -> Media:
        """A probe face cropped with a margin from its still, as JPEG (audited like the still)."""
        with self.factory() as session, session.begin():
            face = session.get(ProbeFace, face_id)
            if face is None:
                raise NotFound(f"probe face {face_id} not found")
            image = self._probe(session, actor, face.probe_image_id)
            audit.append(
                session, actor, "probe_image_viewed", "probe_face", face_id, crop=True, probe_image_id=image.id
            )
            data, box = self.store.get(image.sha256), face.box
        import cv2  # only here: the storage tier's other commands never load OpenCV

        pixels = self.decode(data)
        x, y, w, h = box
        margin = CROP_MARGIN * max(w, h)
        x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
        x1 = min(pixels.shape[1], int(x + w + margin))
        y1 = min(pixels.shape[0], int(y + h + margin))
        ok, encoded = cv2.imencode(".jpg", pixels[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise NotFound("face crop could not be produced")
        return Media(encoded.tobytes(), "image/jpeg")

    def candidate_image(self, actor: Principal, candidate_id: int) -> Media:
        """The custody image behind a candidate: its template's image, else (a fused template, or one
        deleted) the subject's front view."""
        with self.factory() as session, session.begin():
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
            )
            return Media.of(self.store.get(custody.sha256))

    def person_candidate_image(self, actor: Principal, candidate_id: int) -> Media:
        """The front view of the subject a person's candidate names (the view is audited)."""
        with self.factory() as session, session.begin():
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
            )
            return Media.of(self.store.get(custody.sha256))

    def custody_image(self, actor: Principal, image_id: int) -> Media:
        with self.factory() as session, session.begin():
            image = session.get(CustodyImage, image_id)
            if image is None:
                raise NotFound(f"custody image {image_id} not found")
            audit.append(session, actor, "custody_image_viewed", "custody_image", image_id, subject_id=image.subject_id)
            return Media.of(self.store.get(image.sha256))
