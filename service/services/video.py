"""Clips of a submission: processed in durable segments, faces tracked, each track's best shots searched.

The worker hands a leased clip to ``ClipProcessor.analyse``:

1. **Segments.** The clip is cut into spans of ``video.segment_s`` seconds of footage. For each span
   not yet stored, its frames are sampled (``service.video.sampling``), and every face in them is
   detected, checked and embedded; then, in one short transaction that first re-checks the job's
   lease (and renews the leases of every job the worker holds), the span's faces are stored as a
   ``ClipSegment``. A crash or restart resumes after the last stored span; a span is never stored
   twice (unique per clip), and its sampling starts afresh at its start, so a resumed clip gives the
   same faces as an uninterrupted one.
2. **Tracks.** Once every span is stored, the faces of all of them are tracked (``service.video.
   tracking``) and each track's best shots chosen (``service.video.shots``); the shots' frames are
   decoded again and stored as stills (JPEG) in the content-addressed store.
3. **Search.** Each shot's face is searched like a still's; each track of several shots is searched
   as a person (the incident's fusion, ``PersonBuilder.search_members``).

The worker stores the shots' faces, the tracks as persons and the clip's status in its one
transaction for the batch, and deletes the clip's segments there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.config import VideoSettings
from service.db.engine import read_session
from service.db.image_store import ImageStore
from service.db.models import ClipSegment, Job
from service.db.vectors import embedding_from_bytes, embedding_to_bytes
from service.domain.faces import DetectedFace, FaceRecord, QualityVerdict
from service.domain.persons import MemberFace
from service.domain.search import FaceOutcome
from service.embeddings.pipeline import FacePipeline
from service.errors import ServiceError
from service.services.persons import PersonBuilder, PersonHit
from service.services.search import GallerySearcher, search_faces
from service.video.clips import frames_at, sampled_frames
from service.video.sampling import FrameSampler
from service.video.shots import best_shots
from service.video.tracking import Observation, TrackingParams, track_faces

log = logging.getLogger(__name__)

SHOT_JPEG_QUALITY = 95


class LeaseLost(ServiceError):
    """Another worker took the clip's job over (this one was too slow, or presumed dead)."""

    code = "lease_lost"
    http_status = 409


@dataclass(frozen=True, slots=True)
class SampledFace:
    """One face in one sampled frame of a clip."""

    time_s: float
    record: FaceRecord


@dataclass(frozen=True, slots=True)
class Shot:
    time_s: float
    frame_sha256: str  # the frame, stored as a still
    outcome: FaceOutcome


@dataclass(frozen=True, slots=True)
class TrackOutcome:
    """One track: its best shots in time order, and its candidates (None: no shot searched).

    A candidate's ``best_face_id`` is the index of its best shot until the shots' faces are stored.
    """

    start_s: float
    end_s: float
    shots: list[Shot]
    hits: list[PersonHit] | None


@dataclass(frozen=True, slots=True)
class ClipOutcome:
    tracks: list[TrackOutcome]

    @property
    def shots(self) -> list[Shot]:
        return [shot for track in self.tracks for shot in track.shots]


@dataclass(frozen=True, slots=True)
class ClipJob:
    """What ``analyse`` needs of a leased clip's job."""

    job_id: int
    image_id: int
    digest: str
    duration_s: float
    search_poor: bool


def segment_count(duration_s: float, segment_s: float) -> int:
    return max(1, math.ceil(duration_s / segment_s - 1e-9))


def tracking_params(video: VideoSettings) -> TrackingParams:
    return TrackingParams(
        lost_s=video.track_lost_s,
        min_iou=video.track_min_iou,
        join_threshold=video.join_threshold,
        join_gap_s=video.join_gap_s,
        split_threshold=video.split_threshold,
    )


def sample_span(
    pipeline: FacePipeline, path: Path, start: float, end: float, video: VideoSettings
) -> tuple[list[SampledFace], int]:
    """Every face of the frames sampled in [start, end) of a clip, and how many frames were sampled."""
    sampler = FrameSampler(video.sample_fps, video.dense_fps, start)
    faces: list[SampledFace] = []
    for t, pixels in sampled_frames(path, start, end, sampler.wants):
        found = pipeline.analyse(pixels, video.min_face_px).faces
        sampler.saw(t, len(found))
        faces.extend(SampledFace(t, record) for record in found)
    return faces, len(sampler.taken)


def tracks_and_shots(sampled: list[SampledFace], video: VideoSettings) -> list[tuple[list[int], list[int]]]:
    """Each track's faces (indices into ``sampled``, in time order) and its best shots (indices too)."""
    observations = [
        Observation(f.time_s, f.record.face.box, f.record.face.det_score, f.record.embedding) for f in sampled
    ]
    chosen = []
    for track in track_faces(observations, tracking_params(video)):
        picks = best_shots(
            [sampled[i].time_s for i in track], [sampled[i].record.quality.score for i in track], video.shots_per_track
        )
        chosen.append((track, [track[i] for i in picks]))
    return chosen


class ClipProcessor:
    def __init__(
        self,
        factory: sessionmaker[Session],
        pipeline: FacePipeline,
        searcher: GallerySearcher,
        persons: PersonBuilder,
        store: ImageStore,
        settings: VideoSettings,
    ) -> None:
        self.factory = factory
        self.pipeline = pipeline
        self.searcher = searcher
        self.persons = persons
        self.store = store
        self.settings = settings

    def analyse(
        self, job: ClipJob, worker: str, lease_seconds: float, on_segment: Callable[[float], object] | None = None
    ) -> ClipOutcome:
        """Every segment not yet stored, then the tracks, their shots and their searches (no transaction
        is held while frames are analysed). Raises ``LeaseLost`` if another worker took the job over.

        ``on_segment`` hears the seconds of footage of each segment as it is stored (or found stored)."""
        path = self.store.path_for(job.digest)
        if not path.is_file():
            raise FileNotFoundError(path)
        stored = self._stored_segments(job.image_id)
        count = segment_count(job.duration_s, self.settings.segment_s)
        for index in range(count):
            start = index * self.settings.segment_s
            end = math.inf if index == count - 1 else (index + 1) * self.settings.segment_s
            if index not in stored:
                faces, frames = sample_span(self.pipeline, path, start, end, self.settings)
                self._store_segment(job, index, start, min(end, job.duration_s), frames, faces, worker, lease_seconds)
                stored[index] = faces
            if on_segment is not None:
                on_segment(round(min(end, job.duration_s) - start, 1))
        sampled = [face for index in sorted(stored) for face in stored[index]]
        return ClipOutcome(tracks=self._tracks(path, sampled, job.search_poor))

    # -- segments ---------------------------------------------------------------------------------
    def _store_segment(
        self,
        job: ClipJob,
        index: int,
        start: float,
        end: float,
        frames: int,
        faces: list[SampledFace],
        worker: str,
        lease_seconds: float,
    ) -> None:
        """The span's faces, in a transaction that first re-checks the clip's lease and renews the worker's."""
        now = datetime.now(UTC)
        try:
            with self.factory() as session, session.begin():
                # Every lease the worker holds (the other stills of its batch wait for this clip), in
                # one statement; the clip's must be among them.
                held = session.scalars(
                    update(Job)
                    .where(Job.worker == worker, Job.status == "running")
                    .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
                    .returning(Job.id)
                ).all()
                if job.job_id not in held:
                    raise LeaseLost(f"job {job.job_id} was taken over by another worker")
                session.add(
                    ClipSegment(
                        probe_image_id=job.image_id,
                        segment=index,
                        start_s=start,
                        end_s=end,
                        frames=frames,
                        faces=[_face_to_json(face) for face in faces],
                        embeddings=b"".join(embedding_to_bytes(face.record.embedding) for face in faces),
                    )
                )
        except IntegrityError as exc:  # another worker stored this span first
            raise LeaseLost(f"segment {index} of image {job.image_id} was stored by another worker") from exc

    def _stored_segments(self, image_id: int) -> dict[int, list[SampledFace]]:
        with read_session(self.factory) as session:
            rows = session.scalars(select(ClipSegment).where(ClipSegment.probe_image_id == image_id)).all()
            pack = self.pipeline.pack_id
            return {row.segment: _faces_from_row(row, pack) for row in rows}

    @staticmethod
    def delete_segments(session: Session, image_ids: list[int]) -> None:
        """A stored clip's segments, in the caller's transaction (the one that stores its tracks)."""
        if image_ids:
            session.execute(delete(ClipSegment).where(ClipSegment.probe_image_id.in_(image_ids)))

    # -- tracks, shots, search ----------------------------------------------------------------------
    def _tracks(self, path: Path, sampled: list[SampledFace], search_poor: bool) -> list[TrackOutcome]:
        chosen = tracks_and_shots(sampled, self.settings)
        frames = frames_at(path, [sampled[i].time_s for _, shots in chosen for i in shots])
        digests = {t: self._put_frame(pixels) for t, pixels in frames.items()}
        # A frame that cannot be read again is left out, and a track left with no shot.
        kept = [(track, [sampled[i] for i in shots if sampled[i].time_s in digests]) for track, shots in chosen]
        kept = [(track, shots) for track, shots in kept if shots]
        # Every shot of every track searched in one look-up, then each track's shots fused.
        searched = iter(
            search_faces(self.searcher, self.pipeline.pack_id, [s.record for _, ss in kept for s in ss], search_poor)
        )
        outcomes = []
        for track, shots in kept:
            found = [next(searched) for _ in shots]
            outcomes.append(
                TrackOutcome(
                    start_s=sampled[track[0]].time_s,
                    end_s=sampled[track[-1]].time_s,
                    shots=[Shot(s.time_s, digests[s.time_s], o) for s, o in zip(shots, found, strict=True)],
                    hits=self._track_hits(found),
                )
            )
        return outcomes

    def _track_hits(self, shots: list[FaceOutcome]) -> list[PersonHit] | None:
        """A track's candidates: its one shot's own, or its searched shots' fused (the best shot by index)."""
        if not any(o.searched for o in shots):
            return None
        if len(shots) == 1:
            return [PersonHit.of_face(hit, 0) for hit in shots[0].candidates]
        members = [
            MemberFace(
                face_id=i,
                image_id=i,
                embedding=o.record.embedding,
                quality_score=o.record.quality.score,
                usable=o.record.quality.usable,
            )
            for i, o in enumerate(shots)
        ]
        return self.persons.search_members(members)

    def _put_frame(self, pixels: NDArray[np.uint8]) -> str:
        import cv2  # the worker's only

        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, SHOT_JPEG_QUALITY])
        if not ok:
            raise ServiceError("a shot could not be encoded as JPEG", code="processing_error")
        return self.store.put(encoded.tobytes())


def _face_to_json(face: SampledFace) -> dict[str, object]:
    record = face.record
    return {
        "time_s": face.time_s,
        "box": [float(v) for v in record.face.box],
        "landmarks": [[float(x), float(y)] for x, y in record.face.landmarks],
        "det_score": float(record.face.det_score),
        "quality": {
            "score": float(record.quality.score),
            "usable": bool(record.quality.usable),
            "reasons": list(record.quality.reasons),
            "measures": {k: float(v) for k, v in record.quality.measures.items()},
        },
    }


def _faces_from_row(row: ClipSegment, pack_id: str) -> list[SampledFace]:
    faces = []
    size = len(row.embeddings) // max(1, len(row.faces))
    for i, item in enumerate(row.faces):
        quality = item["quality"]
        x, y, w, h = item["box"]
        record = FaceRecord(
            face=DetectedFace(
                box=(x, y, w, h),
                landmarks=np.array(item["landmarks"], dtype=np.float32),
                det_score=float(item["det_score"]),
            ),
            quality=QualityVerdict(
                score=float(quality["score"]),
                usable=bool(quality["usable"]),
                reasons=tuple(quality["reasons"]),
                measures=dict(quality["measures"]),
            ),
            embedding=embedding_from_bytes(row.embeddings[i * size : (i + 1) * size]),
            pack_id=pack_id,
        )
        faces.append(SampledFace(float(item["time_s"]), record))
    return faces
