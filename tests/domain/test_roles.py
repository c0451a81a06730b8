"""service.domain.roles: every principal's permissions are exactly its role's row of the table."""

from __future__ import annotations

import itertools

import pytest

from service.domain.roles import PERMISSIONS, Permission, Principal, Role, operator_principal

P = Permission


def test_every_role_has_a_row_and_every_permission_a_holder() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert set().union(*PERMISSIONS.values()) == set(Permission), "no permission is granted to nobody"


@pytest.mark.parametrize(("role", "permission"), list(itertools.product(Role, Permission)))
def test_a_principal_can_exactly_what_its_role_row_grants(role: Role, permission: Permission) -> None:
    principal = Principal("someone", role)
    assert principal.can(permission) is (permission in PERMISSIONS[role])
    assert principal.reads_everything is (P.READ_ALL_SUBMISSIONS in PERMISSIONS[role])


def test_the_duties_are_separated() -> None:
    holders = {p: {r for r in Role if p in PERMISSIONS[r]} for p in Permission}
    assert holders[P.CONFIRM] == {Role.CONFIRMER}, "only a confirmer gives the second decision"
    assert holders[P.OVERRIDE_THRESHOLD] == {Role.CONFIRMER}
    assert holders[P.REVIEW] == {Role.REVIEWER, Role.CONFIRMER}
    assert holders[P.READ_AUDIT] == {Role.AUDITOR}
    assert PERMISSIONS[Role.AUDITOR] == {P.READ_AUDIT}, "an auditor reads the trail and nothing else"
    assert holders[P.SUBMIT] == {Role.ANALYST}
    assert holders[P.MANAGE_USERS] == holders[P.MANAGE_GALLERY] == holders[P.PURGE] == {Role.ADMIN}
    assert not Principal("ana", Role.ANALYST).reads_everything, "an analyst reads only their own submissions"
    assert not Principal("adam", Role.ADMIN).can(P.READ_ALL_SUBMISSIONS), "an admin does not read probes"


def test_the_operator_is_an_admin_recorded_as_the_machines_operator() -> None:
    operator = operator_principal()
    assert operator.role is Role.ADMIN and operator.via == "cli-operator" and operator.user_id is None
    assert operator.username.startswith("operator:") and "@" in operator.username
