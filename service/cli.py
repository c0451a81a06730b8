"""The ``rfr`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
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


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _progress(total: int, desc: str, quiet: bool = False) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=quiet or None, dynamic_ncols=True)


def _runtime(args: argparse.Namespace) -> Any:
    from service.app import Runtime

    return Runtime.build(_settings(args))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "y"}


def cmd_gallery_import(args: argparse.Namespace) -> int:
    from service.services.gallery import SubjectProvenance

    items: list[tuple[str, Path, SubjectProvenance]] = []
    if args.manifest:
        import csv

        manifest = Path(args.manifest)
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                path = Path(row["path"])
                if not path.is_absolute():
                    path = (Path(args.folder) if args.folder else manifest.parent) / path
                provenance = SubjectProvenance(
                    source=row.get("source", "") or "",
                    lawful_basis=row.get("lawful_basis", "") or "",
                    conviction_status=row.get("conviction_status", "") or "unknown",
                    under_18=_truthy(row.get("under_18")),
                )
                items.append((row["custody_reference"], path, provenance))
    else:
        if not args.folder:
            raise SystemExit("rfr gallery import: give FOLDER or --manifest FILE.csv")
        default = SubjectProvenance(source=args.source, lawful_basis=args.lawful_basis)
        for subject_dir in sorted(p for p in Path(args.folder).iterdir() if p.is_dir()):
            items.extend((subject_dir.name, path, default) for path in _image_files(subject_dir))
    runtime = _runtime(args)
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0}
    rejected = []
    with _progress(len(items), "enrolling", args.quiet) as bar:
        for i, (reference, path, provenance) in enumerate(items):
            try:
                data = path.read_bytes()
            except OSError as exc:
                outcome_status, reason = "rejected", {"code": "image_unreadable", "message": str(exc)}
            else:
                outcome = runtime.gallery.enrol(reference, data, path.name, provenance, save_index=False)
                outcome_status = outcome.status
                reason = {"code": outcome.reason_code, "message": outcome.reason}
            counts[outcome_status] += 1
            if outcome_status == "rejected":
                rejected.append({"custody_reference": reference, "file": str(path), **reason})
                if not args.json:
                    bar.write(f"rejected {path}: {reason['code']}: {reason['message']}")
            if i % 500 == 499:
                runtime.gallery.save_index()
            bar.update(1)
    runtime.gallery.save_index()
    runtime.close()
    summary = {**counts, "total": len(items), "rejected_images": rejected}
    if args.json:
        _emit(summary)
    else:
        sys.stdout.write(
            f"enrolled {counts['enrolled']}, already enrolled {counts['already_enrolled']}, "
            f"rejected {counts['rejected']} of {len(items)} images\n"
        )
    return 0


def _probe_provenance(args: argparse.Namespace, folder: Path) -> Any:
    """A function file -> ProbeProvenance from the flags and an optional CSV keyed by file name."""
    from datetime import datetime

    from service.services.submissions import ProbeProvenance

    captured = datetime.fromisoformat(args.captured_at) if args.captured_at else None
    default = ProbeProvenance(
        retailer=args.retailer,
        store=args.store,
        incident_reference=args.incident,
        captured_at=captured,
        supplied_by=args.supplied_by,
        witness_statement=args.witness_statement,
    )
    rows: dict[str, dict[str, str]] = {}
    if args.provenance:
        import csv

        with open(args.provenance, newline="") as fh:
            rows = {row["file"]: row for row in csv.DictReader(fh)}

    def lookup(path: Path) -> ProbeProvenance:
        row = rows.get(str(path.relative_to(folder))) or rows.get(path.name)
        if not row:
            return default
        when = row.get("captured_at")
        return ProbeProvenance(
            retailer=row.get("retailer") or default.retailer,
            store=row.get("store") or default.store,
            incident_reference=row.get("incident_reference") or default.incident_reference,
            captured_at=datetime.fromisoformat(when) if when else default.captured_at,
            supplied_by=row.get("supplied_by") or default.supplied_by,
            witness_statement=_truthy(row.get("witness_statement")) or default.witness_statement,
        )

    return lookup


def cmd_submit(args: argparse.Namespace) -> int:
    import time

    from service.errors import ServiceError as _ServiceError
    from service.service_lock import ServiceLock
    from service.services.submissions import Upload

    folder = Path(args.folder)
    files = _image_files(folder) if folder.is_dir() else []
    if not files:
        raise SystemExit(f"rfr submit: no images found under {folder}")
    settings = _settings(args)
    runtime = _runtime(args)
    provenance_of = _probe_provenance(args, folder)
    submission_id = runtime.submissions.create(args.case, args.purpose, args.submitted_by, args.search_poor_faces)
    rejected = []
    with _progress(len(files), "uploading", args.quiet) as bar:
        for path in files:
            name = str(path.relative_to(folder))
            data = path.read_bytes()
            try:
                runtime.submissions.add_images(submission_id, [Upload(name, data, provenance_of(path))])
            except _ServiceError as exc:
                runtime.submissions.add_rejected(submission_id, name, data, exc.code, exc.message)
                rejected.append({"file": name, **exc.to_dict()})
            bar.update(1)
    lock = ServiceLock(settings.data_dir)
    if not lock.service_running():
        with _progress(len(files) - len(rejected), "processing", args.quiet) as bar:
            while (job_id := runtime.worker.claim()) is not None:
                runtime.worker.process(job_id)
                bar.update(1)
    elif args.wait:
        while runtime.submissions.get(submission_id)["status"] not in {"complete"}:
            time.sleep(0.5)
    summary = runtime.submissions.get(submission_id)
    runtime.close()
    if args.json:
        _emit(
            {
                "submission": submission_id,
                "status": summary["status"],
                "progress": summary["progress"],
                "rejected": rejected,
            }
        )
    else:
        sys.stdout.write(f"{submission_id}\n")
    return 0


def _print_faces_table(file_name: str, status: str, faces: list[dict[str, Any]]) -> None:
    sys.stdout.write(f"{file_name}  [{status}]  {len(faces)} face(s)\n")
    for face in faces:
        quality = face["quality"]
        verdict = "usable" if quality["usable"] else "poor: " + ", ".join(quality["reasons"])
        searched = "searched" if face["searched"] else "not searched"
        sys.stdout.write(f"  face {face['face_index']}: quality {quality['score']:.2f} ({verdict}); {searched}\n")
        for c in face["candidates"][:10]:
            mark = "*" if c["above_threshold"] else " "
            sys.stdout.write(f"    {c['rank']:>3} {mark} {c['score']:.3f}  {c['custody_reference']}\n")


def cmd_results(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    results = runtime.submissions.results(args.submission)
    runtime.close()
    if args.json:
        _emit(results)
        return 0
    sys.stdout.write(
        f"submission {results['id']}  case {results['case_reference']}  status {results['status']}  "
        f"({results['progress']['done']} done, {results['progress']['failed']} failed of "
        f"{results['progress']['total']})\n"
        "candidates are investigative leads, never identifications; * = above the operating threshold\n\n"
    )
    for image in results["images"]:
        _print_faces_table(image["file"], image["status"], image["faces"])
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from service.api.routes import search_still

    runtime = _runtime(args)
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageUnreadable(f"cannot read file: {exc.strerror or exc}") from exc
    result = search_still(runtime, data, args.search_poor_faces)
    runtime.close()
    result = {"file": path.name, "status": "done", **result}
    if args.json:
        _emit(result)
    else:
        _print_faces_table(path.name, "done", result["faces"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.service_lock import ServiceLock

    settings = _settings(args)
    lock = ServiceLock(settings.data_dir)
    if not lock.acquire():
        raise SystemExit(f"rfr serve: a service is already running on {settings.data_dir}")
    try:
        uvicorn.run(
            create_app(settings),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level="info" if args.verbose else "warning",
        )
    finally:
        lock.release()
    return 0


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

    serve = sub.add_parser("serve", help="run the HTTP service on the data directory")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8700)")
    serve.set_defaults(func=cmd_serve)

    gallery = sub.add_parser("gallery", help="custody gallery")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True)
    imp = gallery_sub.add_parser("import", help="enrol a folder (one sub-folder per subject) or a CSV manifest")
    imp.add_argument("folder", nargs="?", help="FOLDER/<custody reference>/<images>")
    imp.add_argument("--manifest", help="CSV: path,custody_reference[,source,lawful_basis,conviction_status,under_18]")
    imp.add_argument("--source", default="", help="provenance: where the custody images come from")
    imp.add_argument("--lawful-basis", default="", help="provenance: lawful basis for retention")
    imp.add_argument("--json", action="store_true", help="print a JSON summary with every rejected image")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_gallery_import)

    submit = sub.add_parser("submit", help="submit every image under FOLDER as one sprint")
    submit.add_argument("folder")
    submit.add_argument("--case", required=True, help="case or crime reference")
    submit.add_argument("--purpose", required=True, help="why the search is necessary")
    submit.add_argument("--submitted-by", default=os.environ.get("USER", "operator"))
    submit.add_argument("--retailer", default="")
    submit.add_argument("--store", default="")
    submit.add_argument("--incident", default="", help="incident / crime reference of the stills")
    submit.add_argument("--captured-at", help="ISO 8601 capture time")
    submit.add_argument("--supplied-by", default="")
    submit.add_argument("--witness-statement", action="store_true")
    submit.add_argument("--provenance", help="CSV keyed by 'file' with per-image provenance columns")
    submit.add_argument("--search-poor-faces", action="store_true", help="also search poor faces (recorded)")
    submit.add_argument("--wait", action="store_true", help="return when processing has finished")
    submit.add_argument("--json", action="store_true")
    submit.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    submit.set_defaults(func=cmd_submit)

    results = sub.add_parser("results", help="a submission's faces and ranked candidates")
    results.add_argument("submission", type=int)
    results.add_argument("--json", action="store_true")
    results.set_defaults(func=cmd_results)

    search = sub.add_parser("search", help="search one still against the gallery")
    search.add_argument("image")
    search.add_argument("--search-poor-faces", action="store_true")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)
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
