"""The audit trail for auditors (R1, R2): read, verify, export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

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
    since: Annotated[AwareDatetime | None, Query(description="events at or after this time")] = None,
    until: Annotated[AwareDatetime | None, Query(description="events before this time")] = None,
    after_seq: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditEventOut]:
    """The audit trail in chain order, filtered (auditors only); page on with ``after_seq`` (the last
    ``seq`` of a page)."""
    filters = AuditFilter(user, action, object_type, object_id, since, until)
    return rt.audit.events(filters, after_seq=after_seq, limit=limit)


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
    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    name = f"audit-{datetime.now(UTC):%Y-%m-%d}.{format}"
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(rt.audit.export(actor, recipient, format), media_type=media, headers=headers)
