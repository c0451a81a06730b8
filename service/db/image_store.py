"""Images stored once, content-addressed by sha256, under the data directory.

An upload is first *staged*: streamed in chunks into a file of the store's own ``incoming/``
folder while it is hashed and counted, so no request holds a file's bytes in memory. A staged file
is then *adopted* (renamed to its content address, durably) or *discarded*; a staged file left by
a process that died is swept when the store is next opened.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.durable_files import fsync_directory, write_atomically
from service.errors import PayloadTooLarge

CHUNK_BYTES = 1 << 20
INCOMING = "incoming"
# A staged file older than this belongs to no live request (a request stages, checks and adopts
# its files within it), so opening the store removes it.
STALE_STAGED_S = 6 * 3600.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class StagedFile:
    """An upload streamed to disk, not yet in the store: its temporary path, digest and size."""

    path: Path
    sha256: str
    size: int

    def head(self, count: int) -> bytes:
        """Its first ``count`` bytes."""
        with self.path.open("rb") as handle:
            return handle.read(count)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; the write is atomic and durable."""
        digest = sha256_bytes(data)
        target = self.path_for(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest
        write_atomically(target, lambda tmp: tmp.write_bytes(data))
        return digest

    def stage(self, source: BinaryIO | Iterable[bytes], limit: int | None = None) -> StagedFile:
        """Stream ``source`` (a binary file read in chunks, or chunks) into a staged file, hashing
        it; more than ``limit`` bytes is refused (``PayloadTooLarge``) and nothing is left behind."""
        chunks = iter(lambda: source.read(CHUNK_BYTES), b"") if hasattr(source, "read") else source
        self.incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.incoming, suffix=".part")
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise PayloadTooLarge(f"exceeds the limit of {limit} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedFile(path, digest.hexdigest(), size)

    def stage_bytes(self, data: bytes) -> StagedFile:
        return self.stage([data])

    def adopt(self, staged: StagedFile) -> bool:
        """Move a staged file to its content address (durably); False if the store held it already
        (the staged copy is then removed)."""
        target = self.path_for(staged.sha256)
        if target.is_file() and target.stat().st_size == staged.size:
            self.discard(staged)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)
        fsync_directory(target.parent)
        return True

    @staticmethod
    def discard(staged: StagedFile) -> None:
        """Remove a staged file (nothing if it was adopted or removed already)."""
        staged.path.unlink(missing_ok=True)

    def sweep_incoming(self, older_than_s: float = STALE_STAGED_S) -> int:
        """Remove staged files left by a process that died; how many."""
        if not self.incoming.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.incoming.glob("*.part"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def stored_before(self, cutoff: float) -> Iterable[str]:
        """The digests of the stored files last written before ``cutoff`` (a ``time.time()``)."""
        for path in self.root.glob("??/??/*"):
            if path.parent.parent.name == INCOMING or len(path.name) != 64:
                continue
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    yield path.name
            except FileNotFoundError:
                continue

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def delete(self, digest: str) -> bool:
        try:
            self.path_for(digest).unlink()
        except FileNotFoundError:
            return False
        return True
