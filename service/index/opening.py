"""Service start: load the saved gallery index if it still matches the database, else rebuild it.

The database is the source of truth. The saved index is trusted only when its manifest names the
expected pack and dimension, its file has the manifest's size and sha256, faiss reads it, and its
template count and highest template id equal the database's. Anything else (missing, stale,
corrupt) rebuilds it from the stored embeddings and saves the result atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from numpy.typing import ArrayLike

from service.errors import IndexUnavailable
from service.index.faiss_index import FaissGalleryIndex
from service.index.persistence import remove_stale_temporaries

# () -> (template count, highest template id or None when there are none), for this pack.
ExpectedState = Callable[[], tuple[int, int | None]]
# () -> iterable of (ids (n,), embeddings (n, dim)) batches: every stored template of this pack.
EmbeddingBatches = Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]]


class IndexOpening(NamedTuple):
    """What ``open_or_rebuild`` did: ``gallery, status = open_or_rebuild(...)``.

    ``status`` is ``"loaded"`` or ``"rebuilt: <error code>: <detail>"``, for the caller to log
    (it names counts, ids and paths, never personal data).
    """

    gallery: FaissGalleryIndex
    status: str

    @property
    def rebuilt(self) -> bool:
        return self.status != "loaded"

    @property
    def reason(self) -> str | None:
        return self.status.removeprefix("rebuilt: ") if self.rebuilt else None


def _expected(expected: ExpectedState) -> tuple[int, int]:
    count, max_id = expected()
    return int(count), -1 if max_id is None else int(max_id)


def open_or_rebuild(
    directory: Path,
    pack_id: str,
    dim: int,
    expected: ExpectedState,
    embeddings_source: EmbeddingBatches,
) -> IndexOpening:
    """Load ``directory``'s index if it matches the database, otherwise rebuild and save it.

    ``expected()`` returns the database's (template count, highest template id) for this pack,
    ``None`` or ``-1`` as the id when there are none. ``embeddings_source()`` yields every stored
    template of this pack as (ids, embeddings) batches. They must describe the same rows: after a
    rebuild the index is compared with ``expected()`` again and a disagreement raises
    ``IndexUnavailable`` (code ``index_rebuild_mismatch``) rather than serving a gallery that
    differs from the database. Bad stored embeddings (wrong dimension, not normalised, repeated
    ids) propagate as the typed errors ``add`` raises; nothing is skipped silently.
    """
    if directory.is_dir():
        remove_stale_temporaries(directory)
    try:
        loaded = FaissGalleryIndex.load(directory, pack_id, dim)
    except IndexUnavailable as exc:
        reason = f"{exc.code}: {exc.message}"
    else:
        db_count, db_max = _expected(expected)
        if loaded.count == db_count and loaded.max_id == db_max:
            return IndexOpening(loaded, "loaded")
        reason = (
            f"index_stale: saved index holds {loaded.count} templates (max id {loaded.max_id}), "
            f"database {db_count} (max id {db_max})"
        )
        del loaded

    index = FaissGalleryIndex(pack_id, dim, directory)
    for ids, vectors in embeddings_source():
        index.add(ids, vectors)
    db_count, db_max = _expected(expected)
    if index.count != db_count or index.max_id != db_max:
        raise IndexUnavailable(
            f"rebuilt index holds {index.count} templates (max id {index.max_id}) but the database "
            f"reports {db_count} (max id {db_max}): embeddings source and count query disagree",
            code="index_rebuild_mismatch",
        )
    index.save()
    return IndexOpening(index, f"rebuilt: {reason}")
