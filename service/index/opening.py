"""Service start: load the saved gallery index if it still matches the database, else rebuild it.

The database is the source of truth. The saved index is trusted only when its manifest names the
expected pack, dimension and type (``RFR_INDEX__FACTORY``, or ``Flat`` below
``RFR_INDEX__FLAT_BELOW`` templates), its file has the manifest's size and sha256, faiss reads
it, its template count and highest template id equal the database's, and it needs no retrain or
compaction. Anything else (missing, stale, corrupt, another type) rebuilds it from the stored
embeddings: an approximate type is first trained on a uniform sample of the gallery, and the result
is verified (count, highest id, and a sample of templates searched for themselves) before it is
saved atomically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from service.config import IndexSettings
from service.errors import ConfigurationError, IndexUnavailable
from service.index.faiss_index import FLAT, FaissGalleryIndex, is_flat
from service.index.gallery_index import IdArray, as_ids
from service.index.persistence import remove_stale_temporaries

# () -> (template count, highest template id or None when there are none), for this pack.
ExpectedState = Callable[[], tuple[int, int | None]]
# () -> iterable of (ids (n,), embeddings (n, dim)) batches: every stored template of this pack.
EmbeddingBatches = Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]]
# n -> (ids, embeddings) of at most n templates of this pack drawn uniformly at random.
GallerySample = Callable[[int], tuple[ArrayLike, ArrayLike]]
# gallery version v -> (ids added since v and still stored, ids removed since v), or None when the
# database's change log does not reach back to v.
ChangesSince = Callable[[int], tuple[ArrayLike, ArrayLike] | None]
# ids -> iterable of (ids, embeddings) batches of those of them still stored.
EmbeddingsOf = Callable[[IdArray], Iterable[tuple[ArrayLike, ArrayLike]]]


class IndexOpening(NamedTuple):
    """What ``open_or_rebuild`` did: ``gallery, status = open_or_rebuild(...)``.

    ``status`` is ``"loaded"``, ``"loaded, reconciled ..."`` (the saved index brought up to date
    from the change log) or ``"rebuilt: <error code>: <detail>"``, for the caller to log
    (it names counts, ids, types and paths, never personal data).
    """

    gallery: FaissGalleryIndex
    status: str

    @property
    def rebuilt(self) -> bool:
        return not self.status.startswith("loaded")

    @property
    def reason(self) -> str | None:
        return self.status.removeprefix("rebuilt: ") if self.rebuilt else None


def _expected(expected: ExpectedState) -> tuple[int, int]:
    count, max_id = expected()
    return int(count), -1 if max_id is None else int(max_id)


# A scalar or product quantiser without inverted lists is trained on at least this many templates.
SMALLEST_TRAINED_GALLERY = 1000


@functools.lru_cache(maxsize=32)
def smallest_gallery(factory: str, dim: int) -> int:
    """The fewest templates ``factory`` can be trained on well: 39 per inverted list (faiss's own
    floor for k-means), ``SMALLEST_TRAINED_GALLERY`` for other trained codes (a scalar quantiser's
    ranges), 1 for a type that needs no training. Raises ``ConfigurationError`` for a type the
    gallery refuses."""
    probe = FaissGalleryIndex("factory-check", dim, factory=factory)
    lists = probe.inverted_lists
    if lists:
        return 39 * lists
    return 1 if probe.is_trained else SMALLEST_TRAINED_GALLERY


def chosen_factory(settings: IndexSettings, dim: int, gallery_size: int) -> str:
    """The type a gallery of ``gallery_size`` templates is held in: ``settings.factory``, or ``Flat``
    below ``settings.flat_below`` templates or below what the type can be trained on."""
    if is_flat(settings.factory):
        return FLAT
    floor = max(settings.flat_below, smallest_gallery(settings.factory, dim))
    return settings.factory.strip() if gallery_size >= floor else FLAT


def open_or_rebuild(
    directory: Path,
    pack_id: str,
    dim: int,
    expected: ExpectedState,
    embeddings_source: EmbeddingBatches,
    *,
    settings: IndexSettings | None = None,
    sample: GallerySample | None = None,
    gallery_version: int = -1,
    changes: ChangesSince | None = None,
    embeddings_of: EmbeddingsOf | None = None,
) -> IndexOpening:
    """Load ``directory``'s index if it matches the database, otherwise rebuild and save it.

    ``expected()`` returns the database's (template count, highest template id) for this pack,
    ``None`` or ``-1`` as the id when there are none. ``embeddings_source()`` yields every stored
    template of this pack as (ids, embeddings) batches; ``sample(n)`` up to ``n`` of them drawn
    uniformly (needed to train an approximate type, and to verify any rebuild). They must describe
    the same rows: after a rebuild the index is compared with ``expected()`` again and a
    disagreement raises ``IndexUnavailable`` (code ``index_rebuild_mismatch``), as does a rebuilt
    index that does not find enough sampled templates in their own top 10
    (``index_verification_failed``), rather than serving a gallery that differs from the
    database. Bad stored embeddings (wrong dimension, not normalised, repeated ids) propagate as
    the typed errors ``add`` raises; nothing is skipped silently. ``gallery_version`` (the
    database's, now) is recorded in the manifest of a saved index.

    A saved index of the right type whose manifest names an older gallery version is brought up to
    date without reading every template: ``changes(saved version)`` gives the ids added and removed
    since, ``embeddings_of(ids)`` the added ones' embeddings; only if that leaves it disagreeing
    with ``expected()`` (or the log does not reach back) is it rebuilt.
    """
    tuning = settings or IndexSettings()
    if directory.is_dir():
        remove_stale_temporaries(directory)
    db_count, db_max = _expected(expected)
    factory = chosen_factory(tuning, dim, db_count)
    try:
        loaded = FaissGalleryIndex.load(directory, pack_id, dim, factory=factory, tuning=tuning)
    except IndexUnavailable as exc:
        reason = f"{exc.code}: {exc.message}"
    else:
        saved_version = loaded.gallery_version
        current = saved_version == gallery_version or gallery_version < 0 or saved_version < 0
        if current and loaded.count == db_count and loaded.max_id == db_max and loaded.rebuild_reason(db_count) is None:
            return IndexOpening(loaded, "loaded")
        if not current and changes is not None and embeddings_of is not None:
            reconciled = _reconcile(loaded, saved_version, changes, embeddings_of)
            if (
                reconciled is not None
                and loaded.count == db_count
                and loaded.max_id == db_max
                and loaded.rebuild_reason(db_count) is None
            ):
                loaded.save(gallery_version=gallery_version)
                since = f"from gallery version {saved_version} to {gallery_version}"
                return IndexOpening(loaded, f"loaded, reconciled {since}: {reconciled}")
        upkeep = loaded.rebuild_reason(db_count)
        if upkeep is None and not current and loaded.count == db_count and loaded.max_id == db_max:
            upkeep = (
                f"index_stale: saved at gallery version {saved_version}, the database is at {gallery_version}, "
                "and no change log reconciles the two"
            )
        reason = upkeep or (
            f"index_stale: saved index holds {loaded.count} templates (max id {loaded.max_id}), "
            f"database {db_count} (max id {db_max})"
        )
        del loaded

    index, verified = build_index(
        directory, pack_id, dim, expected, embeddings_source, factory=factory, settings=tuning, sample=sample
    )
    index.save(gallery_version=gallery_version)
    return IndexOpening(index, f"rebuilt: {reason}; {verified}")


def _reconcile(index: FaissGalleryIndex, since: int, changes: ChangesSince, embeddings_of: EmbeddingsOf) -> str | None:
    """Apply the changes logged after version ``since``; ``None`` when the log does not reach back."""
    delta = changes(since)
    if delta is None:
        return None
    added, removed = as_ids(delta[0]), as_ids(delta[1])
    dropped = index.remove(removed) if removed.size else 0
    missing = added[~np.isin(added, index.ids())]
    put = 0
    for ids, vectors in embeddings_of(missing) if missing.size else ():
        index.add(ids, vectors)
        put += len(as_ids(ids))
    return f"{put} templates added, {dropped} removed"


def build_index(
    directory: Path | None,
    pack_id: str,
    dim: int,
    expected: ExpectedState,
    embeddings_source: EmbeddingBatches,
    *,
    factory: str,
    settings: IndexSettings,
    sample: GallerySample | None,
) -> tuple[FaissGalleryIndex, str]:
    """A new index of ``factory`` holding every stored template, trained and verified, not saved.

    Returns it and a line saying what was verified.
    """
    index = FaissGalleryIndex(pack_id, dim, directory, factory=factory, tuning=settings)
    db_count, _ = _expected(expected)
    if not index.is_trained:
        if sample is None:
            raise ConfigurationError(f"{factory} needs a training sample of the gallery; none was given")
        _, vectors = sample(index.train_size(db_count))
        index.train(vectors, gallery_size=db_count)
    for ids, vectors in embeddings_source():
        index.add(ids, vectors)
    db_count, db_max = _expected(expected)
    if index.count != db_count or index.max_id != db_max:
        raise IndexUnavailable(
            f"rebuilt index holds {index.count} templates (max id {index.max_id}) but the database "
            f"reports {db_count} (max id {db_max}): embeddings source and count query disagree",
            code="index_rebuild_mismatch",
        )
    if sample is None or settings.verify_sample == 0 or db_count == 0:
        return index, f"{index.factory}, {index.count} templates, count and highest id verified"
    ids, vectors = sample(settings.verify_sample)
    id_array = as_ids(ids)
    recall = index.self_recall(id_array, np.asarray(vectors, dtype=np.float32))
    if recall < settings.verify_min_recall:
        raise IndexUnavailable(
            f"rebuilt {index.factory} finds {recall:.3f} of {id_array.size} sampled templates in their own top 10, "
            f"below RFR_INDEX__VERIFY_MIN_RECALL={settings.verify_min_recall}: raise nprobe or ef_search, "
            "or pick another type",
            code="index_verification_failed",
        )
    return index, (
        f"{index.factory}, {index.count} templates, count and highest id verified, "
        f"{recall:.3f} of {id_array.size} sampled templates found in their own top 10"
    )
