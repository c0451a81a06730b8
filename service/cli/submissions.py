"""``rfr submit``, ``rfr results`` and ``rfr search``: sprints of stills, their ranked candidates, one-off searches."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.common import emit, image_files, open_runtime, open_storage, operator, progress, read_image
from service.domain.provenance import PROBE_FIELDS, ProbeProvenance
from service.errors import InvalidRequest, ServiceError
from service.service_lock import queue_served

if TYPE_CHECKING:
    from service.services.views import CandidateOut, FaceOut, PersonCandidateOut


def add_parser(sub: Any) -> None:
    submit = sub.add_parser("submit", help="submit every still and clip under FOLDER as one sprint")
    submit.add_argument("folder")
    submit.add_argument("--case", required=True, help="case or crime reference")
    submit.add_argument("--purpose", required=True, help="why the search is necessary")
    submit.add_argument("--retailer", default="")
    submit.add_argument("--store", default="")
    submit.add_argument("--incident", default="", help="incident / crime reference of the stills and clips")
    submit.add_argument("--captured-at", help="ISO 8601 capture time (a clip's: its start)")
    submit.add_argument("--supplied-by", default="")
    submit.add_argument("--camera", default="", help="the camera the stills or clips come from")
    submit.add_argument("--witness-statement", action="store_true")
    submit.add_argument("--provenance", help="CSV keyed by 'file' with per-image provenance columns")
    submit.add_argument("--search-poor-faces", action="store_true", help="also search poor faces (recorded)")
    submit.add_argument("--wait", action="store_true", help="return when processing has finished")
    submit.add_argument("--json", action="store_true")
    submit.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    submit.set_defaults(func=cmd_submit, long_running=True)

    results = sub.add_parser("results", help="a submission's faces and ranked candidates")
    results.add_argument("submission", type=int)
    results.add_argument("--json", action="store_true")
    results.set_defaults(func=cmd_results)

    search = sub.add_parser("search", help="search one still against the gallery")
    search.add_argument("image")
    search.add_argument("--search-poor-faces", action="store_true")
    search.add_argument("--case", required=True, help="case or crime reference (recorded)")
    search.add_argument("--purpose", required=True, help="why the search is necessary (recorded)")
    search.add_argument("--threshold", type=float, help="operating threshold for this search")
    search.add_argument("--reason", default="", help="why a lower threshold is needed (recorded)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)


def _probe_provenance(args: argparse.Namespace, names: Sequence[str]) -> dict[str, ProbeProvenance]:
    """Each file's provenance (by its path relative to the folder): the flags, overridden by the file's
    non-empty CSV cells (the CSV's ``file`` is that path, or the bare file name).

    Every value is checked by the one provenance model before anything is created: a bad cell, an
    unknown column or a CSV without a ``file`` column exits naming it."""
    flags = {
        "retailer": args.retailer,
        "store": args.store,
        "incident_reference": args.incident,
        "captured_at": args.captured_at,
        "supplied_by": args.supplied_by,
        "witness_statement": args.witness_statement,
        "camera": args.camera,
    }
    default = ProbeProvenance.parse(flags, "the flags")
    rows: dict[str, dict[str, str]] = {}
    if args.provenance:
        try:
            with open(args.provenance, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                columns = [c for c in reader.fieldnames or [] if c]
                rows = {row["file"]: row for row in reader} if "file" in columns else {}
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InvalidRequest(f"cannot read the provenance CSV {args.provenance}: {exc}") from exc
        if "file" not in columns:
            raise InvalidRequest(f"the provenance CSV {args.provenance} has no 'file' column")
        unknown = sorted(set(columns) - set(PROBE_FIELDS) - {"file"})
        if unknown:
            raise InvalidRequest(f"unknown provenance columns in {args.provenance}: {unknown}; known: {PROBE_FIELDS}")
    found: dict[str, ProbeProvenance] = {}
    named: set[str] = set()
    for name in names:
        key = name if name in rows else Path(name).name
        row = rows.get(key, {})
        named.add(key)
        cells = {k: v for k, v in row.items() if k in PROBE_FIELDS and v}
        found[name] = default.updated(cells, f"{name} (CSV)") if cells else default
    for missing in sorted(set(rows) - named):
        sys.stderr.write(f"rfr submit: the provenance CSV names {missing!r}, which is not under the folder\n")
    return found


def cmd_submit(args: argparse.Namespace) -> int:
    from service.services.submissions import Upload

    folder = Path(args.folder)
    files = image_files(folder, clips=True) if folder.is_dir() else []
    if not files:
        raise SystemExit(f"rfr submit: no stills or clips found under {folder}")
    names = [str(path.relative_to(folder)) for path in files]
    provenance_of = _probe_provenance(args, names)  # checked before the model loads or anything is created
    with open_runtime(args) as runtime:
        actor = operator()
        submissions = runtime.submissions
        submission_id = submissions.create(actor, args.case, args.purpose, args.search_poor_faces)
        rejected = []
        with progress(len(files), "uploading", args.quiet) as bar:
            for path, name in zip(files, names, strict=True):
                with path.open("rb") as handle:  # streamed to the store's staging, never read whole
                    staged = runtime.store.stage(handle)
                try:
                    submissions.add_images(actor, submission_id, [Upload(name, staged, provenance_of[name])])
                except ServiceError as exc:
                    submissions.add_rejected(
                        actor, submission_id, name, staged, exc.code, exc.message, provenance_of[name]
                    )
                    rejected.append({"file": name, **exc.to_dict()})
                bar.update(1)
        if not queue_served(runtime.settings.data_dir):  # no service or worker here: process it now
            footage = submissions.get(actor, submission_id).progress.footage_s
            with (
                progress(len(files) - len(rejected), "processing", args.quiet) as bar,
                progress(round(footage, 1), "footage", args.quiet or not footage, unit="s") as seconds,
            ):
                runtime.worker.run_until_empty(progress=bar.update, footage=seconds.update)
        elif args.wait:
            while submissions.get(actor, submission_id).status != "complete":
                time.sleep(0.5)
        summary = submissions.get(actor, submission_id)
    if args.json:
        emit(
            {
                "submission": submission_id,
                "status": summary.status,
                "progress": summary.progress,
                "rejected": rejected,
            }
        )
    else:
        sys.stdout.write(f"{submission_id}\n")
    return 0


def _print_candidates(candidates: Sequence[CandidateOut | PersonCandidateOut]) -> None:
    """The first ten candidates, a line each; * marks one above the threshold; a stored one shows its id
    (what ``rfr review decide --candidate`` takes)."""
    for c in candidates[:10]:
        mark = "*" if c.above_threshold else " "
        stored = f"  (candidate {c.id})" if c.id is not None else ""
        sys.stdout.write(f"    {c.rank:>3} {mark} {c.score:.3f}  {c.custody_reference}{stored}\n")


def _print_faces_table(file_name: str, status: str, faces: Sequence[FaceOut], note: str = "") -> None:
    sys.stdout.write(f"{file_name}  [{status}]  {len(faces)} face(s){note}\n")
    for face in faces:
        quality = face.quality
        flags = f" ({', '.join(quality.reasons)})" if quality.reasons else ""
        verdict = f"usable{flags}" if quality.usable else "poor: " + ", ".join(quality.reasons)
        searched = "searched" if face.searched else "not searched"
        time_s = getattr(face, "time_s", None)  # a clip's face: its shot's time
        shot = f" at {time_s:.2f} s" if time_s is not None else ""
        stored = getattr(face, "id", None)  # a stored face's id (what ``rfr review decide`` takes)
        label = f"face {face.face_index + 1}" + (f" (id {stored})" if stored is not None else "")
        sys.stdout.write(f"  {label}{shot}: quality {quality.score:.2f} ({verdict}); {searched}\n")
        _print_candidates(face.candidates)


def cmd_results(args: argparse.Namespace) -> int:
    with open_storage(args) as storage:
        results = storage.submissions.results(operator(), args.submission)
    if args.json:
        emit(results)
        return 0
    done = results.progress
    sys.stdout.write(
        f"submission {results.id}  case {results.case_reference}  status {results.status}  "
        f"({done.done} done, {done.failed} failed of {done.total})\n"
        "candidates are investigative leads, never identifications; * = above the operating threshold\n\n"
    )
    for image in results.images:
        clip = image.clip
        note = f"  (clip {clip.duration_s:.1f} s, {clip.done_s:.1f} s processed: its tracks' shots)" if clip else ""
        _print_faces_table(image.file, image.status, image.faces, note)
    tracks = [p for p in results.persons if p.track is not None]
    if tracks:
        sys.stdout.write("\ntracks of a clip (a person followed through it, best shots searched as one unit):\n")
    for person in tracks:
        assert person.track is not None
        shots = ", ".join(f"{s.time_s:.2f}" for s in person.track.shots)
        sys.stdout.write(
            f"  person {person.id}  {person.track.file}  {person.track.start_s:.2f}-{person.track.end_s:.2f} s  "
            f"shots at {shots} s\n"
        )
        _print_candidates(person.candidates)
    several = [p for p in results.persons if len(p.faces) > 1 and p.track is None]
    if several:
        sys.stdout.write("\npersons of an incident (faces searched as one unit):\n")
    for person in several:
        state = "searched" if person.searched else "not searched"
        sys.stdout.write(
            f"  person {person.id}  incident {person.incident_reference}  faces {person.faces}  "
            f"({state}, {person.fusion} of the faces' scores)\n"
        )
        _print_candidates(person.candidates)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    path = Path(args.image)
    data = read_image(path)
    with open_runtime(args) as runtime:
        found = runtime.search.search_still(
            operator(), data, args.case, args.purpose, args.search_poor_faces, args.threshold, args.reason
        )
    if args.json:
        emit({"file": path.name, "status": "done", **found.model_dump()})
    else:
        _print_faces_table(path.name, "done", found.faces)
    return 0
