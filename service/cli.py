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
from service.domain.roles import Principal, operator_principal
from service.errors import ImageUnreadable, ServiceError


def OPERATOR() -> Principal:
    """The CLI on a local data directory acts as the machine's operator (an admin), so recorded."""
    return operator_principal()


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

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=quiet, dynamic_ncols=True)


def _runtime(args: argparse.Namespace) -> Any:
    """Everything, the model and the gallery index included (``service.runtime``)."""
    from service.runtime import Runtime

    return Runtime.build(_settings(args))


def _storage(args: argparse.Namespace) -> Any:
    """The storage-only tier: database, image store and the use cases that need no model or index."""
    from service.runtime import Storage

    return Storage.open(_settings(args))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "y"}


def cmd_gallery_import(args: argparse.Namespace) -> int:
    from service.domain.provenance import SubjectProvenance

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
                outcome = runtime.gallery.enrol(OPERATOR(), reference, data, path.name, provenance, save_index=False)
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

    from service.domain.provenance import ProbeProvenance

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
    actor = OPERATOR()
    submission_id = runtime.submissions.create(actor, args.case, args.purpose, args.search_poor_faces)
    rejected = []
    with _progress(len(files), "uploading", args.quiet) as bar:
        for path in files:
            name = str(path.relative_to(folder))
            data = path.read_bytes()
            try:
                runtime.submissions.add_images(actor, submission_id, [Upload(name, data, provenance_of(path))])
            except _ServiceError as exc:
                runtime.submissions.add_rejected(actor, submission_id, name, data, exc.code, exc.message)
                rejected.append({"file": name, **exc.to_dict()})
            bar.update(1)
    lock = ServiceLock(settings.data_dir)
    if not lock.service_running():
        with _progress(len(files) - len(rejected), "processing", args.quiet) as bar:
            runtime.worker.run_until_empty(progress=bar.update)
    elif args.wait:
        while runtime.submissions.get(actor, submission_id)["status"] not in {"complete"}:
            time.sleep(0.5)
    summary = runtime.submissions.get(actor, submission_id)
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
    runtime = _storage(args)
    results = runtime.submissions.results(OPERATOR(), args.submission)
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
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageUnreadable(f"cannot read file: {exc.strerror or exc}") from exc
    runtime = _runtime(args)
    result = runtime.search.search_still(
        OPERATOR(), data, args.case, args.purpose, args.search_poor_faces, args.threshold, args.reason
    )
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


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    runtime = _storage(args)
    users = runtime.users
    out: dict[str, Any] = {"user": getattr(args, "username", None)}
    if args.users_command == "create":
        out["id"] = users.create(OPERATOR(), args.username, args.role, _read_password(args))
        out["role"] = args.role
        if args.token:
            out["token"] = users.issue_token(OPERATOR(), args.username)
    elif args.users_command == "disable":
        users.set_disabled(OPERATOR(), args.username, True)
    elif args.users_command == "enable":
        users.set_disabled(OPERATOR(), args.username, False)
    elif args.users_command == "reset":
        users.reset_password(OPERATOR(), args.username, _read_password(args))
    elif args.users_command == "token":
        out["token"] = users.issue_token(OPERATOR(), args.username)
    elif args.users_command == "list":
        out = {"users": users.list()}
    runtime.close()
    if args.json or "token" in out or args.users_command == "list":
        _emit(out)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    storage = _storage(args)
    try:
        if args.audit_command == "verify":
            result = storage.audit.verify()
            if args.json:
                _emit(result.to_dict())
            elif result.ok:
                sys.stdout.write(f"audit trail intact: {result.events} events\n")
            else:
                sys.stdout.write(f"audit trail BROKEN at event {result.first_bad_seq}: {result.problem}\n")
            return 0 if result.ok else 1
        lines = storage.audit.export(OPERATOR(), args.recipient, args.format)
        target = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
        try:
            for chunk in lines:
                target.write(chunk)
        finally:
            if args.out:
                target.close()
        return 0
    finally:
        storage.close()


def cmd_purge(args: argparse.Namespace) -> int:
    runtime = _storage(args)
    stats = runtime.retention.purge(OPERATOR(), days=args.days)
    runtime.close()
    if args.json:
        _emit(stats)
    else:
        sys.stdout.write(
            f"purged {stats['images_deleted']} images and {stats['faces_deleted']} faces; kept "
            f"{stats['images_kept']} images with a confirmed match; deleted {stats['files_deleted']} files\n"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    storage = _storage(args)
    report = storage.review.report(OPERATOR(), args.submission)
    storage.close()
    if args.json:
        _emit(report)
        return 0
    labels = [
        ("images supplied", "images_supplied"),
        ("images with a face", "images_with_face"),
        ("usable faces", "usable_faces"),
        ("faces searched", "faces_searched"),
        ("faces with a candidate above threshold", "faces_with_candidate_above_threshold"),
        ("possible matches", "possible_matches"),
        ("confirmed matches", "confirmed_matches"),
        ("distinct subjects confirmed", "distinct_subjects_confirmed"),
    ]
    sys.stdout.write(f"sprint report: submission {report['submission_id']} case {report['case_reference']}\n")
    for label, key in labels:
        sys.stdout.write(f"  {label:<40} {report[key]:>6}\n")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    runtime = _storage(args)
    token = args.token or os.environ.get("RFR_TOKEN", "")
    if not token:
        raise SystemExit("rfr review: decisions are personal: give --token (or RFR_TOKEN) of the deciding user")
    actor = runtime.users.authenticate(token, via="cli-token")
    from service.domain.roles import Permission

    if not (actor.can(Permission.REVIEW) or actor.can(Permission.CONFIRM)):
        from service.errors import Forbidden

        raise Forbidden(f"role {actor.role} may not review")
    if args.review_command == "queue":
        result: Any = runtime.review.queue(args.state, args.limit)
    else:
        result = runtime.review.decide(
            actor, args.face, args.action, args.outcome, args.candidate, args.note, args.expected_version
        )
    runtime.close()
    _emit(result if isinstance(result, dict) else {"queue": result})
    return 0


def _linking_context(args: argparse.Namespace) -> tuple[Any, Any, Principal]:
    """The linking service on the data directory (no model loaded), its storage tier, and who is acting:
    the user of ``--token`` (or env RFR_TOKEN) when given, else the machine's operator."""
    storage = _storage(args)
    token = getattr(args, "token", None) or os.environ.get("RFR_TOKEN", "")
    actor = storage.users.authenticate(token, via="cli-token") if token else None
    return storage.linking, storage, actor or OPERATOR()


def _when(value: str | None) -> Any:
    from datetime import UTC, datetime

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SystemExit(f"not an ISO 8601 date or date-time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _emit_list(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cmd_unknowns(args: argparse.Namespace) -> int:
    """List unknown groups (``--json``: the scripts' contract), or decide on one (as ``--token``'s user)."""
    from service.domain.roles import Permission
    from service.errors import Forbidden

    linking, storage, actor = _linking_context(args)
    try:
        command = args.unknowns_command
        if command is None or command == "show":
            if actor.via != "cli-operator" and not actor.can(Permission.READ_PROLIFIC):
                raise Forbidden(f"role {actor.role} may not read unknown groups")
            if command == "show":
                _emit(linking.group(actor, args.group))
                return 0
            groups = linking.list_groups(
                actor,
                status=args.status,
                min_faces=1 if args.all else args.min_faces,
                limit=args.limit,
            )
            if args.json:
                _emit_list(groups)
                return 0
            sys.stdout.write("unknown groups: faces with no gallery match, linked across submissions\n")
            for group in groups:
                sys.stdout.write(
                    f"group {group['group']} [{group['status']}]  {group['size']} faces, "
                    f"{group['incidents']} incidents, {group['retailers']} retailers, {group['stores']} stores\n"
                )
                for face in group["faces"]:
                    sys.stdout.write(
                        f"  {face['score']:.3f}  submission {face['submission']}  {face['file']}  "
                        f"{face['retailer']} / {face['store']}  {face['incident_reference']}  {face['seen_at'] or ''}\n"
                    )
            return 0
        if actor.via == "cli-operator":
            raise SystemExit("rfr unknowns: decisions are personal: give --token (or RFR_TOKEN) of the deciding user")
        if command == "confirm":
            result = linking.confirm(actor, args.group, args.note, args.expected_version)
        elif command == "split":
            faces = [int(f) for f in args.faces.split(",") if f.strip()]
            result = linking.split(actor, args.group, faces, args.note, args.expected_version)
        else:
            result = linking.merge(actor, args.groups, args.note)
        _emit(result)
        return 0
    finally:
        storage.close()


def cmd_prolific(args: argparse.Namespace) -> int:
    """Subjects and unknown groups ranked by distinct incidents in a period and area, with appearances."""
    from service.domain.roles import Permission
    from service.errors import Forbidden

    linking, storage, actor = _linking_context(args)
    try:
        if actor.via != "cli-operator" and not actor.can(Permission.READ_PROLIFIC):
            raise Forbidden(f"role {actor.role} may not read the prolific-offender view")
        entries = linking.prolific(
            actor,
            since=_when(args.since),
            until=_when(args.until),
            retailers=args.retailer or [],
            stores=args.store or [],
            top=args.top,
            kind=args.kind,
            min_incidents=args.min_incidents,
        )
    finally:
        storage.close()
    if args.json:
        _emit_list(entries)
        return 0
    sys.stdout.write("most prolific: confirmed matches are investigative leads, unknown groups are unidentified\n")
    for entry in entries:
        who = entry["custody_reference"] if entry["kind"] == "subject" else f"unknown group {entry['group']}"
        sys.stdout.write(
            f"{entry['rank']:>3}. {who}: {entry['incidents']} incidents, {entry['retailers']} retailers, "
            f"{entry['stores']} stores, {len(entry['appearances'])} appearances "
            f"({(entry['first_seen'] or '')[:10]} .. {(entry['last_seen'] or '')[:10]})\n"
        )
        for a in entry["appearances"]:
            sys.stdout.write(
                f"       {(a['seen_at'] or '')[:16]}  {a['retailer']} / {a['store']}  {a['incident_reference']}  "
                f"submission {a['submission']} {a['file']}\n"
            )
    return 0


def cmd_appearances(args: argparse.Namespace) -> int:
    """A gallery subject's history: every confirmed match with retailer, store, incident and time."""
    from service.domain.roles import Permission
    from service.errors import Forbidden

    linking, storage, actor = _linking_context(args)
    try:
        if actor.via != "cli-operator" and not actor.can(Permission.READ_PROLIFIC):
            raise Forbidden(f"role {actor.role} may not read appearances")
        history = linking.subject_appearances(actor, args.subject)
    finally:
        storage.close()
    if args.json:
        _emit(history)
        return 0
    sys.stdout.write(
        f"subject {history['subject']} ({history['custody_reference']}): {history['incidents']} incidents, "
        f"{history['retailers']} retailers, {history['stores']} stores; {history['notice']}\n"
    )
    for a in history["appearances"]:
        sys.stdout.write(
            f"  {(a['seen_at'] or '')[:16]}  {a['retailer']} / {a['store']}  {a['incident_reference']}  "
            f"submission {a['submission']} {a['file']}  score {a['score']:.3f}\n"
        )
    return 0


def add_linking_commands(sub: Any) -> None:
    """``rfr unknowns``, ``rfr prolific`` and ``rfr appearances`` (issue 7)."""
    unknowns = sub.add_parser(
        "unknowns", help="unknown repeat offenders: faces without a gallery match linked across submissions"
    )
    unknowns.add_argument(
        "--json", action="store_true", help='a JSON list: {"group", "faces": [{"submission", "file", "score"}]}'
    )
    unknowns.add_argument("--status", choices=["open", "confirmed"])
    unknowns.add_argument("--min-faces", type=int, default=2, help="smallest group listed (default 2)")
    unknowns.add_argument("--all", action="store_true", help="list singletons too")
    unknowns.add_argument("--limit", type=int, default=1000)
    unknowns.add_argument("--token", help="act as this user (or env RFR_TOKEN); default: the operator")
    unknowns.set_defaults(func=cmd_unknowns, unknowns_command=None)
    decisions = unknowns.add_subparsers(dest="unknowns_command")
    show = decisions.add_parser("show", help="one group with every appearance and decision (JSON)")
    show.add_argument("group", type=int)
    confirm = decisions.add_parser("confirm", help="confirm a group's faces show one person")
    confirm.add_argument("group", type=int)
    split = decisions.add_parser("split", help="move faces out of a group into a new one")
    split.add_argument("group", type=int)
    split.add_argument("--faces", required=True, help="comma-separated probe face ids")
    merge = decisions.add_parser("merge", help="merge groups into the first one named")
    merge.add_argument("groups", type=int, nargs="+")
    for cmd in (confirm, split, merge):
        cmd.add_argument("--note", default="")
        if cmd is not merge:
            cmd.add_argument("--expected-version", type=int)
    for cmd in (show, confirm, split, merge):
        cmd.add_argument("--token", default=argparse.SUPPRESS, help="the deciding user's token (or env RFR_TOKEN)")
        cmd.set_defaults(func=cmd_unknowns)

    prolific = sub.add_parser("prolific", help="subjects and unknown groups ranked by distinct incidents")
    prolific.add_argument("--json", action="store_true")
    prolific.add_argument("--since", help="ISO 8601 date or date-time (capture time, else submission time)")
    prolific.add_argument("--until", help="ISO 8601 date or date-time (exclusive)")
    prolific.add_argument("--top", type=int, default=10)
    prolific.add_argument("--retailer", action="append", help="only this retailer (repeatable)")
    prolific.add_argument("--store", action="append", help="only this store (repeatable): the area")
    prolific.add_argument("--kind", choices=["all", "known", "unknown"], default="all")
    prolific.add_argument("--min-incidents", type=int, default=1)
    prolific.add_argument("--token", help="act as this user (or env RFR_TOKEN); default: the operator")
    prolific.set_defaults(func=cmd_prolific)

    appearances = sub.add_parser("appearances", help="a gallery subject's confirmed appearances (its history)")
    appearances.add_argument("subject", type=int, help="subject id")
    appearances.add_argument("--json", action="store_true")
    appearances.add_argument("--token", help="act as this user (or env RFR_TOKEN); default: the operator")
    appearances.set_defaults(func=cmd_appearances)


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
    search.add_argument("--case", default="unspecified", help="case or crime reference (recorded)")
    search.add_argument("--purpose", default="operator one-off search", help="why (recorded)")
    search.add_argument("--threshold", type=float, help="operating threshold for this search")
    search.add_argument("--reason", default="", help="why a lower threshold is needed (recorded)")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    users = sub.add_parser("users", help="local accounts (the CLI acts as the machine's operator)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    for name, text in (
        ("create", "create a user (the first admin too)"),
        ("disable", "disable a user"),
        ("enable", "re-enable a user"),
        ("reset", "set a new password, revoke tokens"),
        ("token", "issue an API token for scripts"),
    ):
        cmd = users_sub.add_parser(name, help=text)
        cmd.add_argument("username")
        if name == "create":
            cmd.add_argument("--role", required=True, choices=["analyst", "reviewer", "confirmer", "auditor", "admin"])
            cmd.add_argument("--token", action="store_true", help="also issue an API token (printed once)")
        if name in ("create", "reset"):
            cmd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(func=cmd_users)
    users_list = users_sub.add_parser("list", help="list users")
    users_list.add_argument("--json", action="store_true")
    users_list.set_defaults(func=cmd_users)

    audit_cmd = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad event")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_audit)
    export = audit_sub.add_parser("export", help="export as JSON Lines or CSV (recorded, with the recipient)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--recipient", required=True, help="who receives the export")
    export.add_argument("--out", help="file (default standard output)")
    export.set_defaults(func=cmd_audit)

    purge = sub.add_parser("purge", help="delete unconfirmed probes older than the retention period")
    purge.add_argument("--days", type=float, help="retention in days (default RFR_RETENTION__DAYS, 31)")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(func=cmd_purge)

    report = sub.add_parser("report", help="a sprint's figures: supplied, usable, searched, confirmed ...")
    report.add_argument("submission", type=int)
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)

    review = sub.add_parser("review", help="review decisions, as the user whose --token is given")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    queue = review_sub.add_parser("queue", help="faces waiting for a decision")
    queue.add_argument("--state", default="unreviewed", choices=["unreviewed", "awaiting_confirmation", "confirmed"])
    queue.add_argument("--limit", type=int, default=100)
    decide = review_sub.add_parser("decide", help="review, confirm, overturn or reopen a face's decision")
    decide.add_argument("face", type=int, help="probe face id (from rfr results --json)")
    decide.add_argument("--action", required=True, choices=["review", "confirm", "overturn", "reopen"])
    decide.add_argument("--outcome", choices=["possible_match", "no_match", "inconclusive"])
    decide.add_argument("--candidate", type=int, help="candidate id, for possible_match")
    decide.add_argument("--note", default="")
    decide.add_argument("--expected-version", type=int)
    for cmd in (queue, decide):
        cmd.add_argument("--token", help="the deciding user's token (or env RFR_TOKEN)")
        cmd.set_defaults(func=cmd_review)
    add_linking_commands(sub)
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
