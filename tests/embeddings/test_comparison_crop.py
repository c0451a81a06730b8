"""The comparison view's aligned crops: eyes level at fixed points, one scale for every face, the frame's
edge padded, never cut into the face; on a real LFW face and on synthetic landmarks."""

from __future__ import annotations

import numpy as np

from service.domain.faces import COMPARISON_EYE_PX, COMPARISON_SIZE, eye_distance
from service.embeddings.align import ARCFACE_TEMPLATE, COMPARISON_TEMPLATE, GREY, comparison_crop
from service.embeddings.pipeline import FacePipeline
from tests.conftest import lfw_bgr, main_face


def dots(size: tuple[int, int], points: np.ndarray) -> np.ndarray:
    image = np.zeros((*size, 3), dtype=np.uint8)
    for x, y in points[:2]:
        cx, cy = round(float(x)), round(float(y))
        image[cy - 1 : cy + 2, cx - 1 : cx + 2] = 255
    return image


def brightest(crop: np.ndarray, near: np.ndarray) -> np.ndarray:
    x, y = (int(v) for v in near)
    window = crop[y - 12 : y + 13, x - 12 : x + 13, 0].astype(float)
    wy, wx = np.unravel_index(np.argmax(window), window.shape)
    return np.array([x - 12 + wx, y - 12 + wy], dtype=float)


def test_a_turned_small_face_lands_with_its_eyes_level_at_the_layouts_points() -> None:
    # A face with its eyes 30 px apart, the head tilted by 20 degrees, its eyes near the frame's top
    # left corner: the template's five points turned, shrunk and moved there.
    angle = np.deg2rad(20)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shrink = 30 / eye_distance(ARCFACE_TEMPLATE)
    landmarks = ((ARCFACE_TEMPLATE - ARCFACE_TEMPLATE[0]) * shrink @ turn.T + [20.0, 15.0]).astype(np.float32)
    crop = comparison_crop(dots((200, 300), landmarks), landmarks, (10.0, 5.0, 40.0, 45.0))
    assert crop.shape == (COMPARISON_SIZE, COMPARISON_SIZE, 3)
    found = [brightest(crop, COMPARISON_TEMPLATE[i]) for i in (0, 1)]
    assert abs(found[0][1] - found[1][1]) <= 3, "the eyes are level"
    assert abs(eye_distance(found) - COMPARISON_EYE_PX) <= 4, "at the layout's scale"
    # The frame ended above and left of the face: that part is padded grey, the face is all there.
    assert (crop[0, 0] == GREY).all() and (crop[5, COMPARISON_SIZE // 2] == GREY).all()


def test_two_real_faces_of_different_sizes_come_out_at_one_scale(pipeline: FacePipeline) -> None:
    image = lfw_bgr("Colin_Powell", 1)
    face = main_face(pipeline.analyse(image).faces).face
    small = image[::2, ::2].copy()  # the same face at half the resolution
    crops = [
        comparison_crop(image, face.landmarks, face.box),
        comparison_crop(small, face.landmarks / 2, tuple(v / 2 for v in face.box)),  # type: ignore[arg-type]
    ]
    sharp, soft = (c.astype(float) for c in crops)
    assert np.abs(sharp - soft).mean() < 25, "the same face, aligned to the same place at the same size"
    assert face.inter_eye_px > 20
    # By the box alone (a template enrolled before landmarks were kept), the face is still centred.
    by_box = comparison_crop(image, None, face.box).astype(float)
    centre = slice(COMPARISON_SIZE // 4, 3 * COMPARISON_SIZE // 4)
    assert np.abs(by_box[centre, centre] - sharp[centre, centre]).mean() < 60
