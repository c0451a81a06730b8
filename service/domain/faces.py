"""What the face pipeline produces for one face in one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


# The comparison view's layout: a probe face and a candidate's, each aligned into a square of this
# many pixels with the eyes level and this far apart, so both are at the same scale and size.
COMPARISON_SIZE = 448
COMPARISON_EYE_PX = 112.0


def eye_distance(landmarks: Any) -> float:
    """Pixels between the two eyes of five landmarks (eye, eye, nose, mouth, mouth)."""
    (x0, y0), (x1, y1) = landmarks[0], landmarks[1]
    return float(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """A detector's output in original-image pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: FloatArray  # (5, 2): eye (image left), eye (image right), nose, mouth left, mouth right
    det_score: float

    @property
    def inter_eye_px(self) -> float:
        return eye_distance(self.landmarks)


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    score: float  # [0, 1]
    usable: bool  # passes the search gate: no reason that makes a search worthless
    reasons: tuple[str, ...]  # every quality flag, gating or not
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def clear(self) -> bool:
        """Free of every quality reason: what enrolment asks of a custody image's front view."""
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "usable": self.usable, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class FaceRecord:
    face: DetectedFace
    quality: QualityVerdict
    embedding: FloatArray  # (dim,), float32, L2-normalised
    pack_id: str

    def to_dict(self) -> dict[str, Any]:
        x, y, w, h = self.face.box
        return {
            "box": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
            "landmarks": [[round(float(px), 1), round(float(py), 1)] for px, py in self.face.landmarks],
            "det_score": round(self.face.det_score, 4),
            "quality": self.quality.to_dict(),
        }
