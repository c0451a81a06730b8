"""Images stored once, content-addressed by sha256, under the data directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.durable_files import write_atomically


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; the write is atomic and durable."""
        digest = sha256_bytes(data)
        target = self.path_for(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest
        write_atomically(target, lambda tmp: tmp.write_bytes(data))
        return digest

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
