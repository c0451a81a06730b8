"""The linking package's seams in isolation: the ``ReviewDecided`` event, and ``HeldFaces.changing``
(lock → sync → change → new stamp; an error leaves the index marked stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.db.engine import make_engine, migrate, session_factory
from service.db.models import LinkingState
from service.domain.events import ReviewDecided
from service.domain.review import Outcome, ReviewState
from service.domain.roles import operator_principal
from service.services.linking.held import HeldFaces


def test_review_decided_names_the_confirmed_outcomes() -> None:
    actor = operator_principal()
    match = ReviewDecided(1, ReviewState.CONFIRMED, Outcome.POSSIBLE_MATCH, 7, actor)
    no_match = ReviewDecided(1, ReviewState.CONFIRMED, Outcome.NO_MATCH, None, actor)
    pending = ReviewDecided(1, ReviewState.AWAITING_CONFIRMATION, Outcome.NO_MATCH, None, actor)
    assert match.confirmed_match and not match.confirmed_no_match
    assert no_match.confirmed_no_match and not no_match.confirmed_match
    assert not pending.confirmed_match and not pending.confirmed_no_match
    with pytest.raises(AttributeError):
        match.face_id = 2  # type: ignore[misc]


def test_changing_bumps_the_stamp_and_an_error_marks_the_index_stale(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'held.db'}")
    migrate(engine)
    factory = session_factory(engine)
    held = HeldFaces("pack", 4)

    def stamp() -> int:
        with factory() as session:
            state = session.get(LinkingState, "pack")
            assert state is not None
            return int(state.version)

    with factory() as session, session.begin(), held.changing(session):
        pass
    first = stamp()
    assert held._version == first, "the index reflects the stamp it wrote"

    with factory() as session, session.begin(), held.synced(session):
        pass
    with factory() as session, session.begin(), held.changing(session) as change:
        change.bump = False
    assert stamp() == first and held._version == first, "a read or an empty change keeps the stamp"

    with pytest.raises(RuntimeError), factory() as session, session.begin(), held.changing(session):
        raise RuntimeError("the change fails")
    assert held._version is None, "a failed change leaves the index to be reconciled"
    assert stamp() == first, "and its transaction rolled back"
    engine.dispose()
