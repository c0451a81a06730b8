"""service.db.image_store: images stored once under their sha256, written atomically."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from service import durable_files
from service.db import image_store
from service.db.image_store import CHUNK_BYTES, ImageStore, sha256_bytes
from service.errors import PayloadTooLarge


def test_put_stores_content_under_its_sha256_once(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    data = b"\xff\xd8 a still \xff\xd9"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
    assert store.path_for(digest) == tmp_path / "images" / digest[:2] / digest[2:4] / digest
    assert store.exists(digest) and store.get(digest) == data
    assert store.put(data) == digest, "the same bytes, the same address"
    assert [p for p in store.root.rglob("*") if p.is_file()] == [store.path_for(digest)], "stored once, no temp"
    other = store.put(b"another still")
    assert other != digest and store.get(other) == b"another still" and store.get(digest) == data


def test_delete_and_exists(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    digest = store.put(b"to be purged")
    assert store.delete(digest) is True
    assert not store.exists(digest)
    assert store.delete(digest) is False, "deleting what is gone says so"
    assert not store.exists(sha256_bytes(b"never stored"))
    with pytest.raises(FileNotFoundError):
        store.get(digest)


def test_a_truncated_file_is_rewritten(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = b"x" * 1000
    digest = store.put(data)
    store.path_for(digest).write_bytes(data[:10])
    assert store.put(data) == digest
    assert store.get(digest) == data


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)
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


def test_a_staged_upload_is_streamed_hashed_and_adopted_once(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
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


def test_a_staged_upload_over_its_limit_leaves_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 1000 bytes"):
        store.stage(io.BytesIO(b"x" * 1001), limit=1000)
    assert files_under(tmp_path) == []
    staged = store.stage(io.BytesIO(b"x" * 1000), limit=1000)
    store.discard(staged)
    store.discard(staged)  # twice is harmless
    assert files_under(tmp_path) == []


def test_staged_files_left_by_a_dead_process_are_swept(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    old, fresh = store.stage_bytes(b"old"), store.stage_bytes(b"fresh")
    os.utime(old.path, (1_000_000.0, 1_000_000.0))
    assert store.sweep_incoming() == 1
    assert files_under(tmp_path) == [fresh.path]
