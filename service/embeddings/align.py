"""Five-point similarity alignment to the 112x112 ArcFace template."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from service.domain.faces import COMPARISON_EYE_PX, COMPARISON_SIZE

# Eye (image left), eye (image right), nose tip, mouth corner (image left), mouth corner (image right).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ALIGNED_SIZE = 112


def similarity_transform(
    landmarks: NDArray[np.float32], template: NDArray[np.float32] = ARCFACE_TEMPLATE
) -> NDArray[np.float64]:
    """The 2x3 least-squares similarity (Umeyama) mapping ``landmarks`` onto ``template``."""
    src = landmarks.astype(np.float64)
    dst = template.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / variance) if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: NDArray[np.uint8], landmarks: NDArray[np.float32]) -> NDArray[np.uint8]:
    matrix = similarity_transform(landmarks)
    aligned = cv2.warpAffine(
        image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(aligned, dtype=np.uint8)


# The ArcFace template laid out for the comparison view: its eyes COMPARISON_EYE_PX apart, centred in
# a COMPARISON_SIZE square (forehead, ears and chin inside the frame).
_EYES = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))
COMPARISON_TEMPLATE = (
    (ARCFACE_TEMPLATE - ALIGNED_SIZE / 2) * (COMPARISON_EYE_PX / _EYES) + COMPARISON_SIZE / 2
).astype(np.float32)
# A face known only by its detector box (a template enrolled before landmarks were kept) is taken to
# be this many eye distances wide: about what the detectors give a frontal face, an approximation.
BOX_WIDTH_PER_EYE_PX = 2.3
GREY = (128, 128, 128)


def comparison_crop(
    image: NDArray[np.uint8], landmarks: NDArray[np.float32] | None, box: tuple[float, float, float, float]
) -> NDArray[np.uint8]:
    """A face for side-by-side comparison, COMPARISON_SIZE pixels square: aligned by its five
    ``landmarks`` (eyes level, COMPARISON_EYE_PX apart) when they are known, else by its ``box`` at
    the same scale, unrotated. What lies beyond the image's edge is padded grey, never cropped into
    the face. Coordinates are in ``image``'s pixels."""
    if landmarks is not None and len(landmarks) == 5:
        matrix = similarity_transform(np.asarray(landmarks, dtype=np.float32), COMPARISON_TEMPLATE)
    else:
        x, y, w, h = box
        scale = BOX_WIDTH_PER_EYE_PX * COMPARISON_EYE_PX / max(w, 1.0)
        centre = np.array([x + w / 2, y + h / 2])
        target = np.array([COMPARISON_SIZE / 2, COMPARISON_SIZE / 2 + 0.12 * COMPARISON_EYE_PX])
        matrix = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
        matrix[:, 2] = target - scale * centre
    crop = cv2.warpAffine(
        image,
        matrix,
        (COMPARISON_SIZE, COMPARISON_SIZE),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=GREY,
    )
    return np.asarray(crop, dtype=np.uint8)
