"""Face recognizers: aligned 112x112 crops in, L2-normalised float32 embeddings out."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from service.embeddings.packs import ModelFile


class FaceRecognizer:
    """Any ArcFace-style recognizer whose preprocessing the pack manifest describes.

    SFace takes raw 0-255 RGB (it normalises inside its graph); ArcFace R50 takes
    (x - 127.5) / 127.5 RGB. Both come from the manifest's colour order, mean and std.
    """

    def __init__(self, session: ort.InferenceSession, model: ModelFile, batch_size: int, flip: bool = False) -> None:
        self.session = session
        self.flip = flip
        self.model = model
        self.input_name = session.get_inputs()[0].name
        batch_dim = session.get_inputs()[0].shape[0]
        self.batch_size = batch_size if not isinstance(batch_dim, int) else max(1, batch_dim)
        self._mean = np.array(model.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.array(model.std, dtype=np.float32).reshape(1, 3, 1, 1)
        assert model.embedding_dim is not None
        self.dim = model.embedding_dim

    def _blob(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        batch = np.stack(crops).astype(np.float32)  # N, H, W, 3 (BGR)
        if self.model.colour_order == "RGB":
            batch = batch[..., ::-1]
        blob = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray((blob - self._mean) / self._std, dtype=np.float32)

    def features(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """The network's raw (unnormalised) output for each crop."""
        parts = []
        for start in range(0, len(crops), self.batch_size):
            blob = self._blob(crops[start : start + self.batch_size])
            parts.append(np.asarray(self.session.run(None, {self.input_name: blob})[0], dtype=np.float32))
        return np.concatenate(parts).reshape(len(crops), -1)

    def embed(self, crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """One L2-normalised embedding per crop; with ``flip``, of the crop's and its mirror's features summed."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.flip:
            both = self.features(crops + [np.ascontiguousarray(c[:, ::-1]) for c in crops])
            features = both[: len(crops)] + both[len(crops) :]
        else:
            features = self.features(crops)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = (features / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised
