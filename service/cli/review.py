"""``rfr report`` (a sprint's figures) and ``rfr review`` (decisions, as the user whose token is given)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.cli.common import acting_user, emit, open_storage, operator, require
from service.domain.roles import Permission


def add_parser(sub: Any) -> None:
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
    person = review_sub.add_parser(
        "decide-person", help="one decision on a person of an incident, recorded on every member face"
    )
    person.add_argument("person", type=int, help="person id (from rfr results --json, 'persons')")
    for cmd in (decide, person):
        cmd.add_argument("--action", required=True, choices=["review", "confirm", "overturn", "reopen"])
        cmd.add_argument("--outcome", choices=["possible_match", "no_match", "inconclusive"])
        cmd.add_argument(
            "--candidate", type=int, help="candidate id (a person's for decide-person), for possible_match"
        )
        cmd.add_argument(
            "--note",
            default="",
            help="why; required to overturn, to reopen and for a possible match below the threshold",
        )
        cmd.add_argument("--expected-version", type=int)
    for cmd in (queue, decide, person):
        cmd.add_argument("--token", help="the deciding user's token (or env RFR_TOKEN)")
        cmd.set_defaults(func=cmd_review)


def cmd_report(args: argparse.Namespace) -> int:
    with open_storage(args) as storage:
        report = storage.review.report(operator(), args.submission)
    if args.json:
        emit(report)
        return 0
    sys.stdout.write(f"sprint report: submission {report.submission_id} case {report.case_reference}\n")
    threshold = f"{report.threshold:.3f}" if report.threshold is not None else "-"
    sys.stdout.write(
        f"  submitted by {report.submitted_by} on {report.submitted_at:%Y-%m-%d %H:%M} UTC; pack {report.pack_id},"
        f" threshold {threshold}\n"
        if report.submitted_at
        else ""
    )
    for label, value in report.figures() + report.work():
        sys.stdout.write(f"  {label.lower():<48} {value:>6}\n")
    if note := report.purge_note():
        sys.stdout.write(f"{note}\n")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    with open_storage(args) as storage:
        actor = acting_user(storage, args, personal="review")
        require(actor, Permission.REVIEW, Permission.CONFIRM, doing="review")
        if args.review_command == "queue":
            result: Any = {"queue": storage.review.queue(args.state, args.limit)}
        elif args.review_command == "decide-person":
            result = storage.review.decide_person(
                actor, args.person, args.action, args.outcome, args.candidate, args.note, args.expected_version
            )
        else:
            result = storage.review.decide(
                actor, args.face, args.action, args.outcome, args.candidate, args.note, args.expected_version
            )
    emit(result)
    return 0
