"""service.domain.faces: what the pipeline reports for a face, and how it is serialised."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from service.domain.faces import DetectedFace, FaceRecord, QualityVerdict

LANDMARKS = np.array([[30.0, 40.0], [60.0, 80.0], [45.0, 60.0], [35.0, 90.0], [55.0, 90.0]], np.float32)


def test_inter_eye_distance_is_between_the_first_two_landmarks() -> None:
    face = DetectedFace((10.0, 20.0, 80.0, 100.0), LANDMARKS, 0.9)
    assert face.inter_eye_px == pytest.approx(50.0)  # a 30-40-50 triangle


def test_quality_to_dict_rounds_the_score_and_leaves_the_measures_out() -> None:
    verdict = QualityVerdict(0.123456, False, ("blurred", "small"), {"sharpness": 3.0})
    assert verdict.to_dict() == {"score": 0.1235, "usable": False, "reasons": ["blurred", "small"]}
    assert QualityVerdict(1.0, True, ()).measures == {}


def test_face_record_to_dict_rounds_geometry_and_nests_quality() -> None:
    face = DetectedFace((10.04, 20.06, 80.0, 99.95), LANDMARKS + 0.04, 0.987654)
    quality = QualityVerdict(0.5, True, ())
    record = FaceRecord(face, quality, np.full(4, 0.5, np.float32), "pack")
    assert record.to_dict() == {
        "box": [10.0, 20.1, 80.0, 100.0],
        "landmarks": [[30.0, 40.0], [60.0, 80.0], [45.0, 60.0], [35.0, 90.0], [55.0, 90.0]],
        "det_score": 0.9877,
        "quality": {"score": 0.5, "usable": True, "reasons": []},
    }
    assert "embedding" not in record.to_dict(), "the embedding is never serialised with the face"


def test_the_records_are_frozen() -> None:
    record = FaceRecord(DetectedFace((0, 0, 1, 1), LANDMARKS, 1.0), QualityVerdict(1.0, True, ()), LANDMARKS[0], "p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.pack_id = "other"  # type: ignore[misc]
