"""The prolific read side: unknown groups, a subject's appearances, and the ranking by distinct
incidents, retailers and stores in a period and area (every read is recorded in the audit trail)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import GroupDecision, GroupMember, ProbeFace, ProbeImage, Subject, Submission, UnknownGroup
from service.db.queries import confirmed_matches
from service.db.vectors import embedding_from_bytes
from service.domain.linking import normalised
from service.domain.roles import Principal
from service.domain.times import as_utc
from service.errors import InvalidRequest, NotFound
from service.services import audit
from service.services.linking.clock import iso
from service.services.linking.models import (
    GroupAppearance,
    GroupDetail,
    GroupEntry,
    GroupFace,
    KnownAppearance,
    ProlificEntry,
    Sighting,
    Spread,
    Still,
    SubjectHistory,
)


def cohesion(vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    """Each row's mean cosine to the other rows (1.0 for a single row)."""
    if len(vectors) < 2:
        return np.ones(len(vectors), np.float64)
    matrix = normalised(vectors).astype(np.float64)
    total = matrix.sum(axis=0)
    return np.asarray((matrix @ total - 1.0) / (len(matrix) - 1), dtype=np.float64)


def incident_key(retailer: str, store: str, incident: str, submission_id: int) -> tuple[str, ...]:
    """Stills with the same retailer and incident reference are one incident; without a reference,
    a submission's stills from one store are."""
    if incident.strip():
        return ("ref", retailer.strip().lower(), incident.strip().lower())
    return ("submission", str(submission_id), retailer.strip().lower(), store.strip().lower())


class ProlificViews:
    def __init__(self, factory: sessionmaker[Session], pack_id: str) -> None:
        self.factory = factory
        self.pack_id = pack_id

    @staticmethod
    def _member_rows(session: Session, group_ids: Sequence[int]) -> dict[int, list[GroupFace]]:
        """Every member of the groups with its still's provenance and its current link score."""
        if not group_ids:
            return {}
        rows = session.execute(
            select(GroupMember, ProbeFace.embedding, ProbeFace.quality_score, ProbeImage, Submission)
            .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .join(Submission, Submission.id == ProbeImage.submission_id)
            .where(GroupMember.group_id.in_(list(group_ids)))
            .order_by(GroupMember.group_id, GroupMember.id)
        ).all()
        by_group: dict[int, list[tuple[GroupMember, NDArray[np.float32], float, ProbeImage, Submission]]] = {}
        for member, embedding, quality, image, submission in rows:
            by_group.setdefault(int(member.group_id), []).append(
                (member, embedding_from_bytes(embedding or b""), quality, image, submission)
            )
        return {
            gid: [
                {
                    **_appearance(image, submission),
                    "face_id": int(member.probe_face_id),
                    "quality": round(float(quality), 4),
                    "linked_score": None if member.score is None else round(float(member.score), 4),
                    "nearest_face_id": member.nearest_face_id,
                    "nearest_score": None if member.nearest_score is None else round(float(member.nearest_score), 4),
                    "linked_by": member.linked_by,
                    "reason": member.reason,
                    "linked_at": iso(member.linked_at),
                    "score": round(float(score), 4),
                }
                for (member, _, quality, image, submission), score in zip(
                    members, cohesion(np.stack([vector for _, vector, _, _, _ in members])), strict=True
                )
            ]
            for gid, members in by_group.items()
        }

    @staticmethod
    def _group_entry(group: UnknownGroup, faces: list[GroupFace]) -> GroupEntry:
        return {
            "group": int(group.id),
            "kind": "group",
            "id": int(group.id),
            "status": group.status,
            "size": len(faces),
            "version": int(group.version),
            "representative_face_id": group.representative_face_id,
            "confirmed_by": group.confirmed_by,
            "created_at": iso(group.created_at),
            "updated_at": iso(group.updated_at),
            **_spread(faces),
            "faces": faces,
        }

    def list_groups(
        self,
        actor: Principal,
        *,
        status: str | None = None,
        min_faces: int = 2,
        limit: int = 100,
        offset: int = 0,
    ) -> list[GroupEntry]:
        """Unknown groups of at least ``min_faces`` faces, largest first (a recorded view)."""
        with self.factory() as session, session.begin():
            query = (
                select(UnknownGroup)
                .where(UnknownGroup.pack_id == self.pack_id, UnknownGroup.size >= min_faces)
                .order_by(UnknownGroup.size.desc(), UnknownGroup.id)
                .limit(limit)
                .offset(offset)
            )
            if status:
                query = query.where(UnknownGroup.status == status)
            groups = list(session.scalars(query))
            members = self._member_rows(session, [int(g.id) for g in groups])
            entries = [self._group_entry(g, members.get(int(g.id), [])) for g in groups]
            audit.append(
                session,
                actor,
                "unknowns_viewed",
                "unknown_group",
                "",
                status=status,
                min_faces=min_faces,
                group_ids=[e["group"] for e in entries],
            )
            return entries

    def group(self, actor: Principal, group_id: int) -> GroupDetail:
        """One group: every appearance with its link score, and every decision on it (a recorded view)."""
        with self.factory() as session, session.begin():
            group = session.get(UnknownGroup, group_id)
            if group is None:
                raise NotFound(f"unknown group {group_id} not found")
            faces = self._member_rows(session, [group_id]).get(group_id, [])
            decisions = session.scalars(
                select(GroupDecision).where(GroupDecision.group_id == group_id).order_by(GroupDecision.id)
            )
            entry: GroupDetail = {
                **self._group_entry(group, faces),
                "decisions": [
                    {
                        "id": d.id,
                        "action": d.action,
                        "other_group_ids": d.other_group_ids,
                        "face_ids": d.face_ids,
                        "note": d.note,
                        "username": d.username,
                        "role": d.role,
                        "at": iso(d.created_at),
                    }
                    for d in decisions
                ],
            }
            audit.append(session, actor, "unknown_group_viewed", "unknown_group", group_id, faces=len(faces))
            return entry

    @staticmethod
    def _known_rows(
        session: Session, subject_id: int | None = None, retailers: Sequence[str] = (), stores: Sequence[str] = ()
    ) -> list[tuple[int, str, KnownAppearance]]:
        query = confirmed_matches(subject_id=subject_id)
        if retailers:
            query = query.where(ProbeImage.retailer.in_(list(retailers)))
        if stores:
            query = query.where(ProbeImage.store.in_(list(stores)))
        return [
            (
                int(candidate.subject_id),
                str(subject.custody_reference),
                {
                    **_appearance(image, submission),
                    "face_id": int(face.id),
                    "candidate_id": int(candidate.id),
                    "score": round(float(candidate.score), 4),
                },
            )
            for face, candidate, subject, image, submission in session.execute(query).all()
        ]

    def subject_appearances(self, actor: Principal, subject_id: int) -> SubjectHistory:
        """A subject's history: every confirmed match, with retailer, store, incident and time (recorded)."""
        with self.factory() as session, session.begin():
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise NotFound(f"subject {subject_id} not found")
            appearances = [a for _, _, a in self._known_rows(session, subject_id)]
            audit.append(session, actor, "appearances_viewed", "subject", subject_id, appearances=len(appearances))
            return {
                "kind": "subject",
                "id": subject_id,
                "subject": subject_id,
                "custody_reference": subject.custody_reference,
                **_spread(appearances),
                "appearances": appearances,
                "notice": "Confirmed matches are investigative leads, not identifications.",
            }

    def prolific(
        self,
        actor: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        retailers: Sequence[str] = (),
        stores: Sequence[str] = (),
        top: int = 10,
        kind: str = "all",
        min_incidents: int = 1,
    ) -> list[ProlificEntry]:
        """Subjects (confirmed matches) and unknown groups ranked by distinct incidents, then retailers
        and stores, in a period (capture time, else submission time) and area (retailers, stores)."""
        if kind not in {"all", "known", "unknown"}:
            raise InvalidRequest("kind is one of all, known, unknown")
        low, high = as_utc(since), as_utc(until)

        def in_period(appearance: Still) -> bool:
            seen = datetime.fromisoformat(appearance["seen_at"])
            return (low is None or seen >= low) and (high is None or seen < high)

        subjects: list[tuple[Spread, int, str, list[KnownAppearance]]] = []
        groups: list[tuple[Spread, int, list[Sighting]]] = []
        with self.factory() as session, session.begin():
            if kind in {"all", "known"}:
                by_subject: dict[int, tuple[str, list[KnownAppearance]]] = {}
                for sid, reference, match in self._known_rows(session, None, retailers, stores):
                    if in_period(match):
                        by_subject.setdefault(sid, (reference, []))[1].append(match)
                for sid, (reference, found) in by_subject.items():
                    subjects.append((_spread(found), sid, reference, found))
            if kind in {"all", "unknown"}:
                query = (
                    select(GroupMember.group_id, ProbeImage, Submission, GroupMember.probe_face_id)
                    .join(UnknownGroup, UnknownGroup.id == GroupMember.group_id)
                    .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
                    .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
                    .join(Submission, Submission.id == ProbeImage.submission_id)
                    .where(UnknownGroup.size >= 2, UnknownGroup.pack_id == self.pack_id)
                )
                if retailers:
                    query = query.where(ProbeImage.retailer.in_(list(retailers)))
                if stores:
                    query = query.where(ProbeImage.store.in_(list(stores)))
                by_group: dict[int, list[Sighting]] = {}
                for gid, image, submission, face_id in session.execute(query).all():
                    sighting: Sighting = {**_appearance(image, submission), "face_id": int(face_id)}
                    if in_period(sighting):
                        by_group.setdefault(int(gid), []).append(sighting)
                groups.extend((_spread(seen), gid, seen) for gid, seen in by_group.items())
            # (kind, id, spread, appearances): the ranking's order, then the top ``top``
            ranked: list[tuple[str, int, Spread, Sequence[Sighting]]] = [
                ("subject", sid, spread, found) for spread, sid, _, found in subjects
            ] + [("group", gid, spread, seen) for spread, gid, seen in groups]
            ranked = [r for r in ranked if r[2]["incidents"] >= min_incidents]
            ranked.sort(
                key=lambda r: (
                    -r[2]["incidents"],
                    -r[2]["retailers"],
                    -r[2]["stores"],
                    -len(r[3]),
                    r[0],
                    r[1],
                )
            )
            ranked = ranked[:top]
            group_ids = [eid for what, eid, _, _ in ranked if what == "group"]
            members = self._member_rows(session, group_ids)
            statuses = dict(
                session.execute(
                    select(UnknownGroup.id, UnknownGroup.status).where(UnknownGroup.id.in_(group_ids))
                ).all()
            )
            known = {sid: (reference, found) for _, sid, reference, found in subjects}
            unknown = {gid: seen for _, gid, seen in groups}
            entries: list[ProlificEntry] = []
            for rank, (what, eid, spread, _) in enumerate(ranked, start=1):
                if what == "subject":
                    reference, found = known[eid]
                    found.sort(key=lambda a: (a["seen_at"], a["face_id"]))
                    entries.append(
                        {
                            "kind": "subject",
                            "id": eid,
                            "subject": eid,
                            "custody_reference": reference,
                            **spread,
                            "appearances": found,
                            "rank": rank,
                        }
                    )
                    continue
                scores = {m["face_id"]: m["score"] for m in members.get(eid, [])}
                scored: list[GroupAppearance] = [
                    {**a, "score": scores.get(a["face_id"])}
                    for a in sorted(unknown[eid], key=lambda a: (a["seen_at"], a["face_id"]))
                ]
                entries.append(
                    {
                        "kind": "group",
                        "id": eid,
                        "group": eid,
                        **spread,
                        "appearances": scored,
                        "status": statuses.get(eid),
                        "size": len(scores),
                        "rank": rank,
                    }
                )
            audit.append(
                session,
                actor,
                "prolific_viewed",
                "prolific",
                "",
                since=iso(low),
                until=iso(high),
                retailers=list(retailers),
                stores=list(stores),
                kind=kind,
                top=top,
                subject_ids=[e["id"] for e in entries if e["kind"] == "subject"],
                group_ids=group_ids,
            )
        return entries


def _appearance(image: ProbeImage, submission: Submission) -> Still:
    return {
        "submission": int(submission.id),
        "case_reference": submission.case_reference,
        "image_id": int(image.id),
        "file": image.file_name,
        "retailer": image.retailer,
        "store": image.store,
        "incident_reference": image.incident_reference,
        "captured_at": iso(image.captured_at),
        "seen_at": as_utc(image.captured_at or submission.created_at).isoformat(),
        "incident": list(incident_key(image.retailer, image.store, image.incident_reference, int(submission.id))),
    }


def _spread(appearances: Sequence[Still]) -> Spread:
    """Distinct incidents, retailers and stores, first and last seen, of a list of appearances."""
    seen = sorted(a["seen_at"] for a in appearances if a.get("seen_at"))
    return {
        "incidents": len({tuple(a["incident"]) for a in appearances}),
        "retailers": len({a["retailer"].strip().lower() for a in appearances if a["retailer"].strip()}),
        "stores": len(
            {(a["retailer"].strip().lower(), a["store"].strip().lower()) for a in appearances if a["store"].strip()}
        ),
        "first_seen": seen[0] if seen else None,
        "last_seen": seen[-1] if seen else None,
    }
