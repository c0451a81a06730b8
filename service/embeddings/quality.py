"""Per-face quality: a score in [0, 1], named reasons, and the gate's verdict: searched or not (R9)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from service.config import QualitySettings
from service.domain.faces import DetectedFace, QualityVerdict

TOO_SMALL = "too_small"
BLURRED = "blurred"
OFF_ANGLE = "off_angle"
LOW_DETECTOR_SCORE = "low_detector_score"
UNDEREXPOSED = "underexposed"
OVEREXPOSED = "overexposed"
LOW_QUALITY_SCORE = "low_quality_score"
# Beyond these a search is worthless (the gate's default reasons, service.config.QualitySettings).
FAR_TOO_SMALL = "far_too_small"
FAR_OFF_ANGLE = "far_off_angle"

# (nose - eye line) / (mouth line - eye line) for a frontal face: the median over LFW faces of
# the detector's landmarks (the ArcFace template's own ratio, 0.495, reads 11 degrees low).
_FRONTAL_PITCH_RATIO = 0.565


def estimate_pose(landmarks: NDArray[np.float32]) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees, estimated from the five landmarks.

    The landmarks are first de-rotated so the eyes are level (roll). Yaw follows the nose's
    sideways offset from the eye midpoint, relative to half the eye distance; pitch follows where
    the nose sits between the eye line and the mouth line, relative to a frontal face.
    """
    lm = landmarks.astype(np.float64)
    left_eye, right_eye = lm[0], lm[1]
    dx, dy = right_eye - left_eye
    roll = math.degrees(math.atan2(dy, dx))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    pts = (lm - lm[:2].mean(axis=0)) @ rot.T
    half_eye = max(np.linalg.norm(right_eye - left_eye) / 2.0, 1e-6)
    nose_pt = pts[2]
    mouth_y = (pts[3, 1] + pts[4, 1]) / 2.0
    mouth_x = (pts[3, 0] + pts[4, 0]) / 2.0
    # Nose and mouth centre both shift sideways when the head turns.
    offset = (nose_pt[0] + 0.5 * mouth_x) / 1.5 / half_eye
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, offset))))
    ratio = nose_pt[1] / mouth_y if abs(mouth_y) > 1e-6 else _FRONTAL_PITCH_RATIO
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (ratio - _FRONTAL_PITCH_RATIO) / 0.35))))
    return yaw, pitch, roll


def _ramp(value: float, bad: float, good: float) -> float:
    """0 at ``bad``, 1 at ``good``, linear between (either direction)."""
    if good == bad:
        return 1.0 if value >= good else 0.0
    return float(min(1.0, max(0.0, (value - bad) / (good - bad))))


# Distance between the eyes in the 112x112 ArcFace template.
TEMPLATE_INTER_EYE_PX = 35.24


def native_sharpness(crop: NDArray[Any], inter_eye_px: float) -> float:
    """Variance of the Laplacian at the face's own resolution.

    A small face is upsampled to fill the aligned crop, which smooths it; measured there, every
    small face would read as blurred and "blurred" would only repeat "too small". So the crop is
    first brought back to the size the face had in the still (never enlarged), and blur is
    judged there.
    """
    scale = min(1.0, max(inter_eye_px, 1.0) / TEMPLATE_INTER_EYE_PX)
    if scale < 1.0:
        size = (max(8, round(crop.shape[1] * scale)), max(8, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


class QualityAssessor:
    def __init__(self, settings: QualitySettings) -> None:
        self.settings = settings

    def assess(self, face: DetectedFace, aligned: NDArray[np.uint8]) -> QualityVerdict:
        cfg = self.settings
        gray = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
        centre = gray[24:104, 20:92]
        sharpness = native_sharpness(centre, face.inter_eye_px)
        brightness = float(centre.mean())
        yaw, pitch, roll = estimate_pose(face.landmarks)
        inter_eye = face.inter_eye_px

        reasons: list[str] = []
        if inter_eye < cfg.min_inter_eye_px:
            reasons.append(TOO_SMALL)
        if sharpness < cfg.min_sharpness:
            reasons.append(BLURRED)
        if abs(yaw) > cfg.max_yaw_deg or abs(pitch) > cfg.max_pitch_deg:
            reasons.append(OFF_ANGLE)
        if face.det_score < cfg.min_det_score:
            reasons.append(LOW_DETECTOR_SCORE)
        if brightness < cfg.min_brightness:
            reasons.append(UNDEREXPOSED)
        if brightness > cfg.max_brightness:
            reasons.append(OVEREXPOSED)
        if inter_eye < cfg.search_min_inter_eye_px:
            reasons.append(FAR_TOO_SMALL)
        if abs(pitch) > cfg.search_max_pitch_deg:
            reasons.append(FAR_OFF_ANGLE)

        factors = (
            _ramp(inter_eye, 0.5 * cfg.min_inter_eye_px, 2.0 * cfg.min_inter_eye_px),
            _ramp(sharpness, 0.25 * cfg.min_sharpness, 3.0 * cfg.min_sharpness),
            _ramp(abs(yaw), 90.0, 0.5 * cfg.max_yaw_deg) * _ramp(abs(pitch), 90.0, 0.5 * cfg.max_pitch_deg),
            _ramp(face.det_score, 0.5 * cfg.min_det_score, 1.0),
            min(
                _ramp(brightness, 0.5 * cfg.min_brightness, 1.5 * cfg.min_brightness),
                _ramp(brightness, 255.0, cfg.max_brightness - 30.0),
            ),
        )
        score = float(np.prod(factors) ** (1.0 / len(factors)))
        if score < cfg.min_score and not reasons:
            reasons.append(LOW_QUALITY_SCORE)
        measures = {
            "inter_eye_px": inter_eye,
            "sharpness": sharpness,
            "brightness": brightness,
            "yaw_deg": yaw,
            "pitch_deg": pitch,
            "roll_deg": roll,
        }
        usable = not set(reasons) & set(cfg.gate)
        return QualityVerdict(score=score, usable=usable, reasons=tuple(reasons), measures=measures)
