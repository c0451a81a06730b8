"""Accounts: names that cannot pass for another, and an admin that cannot lock everyone out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.config import Settings
from service.db.models import AuditEvent
from service.errors import Conflict, InvalidRequest, TooManyAttempts, Unauthenticated
from service.runtime import Storage
from service.services import users as users_module
from service.services.users import LoginThrottle
from tests.fixtures import OPERATOR, PASSWORD, make_settings


@pytest.fixture(scope="module")
def storage(database: str, tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Storage]:
    root: Path = tmp_path_factory.mktemp("users")
    opened = Storage.open(make_settings(root / "data", database, settings.cache_dir))
    yield opened
    opened.close()


@pytest.mark.parametrize(
    "name",
    ["", "rita\x00", "ri\nta", "rіta", "ｒｉｔａ", "-rita", "ri ta", "rita:1", "r" * 129],  # the 4th has a Cyrillic і
)
def test_names_with_control_or_look_alike_characters_are_refused(storage: Storage, name: str) -> None:
    with pytest.raises(InvalidRequest, match="ASCII letters"):
        storage.users.create(OPERATOR, name, "analyst", PASSWORD)
    assert all(u.username != name.strip() for u in storage.users.list())


def test_a_name_differing_only_in_case_is_taken(storage: Storage) -> None:
    storage.users.create(OPERATOR, "vera", "reviewer", PASSWORD)
    with pytest.raises(Conflict, match="like 'Vera'"):
        storage.users.create(OPERATOR, "Vera", "admin", PASSWORD)
    assert [u.username for u in storage.users.list() if u.username.lower() == "vera"] == ["vera"]


def test_the_last_enabled_admin_cannot_be_disabled(storage: Storage) -> None:
    storage.users.create(OPERATOR, "ada.admin", "admin", PASSWORD)
    admins = [u.username for u in storage.users.list() if u.role == "admin" and not u.disabled]
    for other in admins[1:]:
        storage.users.set_disabled(OPERATOR, other, True)
    last = admins[0]
    with pytest.raises(Conflict, match="last enabled admin"):
        storage.users.set_disabled(OPERATOR, last, True)
    assert not next(u for u in storage.users.list() if u.username == last).disabled
    storage.users.create(OPERATOR, "ben.admin", "admin", PASSWORD)
    storage.users.set_disabled(OPERATOR, last, True)  # another admin is enabled now
    with pytest.raises(Conflict):
        storage.users.set_disabled(OPERATOR, "ben.admin", True)


def test_failed_sign_ins_are_recorded_as_typed_and_throttled(storage: Storage) -> None:
    storage.users.create(OPERATOR, "wendy", "reviewer", PASSWORD)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            storage.users.login("wendy", "not the password", "10.0.0.7")
    # The sixth try is refused before any password is checked, even the right one.
    with pytest.raises(TooManyAttempts) as refused:
        storage.users.login("wendy", PASSWORD, "10.0.0.8")
    assert refused.value.http_status == 429 and "try again in" in refused.value.message
    # Another user from another address is not held back; a sign-in that succeeds clears its user's count.
    storage.users.create(OPERATOR, "xena", "reviewer", PASSWORD)
    token, principal, _ = storage.users.login("xena", PASSWORD, "10.0.0.9")
    assert token and principal.username == "xena"
    # Twenty failures from one address, over any names, hold that address back.
    for i in range(20):
        with pytest.raises((Unauthenticated, TooManyAttempts)):
            storage.users.login(f"nobody{i}", "wrong password", "10.0.0.66")
    with pytest.raises(TooManyAttempts):
        storage.users.login("xena", PASSWORD, "10.0.0.66")
    with storage.factory() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(["login_failed", "login_throttled"]))
        ).all()
    assert events and all(e.actor == "unauthenticated" and e.role == "none" for e in events)
    assert {e.details["typed_username"] for e in events} >= {"wendy", "nobody3"}
    assert any(e.action == "login_throttled" and e.details["typed_username"] == "wendy" for e in events)


def test_an_unknown_user_costs_the_same_password_check_as_a_known_one(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every refusal runs one real argon2 verification (an unknown or disabled user's against a dummy
    hash), so the answer's timing tells no one who exists (the time itself is not asserted here)."""
    storage.users.create(OPERATOR, "yuri", "analyst", PASSWORD)
    storage.users.create(OPERATOR, "zoe", "analyst", PASSWORD)
    storage.users.set_disabled(OPERATOR, "zoe", True)
    storage.users.throttle = LoginThrottle(per_user=1000, per_address=1000)
    checked: list[str] = []
    real = users_module._verify

    def counting(password_hash: str, password: str) -> bool:
        checked.append(password_hash[:9])
        return real(password_hash, password)

    monkeypatch.setattr(users_module, "_verify", counting)
    for name in ("yuri", "no-such-user", "zoe"):
        with pytest.raises(Unauthenticated):
            storage.users.login(name, "not the password")
    assert checked == ["$argon2id"] * 3, checked
