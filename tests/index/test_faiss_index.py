"""The FAISS gallery index on its own: seeded synthetic unit vectors stand in for embeddings here
(the face tests with real embeddings live with the services)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import ArrayLike, NDArray

from service import durable_files
from service.errors import Conflict, IndexUnavailable, InvalidRequest, PackMismatch
from service.index import (
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST_FILE,
    FaissGalleryIndex,
    GalleryIndex,
    configure_faiss_runtime,
    open_or_rebuild,
)

PACK = "yunet_sface"
DIM = 128
N = 3000


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> NDArray[np.float32]:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class FakeDatabase:
    """The source of truth as ``open_or_rebuild`` sees it: (count, max id) and embedding batches."""

    def __init__(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], batch: int = 700) -> None:
        self.ids = ids.copy()
        self.vectors = vectors.copy()
        self.batch = batch
        self.batches_read = 0

    def expected(self) -> tuple[int, int | None]:
        return int(self.ids.size), (int(self.ids.max()) if self.ids.size else None)

    def embeddings(self) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        for start in range(0, self.ids.size, self.batch):
            self.batches_read += 1
            yield self.ids[start : start + self.batch], self.vectors[start : start + self.batch]


@pytest.fixture
def gallery() -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    rng = np.random.default_rng(20240601)
    ids = np.sort(rng.choice(10_000_000, size=N, replace=False)).astype(np.int64)  # sparse, like DB keys
    vectors = unit_vectors(rng, N)
    vectors[100:120] = vectors[0:20]  # exact duplicates: tied scores for the tie-tolerant comparison
    return ids, vectors


@pytest.fixture
def queries(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> NDArray[np.float32]:
    rng = np.random.default_rng(7)
    _, vectors = gallery
    near = vectors[rng.choice(N, 30, replace=False)] + 0.05 * rng.standard_normal((30, DIM)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    exact = vectors[0:10]  # each has a duplicate in the gallery: a tie at the top
    return np.ascontiguousarray(np.concatenate([unit_vectors(rng, 40), near, exact]), dtype=np.float32)


def assert_same_results(
    a: tuple[NDArray[np.float32], NDArray[np.int64]], b: tuple[NDArray[np.float32], NDArray[np.int64]]
) -> None:
    assert np.array_equal(a[0], b[0]), "scores differ"
    assert np.array_equal(a[1], b[1]), "ids differ"


def build(ids: NDArray[np.int64], vectors: NDArray[np.float32], directory: Path | None = None) -> FaissGalleryIndex:
    index = FaissGalleryIndex(PACK, DIM, directory)
    index.add(ids, vectors, pack_id=PACK)
    return index


@pytest.fixture(params=["simd_scan", "blas"])
def faiss_search_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force faiss down each of its two exact-search code paths, then restore its settings."""
    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 2**31 - 1 if request.param == "simd_scan" else 1
    yield str(request.param)
    faiss.cvar.distance_compute_blas_threshold = saved


def assert_exact_top_k(
    scores: NDArray[np.float32],
    found: NDArray[np.int64],
    queries: NDArray[np.float32],
    ids: NDArray[np.int64],
    vectors: NDArray[np.float32],
    k: int,
    atol: float = 1e-5,
) -> None:
    """Agreement with a float64 numpy brute force, tolerating any order among tied scores."""
    truth = queries.astype(np.float64) @ vectors.astype(np.float64).T
    position = {int(t): i for i, t in enumerate(ids)}
    for row in range(queries.shape[0]):
        best = np.sort(truth[row])[::-1][:k]
        np.testing.assert_allclose(scores[row], best, atol=atol, err_msg=f"query {row}: top-k scores")
        assert np.all(np.diff(scores[row]) <= atol), f"query {row}: scores not in descending order"
        returned = [int(t) for t in found[row]]
        assert len(set(returned)) == k, f"query {row}: repeated ids"
        assert all(t in position for t in returned), f"query {row}: id not in the gallery"
        np.testing.assert_allclose(
            [truth[row, position[t]] for t in returned], scores[row], atol=atol, err_msg=f"query {row}: id/score"
        )
        # Everything strictly better than the k-th score must be there, whatever the tie order.
        must = {int(ids[j]) for j in np.flatnonzero(truth[row] > best[-1] + atol)}
        assert must <= set(returned), f"query {row}: missed {sorted(must - set(returned))}"


# -- search ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 10, 50])
def test_exact_search_agrees_with_numpy_brute_force(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
    queries: NDArray[np.float32],
    faiss_search_path: str,
    k: int,
) -> None:
    ids, vectors = gallery
    index = build(ids, vectors)
    scores, found = index.search(queries, k, pack_id=PACK)
    assert scores.shape == found.shape == (queries.shape[0], k)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert_exact_top_k(scores, found, queries, ids, vectors, k)
    # One probe at a time (the service's common case) gives the same answer.
    for row in (0, 45, queries.shape[0] - 1):
        one_scores, one_found = index.search(queries[row], k)
        assert_exact_top_k(one_scores, one_found, queries[row : row + 1], ids, vectors, k)


def test_a_gallery_vector_finds_itself_first_with_score_one(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> None:
    ids, vectors = gallery
    index = build(ids, vectors)
    scores, found = index.search(vectors[500:510], 3)
    assert np.array_equal(found[:, 0], ids[500:510])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_empty_index_search_returns_padding() -> None:
    index = FaissGalleryIndex(PACK, DIM)
    probe = unit_vectors(np.random.default_rng(1), 3)
    scores, found = index.search(probe, 5, pack_id=PACK)
    assert scores.shape == found.shape == (3, 5)
    assert np.all(found == -1)
    assert np.all(np.isneginf(scores))
    assert index.count == 0 and index.max_id == -1 and index.ids().size == 0


def test_fewer_templates_than_k_pads_the_tail(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> None:
    ids, vectors = gallery
    index = build(ids[:4], vectors[:4])
    scores, found = index.search(vectors[:2], 6)
    assert np.all(found[:, :4] >= 0) and np.all(np.isfinite(scores[:, :4]))
    assert np.all(found[:, 4:] == -1) and np.all(np.isneginf(scores[:, 4:]))
    assert set(found[0, :4].tolist()) == set(ids[:4].tolist())


# -- mutations -------------------------------------------------------------------------------------


def test_remove_makes_ids_disappear_at_once(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> None:
    ids, vectors = gallery
    index = build(ids, vectors)
    gone = ids[[25, 26, 1000, 2999]]
    _, before = index.search(vectors[[25, 26, 1000, 2999]], 1)
    assert np.array_equal(before[:, 0], gone)  # they are found before removal

    removed = index.remove(np.concatenate([gone, [123_456_789_012]]))  # plus one id never held
    assert removed == 4
    assert index.count == N - 4
    assert not np.isin(gone, index.ids()).any()
    _, after = index.search(vectors[[25, 26, 1000, 2999]], 50)
    assert not np.isin(gone, after).any()
    assert index.remove(gone) == 0  # already gone
    remaining = np.setdiff1d(ids, gone)
    scores, found = index.search(vectors[[27, 28]], 10)
    assert_exact_top_k(scores, found, vectors[[27, 28]], remaining, vectors[np.isin(ids, remaining)], 10)
    index.add(gone[:1], vectors[[25]])  # a removed id may come back
    assert index.search(vectors[25], 1)[1][0, 0] == gone[0]


def test_max_id_follows_adds_and_removes(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> None:
    ids, vectors = gallery
    index = build(ids[:100], vectors[:100])
    assert index.max_id == int(ids[99])
    index.remove(ids[99:100])
    assert index.max_id == int(ids[98])
    assert np.array_equal(index.ids(), ids[:99])


def test_add_refuses_repeated_or_known_ids_and_changes_nothing(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> None:
    ids, vectors = gallery
    index = build(ids[:10], vectors[:10])
    with pytest.raises(Conflict) as known:
        index.add(ids[9:12], vectors[9:12])
    assert known.value.code == "index_duplicate_id"
    with pytest.raises(Conflict):
        index.add(np.array([ids[20], ids[20]]), vectors[20:22])
    assert index.count == 10 and np.array_equal(index.ids(), ids[:10])


def test_pack_mismatch_is_refused(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> None:
    ids, vectors = gallery
    index = build(ids[:10], vectors[:10])
    with pytest.raises(PackMismatch):
        index.search(vectors[:1], 5, pack_id="buffalo_l")
    with pytest.raises(PackMismatch):
        index.add(ids[10:11], vectors[10:11], pack_id="buffalo_l")
    with pytest.raises(PackMismatch) as checked:
        index.check_pack("buffalo_l")
    assert checked.value.code == "pack_mismatch"
    index.check_pack(PACK)
    assert index.count == 10


def test_wrong_dimension_is_refused(gallery: tuple[NDArray[np.int64], NDArray[np.float32]]) -> None:
    ids, vectors = gallery
    index = build(ids[:10], vectors[:10])
    wide = unit_vectors(np.random.default_rng(3), 2, dim=512)
    with pytest.raises(InvalidRequest) as on_search:
        index.search(wide, 5)
    assert on_search.value.code == "embedding_dim_mismatch"
    with pytest.raises(InvalidRequest) as on_add:
        index.add(ids[10:12], wide)
    assert on_add.value.code == "embedding_dim_mismatch"
    assert index.count == 10


@pytest.mark.parametrize(
    "bad",
    ["nan", "not_normalised", "zero", "negative_id", "float_ids", "length_mismatch", "three_d", "strings"],
)
def test_bad_input_is_refused_and_changes_nothing(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]], bad: str
) -> None:
    ids, vectors = gallery
    index = build(ids[:10], vectors[:10])
    new_ids: ArrayLike = ids[10:12]
    new_vectors: ArrayLike = vectors[10:12].copy()
    if bad == "nan":
        poisoned = vectors[10:12].copy()
        poisoned[0, 0] = np.nan
        new_vectors = poisoned
    elif bad == "not_normalised":
        new_vectors = vectors[10:12] * 2.0
    elif bad == "zero":
        new_vectors = np.zeros((2, DIM), dtype=np.float32)
    elif bad == "negative_id":
        new_ids = np.array([-1, 5], dtype=np.int64)
    elif bad == "float_ids":
        new_ids = np.array([1.0, 2.0])
    elif bad == "length_mismatch":
        new_ids = ids[10:13]
    elif bad == "three_d":
        new_vectors = vectors[10:12].reshape(2, 1, DIM)
    elif bad == "strings":
        new_vectors = [["a"] * DIM, ["b"] * DIM]
    with pytest.raises(InvalidRequest):
        index.add(new_ids, new_vectors)
    assert index.count == 10 and np.array_equal(index.ids(), ids[:10])


@pytest.mark.parametrize("k", [0, -1, 10_001, 2.5, True])
def test_bad_k_is_refused(gallery: tuple[NDArray[np.int64], NDArray[np.float32]], k: object) -> None:
    ids, vectors = gallery
    index = build(ids[:10], vectors[:10])
    with pytest.raises(InvalidRequest):
        index.search(vectors[:1], k)  # type: ignore[arg-type]


def test_float64_and_non_contiguous_input_is_sanitised(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> None:
    ids, vectors = gallery
    index = FaissGalleryIndex(PACK, DIM)
    index.add(ids[:200:2].astype(np.int32), vectors[:200:2].astype(np.float64))  # strided, other dtypes
    assert index.count == 100
    probe = np.asfortranarray(vectors[:4].astype(np.float64))
    scores, found = index.search(probe, 1)
    assert np.array_equal(found[[0, 2], 0], ids[[0, 2]])
    assert scores.dtype == np.float32


def test_the_faiss_index_satisfies_the_protocol() -> None:
    assert isinstance(FaissGalleryIndex(PACK, DIM), GalleryIndex)


# -- persistence -----------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_results(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]], queries: NDArray[np.float32]
) -> None:
    ids, vectors = gallery
    index = build(ids, vectors, tmp_path)
    index.remove(ids[:3])
    manifest = index.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_FILE, MANIFEST_FILE]  # no temporaries left
    on_disk = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert on_disk["pack_id"] == PACK and on_disk["dim"] == DIM
    assert on_disk["count"] == N - 3 and on_disk["max_id"] == int(ids.max())
    assert on_disk["sha256"] == durable_files.sha256_file(tmp_path / INDEX_FILE) == manifest.sha256
    assert on_disk["format_version"] == FORMAT_VERSION == 2 and on_disk["saved_at"]
    assert on_disk["factory"] == "Flat" and on_disk["removed"] == 0 and on_disk["trained_count"] == 0

    loaded = FaissGalleryIndex.load(tmp_path, PACK, DIM)
    assert loaded.count == index.count and loaded.max_id == index.max_id
    assert np.array_equal(loaded.ids(), index.ids())
    assert_same_results(index.search(queries, 20), loaded.search(queries, 20))
    loaded.add(ids[:1], vectors[:1])  # a loaded index keeps working: id bookkeeping was restored
    with pytest.raises(Conflict):
        loaded.add(ids[5:6], vectors[5:6])


def test_save_without_a_directory_is_a_configuration_error() -> None:
    from service.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        FaissGalleryIndex(PACK, DIM).save()


def test_load_reports_missing_stale_and_corrupt(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]]
) -> None:
    ids, vectors = gallery
    with pytest.raises(IndexUnavailable) as missing:
        FaissGalleryIndex.load(tmp_path, PACK, DIM)
    assert missing.value.code == "index_missing"
    build(ids[:50], vectors[:50], tmp_path).save()
    with pytest.raises(IndexUnavailable) as other_pack:
        FaissGalleryIndex.load(tmp_path, "buffalo_l", DIM)
    assert other_pack.value.code == "index_stale"
    with pytest.raises(IndexUnavailable) as other_dim:
        FaissGalleryIndex.load(tmp_path, PACK, 512)
    assert other_dim.value.code == "index_stale"
    data = bytearray((tmp_path / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(IndexUnavailable) as corrupt:
        FaissGalleryIndex.load(tmp_path, PACK, DIM)
    assert corrupt.value.code == "index_corrupt"


def flip_a_byte(directory: Path) -> None:
    path = directory / INDEX_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A  # same size, different content: only the checksum can tell
    path.write_bytes(bytes(data))


def truncate(directory: Path) -> None:
    path = directory / INDEX_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def db_drop(db: FakeDatabase, position: int) -> None:
    keep = np.arange(db.ids.size) != position
    db.ids, db.vectors = db.ids[keep], db.vectors[keep]


def db_add(db: FakeDatabase) -> None:
    db.ids = np.append(db.ids, db.ids.max() + 1)
    db.vectors = np.concatenate([db.vectors, unit_vectors(np.random.default_rng(99), 1)])


# damage -> the error code the rebuild must report
DAMAGE = {
    "index_file_deleted": "index_missing",
    "manifest_deleted": "index_missing",
    "index_byte_flipped": "index_corrupt",
    "index_truncated": "index_corrupt",
    "manifest_not_json": "index_corrupt",
    "manifest_wrong_count": "index_corrupt",
    "manifest_wrong_max_id": "index_corrupt",
    "manifest_wrong_checksum": "index_corrupt",
    "manifest_other_pack": "index_stale",
    "manifest_other_dim": "index_stale",
    "manifest_other_format": "index_stale",
    "database_has_fewer": "index_stale",
    "database_has_more": "index_stale",
    "database_same_count_new_max_id": "index_stale",
}


def apply_damage(damage: str, directory: Path, db: FakeDatabase) -> None:
    if damage == "index_file_deleted":
        (directory / INDEX_FILE).unlink()
    elif damage == "manifest_deleted":
        (directory / MANIFEST_FILE).unlink()
    elif damage == "index_byte_flipped":
        flip_a_byte(directory)
    elif damage == "index_truncated":
        truncate(directory)
    elif damage == "manifest_not_json":
        (directory / MANIFEST_FILE).write_text("{not json")
    elif damage == "manifest_wrong_count":
        edit_manifest(directory, count=N - 1)
    elif damage == "manifest_wrong_max_id":
        edit_manifest(directory, max_id=1)
    elif damage == "manifest_wrong_checksum":
        edit_manifest(directory, sha256="0" * 64)
    elif damage == "manifest_other_pack":
        edit_manifest(directory, pack_id="buffalo_l")
    elif damage == "manifest_other_dim":
        edit_manifest(directory, dim=512)
    elif damage == "manifest_other_format":
        edit_manifest(directory, format_version=99)
    elif damage == "database_has_fewer":
        db_drop(db, 17)
    elif damage == "database_has_more":
        db_add(db)
    elif damage == "database_same_count_new_max_id":
        db_drop(db, 3)
        db_add(db)
    else:
        raise AssertionError(damage)


def test_open_or_rebuild_loads_a_consistent_index_without_reading_embeddings(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]], queries: NDArray[np.float32]
) -> None:
    ids, vectors = gallery
    original = build(ids, vectors, tmp_path)
    original.save()
    db = FakeDatabase(ids, vectors)
    index, status = open_or_rebuild(tmp_path, PACK, DIM, db.expected, db.embeddings)
    assert status == "loaded"
    assert db.batches_read == 0
    assert_same_results(original.search(queries, 20), index.search(queries, 20))


def test_open_or_rebuild_builds_a_missing_index_and_saves_it(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]]
) -> None:
    ids, vectors = gallery
    db = FakeDatabase(ids, vectors)
    opening = open_or_rebuild(tmp_path / "index" / PACK, PACK, DIM, db.expected, db.embeddings)
    assert opening.rebuilt and opening.status.startswith("rebuilt: index_missing")
    assert opening.gallery.count == N
    assert open_or_rebuild(tmp_path / "index" / PACK, PACK, DIM, db.expected, db.embeddings).status == "loaded"


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_open_or_rebuild_repairs_a_missing_stale_or_corrupt_index(
    tmp_path: Path,
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
    queries: NDArray[np.float32],
    damage: str,
) -> None:
    ids, vectors = gallery
    build(ids, vectors, tmp_path).save()
    db = FakeDatabase(ids, vectors)
    apply_damage(damage, tmp_path, db)
    code = DAMAGE[damage]

    index, status = open_or_rebuild(tmp_path, PACK, DIM, db.expected, db.embeddings)

    assert status.startswith(f"rebuilt: {code}"), status
    assert db.batches_read > 0
    # Identical to an index built straight from the database (the source of truth).
    reference = build(db.ids, db.vectors)
    assert np.array_equal(index.ids(), reference.ids())
    assert_same_results(reference.search(queries, 20), index.search(queries, 20))
    # The repaired index was saved: the next start loads it.
    db.batches_read = 0
    again, again_status = open_or_rebuild(tmp_path, PACK, DIM, db.expected, db.embeddings)
    assert again_status == "loaded" and db.batches_read == 0
    assert np.array_equal(again.ids(), reference.ids())


def test_a_crash_between_index_file_and_manifest_is_detected(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors = gallery
    index = build(ids[:100], vectors[:100], tmp_path)
    index.save()
    index.add(ids[100:110], vectors[100:110])
    real_write = durable_files.write_atomically

    def crash_on_manifest(path: Path, produce: object) -> None:
        if path.name == MANIFEST_FILE:
            raise OSError("power cut")
        real_write(path, produce)  # type: ignore[arg-type]

    monkeypatch.setattr("service.index.faiss_index.write_atomically", crash_on_manifest)
    with pytest.raises(OSError):
        index.save()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_FILE, MANIFEST_FILE]
    with pytest.raises(IndexUnavailable) as stale_pair:
        FaissGalleryIndex.load(tmp_path, PACK, DIM)
    assert stale_pair.value.code == "index_corrupt"  # new index file, old manifest: checksum differs
    db = FakeDatabase(ids[:110], vectors[:110])
    rebuilt, status = open_or_rebuild(tmp_path, PACK, DIM, db.expected, db.embeddings)
    assert status.startswith("rebuilt: index_corrupt") and rebuilt.count == 110


def test_open_or_rebuild_refuses_a_database_that_contradicts_itself(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]]
) -> None:
    ids, vectors = gallery
    db = FakeDatabase(ids, vectors)
    with pytest.raises(IndexUnavailable) as mismatch:
        open_or_rebuild(tmp_path, PACK, DIM, lambda: (N + 1, int(ids.max())), db.embeddings)
    assert mismatch.value.code == "index_rebuild_mismatch"
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_leftover_temporary_files_are_cleaned_at_open(
    tmp_path: Path, gallery: tuple[NDArray[np.int64], NDArray[np.float32]]
) -> None:
    ids, vectors = gallery
    build(ids[:20], vectors[:20], tmp_path).save()
    leftover = tmp_path / f".{INDEX_FILE}.abc123.tmp"
    leftover.write_bytes(b"half a file")
    db = FakeDatabase(ids[:20], vectors[:20])
    _, status = open_or_rebuild(tmp_path, PACK, DIM, db.expected, db.embeddings)
    assert status == "loaded"
    assert not leftover.exists()


# -- threads and runtime ---------------------------------------------------------------------------


def test_concurrent_searches_during_adds_and_removes_stay_consistent(
    gallery: tuple[NDArray[np.int64], NDArray[np.float32]],
) -> None:
    ids, vectors = gallery
    index = build(ids[:1000], vectors[:1000])
    removed = ids[:200]
    errors: list[BaseException] = []
    stop = threading.Event()
    valid = set(ids.tolist())

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                scores, found = index.search(unit_vectors(rng, 4), 10)
                row_ids = found[found >= 0]
                assert set(row_ids.tolist()) <= valid
                assert np.all(np.diff(scores, axis=1) <= 1e-6)
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for start in range(1000, N, 100):
            index.add(ids[start : start + 100], vectors[start : start + 100])
        for chunk in np.array_split(removed, 10):
            index.remove(chunk)
            _, found = index.search(vectors[np.isin(ids, chunk)], 5)
            assert not np.isin(chunk, found).any()  # gone for the very next search
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert index.count == N - 200
    assert np.array_equal(index.ids(), np.setdiff1d(ids, removed))


def test_configure_faiss_runtime_sets_threads_and_blas_switch() -> None:
    saved_threshold = faiss.cvar.distance_compute_blas_threshold
    saved_threads = faiss.omp_get_max_threads()
    try:
        runtime = configure_faiss_runtime(dim=DIM, omp_threads=1, blas_min_queries=3)
        assert faiss.omp_get_max_threads() == 1
        assert faiss.cvar.distance_compute_blas_threshold == runtime.blas_threshold
        major, minor = (int(p) for p in faiss.__version__.split(".")[:2])
        assert runtime.blas_threshold == (3 * DIM if (major, minor) >= (1, 15) else 3)
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved_threshold
        faiss.omp_set_num_threads(saved_threads)
