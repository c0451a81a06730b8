"""Images stored once, content-addressed by sha256: one interface, two folders.

``ImageStore`` is what the services use. Two implementations, chosen by ``service.runtime``:

* ``LocalImageStore`` — the embedded default: ``<data_dir>/images``, read and written by the
  processes of one host.
* ``SharedImageStore`` — a folder every host of a multi-host deployment mounts at the same path
  (``RFR_STORE__PATH``: NFS, CephFS, an SMB share...). Nothing in it relies on a lock or a process
  of one host: each file is written under a temporary name unique to its host and process, fsynced,
  then renamed to its content address (atomic on one filesystem), and the directory fsynced, so a
  reader on any host sees no file or the whole file; two hosts storing the same content at once
  each rename a complete copy of the same bytes over the other. Uploads are staged in
  ``incoming/<host>/`` on the same filesystem (so adopting one is a rename), and a host sweeps
  only its own staging folder: another host's upload in flight is never touched.

An upload is first *staged*: streamed in chunks into a file of the store's staging folder while
it is hashed and counted, so no request holds a file's bytes in memory. A staged file is then
*adopted* (renamed to its content address, durably) or *discarded*; a staged file left by a
process that died is swept when the store is next opened. Storing content the store already holds
refreshes the file's modification time, so the purge's sweep of files no record names (which
spares files younger than 6 hours) never takes a file a new upload is about to name.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from service.durable_files import fsync_directory, write_atomically
from service.errors import ConfigurationError, PayloadTooLarge

CHUNK_BYTES = 1 << 20
INCOMING = "incoming"
# A staged file older than this belongs to no live request (a request stages, checks and adopts
# its files within it), so opening the store removes it.
STALE_STAGED_S = 6 * 3600.0
# The file that says a shared folder is the store (and not an empty mount point).
MARKER = ".rfr-store"


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


@runtime_checkable
class ImageStore(Protocol):
    """A content-addressed store of stills and clips, addressed by their sha256 (hex)."""

    @property
    def root(self) -> Path: ...

    @property
    def incoming(self) -> Path:
        """This process's staging folder (on the store's filesystem)."""
        ...

    def path_for(self, digest: str) -> Path:
        """Where this host reads the file of ``digest``."""
        ...

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; atomic and durable."""
        ...

    def stage(self, source: BinaryIO | Iterable[bytes], limit: int | None = None) -> StagedFile: ...

    def stage_bytes(self, data: bytes) -> StagedFile: ...

    def adopt(self, staged: StagedFile) -> bool:
        """Move a staged file to its content address; False if the store held it already."""
        ...

    def discard(self, staged: StagedFile) -> None: ...

    def sweep_incoming(self, older_than_s: float = STALE_STAGED_S) -> int:
        """Remove this host's staged files left by a process that died; how many."""
        ...

    def stored_before(self, cutoff: float) -> Iterable[str]:
        """The digests of the stored files last written before ``cutoff`` (a ``time.time()``)."""
        ...

    def get(self, digest: str) -> bytes: ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str, written_before: float | None = None) -> bool:
        """Remove the file of ``digest`` (only if last written before ``written_before``, when given)."""
        ...

    def ensure_ready(self, database_names_files: Callable[[], bool]) -> None:
        """Refuse (``ConfigurationError``) a store that is not there; ``database_names_files`` tells
        whether the database already names stored files."""
        ...


class LocalImageStore:
    """The store in a folder of this host (the embedded default, ``<data_dir>/images``)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def path_for(self, digest: str) -> Path:
        return self._root / digest[:2] / digest[2:4] / digest

    @property
    def incoming(self) -> Path:
        return self._root / INCOMING

    def put(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        target = self.path_for(digest)
        if self._holds(target, len(data)):
            return digest
        write_atomically(target, lambda tmp: tmp.write_bytes(data))
        return digest

    def stage(self, source: BinaryIO | Iterable[bytes], limit: int | None = None) -> StagedFile:
        """Stream ``source`` (a binary file read in chunks, or chunks) into a staged file, hashing
        it; more than ``limit`` bytes is refused (``PayloadTooLarge``) and nothing is left behind."""
        chunks = iter(lambda: source.read(CHUNK_BYTES), b"") if hasattr(source, "read") else source
        self.incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.incoming, prefix=self._temp_prefix(), suffix=".part")
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
        if self._holds(target, staged.size):
            self.discard(staged)
            return False
        self._make_parent(target)
        os.replace(staged.path, target)
        fsync_directory(target.parent)
        return True

    @staticmethod
    def discard(staged: StagedFile) -> None:
        """Remove a staged file (nothing if it was adopted or removed already)."""
        staged.path.unlink(missing_ok=True)

    def sweep_incoming(self, older_than_s: float = STALE_STAGED_S) -> int:
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
        for path in self._root.glob("??/??/*"):
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

    def delete(self, digest: str, written_before: float | None = None) -> bool:
        path = self.path_for(digest)
        try:
            if written_before is not None and path.stat().st_mtime >= written_before:
                return False  # written again (or stored anew) since it was listed
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure_ready(self, database_names_files: Callable[[], bool]) -> None:
        """The data directory's own folder is made on first use."""

    # -- what the shared store does differently --------------------------------------------
    @staticmethod
    def _holds(target: Path, size: int) -> bool:
        """True if ``target`` is whole already; its modification time is then refreshed (the
        orphan sweep spares young files, and a new record is about to name this one)."""
        try:
            if target.stat().st_size != size:
                return False
            os.utime(target)
        except FileNotFoundError:
            return False
        return True

    def _make_parent(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)

    def _temp_prefix(self) -> str:
        return ""


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SharedImageStore(LocalImageStore):
    """The store in a folder every host mounts at the same path (see the module's docstring).

    It differs from the local folder in what several hosts need: each host stages (and writes every
    ``put``) in its own ``incoming/<host>/`` folder on the shared filesystem, with temporary names
    carrying the host and process, and sweeps that folder alone; a content address is only ever
    created by an atomic rename of a complete, fsynced file; the folders a file is renamed into are
    made durable too (their parent fsynced)."""

    def __init__(self, root: Path, host: str | None = None) -> None:
        super().__init__(root)
        self.host = _UNSAFE.sub("_", host or socket.gethostname()) or "host"

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING / self.host

    def ensure_ready(self, database_names_files: Callable[[], bool]) -> None:
        """The folder must exist (it is never made here: a share not mounted is an error, not a new
        store on this host's disk) and hold the store's marker, made on first use; an unmarked folder
        while the database names stored files is refused (an empty mount point, or another folder)."""
        if not self.root.is_dir():
            raise ConfigurationError(
                f"the shared image store {self.root} is not a folder: mount the share there (RFR_STORE__PATH)"
            )
        marker = self.root / MARKER
        if marker.is_file():
            return
        if database_names_files():
            raise ConfigurationError(
                f"the shared image store {self.root} has no {MARKER} file, but the database names stored images: "
                f"is the share mounted at this path? (If this folder does hold the store, create {marker}.)"
            )
        write_atomically(marker, lambda tmp: tmp.write_text("rfr content-addressed image store\n"))

    def put(self, data: bytes) -> str:
        staged = self.stage_bytes(data)
        self.adopt(staged)
        return staged.sha256

    def _make_parent(self, target: Path) -> None:
        for folder in (target.parent.parent, target.parent):
            if not folder.is_dir():
                try:
                    folder.mkdir(exist_ok=True)  # another host may make it at the same moment
                except FileNotFoundError:
                    folder.mkdir(parents=True, exist_ok=True)
                fsync_directory(folder.parent)

    def _temp_prefix(self) -> str:
        return f"{self.host}.{os.getpid()}."
