"""The peer pipeline: what the ``face_recognition`` package does, called on dlib directly.

``face_recognition.face_encodings(image)`` runs dlib's HOG frontal face detector with one
upsampling, the 5-point shape predictor on each box, then the ResNet descriptor with
``num_jitters=1``, on an RGB image decoded with PIL. The model files come from the PyPI package
``face_recognition_models``; dlib from ``dlib-bin`` (prebuilt wheels: the ``face_recognition``
wrapper itself is not installed because it builds dlib from source). Install with
``pip install -e '.[bench]'`` or ``pip install dlib-bin face_recognition_models``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

UPSAMPLE = 1
NUM_JITTERS = 1


@dataclass(frozen=True, slots=True)
class PeerFace:
    box: tuple[float, float, float, float]  # x, y, w, h
    descriptor: NDArray[np.float32]  # (128,), as dlib returns it (not normalised)


class DlibPeer:
    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:  # pragma: no cover - depends on the bench extras
            raise SystemExit(
                "the peer needs dlib and its models: pip install dlib-bin face_recognition_models"
            ) from exc
        self._dlib: Any = dlib
        self.detector = dlib.get_frontal_face_detector()
        models = face_recognition_models
        self.predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    @staticmethod
    def decode(data: bytes) -> NDArray[np.uint8]:
        """RGB uint8, as ``face_recognition.load_image_file`` (PIL, converted to RGB)."""
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def detect(self, rgb: NDArray[np.uint8]) -> list[Any]:
        """dlib rectangles from the HOG detector, upsampled once (``face_locations`` default)."""
        return list(self.detector(rgb, UPSAMPLE))

    def rectangle(self, x: float, y: float, w: float, h: float) -> Any:
        return self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))

    def landmarks(self, rgb: NDArray[np.uint8], rect: Any) -> Any:
        return self.predictor(rgb, rect)

    def describe(self, rgb: NDArray[np.uint8], shape: Any) -> NDArray[np.float32]:
        return np.asarray(self.encoder.compute_face_descriptor(rgb, shape, NUM_JITTERS), dtype=np.float32)

    def analyse(self, rgb: NDArray[np.uint8]) -> list[PeerFace]:
        faces = []
        for rect in self.detect(rgb):
            descriptor = self.describe(rgb, self.landmarks(rgb, rect))
            box = (float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height()))
            faces.append(PeerFace(box=box, descriptor=descriptor))
        return faces

    def analyse_bytes(self, data: bytes) -> list[PeerFace]:
        return self.analyse(self.decode(data))


def rect_box(rect: Any) -> tuple[float, float, float, float]:
    return (float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height()))
