"""1:N search of probe faces against the gallery: ranked candidates, one per subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import read_session
from service.db.models import FaceTemplate, Subject
from service.errors import PackMismatch
from service.services.gallery import GalleryIndexHolder


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


class GallerySearcher:
    def __init__(
        self,
        holder: GalleryIndexHolder,
        factory: sessionmaker[Session],
        threshold: float,
        top_k: int,
        oversample: int,
    ) -> None:
        self.holder = holder
        self.factory = factory
        self.threshold = threshold
        self.top_k = top_k
        self.oversample = oversample

    def search(
        self,
        queries: NDArray[np.float32],
        pack_id: str,
        k: int | None = None,
        threshold: float | None = None,
    ) -> list[list[CandidateHit]]:
        """Top-k distinct subjects per query, each at its best template's score (R11: same pack only)."""
        if pack_id != self.holder.pack_id:
            raise PackMismatch(
                f"probe embeddings come from pack {pack_id!r} but the gallery holds {self.holder.pack_id!r}"
            )
        k = k or self.top_k
        threshold = self.threshold if threshold is None else threshold
        if len(queries) == 0:
            return []
        scores, ids = self.holder.search(np.ascontiguousarray(queries, dtype=np.float32), k * self.oversample)
        wanted = {int(i) for i in ids.ravel() if i >= 0}
        owners: dict[int, tuple[int, str]] = {}
        if wanted:
            # A short session of its own, opened after the index search: the index may reconcile
            # with the database first, and no caller's transaction is held across either.
            with read_session(self.factory) as session:
                rows = session.execute(
                    select(FaceTemplate.id, Subject.id, Subject.custody_reference)
                    .join(Subject, Subject.id == FaceTemplate.subject_id)
                    .where(FaceTemplate.id.in_(wanted))
                ).all()
            owners = {int(t): (int(s), str(ref)) for t, s, ref in rows}
        results: list[list[CandidateHit]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            seen: set[int] = set()
            hits: list[CandidateHit] = []
            for score, template_id in zip(row_scores, row_ids, strict=True):
                owner = owners.get(int(template_id))
                if template_id < 0 or owner is None or owner[0] in seen:
                    continue  # padding, a template deleted since the search, or a subject already listed
                seen.add(owner[0])
                hits.append(
                    CandidateHit(
                        rank=len(hits) + 1,
                        subject_id=owner[0],
                        custody_reference=owner[1],
                        template_id=int(template_id),
                        score=float(score),
                        above_threshold=bool(score >= threshold),
                    )
                )
                if len(hits) == k:
                    break
            results.append(hits)
        return results
