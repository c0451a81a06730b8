"""Five-point similarity alignment to the 112x112 ArcFace template."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

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


def similarity_transform(landmarks: NDArray[np.float32]) -> NDArray[np.float64]:
    """The 2x3 least-squares similarity (Umeyama) mapping ``landmarks`` onto the template."""
    src = landmarks.astype(np.float64)
    dst = ARCFACE_TEMPLATE.astype(np.float64)
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
