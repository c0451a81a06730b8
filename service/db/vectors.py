"""How an embedding is stored in a ``LargeBinary`` column: little-endian float32."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def embedding_to_bytes(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def embedding_from_bytes(data: bytes) -> NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
