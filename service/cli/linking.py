"""``rfr unknowns``, ``rfr prolific`` and ``rfr appearances``: unknown repeat offenders linked across
submissions, the most prolific subjects and groups, and a subject's confirmed history (no model loaded)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.cli.common import TOKEN_HELP, acting_user, emit, open_storage, require
from service.domain.provenance import parse_when
from service.domain.roles import Permission

if TYPE_CHECKING:
    from service.services.linking.models import GroupEntry


def add_parser(sub: Any) -> None:
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
    unknowns.add_argument("--token", help=TOKEN_HELP)
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
    prolific.add_argument("--token", help=TOKEN_HELP)
    prolific.set_defaults(func=cmd_prolific)

    appearances = sub.add_parser("appearances", help="a gallery subject's confirmed appearances (its history)")
    appearances.add_argument("subject", type=int, help="subject id")
    appearances.add_argument("--json", action="store_true")
    appearances.add_argument("--token", help=TOKEN_HELP)
    appearances.set_defaults(func=cmd_appearances)


def _print_groups(groups: list[GroupEntry]) -> None:
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


def cmd_unknowns(args: argparse.Namespace) -> int:
    """List unknown groups (``--json``: the scripts' contract), or decide on one (as ``--token``'s user)."""
    command = args.unknowns_command
    with open_storage(args) as storage:
        linking = storage.linking
        if command is None or command == "show":
            actor = acting_user(storage, args)
            require(actor, Permission.READ_PROLIFIC, doing="read unknown groups")
            if command == "show":
                emit(linking.group(actor, args.group))
                return 0
            groups = linking.list_groups(
                actor, status=args.status, min_faces=1 if args.all else args.min_faces, limit=args.limit
            )
            if args.json:
                emit(groups)
            else:
                _print_groups(groups)
            return 0
        actor = acting_user(storage, args, personal="unknowns")
        if command == "confirm":
            result = linking.confirm(actor, args.group, args.note, args.expected_version)
        elif command == "split":
            faces = [int(f) for f in args.faces.split(",") if f.strip()]
            result = linking.split(actor, args.group, faces, args.note, args.expected_version)
        else:
            result = linking.merge(actor, args.groups, args.note)
    emit(result)
    return 0


def cmd_prolific(args: argparse.Namespace) -> int:
    """Subjects and unknown groups ranked by distinct incidents in a period and area, with appearances."""
    with open_storage(args) as storage:
        actor = acting_user(storage, args)
        require(actor, Permission.READ_PROLIFIC, doing="read the prolific-offender view")
        entries = storage.linking.prolific(
            actor,
            since=parse_when(args.since, "--since"),
            until=parse_when(args.until, "--until"),
            retailers=args.retailer or [],
            stores=args.store or [],
            top=args.top,
            kind=args.kind,
            min_incidents=args.min_incidents,
        )
    if args.json:
        emit(entries)
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
    with open_storage(args) as storage:
        actor = acting_user(storage, args)
        require(actor, Permission.READ_PROLIFIC, doing="read appearances")
        history = storage.linking.subject_appearances(actor, args.subject)
    if args.json:
        emit(history)
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
