"""service.db.image_store: images stored once under their sha256, written atomically, in the data
directory's own folder or in a folder several hosts share."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from service import durable_files
from service.db import image_store
from service.db.image_store import CHUNK_BYTES, ImageStore, LocalImageStore, SharedImageStore, sha256_bytes
from service.errors import PayloadTooLarge


def make_store(kind: str, root: Path, host: str = "host-a") -> ImageStore:
    return SharedImageStore(root, host=host) if kind == "shared" else LocalImageStore(root)


kinds = pytest.mark.parametrize("kind", ["local", "shared"])


@kinds
def test_put_stores_content_under_its_sha256_once(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path / "images")
    data = b"\xff\xd8 a still \xff\xd9"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
    assert store.path_for(digest) == tmp_path / "images" / digest[:2] / digest[2:4] / digest
    assert store.exists(digest) and store.get(digest) == data
    assert store.put(data) == digest, "the same bytes, the same address"
    assert [p for p in store.root.rglob("*") if p.is_file()] == [store.path_for(digest)], "stored once, no temp"
    other = store.put(b"another still")
    assert other != digest and store.get(other) == b"another still" and store.get(digest) == data


@kinds
def test_delete_and_exists(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path)
    digest = store.put(b"to be purged")
    assert store.delete(digest) is True
    assert not store.exists(digest)
    assert store.delete(digest) is False, "deleting what is gone says so"
    assert not store.exists(sha256_bytes(b"never stored"))
    with pytest.raises(FileNotFoundError):
        store.get(digest)


@kinds
def test_a_truncated_file_is_rewritten(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path)
    data = b"x" * 1000
    digest = store.put(data)
    store.path_for(digest).write_bytes(data[:10])
    assert store.put(data) == digest
    assert store.get(digest) == data


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalImageStore(tmp_path)
    data = b"half written"
    digest = sha256_bytes(data)
    real = durable_files.write_atomically

    def crash_after_partial_write(path: Path, produce: object) -> None:
        def partial(tmp: Path) -> None:
            tmp.write_bytes(data[:4])
            raise OSError("disk full")

        real(path, partial)

    monkeypatch.setattr(image_store, "write_atomically", crash_after_partial_write)
    with pytest.raises(OSError, match="disk full"):
        store.put(data)
    assert not store.exists(digest)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "the temporary file is removed"
    monkeypatch.setattr(image_store, "write_atomically", real)
    assert store.put(data) == digest and store.get(digest) == data


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@kinds
def test_a_staged_upload_is_streamed_hashed_and_adopted_once(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path)
    data = os.urandom(3 * CHUNK_BYTES + 17)  # read in several chunks
    staged = store.stage(io.BytesIO(data), limit=len(data))
    assert staged.sha256 == sha256_bytes(data) and staged.size == len(data)
    assert staged.path.parent == store.incoming and staged.path.read_bytes() == data
    assert staged.head(5) == data[:5]
    assert store.adopt(staged) is True
    assert files_under(tmp_path) == [store.path_for(staged.sha256)] and store.get(staged.sha256) == data
    again = store.stage([data[:100], data[100:]])
    assert again.sha256 == staged.sha256
    assert store.adopt(again) is False, "the store held it already"
    assert files_under(tmp_path) == [store.path_for(staged.sha256)], "the second copy is removed"


@kinds
def test_a_staged_upload_over_its_limit_leaves_nothing(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path)
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 1000 bytes"):
        store.stage(io.BytesIO(b"x" * 1001), limit=1000)
    assert files_under(tmp_path) == []
    staged = store.stage(io.BytesIO(b"x" * 1000), limit=1000)
    store.discard(staged)
    store.discard(staged)  # twice is harmless
    assert files_under(tmp_path) == []


def test_staged_files_left_by_a_dead_process_are_swept(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    old, fresh = store.stage_bytes(b"old"), store.stage_bytes(b"fresh")
    os.utime(old.path, (1_000_000.0, 1_000_000.0))
    assert store.sweep_incoming() == 1
    assert files_under(tmp_path) == [fresh.path]


@kinds
def test_storing_held_content_again_refreshes_it_so_the_orphan_sweep_spares_it(tmp_path: Path, kind: str) -> None:
    store = make_store(kind, tmp_path)
    digest = store.put(b"an old orphan's bytes")
    os.utime(store.path_for(digest), (1_000_000.0, 1_000_000.0))
    listed = time.time() - 3600  # the sweep's cutoff: older than an hour
    assert list(store.stored_before(listed)) == [digest]
    # A new upload of the same bytes, between the sweep's listing and its deletion:
    assert store.adopt(store.stage_bytes(b"an old orphan's bytes")) is False
    assert store.delete(digest, written_before=listed) is False, "written since it was listed: kept"
    assert store.exists(digest)
    os.utime(store.path_for(digest), (1_000_000.0, 1_000_000.0))
    assert store.delete(digest, written_before=listed) is True


def test_each_host_stages_in_its_own_folder_and_sweeps_only_that(tmp_path: Path) -> None:
    a, b = SharedImageStore(tmp_path, host="host-a"), SharedImageStore(tmp_path, host="host-b")
    assert a.incoming == tmp_path / "incoming" / "host-a" != b.incoming
    old_a, old_b, fresh_a = a.stage_bytes(b"old a"), b.stage_bytes(b"old b"), a.stage_bytes(b"fresh a")
    assert old_a.path.parent == a.incoming and old_b.path.parent == b.incoming
    assert old_a.path.name.startswith(f"host-a.{os.getpid()}.")
    for staged in (old_a, old_b):
        os.utime(staged.path, (1_000_000.0, 1_000_000.0))
    assert a.sweep_incoming() == 1, "host a's own stale upload"
    assert files_under(tmp_path) == sorted([old_b.path, fresh_a.path]), "host b's upload is b's business"
    assert b.sweep_incoming() == 1 and files_under(tmp_path) == [fresh_a.path]
    assert a.adopt(fresh_a) and b.get(fresh_a.sha256) == b"fresh a", "what one host stores, another reads"
    assert list(b.stored_before(time.time() + 1)) == [fresh_a.sha256], "staging folders hold no stored file"


def _store_at_once(root: str, host: str, data: bytes, start: float, staged: bool) -> str:
    store = SharedImageStore(Path(root), host=host)
    while time.time() < start:
        pass
    if staged:
        return "adopted" if store.adopt(store.stage_bytes(data)) else "held"
    return store.put(data)


def test_hosts_storing_the_same_content_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    """Processes as separate hosts (each its own staging folder) store the same 4 MiB at the same
    moment, by ``put`` and by staging and adopting: one whole file at the address, no temporary left."""
    data = os.urandom(4 << 20)
    digest = sha256_bytes(data)
    start = time.time() + 1.0
    context = multiprocessing.get_context("spawn")
    jobs = [(str(tmp_path), f"host-{i}", data, start, i % 2 == 1) for i in range(6)]
    with context.Pool(len(jobs)) as pool:
        results = pool.starmap(_store_at_once, jobs)
    assert results.count(digest) == 3 and set(results) - {digest} <= {"adopted", "held"}
    store = SharedImageStore(tmp_path, host="reader")
    assert files_under(tmp_path) == [store.path_for(digest)], "one file; every staged copy renamed or removed"
    assert hashlib.sha256(store.get(digest)).hexdigest() == digest


def test_rfr_store_path_selects_the_shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import Settings
    from service.runtime import open_store

    local = open_store(Settings(data_dir=tmp_path / "data"))
    assert type(local) is LocalImageStore and local.root == tmp_path / "data" / "images"
    monkeypatch.setenv("RFR_STORE__PATH", str(tmp_path / "shared"))
    shared = open_store(Settings(data_dir=tmp_path / "data"))
    assert isinstance(shared, SharedImageStore) and shared.root == tmp_path / "shared"
    assert isinstance(shared, ImageStore) and isinstance(local, ImageStore)


def test_a_shared_store_not_mounted_is_refused(tmp_path: Path) -> None:
    from service.errors import ConfigurationError

    share = tmp_path / "share"
    store = SharedImageStore(share, host="host-a")
    with pytest.raises(ConfigurationError, match="is not a folder: mount the share"):
        store.ensure_ready(lambda: False)
    share.mkdir()  # an empty mount point while the database names stored images
    with pytest.raises(ConfigurationError, match="is the share mounted at this path"):
        store.ensure_ready(lambda: True)
    assert files_under(tmp_path) == [], "nothing written to the wrong disk"
    store.ensure_ready(lambda: False)  # a new deployment: the store's marker is made
    assert files_under(tmp_path) == [share / ".rfr-store"]
    SharedImageStore(share, host="host-b").ensure_ready(lambda: True)  # the marked share, from another host
    LocalImageStore(tmp_path / "images").ensure_ready(lambda: True)  # the data directory's own: made on use
