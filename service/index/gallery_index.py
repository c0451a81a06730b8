"""The gallery index contract, and the checks every array passes at its border.

A gallery index maps template ids (the database's primary keys, int64 >= 0) to L2-normalised
float32 embeddings of one model pack, and answers top-k inner-product (= cosine) searches: exact for
the flat index, approximate for the compressed types (``service.index.faiss_index``).

Pack discipline: an index is constructed for exactly one pack (``pack_id``, ``dim``) and holds
nothing else. ``check_pack(pack_id)`` raises ``PackMismatch`` for any other pack; ``add`` and
``search`` also take an optional keyword ``pack_id`` and run the same check when it is given, so
a caller holding embeddings tagged with their pack (``FaceRecord.pack_id``) passes the tag along
and cannot mix packs by mistake. A vector of the wrong dimension is refused whatever the caller
says. ``remove`` takes ids only: ids are unique database keys, and removing an id the index does
not hold is a no-op.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import InvalidRequest, PackMismatch
from service.index.persistence import IndexManifest

IdArray = NDArray[np.int64]
VectorArray = NDArray[np.float32]
ScoreArray = NDArray[np.float32]

# How far an embedding's L2 norm may stray from 1 before it is refused as not normalised.
# float32 embeddings normalised by the recognizer are within ~1e-6.
NORM_TOLERANCE = 1e-3
# Largest k a search may ask for; results are (m, k) arrays, so this bounds their size.
MAX_K = 10_000
# Id that pads a result row holding fewer than k hits (its score is -inf).
PAD_ID = -1


@runtime_checkable
class GalleryIndex(Protocol):
    """Top-k cosine search over one pack's gallery templates, keyed by template id."""

    @property
    def pack_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def count(self) -> int:
        """Number of templates held."""
        ...

    @property
    def max_id(self) -> int:
        """Highest template id held, ``-1`` when empty."""
        ...

    def check_pack(self, pack_id: str) -> None:
        """Raise ``PackMismatch`` unless ``pack_id`` is this index's pack."""
        ...

    def add(self, ids: ArrayLike, vectors: ArrayLike, *, pack_id: str | None = None) -> None:
        """Add templates; ``ids`` (n,) int, ``vectors`` (n, dim) unit-norm. Refuses known ids."""
        ...

    def remove(self, ids: ArrayLike) -> int:
        """Remove templates by id, effective for every search that starts after this returns.

        Returns how many were held and removed; unknown ids are ignored.
        """
        ...

    def search(self, queries: ArrayLike, k: int, *, pack_id: str | None = None) -> tuple[ScoreArray, IdArray]:
        """Top-k by cosine for each query row, best first.

        Returns ``(scores, ids)``, float32 and int64 arrays of shape (m, k); rows with fewer
        than k hits are padded with id ``-1`` and score ``-inf``.
        """
        ...

    def ids(self) -> IdArray:
        """All template ids held, ascending (a copy)."""
        ...

    def save(self) -> IndexManifest:
        """Persist atomically (index file, then manifest); returns the manifest written."""
        ...


def ensure_pack(expected: str, given: str) -> None:
    if given != expected:
        raise PackMismatch(f"this gallery index holds pack {expected!r}; the request used pack {given!r}")


def as_ids(ids: ArrayLike) -> IdArray:
    """A contiguous 1-D int64 array of non-negative ids, or ``InvalidRequest``."""
    try:
        raw = np.asarray(ids)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"template ids are not an array: {exc}", code="index_bad_ids") from exc
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    if raw.ndim != 1:
        raise InvalidRequest(f"template ids must be 1-D, got shape {raw.shape}", code="index_bad_ids")
    if raw.dtype.kind not in "iu":
        raise InvalidRequest(f"template ids must be integers, got {raw.dtype}", code="index_bad_ids")
    if raw.dtype.kind == "u" and raw.max() > np.iinfo(np.int64).max:
        raise InvalidRequest("template id out of int64 range", code="index_bad_ids")
    out: IdArray = np.ascontiguousarray(raw, dtype=np.int64)
    if out.min() < 0:
        raise InvalidRequest("template ids must be >= 0 (-1 pads search results)", code="index_bad_ids")
    return out


def as_vectors(vectors: ArrayLike, dim: int, *, what: str = "embeddings") -> VectorArray:
    """A contiguous (n, dim) float32 array of finite unit vectors, or ``InvalidRequest``.

    A single vector of shape (dim,) is taken as one row. Wrong dimension is refused with code
    ``embedding_dim_mismatch``; vectors that are not finite or not L2-normalised (within
    ``NORM_TOLERANCE``) with ``embedding_not_normalised``: the index scores by inner product,
    which is cosine only on unit vectors.
    """
    try:
        raw = np.asarray(vectors)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what} are not an array: {exc}", code="index_bad_vectors") from exc
    if raw.dtype.kind not in "fiu":
        raise InvalidRequest(f"{what} must be numeric, got {raw.dtype}", code="index_bad_vectors")
    if raw.ndim == 1:
        raw = raw.reshape(1, -1)
    if raw.ndim != 2:
        raise InvalidRequest(f"{what} must be (n, {dim}), got shape {raw.shape}", code="index_bad_vectors")
    if raw.shape[1] != dim:
        raise InvalidRequest(
            f"{what} have dimension {raw.shape[1]}; this index holds dimension {dim}",
            code="embedding_dim_mismatch",
        )
    out: VectorArray = np.ascontiguousarray(raw, dtype=np.float32)
    if out.shape[0] == 0:
        return out
    if not np.isfinite(out).all():
        raise InvalidRequest(f"{what} contain NaN or infinity", code="embedding_not_normalised")
    norms = np.linalg.norm(out, axis=1)
    if np.abs(norms - 1.0).max() > NORM_TOLERANCE:
        raise InvalidRequest(f"{what} are not L2-normalised", code="embedding_not_normalised")
    return out


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
        raise InvalidRequest(f"k must be an integer in [1, {MAX_K}], got {k!r}", code="index_bad_k")
    return int(k)
