"""``rfr gallery import``: enrol custody images from a folder (one sub-folder per subject) or a CSV manifest."""

from __future__ import annotations

import argparse
import csv
import sys
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
    imp.set_defaults(func=cmd_gallery_import)


@dataclass(frozen=True, slots=True)
class Item:
    """One image to enrol: its record, file, the record's provenance and the view it is (if named)."""

    reference: str
    path: Path
    provenance: SubjectProvenance
    view: str | None = None


def _items(args: argparse.Namespace) -> list[Item]:
    """Every image to enrol, in the folder's or the manifest's order."""
    from service.domain.provenance import SubjectProvenance

    items: list[Item] = []
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
                items.append(Item(row["custody_reference"], path, provenance, row.get("view") or None))
        return items
    if not args.folder:
        raise SystemExit("rfr gallery import: give FOLDER or --manifest FILE.csv")
    default = SubjectProvenance.parse({"source": args.source, "lawful_basis": args.lawful_basis}, "the flags")
    for subject_dir in sorted(p for p in Path(args.folder).iterdir() if p.is_dir()):
        items.extend(Item(subject_dir.name, path, default) for path in image_files(subject_dir))
    return items


def _enrol(runtime: Runtime, item: Item) -> tuple[str, dict[str, str | None]]:
    """One image's outcome status and its reason (code and message)."""
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        return "rejected", {"code": "image_unreadable", "message": str(exc)}
    outcome = runtime.gallery.enrol(
        operator(), item.reference, data, item.path.name, item.provenance, save_index=False, view=item.view
    )
    return outcome.status, {"code": outcome.reason_code, "message": outcome.reason}


def cmd_gallery_import(args: argparse.Namespace) -> int:
    items = _items(args)
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0}
    rejected = []
    with open_runtime(args) as runtime:
        with progress(len(items), "enrolling", args.quiet) as bar:

            def tally(item: Item, status: str, reason: dict[str, str | None]) -> None:
                counts[status] += 1
                if status == "rejected":
                    rejected.append({"custody_reference": item.reference, "file": str(item.path), **reason})
                    if not args.json:
                        bar.write(f"rejected {item.path}: {reason['code']}: {reason['message']}")
                bar.update(1)

            # A turned view met before its record's front view waits for the end of the import.
            waiting: list[Item] = []
            for i, item in enumerate(items):
                status, reason = _enrol(runtime, item)
                if status == "rejected" and reason["code"] == "no_front_view":
                    waiting.append(item)
                else:
                    tally(item, status, reason)
                if i % 500 == 499:
                    runtime.gallery.save_index()
            for item in waiting:
                tally(item, *_enrol(runtime, item))
        runtime.gallery.save_index()
    summary = {**counts, "total": len(items), "rejected_images": rejected}
    if args.json:
        emit(summary)
    else:
        sys.stdout.write(
            f"enrolled {counts['enrolled']}, already enrolled {counts['already_enrolled']}, "
            f"rejected {counts['rejected']} of {len(items)} images\n"
        )
    return 0
