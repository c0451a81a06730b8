"""Domain events: what one part of the service announces for others to act on.

Plain frozen values (no database, no web framework): the publisher builds them from what it has
just decided, so a subscriber needs neither to parse strings nor to query the facts again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.domain.review import Outcome, ReviewState
from service.domain.roles import Principal


@dataclass(frozen=True, slots=True)
class ReviewDecided:
    """A review decision on a probe face was recorded.

    ``state`` is the face's state after it, ``outcome`` the decision's outcome (a confirmation
    carries the first review's), ``subject_id`` the subject of the candidate it names, if any."""

    face_id: int
    state: ReviewState
    outcome: Outcome | None
    subject_id: int | None
    actor: Principal

    @property
    def confirmed_match(self) -> bool:
        """A confirmed ``possible_match``: an investigative lead to a subject."""
        return self.state is ReviewState.CONFIRMED and self.outcome is Outcome.POSSIBLE_MATCH

    @property
    def confirmed_no_match(self) -> bool:
        return self.state is ReviewState.CONFIRMED and self.outcome is Outcome.NO_MATCH


@dataclass(frozen=True, slots=True)
class TemplateEnrolled:
    """A custody image was enrolled: its subject, the new template and its embedding (after commit)."""

    subject_id: int
    template_id: int
    pack_id: str
    embedding: NDArray[np.float32]
    actor: Principal
