"""The ``rfr`` command line: one module per command group, each declaring its sub-parsers
(``add_parser(sub)``) beside its commands; ``common`` holds what they share.

Commands that need no model open the storage tier (``Storage.open``); only ``faces`` (the face
pipeline alone), ``gallery import``, ``submit``, ``search``, ``serve`` and ``worker`` load the model and index,
and they import them when they run, so ``rfr users list`` imports neither onnxruntime nor faiss.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence

from service.cli import audit, faces, gallery, linking, retention, review, serve, submissions, users, worker
from service.errors import ServiceError

__all__ = ["build_parser", "main"]

# In the order ``rfr --help`` lists them.
GROUPS = (faces, serve, worker, gallery, submissions, users, audit, retention, review, linking)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfr", description="Retrospective face search for retail crime.")
    parser.add_argument("--data-dir", help="data directory (env RFR_DATA_DIR; default ~/.local/share/rfr)")
    parser.add_argument("--pack", help="model pack id (env RFR_PACK; default yunet_sface)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return parser


# Options of every command, accepted before or after the command's name (``rfr users list --data-dir D``).
GLOBAL_OPTIONS = {"--data-dir": True, "--pack": True, "-v": False, "--verbose": False}  # name: takes a value


def globals_first(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global options (and their values) moved before the command."""
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in token
            moved.extend(argv[i : i + 2] if takes_value else [token])
            i += 2 if takes_value else 1
            continue
        rest.append(token)
        i += 1
    return moved + rest


def main(argv: Sequence[str] | None = None) -> int:
    # A short command imports SQLAlchemy, pydantic and the models (a large graph of classes, all kept)
    # and frees what it made by reference count: cyclic collections while importing are wasted work
    # (7-20% of `rfr users list`'s CPU time, measured here). The commands whose work grows with their input
    # or runs until stopped (``long_running``: serve, worker, gallery import, submit, faces, purge, audit
    # verify and export) collect: without it an import's cyclic garbage (sessions, results) is never freed,
    # 9 MiB more per 1,000 images enrolled (9 GiB over a million).
    collecting = gc.isenabled()
    gc.disable()
    try:
        parser = build_parser()
        args = parser.parse_args(globals_first(sys.argv[1:] if argv is None else argv))
        if getattr(args, "long_running", False) and collecting:
            gc.enable()
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
        try:
            code: int = args.func(args)
        except ServiceError as exc:
            sys.stderr.write(json.dumps({"error": exc.to_dict()}) + "\n")
            code = 2
        # The command has finished and closed what it opened; what is left is the imported libraries'
        # objects. Freezing them spares the interpreter's last cyclic collection of SQLAlchemy's object
        # graph, ~0.4 s of a short command's ~1.3 s here (objects are still freed by reference count).
        gc.freeze()
        return code
    finally:
        if collecting:
            gc.enable()  # main() called in-process (the tests) leaves collection as it found it
