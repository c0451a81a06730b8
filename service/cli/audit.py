"""``rfr audit verify`` and ``rfr audit export``: the tamper-evident audit trail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from service.cli.common import emit, open_storage, operator


def add_parser(sub: Any) -> None:
    audit_cmd = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain, its MACs and checkpoints; exit 1 naming the problem"
    )
    verify.add_argument(
        "--checkpoints",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="other hosts' checkpoint files (each rfr worker host's audit-checkpoints.jsonl), checked too",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_audit, long_running=True)
    export = audit_sub.add_parser("export", help="export as JSON Lines or CSV (recorded, with the recipient)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--recipient", required=True, help="who receives the export")
    export.add_argument("--out", help="file (default standard output)")
    export.set_defaults(func=cmd_audit, long_running=True)


def cmd_audit(args: argparse.Namespace) -> int:
    with open_storage(args) as storage:
        if args.audit_command == "verify":
            result = storage.audit.verify(also=args.checkpoints)
            if args.json:
                emit(result.to_dict())
            elif result.ok:
                anchor = (
                    f", checkpointed to event {result.checkpoint_seq}"
                    + (f", {result.unanchored} from before the audit key unanchored" if result.unanchored else "")
                    if result.anchored_from is not None
                    else ", not anchored outside the database"
                )
                sys.stdout.write(f"audit trail intact: {result.events} events{anchor}\n")
            else:
                where = f" at event {result.first_bad_seq}" if result.first_bad_seq is not None else ""
                sys.stdout.write(f"audit trail BROKEN ({result.kind}){where}: {result.problem}\n")
            return 0 if result.ok else 1
        lines = storage.audit.export(operator(), args.recipient, args.format)
        target = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
        try:
            for chunk in lines:
                target.write(chunk)
        finally:
            if args.out:
                target.close()
        return 0
