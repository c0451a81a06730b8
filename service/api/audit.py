"""The audit trail for auditors (R1, R2): read, verify, export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.api.schemas import Offset
from service.api.security import NO_STORE
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.audit import AuditFilter
from service.services.views import AuditEventOut, AuditVerification

router = APIRouter(responses=ERRORS, tags=["audit"])

Auditor = Annotated[Principal, Allowed(P.READ_AUDIT)]


@router.get("/audit", response_model=list[AuditEventOut])
def audit_events(
    rt: RuntimeDep,
    _: Auditor,
    user: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    after_seq: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditEventOut]:
    """The audit trail, filtered (auditors only)."""
    return rt.audit.events(AuditFilter(user, action, object_type, object_id), after_seq=after_seq, limit=limit)


@router.get("/audit/verify", response_model=AuditVerification)
def audit_verify(rt: RuntimeDep, _: Auditor) -> dict[str, Any]:
    return rt.audit.verify().to_dict()


@router.get("/audit/export", response_class=StreamingResponse)
def audit_export(
    rt: RuntimeDep,
    actor: Auditor,
    recipient: Annotated[str, Query(min_length=1, max_length=500, description="who receives the export")],
    format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
) -> StreamingResponse:
    """Export the whole trail as JSON Lines or CSV; the export itself is recorded, with its recipient."""
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(rt.audit.export(actor, recipient, format), media_type=media, headers=NO_STORE)
