"""Accounts: names that cannot pass for another, and an admin that cannot lock everyone out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from service.errors import Conflict, InvalidRequest
from service.runtime import Storage
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
