"""What a 1:N search returns for one probe face: its ranked candidates, one per subject."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from service.domain.faces import FaceRecord
from service.errors import InvalidRequest


def require_case_and_purpose(case_reference: str, purpose: str) -> None:
    """Every search names its case or crime reference and why it is necessary (R1)."""
    if not case_reference.strip() or not purpose.strip():
        raise InvalidRequest("case_reference and purpose are required")


@dataclass(frozen=True, slots=True)
class CandidateHit:
    rank: int
    subject_id: int
    custody_reference: str
    template_id: int
    score: float
    above_threshold: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "custody_reference": self.custody_reference,
            "subject_id": self.subject_id,
            "template_id": self.template_id,
            "score": round(self.score, 4),
            "above_threshold": self.above_threshold,
        }


@dataclass(frozen=True, slots=True)
class FaceOutcome:
    """One face of a still: the pipeline's record, whether it was searched (and on override), its candidates."""

    record: FaceRecord
    searched: bool
    override: bool
    candidates: list[CandidateHit]

    def to_dict(self, index: int) -> dict[str, Any]:
        return {
            "face_index": index,
            **self.record.to_dict(),
            "searched": self.searched,
            "poor_face_override": self.override,
            "candidates": [c.to_dict() for c in self.candidates],
        }


class _Ranked(Protocol):
    @property
    def rank(self) -> int: ...
    @property
    def subject_id(self) -> int: ...


RankedHit = TypeVar("RankedHit", bound=_Ranked)


def without_subjects(hits: list[RankedHit], gone: Set[int]) -> list[RankedHit]:
    """``hits`` (frozen dataclasses) less those naming a subject in ``gone``, ranked again from 1."""
    kept = [hit for hit in hits if hit.subject_id not in gone]
    if len(kept) == len(hits):
        return hits
    return [replace(hit, rank=rank) for rank, hit in enumerate(kept, 1)]  # type: ignore[type-var]
