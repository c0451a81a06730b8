"""``rfr faces``: detect, assess and embed every face in some image files (the model only, no database)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.cli.common import emit, read_image, settings
from service.errors import ServiceError


def add_parser(sub: Any) -> None:
    faces = sub.add_parser("faces", help="detect, assess and embed every face; one JSON line per file")
    faces.add_argument("images", nargs="+", help="image files")
    faces.add_argument("--embeddings", metavar="OUT.npy", help="save one embedding row per printed face")
    faces.set_defaults(func=cmd_faces, long_running=True)


def cmd_faces(args: argparse.Namespace) -> int:
    import numpy as np

    from service.embeddings.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings(args))
    rows: list[Any] = []
    failures = 0
    for name in args.images:
        try:
            result = pipeline.analyse_bytes(read_image(Path(name)))
        except ServiceError as exc:
            failures += 1
            emit({"file": name, "error": exc.to_dict()})
            continue
        emit({"file": name, "faces": [face.to_dict() for face in result.faces]})
        rows.extend(face.embedding for face in result.faces)
    if args.embeddings:
        dim = pipeline.manifest.embedding_dim
        matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        np.save(args.embeddings, matrix)
    return 1 if failures and failures == len(args.images) else 0
