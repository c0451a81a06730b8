"""The face pipeline: decode, detect, align, assess quality and embed every face in an image."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from service.config import Settings
from service.domain.faces import DetectedFace, FaceRecord
from service.embeddings.align import align_face
from service.embeddings.decode import DecodedStill, decode_still
from service.embeddings.detector import FaceDetector, ScrfdDetector, YuNetDetector
from service.embeddings.landmarks import CenterFaceLandmarks
from service.embeddings.onnx_session import PrepareOptions, build_session, prepare_model
from service.embeddings.packs import PackManifest, load_manifest, resolve_verified
from service.embeddings.quality import QualityAssessor
from service.embeddings.recognizer import FaceRecognizer
from service.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ImageFaces:
    """Every face of one image, in detection order, with its aligned crop for display."""

    faces: list[FaceRecord]
    width: int
    height: int

    def in_still(self, still: DecodedStill) -> ImageFaces:
        """These faces, found in ``still``'s working pixels, in the still's own pixels (boxes and
        landmarks scaled; quality stays as judged at the resolution analysed)."""
        if not still.reduced:
            return ImageFaces(self.faces, still.width, still.height)
        up = 1.0 / still.scale
        faces = [
            replace(
                record,
                face=DetectedFace(
                    box=(
                        record.face.box[0] * up,
                        record.face.box[1] * up,
                        record.face.box[2] * up,
                        record.face.box[3] * up,
                    ),
                    landmarks=(record.face.landmarks * up).astype(np.float32),
                    det_score=record.face.det_score,
                ),
            )
            for record in self.faces
        ]
        return ImageFaces(faces, still.width, still.height)


class FacePipeline:
    """Built once per process: ONNX sessions are created here and reused for every image."""

    def __init__(self, settings: Settings, manifest: PackManifest) -> None:
        self.settings = settings
        self.manifest = manifest
        self.detector = self._build_detector()
        self.landmarks = self._build_landmarks() if settings.detection.refine_landmarks else None
        self.recognizer = self._build_recognizer()
        self.quality = QualityAssessor(settings.quality)

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
        return cls(settings, load_manifest(settings.models_dir, settings.pack))

    @property
    def pack_id(self) -> str:
        return self.manifest.id

    def _build_detector(self) -> FaceDetector:
        model = self.manifest.detector
        path = resolve_verified(model, self.settings.models_dir)
        options = PrepareOptions(dynamic_spatial=model.kind == "yunet")
        prepared = prepare_model(path, model.sha256, self.settings.cache_dir / "models", options)
        session = build_session(prepared, self.settings.runtime)
        if model.kind == "yunet":
            return YuNetDetector(session, model, self.settings.detection)
        if model.kind == "scrfd":
            return ScrfdDetector(session, prepared, model, self.settings.detection)
        raise ConfigurationError(f"unknown detector kind {model.kind!r} in pack {self.manifest.id}")

    def _build_landmarks(self) -> CenterFaceLandmarks | None:
        model = self.manifest.landmarks
        if model is None:
            return None  # the pack's own detector's landmarks are used
        if model.kind != "centerface":
            raise ConfigurationError(f"unknown landmarks kind {model.kind!r} in pack {self.manifest.id}")
        path = resolve_verified(model, self.settings.models_dir)
        prepared = prepare_model(
            path, model.sha256, self.settings.cache_dir / "models", PrepareOptions(dynamic_image=True)
        )
        return CenterFaceLandmarks(build_session(prepared, self.settings.runtime))

    def _build_recognizer(self) -> FaceRecognizer:
        model = self.manifest.recognizer
        if model.kind not in {"sface", "arcface"}:
            raise ConfigurationError(f"unknown recognizer kind {model.kind!r} in pack {self.manifest.id}")
        path = resolve_verified(model, self.settings.models_dir)
        prepared = prepare_model(
            path, model.sha256, self.settings.cache_dir / "models", PrepareOptions(dynamic_batch=True)
        )
        session = build_session(prepared, self.settings.runtime)
        return FaceRecognizer(
            session, model, self.settings.runtime.embed_batch_size, flip=self.settings.recognition.flip
        )

    def decode_still(self, source: bytes | Path) -> DecodedStill:
        """A still's pixels at working size (``ImageSettings.work_max_side``), with its own size."""
        images = self.settings.images
        return decode_still(source, max_pixels=images.max_pixels, max_side=images.work_max_side)

    def decode(self, source: bytes | Path) -> NDArray[np.uint8]:
        """A still's pixels at working size (those of a still no larger: all of it)."""
        return self.decode_still(source).pixels

    def detect(self, image: NDArray[np.uint8], min_face_px: int | None = None) -> list[DetectedFace]:
        """Every face of a decoded BGR image, with refined landmarks when that is on; ``min_face_px``
        overrides the smallest face the detector must find (a clip's frames use the video settings')."""
        detected = self.detector.detect(image, min_face_px)
        return self.landmarks.refine(image, detected) if self.landmarks is not None else detected

    def analyse(self, image: NDArray[np.uint8], min_face_px: int | None = None) -> ImageFaces:
        """Detect, align, assess and embed every face of a decoded BGR image."""
        detected = self.detect(image, min_face_px)
        crops = [align_face(image, face.landmarks) for face in detected]
        embeddings = self.recognizer.embed(crops)
        records = [
            FaceRecord(
                face=face,
                quality=self.quality.assess(face, crop),
                embedding=embeddings[i],
                pack_id=self.manifest.id,
            )
            for i, (face, crop) in enumerate(zip(detected, crops, strict=True))
        ]
        return ImageFaces(faces=records, width=int(image.shape[1]), height=int(image.shape[0]))

    def analyse_still(self, still: DecodedStill) -> ImageFaces:
        """Every face of a decoded still, in the still's own pixels."""
        return self.analyse(still.pixels).in_still(still)

    def analyse_bytes(self, data: bytes | Path) -> ImageFaces:
        return self.analyse_still(self.decode_still(data))
