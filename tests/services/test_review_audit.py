"""The review and audit services called directly: concurrent decisions, permissions, passwords, the chain."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.db.models import ProbeFace, ReviewDecision
from service.domain.roles import Principal, Role
from service.errors import Forbidden, ServiceError
from service.runtime import Runtime
from service.services import audit
from service.services.users import TOKEN_PREFIX, new_token
from service.services.views import DecisionOut
from tests.fixtures import submit_stills

ANALYST = Principal(username="ana", role=Role.ANALYST, via="test")


def searched_faces(runtime: Runtime, image_ids: list[int]) -> list[int]:
    """The searched faces of the images, in image and face order."""
    with runtime.factory() as session:
        return list(
            session.scalars(
                select(ProbeFace.id)
                .where(ProbeFace.probe_image_id.in_(image_ids), ProbeFace.searched)
                .order_by(ProbeFace.probe_image_id, ProbeFace.face_index)
            )
        )


def test_concurrent_conflicting_decisions_one_wins_one_409(runtime: Runtime, tokens: dict[str, str]) -> None:
    image_ids = submit_stills(runtime, ANALYST, [("Jennifer_Capriati", 6)])
    runtime.worker.run_until_empty()
    face = {"id": searched_faces(runtime, image_ids)[0]}
    rita = runtime.users.authenticate(tokens["rita"])
    rob = runtime.users.authenticate(tokens["rob"])
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def act(who: Principal, outcome: str) -> None:
        barrier.wait()
        try:
            results[who.username] = runtime.review.decide(who, face["id"], "review", outcome, None, "", 0)
        except ServiceError as exc:
            results[who.username] = exc

    threads = [
        threading.Thread(target=act, args=(rita, "no_match")),
        threading.Thread(target=act, args=(rob, "inconclusive")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results.values() if isinstance(r, ServiceError)]
    wins = [r for r in results.values() if isinstance(r, DecisionOut)]
    assert len(wins) == 1 and len(errors) == 1, results
    assert errors[0].http_status == 409 and errors[0].code == "review_conflict"
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(ReviewDecision.probe_face_id == face["id"])) == 1


def test_weak_or_default_passwords_are_refused(runtime: Runtime) -> None:
    operator = Principal("operator:test", Role.ADMIN, via="cli-operator")
    for password in ("admin", "changeme", "password123", "short", "victor-victor", "aaaaaaaaaaaaaaaa"):
        with pytest.raises(ServiceError) as info:
            runtime.users.create(operator, "victor", "admin", password)
        assert info.value.code == "weak_password"


def test_reviewer_cannot_act_without_permission_in_service_layer(runtime: Runtime) -> None:
    auditor = Principal("audrey", Role.AUDITOR)
    with pytest.raises(Forbidden):
        runtime.review.decide(auditor, 1, "review", "no_match")


def test_audit_chain_holds_when_a_session_appends_across_transactions(tmp_path: Path) -> None:
    """The head is locked once per transaction; a later transaction must not reuse a stale copy."""
    from service.db.engine import make_engine, migrate, session_factory
    from service.domain.roles import operator_principal

    engine = make_engine(f"sqlite:///{tmp_path / 'chain.db'}")
    migrate(engine)
    factory = session_factory(engine)
    actor = operator_principal()
    reused = factory()
    audit.append(reused, actor, "first")
    audit.append(reused, actor, "second, same transaction")
    reused.commit()
    with factory() as other, other.begin():
        audit.append(other, actor, "written by another session in between")
    audit.append(reused, actor, "third, a later transaction of the first session")
    reused.commit()
    reused.close()
    result = audit.verify(factory)
    assert result.ok and result.events == 4, result.to_dict()
    engine.dispose()


def test_tokens_never_look_like_a_command_line_option() -> None:
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(t.startswith(TOKEN_PREFIX) and len(t) >= len(TOKEN_PREFIX) + 43 for t in tokens)
