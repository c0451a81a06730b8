"""FAISS gallery index keyed by template id: exact (``Flat``) or a compressed, approximate type.

The type is a FAISS ``index_factory`` string over inner product (``RFR_INDEX__FACTORY``); on
L2-normalised embeddings inner product is cosine similarity. Three kinds, by how ids and removal
work:

* ``flat`` (``Flat``): ``IndexIDMap2`` over ``IndexFlatIP``, exact; a search returns the true
  top-k (ties in any order). ``remove`` deletes in place.
* ``ivf`` (``IVF4096,SQ8``, ``IVF16384_HNSW32,PQ32x4fs``...): an inverted file holds the template
  ids itself (``add_with_ids``) and deletes in place (``remove_ids`` scans the lists). Searched
  with ``nprobe`` lists (and ``ef_search`` for an HNSW coarse quantiser). Needs training.
* ``mapped`` (``HNSW32,SQ8``, or an inverted file with a refine step such as
  ``IVF4096,PQ32x4fs,Refine(SQ8)``): types that number their entries themselves and cannot delete
  them. An ``IndexIDMap`` keeps the template id of each entry; a removed entry's id becomes ``-1``
  in that map (so the index file itself records it) and every search excludes removed entries with
  an ``IDSelector``. Once ``compact_fraction`` of the entries are removed, ``rebuild_reason`` asks
  for a rebuild.

Approximate kinds are trained on a sample (``train``) before anything is added, and record the
gallery size they were trained for; ``rebuild_reason`` asks for a retrain once the gallery has
grown ``retrain_growth`` times past it.

**Memory-mapped inverted files** (``tuning.mmap``, the default): an ``ivf`` index opened from disk,
or saved, is served from its file mapped read-only (faiss ``IO_FLAG_MMAP``): its lists are the
operating system's file cache, read on demand and shared by every process on the host mapping the
same file, not the process's own memory. faiss cannot write to mapped lists, so changes go to two
small layers on top: templates added since are held exactly in an in-memory ``IndexIDMap2(Flat)``
searched beside the file and merged by score, and templates removed from the file are excluded
from its searches with an ``IDSelector``. ``save`` writes the merged whole (an in-memory copy of
the lists, the removals applied, the additions encoded) and maps the new file in their place.

Thread safety: one lock serialises every mutation and every search (one writer worker,
concurrent HTTP readers). A flat search is memory-bandwidth bound, and on the 2-core target two
searches in parallel took longer than the same two in sequence (benchmarks/index_scale.py), so a
readers-writer lock would buy nothing. ``save`` holds the lock only while it copies the index,
then writes the copy without blocking searches (transiently twice the index memory).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import ArrayLike

from service.config import IndexSettings
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


FLAT = "Flat"
FLAT_ALIASES = frozenset({FLAT, "IDMap2,Flat", "IDMap,Flat"})
Kind = Literal["flat", "ivf", "mapped"]
# A self-search counts as found when the template comes back among its own top ``VERIFY_TOP``.
VERIFY_TOP = 10


def is_flat(factory: str) -> bool:
    return factory.strip() in FLAT_ALIASES


def _new_raw_index(dim: int, factory: str) -> tuple[Kind, Any]:
    """The empty faiss index for ``factory`` and its kind; ``ConfigurationError`` for a type we refuse."""
    spec = factory.strip()
    if spec in FLAT_ALIASES:
        return "flat", faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    where = f"RFR_INDEX__FACTORY={spec!r}"
    if spec.startswith("IDMap"):
        raise ConfigurationError(f"{where}: leave out IDMap; the gallery index keys entries by template id itself")
    try:
        raw = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise ConfigurationError(f"{where} is not a FAISS index_factory string faiss can build: {first}") from exc
    top = raw  # index_factory returns the most derived type, and owns it
    if top.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ConfigurationError(f"{where}: faiss builds this type for L2 only; the gallery needs inner product")
    if isinstance(top, faiss.IndexIVF):
        return "ivf", top
    if isinstance(top, faiss.IndexHNSW):
        return "mapped", faiss.IndexIDMap(top)
    if isinstance(top, faiss.IndexRefine):
        base = faiss.downcast_index(top.base_index)
        if isinstance(base, faiss.IndexIVF | faiss.IndexHNSW):
            return "mapped", faiss.IndexIDMap(top)
    raise ConfigurationError(
        f"{where} builds a {type(top).__name__}; the gallery supports Flat, an inverted file (IVF...), "
        "HNSW..., and either of the last two with a refine step"
    )


def _hnsw_params(ef: int, sel: faiss.IDSelector | None) -> Any:
    params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
    params.efSearch = ef
    if sel is not None:
        params.sel = sel
    return params


class FaissGalleryIndex:
    """A ``GalleryIndex`` for one model pack, optionally persisted under ``directory``.

    Construct empty with ``FaissGalleryIndex(pack_id, dim, directory, factory=..., tuning=...)``
    (train it first when ``is_trained`` is false), or from disk with
    ``FaissGalleryIndex.load(directory, pack_id, dim)``; at service start use ``open_or_rebuild``,
    which checks the saved index against the database.
    """

    def __init__(
        self,
        pack_id: str,
        dim: int,
        directory: Path | None = None,
        *,
        factory: str = FLAT,
        tuning: IndexSettings | None = None,
    ) -> None:
        if not isinstance(pack_id, str) or not pack_id:
            raise ConfigurationError("a gallery index needs a non-empty pack id")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigurationError(f"embedding dimension must be a positive integer, got {dim!r}")
        self._pack_id = pack_id
        self._dim = dim
        self._directory = directory
        self._factory = FLAT if is_flat(factory) else factory.strip()
        self._tuning = tuning or IndexSettings()
        self._index: Any
        self._kind, self._index = _new_raw_index(dim, self._factory)
        self._sorted_ids: IdArray = np.zeros(0, dtype=np.int64)
        # ``mapped`` only: the entry (faiss's own number) of each id in ``_sorted_ids``, and the
        # entries removed (ascending) with the selector that keeps searches off them.
        self._sorted_entries: IdArray = np.zeros(0, dtype=np.int64)
        self._removed: IdArray = np.zeros(0, dtype=np.int64)
        self._keep: tuple[faiss.IDSelector, ...] = ()
        # A memory-mapped ``ivf`` base (read-only): ``_removed`` then holds the template ids removed
        # from it, and ``_delta`` the templates added since it was mapped.
        self._mapped_file = False
        self._delta: Any = None
        self._mutations = 0  # changes made, so a save knows whether any came after its snapshot
        self._trained_count = 0
        self._gallery_version = -1
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
    def factory(self) -> str:
        """The ``index_factory`` string this index was built from (``Flat`` for the exact index)."""
        return self._factory

    @property
    def kind(self) -> Kind:
        return self._kind

    @property
    def exact(self) -> bool:
        return self._kind == "flat"

    @property
    def tuning(self) -> IndexSettings:
        return self._tuning

    @property
    def count(self) -> int:
        with self._lock:
            return int(self._sorted_ids.size)

    @property
    def max_id(self) -> int:
        with self._lock:
            return int(self._sorted_ids[-1]) if self._sorted_ids.size else -1

    @property
    def memory_mapped(self) -> bool:
        """Whether the inverted lists are served from the saved file, mapped read-only."""
        return self._mapped_file

    @property
    def removed_entries(self) -> int:
        """Entries removed but still stored (``mapped`` types, and a memory-mapped file; else 0)."""
        with self._lock:
            return int(self._removed.size)

    @property
    def gallery_version(self) -> int:
        """The database's gallery version this index was last saved (or loaded) at; -1 unknown."""
        return self._gallery_version

    @property
    def trained_count(self) -> int:
        """The gallery size the index was trained for (0: a type that needs no training)."""
        return self._trained_count

    @property
    def inverted_lists(self) -> int:
        """The coarse quantiser's list count (0 for a type without one)."""
        ivf = faiss.try_extract_index_ivf(self._inner())
        return int(ivf.nlist) if ivf is not None else 0

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def __repr__(self) -> str:
        return (
            f"FaissGalleryIndex(pack_id={self._pack_id!r}, dim={self._dim}, factory={self._factory!r}, "
            f"count={self.count})"
        )

    def check_pack(self, pack_id: str) -> None:
        ensure_pack(self._pack_id, pack_id)

    def tune(self, tuning: IndexSettings) -> None:
        """Search with ``tuning``'s parameters (nprobe, ef_search, refine_k_factor) from now on."""
        with self._lock:
            self._tuning = tuning

    def train_size(self, gallery_size: int) -> int:
        """How many sampled templates ``train`` wants for a gallery of ``gallery_size`` (0: none)."""
        if self.is_trained:
            return 0
        wanted = self._tuning.train_sample
        if wanted == 0:
            wanted = max(64 * self.inverted_lists, 65_536)
        return max(1, min(wanted, gallery_size))

    def train(self, vectors: ArrayLike, *, gallery_size: int | None = None) -> None:
        """Train the quantiser (and codes) on a sample of the gallery, before anything is added.

        ``gallery_size`` is the gallery the sample stands for (default the sample's size): the
        index asks for a retrain once it holds ``retrain_growth`` times that.
        """
        matrix = as_vectors(vectors, self._dim, what="training vectors")
        with self._lock:
            if self._sorted_ids.size:
                raise Conflict("an index is trained before templates are added", code="index_trained_late")
            if self._index.is_trained:
                return
            ivf = faiss.try_extract_index_ivf(self._inner())
            if ivf is not None:
                if matrix.shape[0] < int(ivf.nlist):
                    raise InvalidRequest(
                        f"{self._factory} has {ivf.nlist} inverted lists; {matrix.shape[0]} training vectors "
                        "cannot place them (lower the list count or keep Flat below a larger gallery)",
                        code="index_training_too_small",
                    )
                ivf.cp.niter = self._tuning.train_iterations
            self._index.train(matrix)
            self._trained_count = max(int(gallery_size or 0), int(matrix.shape[0]))

    def _inner(self) -> Any:
        """The index faiss numbers entries in: the IDMap's for ``mapped``, the index itself otherwise."""
        return faiss.downcast_index(self._index.index) if self._kind == "mapped" else self._index

    def rebuild_reason(self, gallery_size: int | None = None) -> str | None:
        """Why this index should be rebuilt from the database (retrain, compaction), or ``None``."""
        with self._lock:
            held = int(self._sorted_ids.size)
            removed = int(self._removed.size)
        size = held if gallery_size is None else gallery_size
        growth = self._tuning.retrain_growth
        if self._trained_count and size > growth * self._trained_count:
            return (
                f"index_retrain: {size} templates, {size / self._trained_count:.1f} times the "
                f"{self._trained_count} its quantiser was trained for (retrain past {growth:g}x)"
            )
        if removed and removed > self._tuning.compact_fraction * (held + removed):
            return f"index_compact: {removed} of {held + removed} stored entries are removed templates"
        return None

    # -- mutations -----------------------------------------------------------------------------

    def add(self, ids: ArrayLike, vectors: ArrayLike, *, pack_id: str | None = None) -> None:
        """Add templates. All-or-nothing: a batch with any bad row or known id changes nothing.

        Raises ``PackMismatch`` (``pack_id`` given and not this index's), ``InvalidRequest``
        (shape, dimension, dtype, not normalised, ids not matching rows), ``Conflict`` (an id
        repeated or already held) and ``IndexUnavailable`` (``index_untrained``: an approximate
        index not trained yet).
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
            if not self._index.is_trained:
                raise IndexUnavailable(
                    f"{self._factory} must be trained before templates are added", code="index_untrained"
                )
            held = self._sorted_ids
            positions = np.searchsorted(held, new_sorted)
            inside = positions < held.size
            if np.any(held[positions[inside]] == new_sorted[inside]):
                raise Conflict("a template id is already in the index", code="index_duplicate_id")
            first_entry = int(self._index.ntotal)
            self._mutations += 1
            try:
                (self._delta if self._mapped_file else self._index).add_with_ids(matrix, id_array)
            except BaseException:
                self._resync_ids()
                raise
            self._sorted_ids = np.insert(held, positions, new_sorted)
            if self._kind == "mapped":
                entries = first_entry + np.arange(id_array.size, dtype=np.int64)
                self._sorted_entries = np.insert(self._sorted_entries, positions, entries[order])

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
            self._mutations += 1
            if self._kind == "mapped":
                return self._tombstone(positions[present])
            if self._mapped_file:
                return self._remove_over_file(targets, positions[present])
            try:
                removed = int(self._index.remove_ids(faiss.IDSelectorBatch(targets)))
            except BaseException:
                self._resync_ids()
                raise
            self._sorted_ids = np.delete(held, positions[present])
            if removed != targets.size:  # faiss and our id list disagree: trust faiss
                self._resync_ids()
            return removed

    def _tombstone(self, positions: IdArray) -> int:
        """``mapped``: mark the entries at ``positions`` of the sorted ids removed (caller holds the lock)."""
        entries = self._sorted_entries[positions]
        id_map = faiss.rev_swig_ptr(self._index.id_map.data(), int(self._index.ntotal))
        id_map[entries] = PAD_ID
        self._sorted_ids = np.delete(self._sorted_ids, positions)
        self._sorted_entries = np.delete(self._sorted_entries, positions)
        self._set_removed(np.union1d(self._removed, entries))
        return int(entries.size)

    def _remove_over_file(self, targets: IdArray, positions: IdArray) -> int:
        """Memory-mapped base: delete ``targets`` from the added layer, or exclude them from the file's
        searches (caller holds the lock)."""
        in_delta = np.isin(targets, faiss.vector_to_array(self._delta.id_map))
        if in_delta.any():
            self._delta.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(targets[in_delta])))
        self._set_removed(np.union1d(self._removed, targets[~in_delta]))
        self._sorted_ids = np.delete(self._sorted_ids, positions)
        return int(targets.size)

    def _set_removed(self, removed: IdArray) -> None:
        self._removed = np.ascontiguousarray(removed, dtype=np.int64)
        if self._removed.size:
            batch = faiss.IDSelectorBatch(self._removed)
            self._keep = (faiss.IDSelectorNot(batch), batch)
        else:
            self._keep = ()

    def _resync_ids(self) -> None:
        """Rebuild the sorted id list from faiss's own ids (caller holds the lock)."""
        if self._kind == "flat":
            self._sorted_ids = np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False))
        elif self._kind == "ivf":
            ids = _ivf_ids(self._index)
            if self._mapped_file:  # the file's ids, less those removed since, plus those added since
                if self._removed.size:
                    ids = ids[~np.isin(ids, self._removed)]
                if self._delta.ntotal:
                    ids = np.concatenate([ids, faiss.vector_to_array(self._delta.id_map).astype(np.int64)])
            ids.sort()  # in place: a second 20M-id array is not needed
            self._sorted_ids = ids
        else:
            id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
            live = np.flatnonzero(id_map != PAD_ID)
            order = np.argsort(id_map[live], kind="stable")
            self._sorted_ids = id_map[live][order]
            self._sorted_entries = live[order].astype(np.int64)
            self._set_removed(np.flatnonzero(id_map == PAD_ID).astype(np.int64))

    # -- queries -------------------------------------------------------------------------------

    def _search_params(self, k: int) -> tuple[Any, list[object]]:
        """Search parameters for this type and the objects they point to (kept alive by the caller)."""
        tuning = self._tuning
        keep: list[object] = list(self._keep)
        sel = self._keep[0] if self._keep else None
        ef = max(tuning.ef_search, k)

        def for_index(index: Any, sel: faiss.IDSelector | None) -> Any:
            index = faiss.downcast_index(index)
            if isinstance(index, faiss.IndexIVF):
                params: Any = faiss.SearchParametersIVF()
                params.nprobe = min(tuning.nprobe, int(index.nlist))
                if sel is not None:
                    params.sel = sel
                quantizer = faiss.downcast_index(index.quantizer)
                if isinstance(quantizer, faiss.IndexHNSW):
                    inner = _hnsw_params(max(tuning.ef_search, params.nprobe), None)
                    keep.append(inner)
                    params.quantizer_params = inner
                return params
            if isinstance(index, faiss.IndexHNSW):
                return _hnsw_params(ef, sel)
            if isinstance(index, faiss.IndexRefine):
                base = for_index(index.base_index, sel)
                refine: Any = faiss.IndexRefineSearchParameters()
                refine.k_factor = tuning.refine_k_factor
                if base is not None:
                    keep.append(base)
                    refine.base_index_params = base
                return refine
            return None

        if self._kind == "flat":
            return None, keep
        params = for_index(self._inner(), sel)
        return params, keep

    def search(self, queries: ArrayLike, k: int, *, pack_id: str | None = None) -> tuple[ScoreArray, IdArray]:
        """Top-k cosine search; see ``GalleryIndex.search``. A (dim,) query is one row.

        Exact for ``Flat``; approximate for the other types (their recall is measured in
        benchmarks/index_scale.py). Raises ``PackMismatch`` (``pack_id`` given and not this
        index's) and ``InvalidRequest`` (dimension, not normalised, k outside [1, MAX_K]).
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
            held = int(self._sorted_ids.size)
            if held == 0:
                return scores, found
            width = min(top_k, held)
            params, _alive = self._search_params(width)
            if self._kind == "mapped":
                distances, entries = self._inner().search(matrix, width, params=params)
                id_map = faiss.rev_swig_ptr(self._index.id_map.data(), int(self._index.ntotal))
                labels = np.where(entries >= 0, id_map[np.maximum(entries, 0)], PAD_ID)
            else:
                distances, labels = self._index.search(matrix, width, params=params)
                if self._mapped_file and self._delta.ntotal:
                    distances, labels = _merge_top(
                        (distances, labels), self._delta.search(matrix, min(width, int(self._delta.ntotal))), width
                    )
        scores[:, :width] = distances
        found[:, :width] = labels
        scores[found == PAD_ID] = -np.inf
        return scores, found

    def self_recall(self, ids: ArrayLike, vectors: ArrayLike) -> float:
        """The fraction of (id, vector) pairs whose id comes back in the top ``VERIFY_TOP`` of its own vector."""
        id_array = as_ids(ids)
        if id_array.size == 0:
            return 1.0
        _, found = self.search(vectors, VERIFY_TOP)
        hits = (found == id_array[:, None]).any(axis=1)
        return float(hits.mean())

    def ids(self) -> IdArray:
        with self._lock:
            return self._sorted_ids.copy()

    # -- persistence ---------------------------------------------------------------------------

    def save(self, *, gallery_version: int = -1) -> IndexManifest:
        """Write ``index.faiss`` then ``manifest.json`` atomically under ``directory``.

        ``gallery_version`` is the database's gallery version this index matches (-1: unknown).
        Searches and mutations wait only while the index is copied, not during the disk write.
        Raises ``ConfigurationError`` if the index was built without a directory.
        """
        if self._directory is None:
            raise ConfigurationError("this gallery index has no directory to save to")
        directory = self._directory
        with self._save_lock:
            with self._lock:
                snapshot = self._merged_copy() if self._mapped_file else faiss.clone_index(self._index)
                mutations = self._mutations
                count = int(self._sorted_ids.size)
                max_id = int(self._sorted_ids[-1]) if self._sorted_ids.size else -1
                removed = int(self._removed.size) if self._kind == "mapped" else 0
            digest: list[str] = []
            remap = self._kind == "ivf" and self._tuning.mmap
            mapped: list[Any] = []

            def write_index(tmp: Path) -> None:
                faiss.write_index(snapshot, str(tmp))
                digest.append(sha256_file(tmp))
                # Mapped before the rename: the mapping is of this file, whatever replaces it later. A
                # filesystem that cannot map it leaves the index served from memory.
                if remap:
                    with contextlib.suppress(RuntimeError):
                        mapped.append(faiss.read_index(str(tmp), faiss.IO_FLAG_MMAP))

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
                index_type=INDEX_TYPE if self._kind == "flat" else self._factory,
                metric=METRIC,
                faiss_version=faiss.__version__,
                saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
                factory=self._factory,
                trained_count=self._trained_count,
                removed=removed,
                gallery_version=gallery_version,
            )
            payload = manifest.to_json()

            def write_manifest(tmp: Path) -> None:
                tmp.write_bytes(payload)

            write_atomically(directory / MANIFEST_FILE, write_manifest)
            self._gallery_version = gallery_version
            snapshot = None  # free the copy before serving the file
            if mapped and _lists_mapped(mapped[0]):
                with self._lock:
                    if self._mutations == mutations:  # nothing changed since the snapshot: serve the file
                        self._map(mapped[0])
            return manifest

    @classmethod
    def load(
        cls,
        directory: Path,
        pack_id: str,
        dim: int,
        *,
        factory: str | None = None,
        tuning: IndexSettings | None = None,
    ) -> FaissGalleryIndex:
        """Load a saved index, checking it against its manifest and the expected pack, dim and type.

        ``factory`` (when given) is the type expected; another is ``index_stale``. Raises
        ``IndexUnavailable`` with code ``index_missing`` (no manifest or index file),
        ``index_stale`` (another pack, dimension, type or manifest format) or ``index_corrupt``
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
        saved_factory = FLAT if is_flat(manifest.factory) else manifest.factory
        if manifest.metric != METRIC or manifest.index_type != (INDEX_TYPE if saved_factory == FLAT else saved_factory):
            raise IndexUnavailable(
                f"saved index is {manifest.index_type}/{manifest.metric}, expected {saved_factory}/{METRIC}",
                code="index_stale",
            )
        wanted = None if factory is None else (FLAT if is_flat(factory) else factory.strip())
        if wanted is not None and wanted != saved_factory:
            raise IndexUnavailable(
                f"saved index is {saved_factory}, configured {wanted} (RFR_INDEX__FACTORY)", code="index_stale"
            )
        path = verify_index_file(directory, manifest)
        index = cls(pack_id, dim, directory, factory=saved_factory, tuning=tuning)
        attempts = [faiss.IO_FLAG_MMAP, 0] if index._kind == "ivf" and index._tuning.mmap else [0]
        for flags in attempts:  # a file that cannot be mapped is read into memory
            try:
                raw = faiss.read_index(str(path), flags)
                break
            except RuntimeError as exc:
                if flags == 0:
                    raise IndexUnavailable(f"{path}: faiss cannot read it: {exc}", code="index_corrupt") from exc
        raw = _check_loaded(raw, index._kind, index._index, path, dim)
        if _lists_mapped(raw):
            index._map(raw)
        else:
            index._index = raw
        index._trained_count = manifest.trained_count
        index._gallery_version = manifest.gallery_version
        index._resync_ids()
        ids = index._sorted_ids
        found_max = int(ids[-1]) if ids.size else -1
        if ids.size != manifest.count or found_max != manifest.max_id or index._removed.size != manifest.removed:
            raise IndexUnavailable(
                f"{path}: holds {ids.size} templates (max id {found_max}, {index._removed.size} removed); manifest "
                f"says {manifest.count} (max id {manifest.max_id}, {manifest.removed} removed)",
                code="index_corrupt",
            )
        if ids.size and (ids[0] < 0 or np.any(ids[1:] == ids[:-1])):
            raise IndexUnavailable(f"{path}: negative or repeated template ids", code="index_corrupt")
        return index

    def _map(self, raw: Any) -> None:
        """Serve ``raw`` (an inverted file read with ``IO_FLAG_MMAP``) with empty layers on top."""
        self._index = raw
        self._mapped_file = True
        self._delta = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        self._set_removed(np.zeros(0, dtype=np.int64))

    def _merged_copy(self) -> Any:
        """An in-memory inverted file holding the mapped file's lists, less the removed templates,
        plus the added ones (caller holds the lock)."""
        copy = _in_memory_copy(self._index)
        if self._removed.size:
            copy.remove_ids(faiss.IDSelectorBatch(self._removed))
        if self._delta.ntotal:
            ids = faiss.vector_to_array(self._delta.id_map).astype(np.int64, copy=False)
            copy.add_with_ids(self._delta.index.reconstruct_n(0, int(self._delta.ntotal)), ids)
        return copy


def _lists_mapped(raw: Any) -> bool:
    """Whether faiss read ``raw``'s inverted lists as a file mapping (some list layouts, such as
    fast-scan blocks, it reads into memory whatever the flag)."""
    if not isinstance(raw, faiss.IndexIVF) or raw.invlists is None:
        return False
    return isinstance(faiss.downcast_InvertedLists(raw.invlists), faiss.OnDiskInvertedLists)


def _in_memory_copy(index: Any) -> Any:
    """A writable, in-memory copy of an inverted file whose lists faiss cannot clone (mapped ones)."""
    lists = index.invlists
    empty = faiss.ArrayInvertedLists(int(index.nlist), int(index.code_size))
    owned = bool(index.own_invlists)
    index.own_invlists = False  # so swapping the lists out does not free them
    index.replace_invlists(empty, False)
    try:
        copy: Any = faiss.clone_index(index)  # everything but the lists (a copy of the empty ones)
    finally:
        index.replace_invlists(lists, owned)
    target = copy.invlists
    for list_no in range(int(index.nlist)):
        size = int(lists.list_size(list_no))
        if size:
            target.add_entries(list_no, size, lists.get_ids(list_no), lists.get_codes(list_no))
    return copy


def _merge_top(
    first: tuple[ScoreArray, IdArray], second: tuple[ScoreArray, IdArray], k: int
) -> tuple[ScoreArray, IdArray]:
    """The best ``k`` of two (scores, labels) result sets by score, row by row."""
    scores = np.concatenate([first[0], second[0]], axis=1)
    labels = np.concatenate([first[1], second[1]], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(labels, order, axis=1)


def _check_loaded(raw: Any, kind: Kind, fresh: Any, path: Path, dim: int) -> Any:
    """``raw`` (as read) if it is the same structure as ``fresh`` (built from the factory), else corrupt."""
    if raw.d != dim:
        raise IndexUnavailable(f"{path}: dimension {raw.d}, manifest says {dim}", code="index_corrupt")
    if raw.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexUnavailable(f"{path}: not an inner-product index", code="index_corrupt")
    if kind == "flat":
        if not isinstance(raw, faiss.IndexIDMap2):
            raise IndexUnavailable(f"{path}: not an IndexIDMap2", code="index_corrupt")
        if not isinstance(faiss.downcast_index(raw.index), faiss.IndexFlatIP):
            raise IndexUnavailable(f"{path}: not an inner-product flat index", code="index_corrupt")
        return raw
    if kind == "mapped":
        if not isinstance(raw, faiss.IndexIDMap) or isinstance(raw, faiss.IndexIDMap2):
            raise IndexUnavailable(f"{path}: not an IndexIDMap", code="index_corrupt")
        inner, expected = faiss.downcast_index(raw.index), faiss.downcast_index(fresh.index)
    else:
        inner, expected = raw, fresh
    if type(inner) is not type(expected) or not inner.is_trained:
        raise IndexUnavailable(
            f"{path}: a trained {type(expected).__name__} was expected, found {type(inner).__name__}",
            code="index_corrupt",
        )
    return raw


def _ivf_ids(index: Any) -> IdArray:
    """Every id stored in an inverted file's lists."""
    invlists = index.invlists
    sizes = [int(invlists.list_size(list_no)) for list_no in range(int(index.nlist))]
    ids = np.empty(sum(sizes), dtype=np.int64)  # one copy (20M ids: 153 MiB), not a part per list and their join
    at = 0
    for list_no, size in enumerate(sizes):
        if size:
            pointer = invlists.get_ids(list_no)
            ids[at : at + size] = faiss.rev_swig_ptr(pointer, size)
            invlists.release_ids(list_no, pointer)
            at += size
    return ids
