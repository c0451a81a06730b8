"""What every ``rfr`` command shares: settings from the flags, JSON output, the progress bar, who is
acting, and opening the storage tier or the full runtime (``with``: closed however the command ends).

Only the standard library and light ``service`` modules are imported here; ``service.runtime`` (and,
through ``Runtime.build``, onnxruntime and faiss) is imported when a command opens it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from service.config import Settings
from service.domain.roles import Permission, Principal, operator_principal
from service.errors import Forbidden, ImageUnreadable
from service.video.formats import CLIP_SUFFIXES

if TYPE_CHECKING:
    from service.runtime import Runtime, Storage

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
TOKEN_HELP = "act as this user (or env RFR_TOKEN); default: the operator"


def operator() -> Principal:
    """The CLI on a local data directory acts as the machine's operator (an admin), so recorded."""
    return operator_principal()


def settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "pack", None):
        overrides["pack"] = args.pack
    return Settings(**overrides)


def _plain(value: object) -> object:
    """What ``json`` cannot write itself: read models as their fields, times as ISO 8601."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def emit(obj: object) -> None:
    """One compact JSON line on standard output (dicts, lists and the services' read models)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=_plain) + "\n")
    sys.stdout.flush()


def progress(total: float, desc: str, quiet: bool = False, unit: str = "img") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True)


def image_files(folder: Path, clips: bool = False) -> list[Path]:
    """The stills under ``folder`` (and its clips, with ``clips``), in path order."""
    suffixes = IMAGE_SUFFIXES | (set(CLIP_SUFFIXES) if clips else set())
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageUnreadable(f"cannot read file: {exc.strerror or exc}") from exc


def open_storage(args: argparse.Namespace) -> closing[Storage]:
    """The storage-only tier: database, image store and the use cases that need no model or index."""
    from service.runtime import Storage

    return closing(Storage.open(settings(args)))


def open_runtime(args: argparse.Namespace) -> closing[Runtime]:
    """Everything, the model and the gallery index included."""
    from service.runtime import Runtime

    return closing(Runtime.build(settings(args)))


def acting_user(storage: Storage, args: argparse.Namespace, personal: str | None = None) -> Principal:
    """The user of ``--token`` (or env RFR_TOKEN) when given, else the machine's operator.

    ``personal`` names a command whose decisions need a user's token: without one it exits."""
    token = getattr(args, "token", None) or os.environ.get("RFR_TOKEN", "")
    if token:
        return storage.users.authenticate(token, via="cli-token")
    if personal:
        raise SystemExit(f"rfr {personal}: decisions are personal: give --token (or RFR_TOKEN) of the deciding user")
    return operator()


def require(actor: Principal, *permissions: Permission, doing: str) -> None:
    """Forbidden unless the actor is the operator or holds one of ``permissions``."""
    if actor.via != "cli-operator" and not any(actor.can(p) for p in permissions):
        raise Forbidden(f"role {actor.role} may not {doing}")
