"""The ``rfr`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.config import Settings
from service.errors import ImageUnreadable, ServiceError


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "pack", None):
        overrides["pack"] = args.pack
    return Settings(**overrides)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cmd_faces(args: argparse.Namespace) -> int:
    from service.embeddings.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(_settings(args))
    rows: list[np.ndarray] = []
    failures = 0
    for name in args.images:
        path = Path(name)
        try:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ImageUnreadable(f"cannot read file: {exc.strerror or exc}") from exc
            result = pipeline.analyse_bytes(data)
        except ServiceError as exc:
            failures += 1
            _emit({"file": name, "error": exc.to_dict()})
            continue
        _emit({"file": name, "faces": [face.to_dict() for face in result.faces]})
        rows.extend(face.embedding for face in result.faces)
    if args.embeddings:
        dim = pipeline.manifest.embedding_dim
        matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        np.save(args.embeddings, matrix)
    return 1 if failures and failures == len(args.images) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfr", description="Retrospective face search for retail crime.")
    parser.add_argument("--data-dir", help="data directory (env RFR_DATA_DIR; default ~/.local/share/rfr)")
    parser.add_argument("--pack", help="model pack id (env RFR_PACK; default yunet_sface)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    faces = sub.add_parser("faces", help="detect, assess and embed every face; one JSON line per file")
    faces.add_argument("images", nargs="+", help="image files")
    faces.add_argument("--embeddings", metavar="OUT.npy", help="save one embedding row per printed face")
    faces.set_defaults(func=cmd_faces)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        code: int = args.func(args)
    except ServiceError as exc:
        sys.stderr.write(json.dumps({"error": exc.to_dict()}) + "\n")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
