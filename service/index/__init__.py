"""Gallery index: the ``GalleryIndex`` protocol, its FAISS implementation, persistence and start-up.

Never imports ``service.db`` or ``service.api``: the database reaches the index only through the
callables ``open_or_rebuild`` takes.
"""

from service.index.faiss_index import (
    DEFAULT_BLAS_MIN_QUERIES,
    DEFAULT_OMP_THREADS,
    FLAT,
    FaissGalleryIndex,
    FaissRuntime,
    configure_faiss_runtime,
)
from service.index.gallery_index import MAX_K, NORM_TOLERANCE, PAD_ID, GalleryIndex, IdArray, ScoreArray, VectorArray
from service.index.opening import (
    EmbeddingBatches,
    ExpectedState,
    GallerySample,
    IndexOpening,
    build_index,
    chosen_factory,
    open_or_rebuild,
)
from service.index.persistence import FORMAT_VERSION, INDEX_FILE, MANIFEST_FILE, IndexManifest

__all__ = [
    "DEFAULT_BLAS_MIN_QUERIES",
    "DEFAULT_OMP_THREADS",
    "FLAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "MAX_K",
    "NORM_TOLERANCE",
    "PAD_ID",
    "EmbeddingBatches",
    "ExpectedState",
    "FaissGalleryIndex",
    "FaissRuntime",
    "GalleryIndex",
    "GallerySample",
    "IdArray",
    "IndexManifest",
    "IndexOpening",
    "ScoreArray",
    "VectorArray",
    "build_index",
    "chosen_factory",
    "configure_faiss_runtime",
    "open_or_rebuild",
]
