"""The face pipeline on real LFW faces with the real bundled model pack."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.embeddings.pipeline import FacePipeline
from tests.conftest import cosine, encode, lfw_bytes, lfw_rgb, main_face

SINGLE_FACE = [
    ("Colin_Powell", 1),
    ("Serena_Williams", 1),
    ("Jennifer_Capriati", 1),
    ("Hugo_Chavez", 2),
    ("Ariel_Sharon", 1),
    ("George_W_Bush", 2),
]


def embedding_of(pipeline: FacePipeline, data: bytes, width: int = 250, height: int = 250) -> np.ndarray:
    faces = pipeline.analyse_bytes(data).faces
    assert faces, "no face found"
    return main_face(faces, width, height).embedding


def test_embeddings_are_unit_float32_tagged_with_pack(pipeline: FacePipeline) -> None:
    faces = pipeline.analyse_bytes(lfw_bytes("Colin_Powell", 1)).faces
    assert len(faces) == 1
    record = faces[0]
    assert record.embedding.dtype == np.float32
    assert record.embedding.shape == (pipeline.manifest.embedding_dim,)
    assert abs(float(np.linalg.norm(record.embedding)) - 1.0) < 1e-5
    assert record.pack_id == "yunet_sface"
    x, y, w, h = record.face.box
    assert 40 < x < 125 and 40 < y < 125 and 60 < w < 160 and 60 < h < 180
    assert record.face.landmarks.shape == (5, 2)
    left_eye, right_eye = record.face.landmarks[0], record.face.landmarks[1]
    assert left_eye[0] < right_eye[0], "landmarks start with the eye on the image's left"
    assert 0.5 < record.face.det_score <= 1.0
    assert record.quality.usable and record.quality.reasons == ()


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [("Colin_Powell", 1, 2), ("Serena_Williams", 1, 3), ("Jennifer_Capriati", 1, 4), ("Hugo_Chavez", 2, 4)],
)
def test_same_person_scores_above_threshold(
    pipeline: FacePipeline, threshold: float, name: str, a: int, b: int
) -> None:
    score = cosine(embedding_of(pipeline, lfw_bytes(name, a)), embedding_of(pipeline, lfw_bytes(name, b)))
    assert score >= threshold, f"{name} {a} vs {b}: {score:.3f} < {threshold}"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("Colin_Powell", 1), ("George_W_Bush", 2)),
        (("Serena_Williams", 1), ("Jennifer_Capriati", 1)),
        (("Hugo_Chavez", 2), ("Ariel_Sharon", 1)),
        (("Gloria_Macapagal_Arroyo", 1), ("Laura_Bush", 1)),
    ],
)
def test_different_people_score_below_threshold(
    pipeline: FacePipeline, threshold: float, first: tuple[str, int], second: tuple[str, int]
) -> None:
    score = cosine(embedding_of(pipeline, lfw_bytes(*first)), embedding_of(pipeline, lfw_bytes(*second)))
    assert score < threshold, f"{first} vs {second}: {score:.3f} >= {threshold}"


def test_full_hd_frame_with_several_faces_finds_every_one(pipeline: FacePipeline) -> None:
    frame = Image.new("RGB", (1920, 1080), (90, 100, 110))
    placed = []
    sizes = [250, 180, 320, 140, 220, 400]
    positions = [(60, 80), (500, 600), (800, 90), (1300, 700), (1600, 150), (1350, 260)]
    positions[5] = (1180, 300)
    for (name, number), size, (x, y) in zip(SINGLE_FACE, sizes, positions, strict=True):
        tile = lfw_rgb(name, number).resize((size, size), Image.Resampling.BICUBIC)
        frame.paste(tile, (x, y))
        placed.append((name, number, x, y, size))
    faces = pipeline.analyse_bytes(encode(frame, "JPEG", quality=92)).faces
    assert len(faces) == len(placed), [f.face.box for f in faces]
    for name, number, x, y, size in placed:
        cx, cy = x + size / 2, y + size / 2
        near = [
            f
            for f in faces
            if abs(f.face.box[0] + f.face.box[2] / 2 - cx) < size * 0.25
            and abs(f.face.box[1] + f.face.box[3] / 2 - cy) < size * 0.3
        ]
        assert len(near) == 1, f"{name} at {(x, y)} found {len(near)} times"
        alone = embedding_of(pipeline, lfw_bytes(name, number))
        assert cosine(near[0].embedding, alone) > 0.8


def test_face_filling_the_whole_image_is_found(pipeline: FacePipeline) -> None:
    # Crop LFW tightly to the face (forehead to chin) and blow it up: no background left.
    face = lfw_rgb("Colin_Powell", 1).crop((78, 70, 172, 190)).resize((470, 600), Image.Resampling.BICUBIC)
    faces = pipeline.analyse_bytes(encode(face, "PNG")).faces
    assert len(faces) == 1
    width = faces[0].face.box[2]
    assert width > 0.6 * 470, "the detected box should span most of the frame"
    reference = embedding_of(pipeline, lfw_bytes("Colin_Powell", 1))
    assert cosine(faces[0].embedding, reference) > 0.7


def test_small_face_in_4k_frame_is_found(pipeline: FacePipeline) -> None:
    # LFW faces have about 42 px between the eyes at 250 px: half size gives about 20 px.
    small = lfw_rgb("Serena_Williams", 1).resize((122, 122), Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (3840, 2160), (120, 115, 110))
    frame.paste(small, (2710, 1490))
    faces = pipeline.analyse_bytes(encode(frame, "PNG")).faces
    assert len(faces) == 1, [f.face.box for f in faces]
    record = faces[0]
    assert 2710 < record.face.box[0] + record.face.box[2] / 2 < 2710 + 122
    assert 15 <= record.face.inter_eye_px <= 26
    assert record.quality.measures["inter_eye_px"] == pytest.approx(record.face.inter_eye_px)


def test_exif_rotated_copy_embeds_like_the_upright_image(pipeline: FacePipeline) -> None:
    upright = lfw_rgb("Jennifer_Capriati", 1)
    # Orientation 6: the stored pixels are rotated 90 degrees anticlockwise; viewers turn them back.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_bytes = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    upright_bytes = encode(upright, "JPEG", quality=95)
    decoded = pipeline.decode(rotated_bytes)
    assert decoded.shape[:2] == (250, 250)
    score = cosine(embedding_of(pipeline, rotated_bytes), embedding_of(pipeline, upright_bytes))
    assert score >= 0.99


def test_batch_embedding_matches_one_at_a_time(pipeline: FacePipeline) -> None:
    from service.embeddings.align import align_face

    crops = []
    for name, number in SINGLE_FACE:
        image = pipeline.decode(lfw_bytes(name, number))
        crops.append(align_face(image, pipeline.detect(image)[0].landmarks))
    together = pipeline.recognizer.embed(crops)
    for i, crop in enumerate(crops):
        alone = pipeline.recognizer.embed([crop])[0]
        assert cosine(together[i], alone) > 0.9999


@pytest.mark.parametrize(("height", "width"), [(250, 250), (1080, 1920), (480, 640), (2160, 3840), (3000, 200)])
def test_trimmed_canvases_keep_the_stride_grid_and_a_margin(pipeline: FacePipeline, height: int, width: int) -> None:
    from service.embeddings.detector import CANVAS_STEP_PX, MIN_MARGIN_PX

    detector = pipeline.detector
    for view in detector.plan_views(height, width):
        full_offset = 0.0 if view.is_tile else round(detector.settings.pad_fraction * max(height, width)) * view.scale
        for offset, canvas, full, content in (
            (view.offset_x, view.canvas_w, detector.canvas_w, round((view.x1 - view.x0) * view.scale)),
            (view.offset_y, view.canvas_h, detector.canvas_h, round((view.y1 - view.y0) * view.scale)),
        ):
            assert canvas % CANVAS_STEP_PX == 0 and canvas <= full
            assert (round(full_offset) - round(offset)) % CANVAS_STEP_PX == 0, "the feature grid moved"
            if canvas < full:
                assert round(offset) >= min(MIN_MARGIN_PX, round(full_offset))
                assert canvas - round(offset) - content >= MIN_MARGIN_PX
            else:
                assert offset == full_offset


def test_trimmed_canvas_finds_the_same_faces_as_the_full_canvas(
    pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [np.asarray(lfw_rgb(name, number))[:, :, ::-1].copy() for name, number in SINGLE_FACE]
    assert all(view.canvas_w < 640 for view in pipeline.detector.plan_views(250, 250))
    trimmed = [pipeline.detect(image) for image in images]
    monkeypatch.setattr(pipeline.detector, "variable_canvas", False)
    assert all(view.canvas_w == 640 for view in pipeline.detector.plan_views(250, 250))
    full = [pipeline.detect(image) for image in images]
    for faces_trimmed, faces_full in zip(trimmed, full, strict=True):
        assert len(faces_trimmed) == len(faces_full)
        for a, b in zip(faces_trimmed, faces_full, strict=True):
            assert np.abs(a.landmarks - b.landmarks).max() < 1.0
            assert abs(a.det_score - b.det_score) < 0.02
