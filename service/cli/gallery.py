"""``rfr gallery import``: enrol custody images from a folder (one sub-folder per subject) or a CSV manifest."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.common import emit, image_files, open_runtime, operator, progress

if TYPE_CHECKING:
    from service.domain.provenance import SubjectProvenance
    from service.runtime import Runtime


def add_parser(sub: Any) -> None:
    gallery = sub.add_parser("gallery", help="custody gallery")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True)
    imp = gallery_sub.add_parser("import", help="enrol a folder (one sub-folder per subject) or a CSV manifest")
    imp.add_argument("folder", nargs="?", help="FOLDER/<custody reference>/<images>: every image a view of the record")
    imp.add_argument(
        "--manifest",
        help="CSV: path,custody_reference[,view,source,lawful_basis,conviction_status,under_18]; view is front, "
        "left, right, left_profile, right_profile or free text (read from the face's pose when empty)",
    )
    imp.add_argument("--source", default="", help="provenance: where the custody images come from")
    imp.add_argument("--lawful-basis", default="", help="provenance: lawful basis for retention")
    imp.add_argument("--json", action="store_true", help="print a JSON summary with every rejected image")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_gallery_import, long_running=True)


@dataclass(frozen=True, slots=True)
class Item:
    """One image to enrol: its record, file, the record's provenance and the view it is (if named)."""

    reference: str
    path: Path
    provenance: SubjectProvenance
    view: str | None = None


def _items(args: argparse.Namespace) -> Iterator[Item]:
    """Every image to enrol, in the folder's or the manifest's order, one at a time: a million-record
    import never holds its records in memory (only the subjects' folder names, to sort them)."""
    from service.domain.provenance import SubjectProvenance

    if args.manifest:
        manifest = Path(args.manifest)
        with manifest.open(newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                path = Path(row["path"])
                if not path.is_absolute():
                    path = (Path(args.folder) if args.folder else manifest.parent) / path
                cells = {name: row.get(name) for name in SubjectProvenance.model_fields}
                provenance = SubjectProvenance.parse(cells, f"{manifest} line {reader.line_num}")
                yield Item(row["custody_reference"], path, provenance, row.get("view") or None)
        return
    if not args.folder:
        raise SystemExit("rfr gallery import: give FOLDER or --manifest FILE.csv")
    default = SubjectProvenance.parse({"source": args.source, "lawful_basis": args.lawful_basis}, "the flags")
    folder = Path(args.folder)
    with os.scandir(folder) as entries:
        subjects = sorted(entry.name for entry in entries if entry.is_dir())
    for name in subjects:
        yield from (Item(name, path, default) for path in image_files(folder / name))


def _count(args: argparse.Namespace) -> int:
    """How many images the import holds, counted (and a manifest checked whole) before the model loads."""
    return sum(1 for _ in _items(args))


def _enrol(runtime: Runtime, item: Item) -> tuple[str, dict[str, str | None]]:
    """One image's outcome status and its reason (code and message)."""
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        return "rejected", {"code": "image_unreadable", "message": str(exc)}
    outcome = runtime.gallery.enrol(operator(), item.reference, data, item.path.name, item.provenance, view=item.view)
    return outcome.status, {"code": outcome.reason_code, "message": outcome.reason}


def cmd_gallery_import(args: argparse.Namespace) -> int:
    """Enrol every image, with progress; an import stopped anywhere is resumed by running it again
    (an image already enrolled is recognised by its digest before any model runs)."""
    total = _count(args)
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0}
    rejected = []
    with open_runtime(args) as runtime:
        with progress(total, "enrolling", args.quiet) as bar:

            def tally(item: Item, status: str, reason: dict[str, str | None]) -> None:
                counts[status] += 1
                if status == "rejected":
                    rejected.append({"custody_reference": item.reference, "file": str(item.path), **reason})
                    if not args.json:
                        bar.write(f"rejected {item.path}: {reason['code']}: {reason['message']}")
                bar.update(1)

            # A turned view met before its record's front view waits for the end of the import.
            waiting: list[Item] = []
            for item in _items(args):
                status, reason = _enrol(runtime, item)
                if status == "rejected" and reason["code"] == "no_front_view":
                    waiting.append(item)
                else:
                    tally(item, status, reason)
            for item in waiting:
                tally(item, *_enrol(runtime, item))
        runtime.gallery.save_index()
    summary = {**counts, "total": total, "rejected_images": rejected}
    if args.json:
        emit(summary)
    else:
        sys.stdout.write(
            f"enrolled {counts['enrolled']}, already enrolled {counts['already_enrolled']}, "
            f"rejected {counts['rejected']} of {total} images\n"
        )
    return 0
