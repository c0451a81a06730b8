"""On-disk layout of a saved gallery index: one index file plus a JSON manifest that vouches for it.

``<directory>/index.faiss`` and ``<directory>/manifest.json``; one directory per pack (suggested:
``<data_dir>/index/<pack_id>``). Every file is written atomically: a temporary file in the same
directory, flushed and fsynced, ``os.replace``-d over the old one, then the directory fsynced.
The index file is written first and the manifest last, and the manifest carries the index
file's size and sha256: a crash between the two leaves a manifest that no longer matches, which
``load`` reports as corrupt (and ``open_or_rebuild`` repairs from the database).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from service.durable_files import sha256_file
from service.errors import IndexUnavailable

INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
# Manifests this code reads: format 1 (before the factory-string types) is an exact flat index.
READABLE_FORMATS = (1, 2)
INDEX_TYPE = "IDMap2,Flat"  # ``index_type`` of the exact flat index (factory ``Flat``)
METRIC = "inner_product"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class IndexManifest:
    """What ``save`` wrote, and what ``load`` checks before trusting the index file."""

    format_version: int
    pack_id: str
    dim: int
    count: int
    max_id: int  # -1 when the index is empty
    index_file: str
    index_bytes: int
    sha256: str
    index_type: str
    metric: str
    faiss_version: str
    saved_at: str  # ISO 8601, UTC
    # Format 2: the index_factory string the index was built from (``Flat`` for INDEX_TYPE), the
    # gallery size its quantiser was trained on (0: no training), entries removed but still
    # stored (types that cannot delete in place), and the database's gallery version it matches
    # (-1: not recorded).
    factory: str = "Flat"
    trained_count: int = 0
    removed: int = 0
    gallery_version: int = -1

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: Path) -> IndexManifest:
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexUnavailable(f"{where}: manifest is not JSON: {exc}", code="index_corrupt") from exc
        if not isinstance(raw, dict):
            raise IndexUnavailable(f"{where}: manifest is not a JSON object", code="index_corrupt")
        version = raw.get("format_version")
        if isinstance(version, bool) or version not in READABLE_FORMATS:
            raise IndexUnavailable(
                f"{where}: manifest format {version!r}, expected one of {READABLE_FORMATS}",
                code="index_stale",
            )
        two = version >= 2
        return cls(
            format_version=version,
            pack_id=_field(raw, "pack_id", str, where),
            dim=_field(raw, "dim", int, where),
            count=_field(raw, "count", int, where),
            max_id=_field(raw, "max_id", int, where),
            index_file=_field(raw, "index_file", str, where),
            index_bytes=_field(raw, "index_bytes", int, where),
            sha256=_field(raw, "sha256", str, where),
            index_type=_field(raw, "index_type", str, where),
            metric=_field(raw, "metric", str, where),
            faiss_version=_field(raw, "faiss_version", str, where),
            saved_at=_field(raw, "saved_at", str, where),
            factory=_field(raw, "factory", str, where) if two else "Flat",
            trained_count=_field(raw, "trained_count", int, where) if two else 0,
            removed=_field(raw, "removed", int, where) if two else 0,
            gallery_version=_field(raw, "gallery_version", int, where) if two else -1,
        )


def _field(raw: dict[str, Any], name: str, kind: type[_T], where: Path) -> _T:
    value = raw.get(name)
    # bool is an int subclass; a manifest saying "count": true is corrupt, not 1.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise IndexUnavailable(f"{where}: manifest field {name!r} missing or not {kind.__name__}", code="index_corrupt")
    return value


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporary files a crashed save left behind; returns how many."""
    removed = 0
    for name in (INDEX_FILE, MANIFEST_FILE):
        for leftover in directory.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def read_manifest(directory: Path) -> IndexManifest:
    path = directory / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise IndexUnavailable(f"no index manifest at {path}", code="index_missing") from exc
    except OSError as exc:
        raise IndexUnavailable(f"{path}: cannot read manifest: {exc}", code="index_corrupt") from exc
    return IndexManifest.from_json(data, path)


def verify_index_file(directory: Path, manifest: IndexManifest) -> Path:
    """The index file the manifest names, after checking its size and sha256."""
    if Path(manifest.index_file).name != manifest.index_file:
        raise IndexUnavailable(
            f"manifest names index file {manifest.index_file!r} outside {directory}", code="index_corrupt"
        )
    path = directory / manifest.index_file
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise IndexUnavailable(f"manifest present but index file {path} is missing", code="index_missing") from exc
    if size != manifest.index_bytes:
        raise IndexUnavailable(
            f"{path}: {size} bytes, manifest says {manifest.index_bytes} (truncated or replaced)",
            code="index_corrupt",
        )
    actual = sha256_file(path)
    if actual != manifest.sha256:
        raise IndexUnavailable(f"{path}: sha256 does not match the manifest", code="index_corrupt")
    return path
