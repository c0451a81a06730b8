"""The review workflow's states and transitions, in one place (R3).

A probe face starts ``unreviewed``. A reviewer (or confirmer) records the first decision —
``possible_match`` (naming one candidate), ``no_match`` or ``inconclusive`` — and the face awaits
confirmation. A confirmer who is not the first decision's author then ``confirm``s it or
``overturn``s it (back to ``unreviewed`` for a fresh review). A confirmed outcome is reversed
only by a new recorded decision, ``reopen``, by a confirmer. Only a confirmed ``possible_match``
is a confirmed match — still an investigative lead, never an identification.
"""

from __future__ import annotations

from enum import StrEnum

from service.domain.roles import Permission, Principal
from service.errors import Conflict, Forbidden, InvalidRequest


class ReviewState(StrEnum):
    UNREVIEWED = "unreviewed"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    CONFIRMED = "confirmed"


class Action(StrEnum):
    REVIEW = "review"
    CONFIRM = "confirm"
    OVERTURN = "overturn"
    REOPEN = "reopen"


class Outcome(StrEnum):
    POSSIBLE_MATCH = "possible_match"
    NO_MATCH = "no_match"
    INCONCLUSIVE = "inconclusive"


S, A = ReviewState, Action
TRANSITIONS: dict[tuple[ReviewState, Action], ReviewState] = {
    (S.UNREVIEWED, A.REVIEW): S.AWAITING_CONFIRMATION,
    (S.AWAITING_CONFIRMATION, A.CONFIRM): S.CONFIRMED,
    (S.AWAITING_CONFIRMATION, A.OVERTURN): S.UNREVIEWED,
    (S.CONFIRMED, A.REOPEN): S.UNREVIEWED,
}
REQUIRED: dict[Action, Permission] = {
    A.REVIEW: Permission.REVIEW,
    A.CONFIRM: Permission.CONFIRM,
    A.OVERTURN: Permission.CONFIRM,
    A.REOPEN: Permission.CONFIRM,
}


class ReviewConflict(Conflict):
    code = "review_conflict"


class SelfConfirmation(Forbidden):
    code = "self_confirmation"


class NoteRequired(InvalidRequest):
    code = "note_required"


def require_reason(action: Action, outcome: Outcome | None, below_threshold: bool, note: str) -> None:
    """A decision that goes against the score or undoes another person's needs its reason written down:
    a possible match with a candidate below the operating threshold, an overturn and a reopening."""
    if note.strip():
        return
    if action is A.REVIEW and outcome is Outcome.POSSIBLE_MATCH and below_threshold:
        raise NoteRequired("a possible match with a candidate below the threshold needs a note saying why")
    if action in (A.OVERTURN, A.REOPEN):
        raise NoteRequired(f"{action} undoes a decision: it needs a note giving the reason")


def next_state(
    state: ReviewState,
    action: Action,
    actor: Principal,
    first_reviewer: str | None,
    outcome: Outcome | None,
    candidate_given: bool,
) -> ReviewState:
    """The state after ``action``, or the typed error that refuses it."""
    if not actor.can(REQUIRED[action]):
        raise Forbidden(f"role {actor.role} may not {action}")
    target = TRANSITIONS.get((state, action))
    if target is None:
        raise ReviewConflict(f"cannot {action} a face that is {state}")
    if action is A.REVIEW:
        if outcome is None:
            raise InvalidRequest("a review needs an outcome: possible_match, no_match or inconclusive")
        if (outcome is Outcome.POSSIBLE_MATCH) != candidate_given:
            raise InvalidRequest("possible_match names exactly one candidate; other outcomes name none")
    elif outcome is not None or candidate_given:
        raise InvalidRequest(f"{action} takes no outcome or candidate: it acts on the first decision")
    if action in (A.CONFIRM, A.OVERTURN) and first_reviewer == actor.username:
        raise SelfConfirmation("nobody confirms or overturns their own review: a second person must")
    return target
