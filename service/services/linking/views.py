"""The prolific read side: unknown groups, a subject's appearances, and the ranking by distinct
incidents, retailers and stores in a period and area (every read is recorded in the audit trail)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import GroupDecision, GroupMember, ProbeFace, ProbeImage, Subject, Submission, UnknownGroup
from service.db.queries import confirmed_matches
from service.db.vectors import embedding_from_bytes
from service.domain.linking import normalised
from service.domain.roles import Principal
from service.errors import InvalidRequest, NotFound
from service.services import audit
from service.services.linking.clock import aware, iso


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
    def _member_rows(session: Session, group_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Every member of the groups with its still's provenance and its current link score."""
        out: dict[int, list[dict[str, Any]]] = {}
        if not group_ids:
            return out
        rows = session.execute(
            select(GroupMember, ProbeFace.embedding, ProbeFace.quality_score, ProbeImage, Submission)
            .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .join(Submission, Submission.id == ProbeImage.submission_id)
            .where(GroupMember.group_id.in_(list(group_ids)))
            .order_by(GroupMember.group_id, GroupMember.id)
        ).all()
        vectors: dict[int, list[NDArray[np.float32]]] = {}
        for member, embedding, quality, image, submission in rows:
            gid = int(member.group_id)
            vectors.setdefault(gid, []).append(embedding_from_bytes(embedding or b""))
            out.setdefault(gid, []).append(
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
                }
            )
        for gid, members in out.items():
            scores = cohesion(np.stack(vectors[gid]))
            for entry, score in zip(members, scores, strict=True):
                entry["score"] = round(float(score), 4)
        return out

    @staticmethod
    def _group_entry(group: UnknownGroup, faces: list[dict[str, Any]]) -> dict[str, Any]:
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
    ) -> list[dict[str, Any]]:
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

    def group(self, actor: Principal, group_id: int) -> dict[str, Any]:
        """One group: every appearance with its link score, and every decision on it (a recorded view)."""
        with self.factory() as session, session.begin():
            group = session.get(UnknownGroup, group_id)
            if group is None:
                raise NotFound(f"unknown group {group_id} not found")
            faces = self._member_rows(session, [group_id]).get(group_id, [])
            decisions = session.scalars(
                select(GroupDecision).where(GroupDecision.group_id == group_id).order_by(GroupDecision.id)
            )
            entry = self._group_entry(group, faces)
            entry["decisions"] = [
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
            ]
            audit.append(session, actor, "unknown_group_viewed", "unknown_group", group_id, faces=len(faces))
            return entry

    @staticmethod
    def _known_rows(
        session: Session, subject_id: int | None = None, retailers: Sequence[str] = (), stores: Sequence[str] = ()
    ) -> list[tuple[int, str, dict[str, Any]]]:
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

    def subject_appearances(self, actor: Principal, subject_id: int) -> dict[str, Any]:
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
    ) -> list[dict[str, Any]]:
        """Subjects (confirmed matches) and unknown groups ranked by distinct incidents, then retailers
        and stores, in a period (capture time, else submission time) and area (retailers, stores)."""
        if kind not in {"all", "known", "unknown"}:
            raise InvalidRequest("kind is one of all, known, unknown")
        low, high = aware(since), aware(until)

        def in_period(appearance: dict[str, Any]) -> bool:
            seen = datetime.fromisoformat(appearance["seen_at"])
            return (low is None or seen >= low) and (high is None or seen < high)

        entries: list[dict[str, Any]] = []
        with self.factory() as session, session.begin():
            if kind in {"all", "known"}:
                by_subject: dict[int, tuple[str, list[dict[str, Any]]]] = {}
                for sid, reference, appearance in self._known_rows(session, None, retailers, stores):
                    if in_period(appearance):
                        by_subject.setdefault(sid, (reference, []))[1].append(appearance)
                for sid, (reference, appearances) in by_subject.items():
                    entries.append(
                        {
                            "kind": "subject",
                            "id": sid,
                            "subject": sid,
                            "custody_reference": reference,
                            **_spread(appearances),
                            "appearances": appearances,
                        }
                    )
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
                by_group: dict[int, list[dict[str, Any]]] = {}
                for gid, image, submission, face_id in session.execute(query).all():
                    appearance = {**_appearance(image, submission), "face_id": int(face_id)}
                    if in_period(appearance):
                        by_group.setdefault(int(gid), []).append(appearance)
                for gid, appearances in by_group.items():
                    entries.append(
                        {"kind": "group", "id": gid, "group": gid, **_spread(appearances), "appearances": appearances}
                    )
            entries = [e for e in entries if e["incidents"] >= min_incidents]
            entries.sort(
                key=lambda e: (
                    -e["incidents"],
                    -e["retailers"],
                    -e["stores"],
                    -len(e["appearances"]),
                    e["kind"],
                    e["id"],
                )
            )
            entries = entries[:top]
            group_ids = [e["id"] for e in entries if e["kind"] == "group"]
            members = self._member_rows(session, group_ids)
            statuses = dict(
                session.execute(
                    select(UnknownGroup.id, UnknownGroup.status).where(UnknownGroup.id.in_(group_ids))
                ).all()
            )
            for entry in entries:
                if entry["kind"] != "group":
                    continue
                scores = {m["face_id"]: m["score"] for m in members.get(entry["id"], [])}
                entry["status"] = statuses.get(entry["id"])
                entry["size"] = len(scores)
                for appearance in entry["appearances"]:
                    appearance["score"] = scores.get(appearance["face_id"])
            for rank, entry in enumerate(entries, start=1):
                entry["rank"] = rank
                entry["appearances"].sort(key=lambda a: (a["seen_at"], a["face_id"]))
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


def _appearance(image: ProbeImage, submission: Submission) -> dict[str, Any]:
    seen = aware(image.captured_at) or aware(submission.created_at)
    return {
        "submission": int(submission.id),
        "case_reference": submission.case_reference,
        "image_id": int(image.id),
        "file": image.file_name,
        "retailer": image.retailer,
        "store": image.store,
        "incident_reference": image.incident_reference,
        "captured_at": iso(image.captured_at),
        "seen_at": seen.isoformat() if seen else None,
        "incident": list(incident_key(image.retailer, image.store, image.incident_reference, int(submission.id))),
    }


def _spread(appearances: Sequence[dict[str, Any]]) -> dict[str, Any]:
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
