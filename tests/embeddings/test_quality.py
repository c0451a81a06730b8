"""Quality names what is wrong with a face; the gate stops only the searches it makes worthless."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from service.config import QualitySettings
from service.domain.faces import QualityVerdict
from service.embeddings.pipeline import FacePipeline
from service.embeddings.quality import QualityAssessor, estimate_pose
from tests.conftest import encode, lfw_rgb, main_face


def quality_of(pipeline: FacePipeline, image: Image.Image) -> QualityVerdict:
    faces = pipeline.analyse_bytes(encode(image, "PNG")).faces
    assert faces, "no face found"
    return main_face(faces, image.width, image.height).quality


def test_clear_face_is_usable(pipeline: FacePipeline) -> None:
    verdict = quality_of(pipeline, lfw_rgb("Colin_Powell", 1))
    assert verdict.usable and verdict.clear and verdict.reasons == ()
    assert 0.8 <= verdict.score <= 1.0


def test_blurred_face_says_blurred_and_is_still_searched(pipeline: FacePipeline) -> None:
    blurred = lfw_rgb("Colin_Powell", 1).filter(ImageFilter.GaussianBlur(3))
    verdict = quality_of(pipeline, blurred)
    assert "blurred" in verdict.reasons and not verdict.clear
    assert verdict.usable, "a blurred face still ranks its person near the top: the gate lets it through"
    assert verdict.score < quality_of(pipeline, lfw_rgb("Colin_Powell", 1)).score


def test_small_face_says_too_small_and_only_a_far_too_small_one_is_gated(pipeline: FacePipeline) -> None:
    tiny = lfw_rgb("Serena_Williams", 1).resize((90, 90), Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (400, 400), (128, 128, 128))
    frame.paste(tiny, (150, 150))
    verdict = quality_of(pipeline, frame)
    assert "too_small" in verdict.reasons and "far_too_small" not in verdict.reasons
    assert 8 <= verdict.measures["inter_eye_px"] < 20 and verdict.usable
    image = pipeline.decode(encode(frame, "PNG"))
    face = main_face(pipeline.analyse(image).faces, 400, 400).face
    from service.embeddings.align import align_face

    crop = align_face(image, face.landmarks)
    # The same face with its eyes 6 px apart: below the floor where its person's rank falls to chance.
    centre = face.landmarks.mean(axis=0)
    shrunk = replace(face, landmarks=(centre + (face.landmarks - centre) * 6.0 / face.inter_eye_px).astype(np.float32))
    far = QualityAssessor(QualitySettings()).assess(shrunk, crop)
    assert "far_too_small" in far.reasons and not far.usable


def test_small_sharp_face_is_not_called_blurred(pipeline: FacePipeline) -> None:
    # Upsampled into the 112x112 crop this face reads as blurred (Laplacian variance about 33);
    # judged at its own resolution it is sharp: it is too small, not blurred.
    tiny = lfw_rgb("Colin_Powell", 1).resize((70, 70), Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (400, 400), (128, 128, 128))
    frame.paste(tiny, (150, 150))
    verdict = quality_of(pipeline, frame)
    assert "too_small" in verdict.reasons
    assert "blurred" not in verdict.reasons
    assert verdict.measures["sharpness"] > 100


def test_dark_face_is_underexposed(pipeline: FacePipeline) -> None:
    dark = ImageEnhance.Brightness(lfw_rgb("Jennifer_Capriati", 1)).enhance(0.18)
    verdict = quality_of(pipeline, dark)
    assert "underexposed" in verdict.reasons and not verdict.clear and verdict.usable


def test_gate_is_configurable(pipeline: FacePipeline) -> None:
    image = pipeline.decode(encode(lfw_rgb("Colin_Powell", 1), "PNG"))
    face = pipeline.detect(image)[0]
    from service.embeddings.align import align_face

    crop = align_face(image, face.landmarks)
    flagged = QualityAssessor(QualitySettings(min_inter_eye_px=500.0)).assess(face, crop)
    assert flagged.reasons == ("too_small",) and flagged.usable, "a flag the gate does not list"
    strict = QualityAssessor(QualitySettings(min_inter_eye_px=500.0, gate=["too_small"])).assess(face, crop)
    assert strict.reasons == ("too_small",) and not strict.usable
    floor = QualityAssessor(QualitySettings(search_min_inter_eye_px=500.0)).assess(face, crop)
    assert "far_too_small" in floor.reasons and not floor.usable
    lenient = QualityAssessor(QualitySettings(min_det_score=0.0)).assess(face, crop)
    assert lenient.usable and lenient.clear


def test_pose_estimate_reads_a_turned_head() -> None:
    frontal = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 74.5], [41.5, 92.4], [70.7, 92.2]], np.float32)
    yaw, pitch, roll = estimate_pose(frontal)
    assert abs(yaw) < 5 and abs(pitch) < 8 and abs(roll) < 2
    turned = frontal.copy()
    turned[2, 0] += 15.0  # the nose moves towards one eye
    turned[3:, 0] += 8.0
    yaw_turned, _, _ = estimate_pose(turned)
    assert yaw_turned > 30
    tilted = frontal @ np.array([[0.94, -0.34], [0.34, 0.94]], np.float32).T
    _, _, roll_tilted = estimate_pose(tilted)
    assert abs(roll_tilted) > 15
