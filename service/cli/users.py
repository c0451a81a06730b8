"""``rfr users``: local accounts, managed by the machine's operator."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from service.cli.common import emit, open_storage, operator

ROLES = ["analyst", "reviewer", "confirmer", "auditor", "admin"]


def add_parser(sub: Any) -> None:
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
            cmd.add_argument("--role", required=True, choices=ROLES)
            cmd.add_argument("--token", action="store_true", help="also issue an API token (printed once)")
        if name in ("create", "reset"):
            cmd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(func=cmd_users)
    users_list = users_sub.add_parser("list", help="list users")
    users_list.add_argument("--json", action="store_true")
    users_list.set_defaults(func=cmd_users)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise SystemExit("rfr users: no terminal to ask for the password on; pipe it in with --password-stdin")
    try:
        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("rfr users: the passwords differ")
    except EOFError as exc:
        raise SystemExit("rfr users: no password given") from exc
    return first


def cmd_users(args: argparse.Namespace) -> int:
    command = args.users_command
    out: dict[str, Any] = {"user": getattr(args, "username", None)}
    with open_storage(args) as storage:
        users, actor = storage.users, operator()
        if command == "create":
            out["id"] = users.create(actor, args.username, args.role, _read_password(args))
            out["role"] = args.role
            if args.token:
                out["token"] = users.issue_token(actor, args.username)
        elif command in ("disable", "enable"):
            users.set_disabled(actor, args.username, command == "disable")
        elif command == "reset":
            users.reset_password(actor, args.username, _read_password(args))
        elif command == "token":
            out["token"] = users.issue_token(actor, args.username)
        elif command == "list":
            out = {"users": users.list()}
    if args.json or "token" in out or command == "list":
        emit(out)
    else:  # a person at a terminal: say what was done
        done = {"create": f"created {args.role}", "disable": "disabled", "enable": "enabled", "reset": "password reset"}
        sys.stdout.write(f"user {args.username}: {done[command]}\n")
    return 0
