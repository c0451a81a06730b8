"""``rfr purge``: delete unconfirmed probes older than the retention period."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.cli.common import emit, open_storage, operator


def add_parser(sub: Any) -> None:
    purge = sub.add_parser("purge", help="delete unconfirmed probes older than the retention period")
    purge.add_argument("--days", type=float, help="retention in days (default RFR_RETENTION__DAYS, 31)")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(func=cmd_purge, long_running=True)


def cmd_purge(args: argparse.Namespace) -> int:
    with open_storage(args) as storage:
        stats = storage.retention.purge(operator(), days=args.days)
    if args.json:
        emit(stats)
    else:
        sys.stdout.write(
            f"purged {stats.images_deleted} images and {stats.faces_deleted} faces; kept "
            f"{stats.images_kept} images with a confirmed match; deleted {stats.files_deleted} files\n"
        )
    return 0
