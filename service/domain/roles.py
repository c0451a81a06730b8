"""Roles and what each may do (R10). The single table every endpoint and command checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ANALYST = "analyst"  # submits sprints, reads their own submissions
    REVIEWER = "reviewer"  # first decision on candidates
    CONFIRMER = "confirmer"  # second decision, threshold overrides (the supervisor)
    AUDITOR = "auditor"  # reads the audit trail, nothing else
    ADMIN = "admin"  # users and gallery


class Permission(StrEnum):
    SUBMIT = "submit"
    READ_OWN_SUBMISSIONS = "read_own_submissions"
    READ_ALL_SUBMISSIONS = "read_all_submissions"
    SEARCH = "search"
    REVIEW = "review"
    CONFIRM = "confirm"
    OVERRIDE_THRESHOLD = "override_threshold"
    DISCLOSE = "disclose"
    READ_AUDIT = "read_audit"
    MANAGE_USERS = "manage_users"
    MANAGE_GALLERY = "manage_gallery"
    READ_GALLERY = "read_gallery"
    PURGE = "purge"
    # The prolific-offender picture: appearances of confirmed subjects and of unknown groups across
    # every submission (provenance and scores, not images). Analysts need it to find repeat offenders.
    READ_PROLIFIC = "read_prolific"


P = Permission
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ANALYST: frozenset({P.SUBMIT, P.READ_OWN_SUBMISSIONS, P.SEARCH, P.READ_PROLIFIC}),
    Role.REVIEWER: frozenset({P.READ_ALL_SUBMISSIONS, P.REVIEW, P.READ_GALLERY, P.DISCLOSE, P.READ_PROLIFIC}),
    Role.CONFIRMER: frozenset(
        {
            P.READ_ALL_SUBMISSIONS,
            P.REVIEW,
            P.CONFIRM,
            P.OVERRIDE_THRESHOLD,
            P.SEARCH,
            P.READ_GALLERY,
            P.DISCLOSE,
            P.READ_PROLIFIC,
        }
    ),
    Role.AUDITOR: frozenset({P.READ_AUDIT}),
    Role.ADMIN: frozenset({P.MANAGE_USERS, P.MANAGE_GALLERY, P.READ_GALLERY, P.PURGE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a signed-in user, or the machine's operator working on a local data directory."""

    username: str
    role: Role
    user_id: int | None = None
    via: str = "api"  # api | cli-operator | cli-token

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    @property
    def reads_everything(self) -> bool:
        return self.can(Permission.READ_ALL_SUBMISSIONS)


def operator_principal() -> Principal:
    """The machine's operator: an admin identity, recorded as such in the audit trail."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(username=f"operator:{user}@{socket.gethostname()}", role=Role.ADMIN, via="cli-operator")
