"""FAISS gallery index: ``IndexIDMap2`` over ``IndexFlatIP``, exact inner product keyed by template id.

On L2-normalised embeddings inner product is cosine similarity, and a flat index is exact, so
a search returns the true top-k (ties in any order). ``IndexIDMap2`` keeps a reverse map so
``remove`` works by template id.

Thread safety: one lock serialises every mutation and every search (one writer worker,
concurrent HTTP readers). A flat search is memory-bandwidth bound, and on the 2-core target two
searches in parallel took longer than the same two in sequence (benchmarks/index_scale.py), so a
readers-writer lock would buy nothing. ``save`` holds the lock only while it copies the index,
then writes the copy without blocking searches (transiently twice the index memory).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import ArrayLike

from service.durable_files import sha256_file, write_atomically
from service.errors import ConfigurationError, Conflict, IndexUnavailable, InvalidRequest
from service.index.gallery_index import (
    PAD_ID,
    IdArray,
    ScoreArray,
    as_ids,
    as_vectors,
    check_k,
    ensure_pack,
)
from service.index.persistence import (
    FORMAT_VERSION,
    INDEX_FILE,
    INDEX_TYPE,
    MANIFEST_FILE,
    METRIC,
    IndexManifest,
    read_manifest,
    verify_index_file,
)

# Defaults chosen from benchmarks/index_scale.py on the 2-core target (see the README):
# one OpenMP thread is faster than two for both single-probe and 400-probe searches, and BLAS
# beats faiss's own SIMD scan from about 3 queries per call at d=128 and d=512.
DEFAULT_OMP_THREADS = 1
DEFAULT_BLAS_MIN_QUERIES = 3


@dataclass(frozen=True, slots=True)
class FaissRuntime:
    """The process-wide faiss settings in force after ``configure_faiss_runtime``."""

    omp_threads: int
    blas_threshold: int  # the raw value given to faiss.cvar.distance_compute_blas_threshold
    faiss_version: str


def _faiss_version() -> tuple[int, int]:
    parts = faiss.__version__.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def configure_faiss_runtime(
    *,
    dim: int,
    omp_threads: int = DEFAULT_OMP_THREADS,
    blas_min_queries: int = DEFAULT_BLAS_MIN_QUERIES,
) -> FaissRuntime:
    """Set faiss's process-wide thread count and BLAS switch-over; call once at start-up.

    Nothing here runs at import time: the app factory (and the benchmark) call it. Searches of
    fewer than ``blas_min_queries`` probes use faiss's SIMD scan, larger batches one BLAS sgemm
    per block. faiss 1.15 compares ``n_queries * dim`` with its threshold (its default, 128000,
    keeps a 400-probe batch at d=128 on the scan path, 10x slower here); older faiss compares
    ``n_queries`` alone. Both are handled.
    """
    if omp_threads < 1 or blas_min_queries < 1 or dim < 1:
        raise ConfigurationError("omp_threads, blas_min_queries and dim must be >= 1")
    threshold = blas_min_queries * dim if _faiss_version() >= (1, 15) else blas_min_queries
    faiss.omp_set_num_threads(omp_threads)
    faiss.cvar.distance_compute_blas_threshold = threshold
    return FaissRuntime(omp_threads=omp_threads, blas_threshold=threshold, faiss_version=faiss.__version__)


def _new_faiss_index(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


class FaissGalleryIndex:
    """A ``GalleryIndex`` for one model pack, optionally persisted under ``directory``.

    Construct empty with ``FaissGalleryIndex(pack_id, dim, directory)``, or from disk with
    ``FaissGalleryIndex.load(directory, pack_id, dim)``; at service start use
    ``open_or_rebuild``, which checks the saved index against the database.
    """

    def __init__(self, pack_id: str, dim: int, directory: Path | None = None) -> None:
        if not isinstance(pack_id, str) or not pack_id:
            raise ConfigurationError("a gallery index needs a non-empty pack id")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigurationError(f"embedding dimension must be a positive integer, got {dim!r}")
        self._pack_id = pack_id
        self._dim = dim
        self._directory = directory
        self._index = _new_faiss_index(dim)
        self._sorted_ids: IdArray = np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()

    # -- description ---------------------------------------------------------------------------

    @property
    def pack_id(self) -> str:
        return self._pack_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def directory(self) -> Path | None:
        return self._directory

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._index.ntotal)

    @property
    def max_id(self) -> int:
        with self._lock:
            return int(self._sorted_ids[-1]) if self._sorted_ids.size else -1

    def __repr__(self) -> str:
        return f"FaissGalleryIndex(pack_id={self._pack_id!r}, dim={self._dim}, count={self.count})"

    def check_pack(self, pack_id: str) -> None:
        ensure_pack(self._pack_id, pack_id)

    # -- mutations -----------------------------------------------------------------------------

    def add(self, ids: ArrayLike, vectors: ArrayLike, *, pack_id: str | None = None) -> None:
        """Add templates. All-or-nothing: a batch with any bad row or known id changes nothing.

        Raises ``PackMismatch`` (``pack_id`` given and not this index's), ``InvalidRequest``
        (shape, dimension, dtype, not normalised, ids not matching rows) and ``Conflict`` (an id
        repeated or already held).
        """
        if pack_id is not None:
            self.check_pack(pack_id)
        id_array = as_ids(ids)
        matrix = as_vectors(vectors, self._dim)
        if id_array.shape[0] != matrix.shape[0]:
            raise InvalidRequest(f"{id_array.shape[0]} ids for {matrix.shape[0]} vectors", code="index_bad_ids")
        if id_array.size == 0:
            return
        order = np.argsort(id_array, kind="stable")
        new_sorted = id_array[order]
        if np.any(new_sorted[1:] == new_sorted[:-1]):
            raise Conflict("a template id is repeated within one add", code="index_duplicate_id")
        with self._lock:
            held = self._sorted_ids
            positions = np.searchsorted(held, new_sorted)
            inside = positions < held.size
            if np.any(held[positions[inside]] == new_sorted[inside]):
                raise Conflict("a template id is already in the index", code="index_duplicate_id")
            try:
                self._index.add_with_ids(matrix, id_array)
            except BaseException:
                self._resync_ids()
                raise
            self._sorted_ids = np.insert(held, positions, new_sorted)

    def remove(self, ids: ArrayLike) -> int:
        """Remove templates by id; unknown ids are ignored. Returns how many were removed.

        Takes effect for every search that starts after this returns (searches hold the lock).
        """
        id_array = np.unique(as_ids(ids))
        if id_array.size == 0:
            return 0
        with self._lock:
            held = self._sorted_ids
            positions = np.searchsorted(held, id_array)
            inside = positions < held.size
            present = np.zeros(id_array.shape, dtype=bool)
            present[inside] = held[positions[inside]] == id_array[inside]
            if not present.any():
                return 0
            targets = np.ascontiguousarray(id_array[present])
            try:
                removed = int(self._index.remove_ids(faiss.IDSelectorBatch(targets)))
            except BaseException:
                self._resync_ids()
                raise
            self._sorted_ids = np.delete(held, positions[present])
            if removed != targets.size:  # faiss and our id list disagree: trust faiss
                self._resync_ids()
            return removed

    def _resync_ids(self) -> None:
        """Rebuild the sorted id list from faiss's own id map (caller holds the lock)."""
        self._sorted_ids = np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False))

    # -- queries -------------------------------------------------------------------------------

    def search(self, queries: ArrayLike, k: int, *, pack_id: str | None = None) -> tuple[ScoreArray, IdArray]:
        """Exact top-k cosine search; see ``GalleryIndex.search``. A (dim,) query is one row.

        Raises ``PackMismatch`` (``pack_id`` given and not this index's) and ``InvalidRequest``
        (dimension, not normalised, k outside [1, MAX_K]).
        """
        if pack_id is not None:
            self.check_pack(pack_id)
        top_k = check_k(k)
        matrix = as_vectors(queries, self._dim, what="queries")
        m = matrix.shape[0]
        scores: ScoreArray = np.full((m, top_k), -np.inf, dtype=np.float32)
        found: IdArray = np.full((m, top_k), PAD_ID, dtype=np.int64)
        if m == 0:
            return scores, found
        with self._lock:
            held = int(self._index.ntotal)
            if held == 0:
                return scores, found
            width = min(top_k, held)
            distances, labels = self._index.search(matrix, width)
        scores[:, :width] = distances
        found[:, :width] = labels
        scores[found == PAD_ID] = -np.inf
        return scores, found

    def ids(self) -> IdArray:
        with self._lock:
            return self._sorted_ids.copy()

    # -- persistence ---------------------------------------------------------------------------

    def save(self) -> IndexManifest:
        """Write ``index.faiss`` then ``manifest.json`` atomically under ``directory``.

        Searches and mutations wait only while the index is copied, not during the disk write.
        Raises ``ConfigurationError`` if the index was built without a directory.
        """
        if self._directory is None:
            raise ConfigurationError("this gallery index has no directory to save to")
        directory = self._directory
        with self._save_lock:
            with self._lock:
                snapshot = faiss.clone_index(self._index)
                count = int(self._index.ntotal)
                max_id = int(self._sorted_ids[-1]) if self._sorted_ids.size else -1
            digest: list[str] = []

            def write_index(tmp: Path) -> None:
                faiss.write_index(snapshot, str(tmp))
                digest.append(sha256_file(tmp))

            index_path = directory / INDEX_FILE
            write_atomically(index_path, write_index)
            manifest = IndexManifest(
                format_version=FORMAT_VERSION,
                pack_id=self._pack_id,
                dim=self._dim,
                count=count,
                max_id=max_id,
                index_file=INDEX_FILE,
                index_bytes=index_path.stat().st_size,
                sha256=digest[0],
                index_type=INDEX_TYPE,
                metric=METRIC,
                faiss_version=faiss.__version__,
                saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            payload = manifest.to_json()

            def write_manifest(tmp: Path) -> None:
                tmp.write_bytes(payload)

            write_atomically(directory / MANIFEST_FILE, write_manifest)
            return manifest

    @classmethod
    def load(cls, directory: Path, pack_id: str, dim: int) -> FaissGalleryIndex:
        """Load a saved index, checking it against its manifest and the expected pack and dim.

        Raises ``IndexUnavailable`` with code ``index_missing`` (no manifest or index file),
        ``index_stale`` (another pack, dimension or manifest format) or ``index_corrupt``
        (size, checksum, unreadable file, or content disagreeing with the manifest). The
        checksum is verified before faiss parses a byte of the file.
        """
        manifest = read_manifest(directory)
        if manifest.pack_id != pack_id:
            raise IndexUnavailable(
                f"saved index is for pack {manifest.pack_id!r}, expected {pack_id!r}", code="index_stale"
            )
        if manifest.dim != dim:
            raise IndexUnavailable(f"saved index has dimension {manifest.dim}, expected {dim}", code="index_stale")
        if manifest.index_type != INDEX_TYPE or manifest.metric != METRIC:
            raise IndexUnavailable(
                f"saved index is {manifest.index_type}/{manifest.metric}, expected {INDEX_TYPE}/{METRIC}",
                code="index_stale",
            )
        path = verify_index_file(directory, manifest)
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexUnavailable(f"{path}: faiss cannot read it: {exc}", code="index_corrupt") from exc
        if not isinstance(raw, faiss.IndexIDMap2):
            raise IndexUnavailable(f"{path}: not an IndexIDMap2", code="index_corrupt")
        inner = faiss.downcast_index(raw.index)
        if not isinstance(inner, faiss.IndexFlatIP) or raw.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexUnavailable(f"{path}: not an inner-product flat index", code="index_corrupt")
        if raw.d != dim:
            raise IndexUnavailable(f"{path}: dimension {raw.d}, manifest says {dim}", code="index_corrupt")
        ids = np.sort(faiss.vector_to_array(raw.id_map).astype(np.int64, copy=False))
        found_max = int(ids[-1]) if ids.size else -1
        if int(raw.ntotal) != manifest.count or ids.size != manifest.count or found_max != manifest.max_id:
            raise IndexUnavailable(
                f"{path}: holds {raw.ntotal} templates (max id {found_max}); manifest says "
                f"{manifest.count} (max id {manifest.max_id})",
                code="index_corrupt",
            )
        if ids.size and (ids[0] < 0 or np.any(ids[1:] == ids[:-1])):
            raise IndexUnavailable(f"{path}: negative or repeated template ids", code="index_corrupt")
        index = cls(pack_id, dim, directory)
        index._index = raw
        index._sorted_ids = ids
        return index
