"""service.domain.review: the transition table, who may act, and the two-person rule (no database)."""

from __future__ import annotations

import itertools

import pytest

from service.domain.review import (
    REQUIRED,
    TRANSITIONS,
    Action,
    NoteRequired,
    Outcome,
    ReviewConflict,
    ReviewState,
    SelfConfirmation,
    next_state,
    require_reason,
)
from service.domain.roles import PERMISSIONS, Principal, Role
from service.errors import Forbidden, InvalidRequest

CONFIRMER = Principal("cora", Role.CONFIRMER)
OTHER_CONFIRMER = Principal("carl", Role.CONFIRMER)
REVIEWER = Principal("rita", Role.REVIEWER)


def well_formed(action: Action) -> tuple[Outcome | None, bool]:
    """An outcome and candidate flag the action accepts (a review names an outcome, the rest none)."""
    return (Outcome.NO_MATCH, False) if action is Action.REVIEW else (None, False)


def test_the_transition_table_is_the_documented_workflow() -> None:
    S, A = ReviewState, Action
    assert TRANSITIONS == {
        (S.UNREVIEWED, A.REVIEW): S.AWAITING_CONFIRMATION,
        (S.AWAITING_CONFIRMATION, A.CONFIRM): S.CONFIRMED,
        (S.AWAITING_CONFIRMATION, A.OVERTURN): S.UNREVIEWED,
        (S.CONFIRMED, A.REOPEN): S.UNREVIEWED,
    }
    assert set(REQUIRED) == set(Action), "every action names the permission it needs"


@pytest.mark.parametrize(("state", "action"), list(itertools.product(ReviewState, Action)))
def test_every_transition_outside_the_table_is_refused(state: ReviewState, action: Action) -> None:
    outcome, candidate = well_formed(action)
    if (state, action) in TRANSITIONS:
        assert next_state(state, action, CONFIRMER, "rita", outcome, candidate) is TRANSITIONS[state, action]
    else:
        with pytest.raises(ReviewConflict) as info:
            next_state(state, action, CONFIRMER, "rita", outcome, candidate)
        assert info.value.http_status == 409 and info.value.code == "review_conflict"


@pytest.mark.parametrize(("role", "action"), list(itertools.product(Role, Action)))
def test_only_roles_holding_the_required_permission_may_act(role: Role, action: Action) -> None:
    actor = Principal("someone", role)
    state = next(s for (s, a) in TRANSITIONS if a is action)
    outcome, candidate = well_formed(action)
    if REQUIRED[action] in PERMISSIONS[role]:
        assert next_state(state, action, actor, "rita", outcome, candidate) is TRANSITIONS[state, action]
    else:
        with pytest.raises(Forbidden) as info:
            next_state(state, action, actor, "rita", outcome, candidate)
        assert not isinstance(info.value, SelfConfirmation) and info.value.http_status == 403


def test_permission_is_checked_before_the_state() -> None:
    with pytest.raises(Forbidden):
        next_state(ReviewState.CONFIRMED, Action.CONFIRM, REVIEWER, None, None, False)


@pytest.mark.parametrize("action", [Action.CONFIRM, Action.OVERTURN])
def test_a_reviewer_cannot_confirm_or_overturn_their_own_review(action: Action) -> None:
    state = ReviewState.AWAITING_CONFIRMATION
    with pytest.raises(SelfConfirmation) as info:
        next_state(state, action, CONFIRMER, CONFIRMER.username, None, False)
    assert info.value.code == "self_confirmation" and info.value.http_status == 403
    assert next_state(state, action, OTHER_CONFIRMER, CONFIRMER.username, None, False) is TRANSITIONS[state, action]


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_review_names_an_outcome_and_a_candidate_exactly_for_a_possible_match(outcome: Outcome) -> None:
    state = ReviewState.UNREVIEWED
    names_candidate = outcome is Outcome.POSSIBLE_MATCH
    assert next_state(state, Action.REVIEW, REVIEWER, None, outcome, names_candidate) is (
        ReviewState.AWAITING_CONFIRMATION
    )
    with pytest.raises(InvalidRequest):
        next_state(state, Action.REVIEW, REVIEWER, None, outcome, not names_candidate)
    with pytest.raises(InvalidRequest):
        next_state(state, Action.REVIEW, REVIEWER, None, None, names_candidate)


@pytest.mark.parametrize("action", [Action.CONFIRM, Action.OVERTURN, Action.REOPEN])
def test_second_decisions_take_no_outcome_or_candidate(action: Action) -> None:
    state = next(s for (s, a) in TRANSITIONS if a is action)
    with pytest.raises(InvalidRequest):
        next_state(state, action, OTHER_CONFIRMER, "rita", Outcome.NO_MATCH, False)
    with pytest.raises(InvalidRequest):
        next_state(state, action, OTHER_CONFIRMER, "rita", None, True)


@pytest.mark.parametrize(
    ("action", "outcome", "below", "needed"),
    [
        (Action.REVIEW, Outcome.POSSIBLE_MATCH, True, True),
        (Action.REVIEW, Outcome.POSSIBLE_MATCH, False, False),
        (Action.REVIEW, Outcome.NO_MATCH, False, False),
        (Action.REVIEW, Outcome.INCONCLUSIVE, False, False),
        (Action.CONFIRM, None, False, False),
        (Action.CONFIRM, None, True, False),
        (Action.OVERTURN, None, False, True),
        (Action.REOPEN, None, False, True),
    ],
)
def test_a_decision_against_the_score_or_undoing_another_needs_a_note(
    action: Action, outcome: Outcome | None, below: bool, needed: bool
) -> None:
    require_reason(action, outcome, below, "a written reason")
    if needed:
        for empty in ("", "   \n"):
            with pytest.raises(NoteRequired) as info:
                require_reason(action, outcome, below, empty)
            assert info.value.http_status == 422 and info.value.code == "note_required"
    else:
        require_reason(action, outcome, below, "")
