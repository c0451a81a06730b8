"""Face detectors that find every face in a frame, from a face filling it to a small face in 4K.

The networks are built for a square canvas (640x640 for YuNet and SCRFD). ``FaceDetector`` plans
the views of a frame that together cover every face size:

* the whole frame, padded on every side (so a face that fills the frame still has context)
  and scaled into the canvas;
* when that scaling would shrink the smallest face we must find (``min_face_px``) below what the
  network resolves, overlapping tiles of the frame at a finer scale.

Detections from all views are mapped back to frame pixels and merged with non-maximum
suppression; a tile's detections cut by the tile's inner border are dropped (another view holds
that face whole).

YuNet is fully convolutional, so a view whose scaled content leaves much of the canvas empty (a
250x250 still, a 16:9 frame) runs on a smaller canvas: the empty margin is trimmed in steps of the
network's coarsest stride (32 px), which leaves the feature grid aligned as on the full canvas,
and at least ``MIN_MARGIN_PX`` stays on every trimmed side (less context changes the scores of
faces cut by the frame's edge). On 300 LFW stills (576x576 instead of 640x640) this moves
landmarks by at most 0.7 px (median 0) and cuts the network's time by ~18%.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from service.config import DetectionSettings
from service.domain.faces import DetectedFace
from service.embeddings.packs import ModelFile

# Box side, in canvas pixels, below which the networks stop finding faces reliably.
NETWORK_MIN_FACE_PX = 20.0
TILE_OVERLAP = 0.3
# Trimming a variable-size canvas: the networks' coarsest stride and the margin kept around content.
CANVAS_STEP_PX = 32
MIN_MARGIN_PX = 64


@dataclass(frozen=True, slots=True)
class View:
    """A region of the frame drawn into the canvas: canvas = (frame - origin) * scale + offset."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float
    offset_x: float
    offset_y: float
    is_tile: bool
    canvas_w: int
    canvas_h: int


@dataclass(frozen=True, slots=True)
class RawDetections:
    boxes: NDArray[np.float32]  # (N, 4) x1, y1, x2, y2 in canvas pixels
    landmarks: NDArray[np.float32]  # (N, 5, 2) canvas pixels
    scores: NDArray[np.float32]  # (N,)


def nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression on x1, y1, x2, y2 boxes; indices kept, best first."""
    order = np.argsort(-scores)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        # Also suppress a box mostly inside a better one (a partial face from a tile).
        contained = inter / np.maximum(np.minimum(areas[i], areas[rest]), 1e-9)
        order = rest[(iou <= iou_threshold) & (contained <= 0.8)]
    return keep


def _trim_axis(offset: float, content: int, full: int) -> tuple[float, int]:
    """Offset and canvas length along one axis once the empty margin is trimmed (see module doc)."""
    start = round(offset)
    cut = CANVAS_STEP_PX * max(0, (start - MIN_MARGIN_PX) // CANVAS_STEP_PX)
    length = math.ceil((start - cut + content + MIN_MARGIN_PX) / CANVAS_STEP_PX) * CANVAS_STEP_PX
    if length >= full:
        return offset, full
    return offset - cut, length


class FaceDetector(ABC):
    """Multi-view detection around a network built for one canvas size."""

    # Whether the network runs on any canvas whose sides are multiples of ``CANVAS_STEP_PX``.
    variable_canvas = False

    def __init__(self, model: ModelFile, settings: DetectionSettings) -> None:
        self.model = model
        self.settings = settings
        self.canvas_w, self.canvas_h = model.input_size

    @abstractmethod
    def _detect_canvas(self, canvas: NDArray[np.uint8]) -> RawDetections:
        """Run the network on one canvas (BGR uint8, canvas size) and decode its outputs."""

    def plan_views(self, height: int, width: int, min_face_px: int | None = None) -> list[View]:
        """The whole frame on one canvas, and tiles if faces of ``min_face_px`` (default: the
        settings') would be too small there for the network."""
        smallest = min_face_px or self.settings.min_face_px
        pad = round(self.settings.pad_fraction * max(height, width))
        scale = min(self.canvas_w / (width + 2 * pad), self.canvas_h / (height + 2 * pad))
        views = [self._view(0, 0, width, height, scale, pad * scale, is_tile=False)]
        if smallest * scale >= NETWORK_MIN_FACE_PX:
            return views
        tile_scale = min(1.0, NETWORK_MIN_FACE_PX * 1.25 / smallest)
        tile_w = min(width, int(self.canvas_w / tile_scale))
        tile_h = min(height, int(self.canvas_h / tile_scale))
        for y0 in self._starts(height, tile_h):
            for x0 in self._starts(width, tile_w):
                views.append(self._view(x0, y0, x0 + tile_w, y0 + tile_h, tile_scale, 0.0, is_tile=True))
        return views

    def _view(self, x0: int, y0: int, x1: int, y1: int, scale: float, offset: float, *, is_tile: bool) -> View:
        """The view of a frame region at ``scale`` and ``offset``, on a trimmed canvas if the network allows."""
        offset_x, canvas_w = offset, self.canvas_w
        offset_y, canvas_h = offset, self.canvas_h
        if self.variable_canvas:
            offset_x, canvas_w = _trim_axis(offset, self._scaled(x1 - x0, scale, self.canvas_w), self.canvas_w)
            offset_y, canvas_h = _trim_axis(offset, self._scaled(y1 - y0, scale, self.canvas_h), self.canvas_h)
        return View(x0, y0, x1, y1, scale, offset_x, offset_y, is_tile, canvas_w, canvas_h)

    @staticmethod
    def _scaled(length: int, scale: float, limit: int) -> int:
        return max(1, min(limit, round(length * scale)))

    @staticmethod
    def _starts(length: int, tile: int) -> list[int]:
        if tile >= length:
            return [0]
        stride = max(1, int(tile * (1.0 - TILE_OVERLAP)))
        count = math.ceil((length - tile) / stride) + 1
        return [min(i * stride, length - tile) for i in range(count)]

    def _render(self, image: NDArray[np.uint8], view: View) -> NDArray[np.uint8]:
        canvas = np.zeros((view.canvas_h, view.canvas_w, 3), dtype=np.uint8)
        region = image[view.y0 : view.y1, view.x0 : view.x1]
        new_w = self._scaled(view.x1 - view.x0, view.scale, self.canvas_w)
        new_h = self._scaled(view.y1 - view.y0, view.scale, self.canvas_h)
        interp = cv2.INTER_AREA if view.scale < 1.0 else cv2.INTER_LINEAR
        resized = cv2.resize(region, (new_w, new_h), interpolation=interp)
        ox, oy = round(view.offset_x), round(view.offset_y)
        h = min(new_h, view.canvas_h - oy)
        w = min(new_w, view.canvas_w - ox)
        canvas[oy : oy + h, ox : ox + w] = resized[:h, :w]
        return canvas

    def detect(self, image: NDArray[np.uint8], min_face_px: int | None = None) -> list[DetectedFace]:
        height, width = image.shape[:2]
        all_boxes: list[NDArray[np.float32]] = []
        all_landmarks: list[NDArray[np.float32]] = []
        all_scores: list[NDArray[np.float32]] = []
        for view in self.plan_views(height, width, min_face_px):
            raw = self._detect_canvas(self._render(image, view))
            if raw.scores.size == 0:
                continue
            ox, oy = round(view.offset_x), round(view.offset_y)
            boxes = raw.boxes.copy()
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - ox) / view.scale + view.x0
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - oy) / view.scale + view.y0
            landmarks = raw.landmarks.copy()
            landmarks[:, :, 0] = (landmarks[:, :, 0] - ox) / view.scale + view.x0
            landmarks[:, :, 1] = (landmarks[:, :, 1] - oy) / view.scale + view.y0
            keep = np.ones(len(boxes), dtype=bool)
            if view.is_tile:
                margin = 2.0 / view.scale
                inner_left = view.x0 > 0
                inner_top = view.y0 > 0
                inner_right = view.x1 < width
                inner_bottom = view.y1 < height
                keep &= ~(inner_left & (boxes[:, 0] <= view.x0 + margin))
                keep &= ~(inner_top & (boxes[:, 1] <= view.y0 + margin))
                keep &= ~(inner_right & (boxes[:, 2] >= view.x1 - margin))
                keep &= ~(inner_bottom & (boxes[:, 3] >= view.y1 - margin))
            all_boxes.append(boxes[keep])
            all_landmarks.append(landmarks[keep])
            all_scores.append(raw.scores[keep])
        if not all_boxes:
            return []
        boxes = np.concatenate(all_boxes)
        landmarks = np.concatenate(all_landmarks)
        scores = np.concatenate(all_scores)
        faces = []
        for i in nms(boxes, scores, self.settings.nms_iou):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(width), x2), min(float(height), y2)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            faces.append(
                DetectedFace(
                    box=(x1, y1, x2 - x1, y2 - y1),
                    landmarks=landmarks[i].astype(np.float32),
                    det_score=float(scores[i]),
                )
            )
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces


class YuNetDetector(FaceDetector):
    """OpenCV Zoo YuNet (2023mar): anchor-free, strides 8/16/32, five landmarks, BGR 0-255 input."""

    STRIDES = (8, 16, 32)
    variable_canvas = True

    def __init__(self, session: ort.InferenceSession, model: ModelFile, settings: DetectionSettings) -> None:
        super().__init__(model, settings)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self._grids: dict[tuple[int, int, int], tuple[NDArray[np.float32], NDArray[np.float32]]] = {}

    def _grid(self, stride: int, canvas_w: int, canvas_h: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Column and row of every cell of one stride's output grid, row-major."""
        key = (stride, canvas_w, canvas_h)
        if key not in self._grids:
            cols, rows = canvas_w // stride, canvas_h // stride
            ys, xs = np.divmod(np.arange(rows * cols, dtype=np.float32), cols)
            self._grids[key] = (xs, ys)
        return self._grids[key]

    def blob(self, canvas: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The network's input: 1x3xHxW float32, 0-255, in the pack's colour order."""
        swap = self.model.colour_order == "RGB"
        return np.asarray(cv2.dnn.blobFromImage(canvas, swapRB=swap), dtype=np.float32)

    def _detect_canvas(self, canvas: NDArray[np.uint8]) -> RawDetections:
        canvas_h, canvas_w = canvas.shape[:2]
        results = self.session.run(None, {self.input_name: self.blob(canvas)})
        outputs = dict(zip(self.output_names, results, strict=True))
        boxes, landmarks, scores = [], [], []
        for stride in self.STRIDES:
            cls = outputs[f"cls_{stride}"][0, :, 0]
            obj = outputs[f"obj_{stride}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.nonzero(score >= self.settings.min_score)[0]
            if idx.size == 0:
                continue
            xs, ys = self._grid(stride, canvas_w, canvas_h)
            bbox = outputs[f"bbox_{stride}"][0, idx]
            kps = outputs[f"kps_{stride}"][0, idx].reshape(-1, 5, 2)
            cx = (xs[idx] + bbox[:, 0]) * stride
            cy = (ys[idx] + bbox[:, 1]) * stride
            w = np.exp(bbox[:, 2]) * stride
            h = np.exp(bbox[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
            lm = np.empty_like(kps)
            lm[:, :, 0] = (kps[:, :, 0] + xs[idx, None]) * stride
            lm[:, :, 1] = (kps[:, :, 1] + ys[idx, None]) * stride
            landmarks.append(lm)
            scores.append(score[idx])
        if not boxes:
            empty = np.zeros((0,), np.float32)
            return RawDetections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), empty)
        b, lm_all, s = np.concatenate(boxes), np.concatenate(landmarks), np.concatenate(scores)
        keep = nms(b, s, self.settings.nms_iou)
        return RawDetections(b[keep].astype(np.float32), lm_all[keep].astype(np.float32), s[keep].astype(np.float32))


class ScrfdDetector(FaceDetector):
    """insightface SCRFD (buffalo_l ``det_10g``), decoded by insightface's own model-zoo class."""

    def __init__(
        self, session: ort.InferenceSession, path: Path, model: ModelFile, settings: DetectionSettings
    ) -> None:
        super().__init__(model, settings)
        from insightface.model_zoo.scrfd import SCRFD

        self._scrfd = SCRFD(model_file=str(path), session=session)
        self._scrfd.prepare(-1, input_size=(self.canvas_w, self.canvas_h), det_thresh=settings.min_score)
        self._scrfd.nms_thresh = settings.nms_iou

    def _detect_canvas(self, canvas: NDArray[np.uint8]) -> RawDetections:
        dets, kpss = self._scrfd.detect(canvas, input_size=(self.canvas_w, self.canvas_h))
        if dets is None or len(dets) == 0 or kpss is None:
            empty = np.zeros((0,), np.float32)
            return RawDetections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), empty)
        return RawDetections(dets[:, :4].astype(np.float32), kpss.astype(np.float32), dets[:, 4].astype(np.float32))
