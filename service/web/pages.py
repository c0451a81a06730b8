"""Server-rendered pages for analysts, reviewers, confirmers, auditors and admins.

Pages are as thin as the API's routers: they call the same services with the same permission
table, so a page view and an API read write the same audit events. Handlers that must read a
form are ``async`` and run every service call in the thread pool; the rest are plain ``def``
(FastAPI runs them in the thread pool): nothing blocks the event loop. Signing in sets an
HttpOnly, SameSite=Strict session cookie; every form also carries a CSRF token derived from the
session. Images are served by the API's image endpoints or the audited media service
(``Cache-Control: no-store``); pages are never cached either. URLs carry opaque ids only.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from service.api.deps import SESSION_COOKIE, RuntimeDep, clear_session_cookie, set_session_cookie
from service.api.media import clip_response, first_range, image_response
from service.api.schemas import Id
from service.api.security import NO_STORE, cookie_secure, csrf_for
from service.domain.faces import COMPARISON_EYE_PX, eye_distance
from service.domain.provenance import PROBE_FIELDS, ProbeProvenance, parse_when
from service.domain.roles import Permission, Principal
from service.domain.times import as_utc
from service.errors import Forbidden, InvalidRequest, NotFound, ServiceError, TooManyAttempts, Unauthenticated
from service.runtime import Runtime
from service.services.audit import AuditFilter
from service.services.submissions import Upload
from service.services.views import (
    CandidateOut,
    DecisionHistoryItem,
    PersonCandidateOut,
    ProbeImageResult,
    QueueItem,
    ReviewInfo,
    StoredFaceOut,
)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def when(value: datetime | str | None, length: int = 16) -> str:
    """A time as the pages show it: ISO 8601 in UTC to ``length`` characters with a space for the T and
    the zone named (a date alone has none), else a dash."""
    if not value:
        return "—"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value[:length].replace("T", " ")
    else:
        moment = value
    text = as_utc(moment).isoformat()[:length].replace("T", " ")
    return f"{text} UTC" if length > 10 else text


templates.env.filters["when"] = when
router = APIRouter(include_in_schema=False)
COOKIE = SESSION_COOKIE


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def came_from(request: Request) -> str | None:
    """The page (path and query) of ours a request was sent from, by its Referer; none if another's."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith("/ui"):
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")


def return_to(request: Request) -> str:
    """Where to come back to after signing in again: the page itself, or for a form sent from a page
    (a decision whose session expired meanwhile) that page, never the form's target."""
    if request.method in ("GET", "HEAD"):
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return came_from(request) or request.url.path.removesuffix("/decide")


def page_principal(request: Request, rt: RuntimeDep) -> Principal:
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise LoginRequired(return_to(request))
    try:
        principal = rt.users.authenticate(token, via="web")
    except Unauthenticated as exc:
        raise LoginRequired(return_to(request)) from exc
    request.state.principal = principal
    request.state.csrf = csrf_for(token)
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def need(principal: Principal, *permissions: str) -> None:
    if not any(principal.can(Permission(p)) for p in permissions):
        raise Forbidden(f"role {principal.role} may not open this page")


async def check_csrf(request: Request) -> dict[str, Any]:
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")), str(getattr(request.state, "csrf", ""))):
        raise Forbidden("the form has expired or did not come from this site; reload the page")
    return dict(form.multi_items()) | {"_form": form}


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    context |= {
        "principal": principal,
        "csrf": getattr(request.state, "csrf", ""),
        "can": (lambda p: principal is not None and principal.can(Permission(p))),
    }
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=NO_STORE)


def html_error(request: Request, status: int, code: str, message: str) -> Response:
    if status == 401:
        return RedirectResponse(f"/login?next={quote(return_to(request), safe='/')}", status_code=303)
    titles = {403: "Not permitted", 404: "Not found", 409: "Someone decided first", 413: "Too large"}
    # A form sent from one of our pages: back to it, where its script restores what was typed.
    back = came_from(request) if request.method not in ("GET", "HEAD") else None
    return render(
        request,
        "error.html",
        status,
        status=status,
        title=titles.get(status, "Error"),
        message=message,
        code=code,
        back=back,
    )


# -- sign in / out -----------------------------------------------------------------------------


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


LOGIN_CSRF_COOKIE = "rfr_login_csrf"


def login_page(request: Request, rt: Runtime, status: int, next_path: str, error: str | None) -> HTMLResponse:
    """The sign-in form with a fresh CSRF token, also set as a short-lived cookie (there is no session
    yet to derive it from): a sign-in posted from another site carries neither."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status, next=next_path, error=error, login_csrf=token)
    secure = cookie_secure(request, rt.settings.auth.cookie_secure)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=secure, path="/login"
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, rt: RuntimeDep, next: str = "/ui") -> HTMLResponse:
    return login_page(request, rt, 200, next if next.startswith("/ui") else "/ui", None)


@router.post("/login")
async def login(request: Request, rt: RuntimeDep) -> Response:
    form = await request.form()
    target = str(form.get("next", "/ui"))
    target = target if target.startswith("/ui") else "/ui"
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
        return login_page(
            request, rt, 403, target, "The sign-in form had expired or came from another site; sign in again."
        )
    try:
        token, _, expires = await run_in_threadpool(
            rt.users.login,
            str(form.get("username", "")),
            str(form.get("password", "")),
            request.client.host if request.client else "",
            "web",
        )
    except (Unauthenticated, TooManyAttempts) as exc:
        return login_page(request, rt, exc.http_status, target, exc.message)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, rt, token, expires)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, rt: RuntimeDep, _: PagePrincipal) -> Response:
    await check_csrf(request)
    await run_in_threadpool(rt.users.logout, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(request, response, rt)
    return response


@router.get("/ui")
def home(principal: PagePrincipal) -> RedirectResponse:
    if principal.can(Permission.REVIEW):
        return RedirectResponse("/ui/review", status_code=303)
    if principal.can(Permission.READ_AUDIT):
        return RedirectResponse("/ui/audit", status_code=303)
    if principal.can(Permission.MANAGE_USERS):
        return RedirectResponse("/ui/admin", status_code=303)
    return RedirectResponse("/ui/submissions", status_code=303)


# -- submissions -------------------------------------------------------------------------------


@router.get("/ui/submissions", response_class=HTMLResponse)
def submissions_page(request: Request, rt: RuntimeDep, principal: PagePrincipal) -> HTMLResponse:
    need(principal, "read_own_submissions", "read_all_submissions")
    return _submissions_page(request, rt, principal)


SPRINT_FIELDS = ("case_reference", "purpose", *PROBE_FIELDS, "search_poor_faces")


def _submissions_page(
    request: Request, rt: Runtime, principal: Principal, status: int = 200, typed: dict[str, str] | None = None
) -> HTMLResponse:
    """The list with live progress, and the new-sprint form (filled with what was ``typed`` when a
    sprint could not be created, with the reason)."""
    rows = rt.submissions.list_visible(principal, 200)
    live = any(s.status in ("queued", "processing") for s in rows)
    error = typed.pop("_error", None) if typed else None
    return render(request, "submissions.html", status, submissions=rows, live=live, typed=typed or {}, error=error)


def _text(form: dict[str, Any], key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


@router.post("/ui/submissions")
async def create_sprint(request: Request, rt: RuntimeDep, principal: PagePrincipal) -> Response:
    need(principal, "submit")
    form = await check_csrf(request)
    raw = form["_form"]
    files = [f for f in raw.getlist("files") + raw.getlist("folder") if isinstance(f, UploadFile) and f.filename]
    try:  # nothing is created until these pass; a refusal shows the form again as it was typed
        if not files:
            raise InvalidRequest("choose at least one still or clip to upload")
        provenance = ProbeProvenance.parse({name: _text(form, name) for name in PROBE_FIELDS}, "the form")
        submission_id = await run_in_threadpool(
            rt.submissions.create,
            principal,
            _text(form, "case_reference"),
            _text(form, "purpose"),
            _text(form, "search_poor_faces") == "true",
        )
    except ServiceError as exc:
        typed = {name: _text(form, name) for name in SPRINT_FIELDS} | {"_error": exc.message}
        return await run_in_threadpool(_submissions_page, request, rt, principal, exc.http_status, typed)
    # Each file is streamed to disk whole (the request's own size is capped), so the service refuses
    # one over its kind's limit and records it by its digest.
    for upload in files:
        name = Path(upload.filename or "upload").name
        staged = await run_in_threadpool(rt.store.stage, upload.file)
        try:
            await run_in_threadpool(
                rt.submissions.add_images, principal, submission_id, [Upload(name, staged, provenance)]
            )
        except ServiceError as exc:  # recorded as a failed image: nothing submitted is lost silently
            await run_in_threadpool(
                rt.submissions.add_rejected, principal, submission_id, name, staged, exc.code, exc.message, provenance
            )
    return RedirectResponse(f"/ui/submissions/{submission_id}", status_code=303)


@router.get("/ui/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, submission_id: Id) -> HTMLResponse:
    need(principal, "read_own_submissions", "read_all_submissions")
    results = rt.submissions.results(principal, submission_id)
    several = [p for p in results.persons if len(p.faces) > 1 or p.track]  # a still's person of one is its face
    return render(request, "submission.html", s=results, images=results.images, persons=several)


@router.get("/ui/submissions/{submission_id}/report", response_class=HTMLResponse)
def report_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, submission_id: Id) -> HTMLResponse:
    need(principal, "read_own_submissions", "read_all_submissions")
    report = rt.review.report(principal, submission_id)
    figures = report.figures()
    top = max([value for _, value in figures] + [1])
    return render(request, "report.html", r=report, figures=figures, work=report.work(), top=top)


# -- review ------------------------------------------------------------------------------------


@router.get("/ui/review", response_class=HTMLResponse)
def review_queue_page(
    request: Request, rt: RuntimeDep, principal: PagePrincipal, state: str = "unreviewed"
) -> HTMLResponse:
    need(principal, "review", "confirm")
    return render(request, "review_queue.html", items=_queue(rt, state, 500), state=state, tabs=QUEUE_TABS)


# The queue's tabs: a review state, and whether the faces have a candidate above the threshold.
QUEUE_TABS: dict[str, tuple[str, str, bool | None]] = {
    "unreviewed": ("Waiting for a first decision", "unreviewed", True),
    "below_threshold": ("Nothing above the threshold", "unreviewed", False),
    "awaiting_confirmation": ("Waiting for confirmation", "awaiting_confirmation", None),
    "confirmed": ("Confirmed", "confirmed", None),
}


def _queue(rt: Runtime, tab: str, limit: int = 1000) -> list[QueueItem]:
    if tab not in QUEUE_TABS:
        raise InvalidRequest(f"unknown queue {tab[:40]!r}: one of {', '.join(QUEUE_TABS)}")
    _, state, above = QUEUE_TABS[tab]
    return rt.review.queue(state, limit, above)


@router.get("/ui/review/faces/{face_id}", response_class=HTMLResponse)
def review_face_page(
    request: Request, rt: RuntimeDep, principal: PagePrincipal, face_id: Id, state: str = "unreviewed"
) -> HTMLResponse:
    need(principal, "review", "confirm")
    context = rt.submissions.face_in_context(principal, face_id)
    face = context.face
    queue = [item.face_id for item in _queue(rt, state)]
    position = queue.index(face_id) if face_id in queue else -1
    prev_id = queue[position - 1] if position > 0 else None
    next_id = queue[position + 1] if 0 <= position < len(queue) - 1 else (queue[0] if position < 0 and queue else None)
    chosen = next((c for c in face.candidates if c.id == face.review.candidate_id), None)
    history = rt.review.history(face_id)
    return render(
        request,
        "review_face.html",
        submission_id=context.submission_id,
        image=context.image,
        face=face,
        state=state,
        prev_id=prev_id,
        next_id=next_id,
        position=position + 1,
        queued=len(queue),
        tab=QUEUE_TABS[state][0],
        chosen=chosen,
        history=history,
        first_note=_first_note(face.review, history),
        compared=face.review.state != "awaiting_confirmation" or rt.review.has_compared(principal, face_id),
    )


def _first_note(review: ReviewInfo, history: list[DecisionHistoryItem]) -> str:
    """The note of the first decision a confirmer is asked to confirm (none before one is taken)."""
    if review.state == "unreviewed":
        return ""
    return next((d.note for d in reversed(history) if d.action == "review"), "")


def _decision(form: dict[str, Any]) -> tuple[str, str | None, int | None, str, int | None]:
    """A decision form's action, outcome, candidate id (for a possible match), note and expected version."""
    action, _, outcome = _text(form, "action").partition(":")
    candidate = _text(form, "candidate_id")
    version = _text(form, "expected_version")
    return (
        action,
        outcome or None,
        int(candidate) if outcome == "possible_match" and candidate.isdigit() else None,
        _text(form, "note"),
        int(version) if version.isdigit() else None,
    )


@router.post("/ui/review/faces/{face_id}/decide")
async def decide_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, face_id: Id) -> Response:
    need(principal, "review", "confirm")
    form = await check_csrf(request)
    state = _text(form, "state") or "unreviewed"

    def decide_then_next() -> int | None:
        before = [item.face_id for item in _queue(rt, state)]
        rt.review.decide(principal, face_id, *_decision(form), require_comparison=True)
        later = before[before.index(face_id) + 1 :] if face_id in before else before
        remaining = {item.face_id for item in _queue(rt, state)}
        return next((f for f in later if f in remaining), None)

    upcoming = await run_in_threadpool(decide_then_next)
    target = f"/ui/review/faces/{upcoming}?state={state}" if upcoming else f"/ui/review?state={state}"
    return RedirectResponse(target, status_code=303)


@router.post("/ui/review/faces/{face_id}/search-anyway")
async def search_anyway_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, face_id: Id) -> Response:
    """A held-back face searched on a confirmer's recorded override; back to its page with candidates."""
    need(principal, "override_threshold")
    form = await check_csrf(request)
    await run_in_threadpool(rt.search.search_held_back_face, principal, face_id, _text(form, "reason"))
    return RedirectResponse(f"/ui/review/faces/{face_id}", status_code=303)


@router.get("/ui/review/persons/{person_id}", response_class=HTMLResponse)
def review_person_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, person_id: Id) -> HTMLResponse:
    """A person of an incident: every member face beside the person's fused candidates, one decision."""
    need(principal, "review", "confirm")
    context = rt.submissions.person_in_context(principal, person_id)
    person = context.person
    members = context.members()
    if person.track is not None:  # a track's shots in time order
        members.sort(key=lambda member: member[1].time_s or 0.0)
    clip = next((i for i in context.images if person.track and i.id == person.track.image_id), None)
    chosen = next((c for c in person.candidates if c.id == person.review.candidate_id), None)
    history = rt.review.history(person.faces[0]) if person.faces else []  # a person's decision is each face's
    return render(
        request,
        "review_person.html",
        first_note=_first_note(person.review, history),
        submission_id=context.submission_id,
        person=person,
        members=members,
        chosen=chosen,
        clip=clip,
    )


@router.post("/ui/review/persons/{person_id}/decide")
async def decide_person_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, person_id: Id) -> Response:
    need(principal, "review", "confirm")
    form = await check_csrf(request)
    await run_in_threadpool(rt.review.decide_person, principal, person_id, *_decision(form))
    return RedirectResponse(f"/ui/review/persons/{person_id}", status_code=303)


@router.get("/ui/faces/{face_id}/crop")
def face_crop(rt: RuntimeDep, principal: PagePrincipal, face_id: Id) -> Response:
    """The probe face, cropped with a margin, for side-by-side review (audited like the still)."""
    need(principal, "read_own_submissions", "read_all_submissions")
    return image_response(rt.media.face_crop(principal, face_id))


@router.get("/ui/faces/{face_id}/aligned")
def face_aligned(rt: RuntimeDep, principal: PagePrincipal, face_id: Id) -> Response:
    """The probe face aligned for the comparison view (eyes level, at the comparison's scale), audited."""
    need(principal, "review", "confirm")
    return image_response(rt.media.aligned_face(principal, face_id))


@router.get("/ui/candidates/{candidate_id}/aligned")
def candidate_aligned(rt: RuntimeDep, principal: PagePrincipal, candidate_id: Id) -> Response:
    """A candidate's custody face aligned at the probe's scale and size for the comparison view, audited."""
    need(principal, "review", "confirm")
    return image_response(rt.media.aligned_candidate(principal, candidate_id))


@router.get("/ui/review/faces/{face_id}/compare/{candidate_id}", response_class=HTMLResponse)
def compare_page(
    request: Request,
    rt: RuntimeDep,
    principal: PagePrincipal,
    face_id: Id,
    candidate_id: Id,
    state: str = "unreviewed",
) -> HTMLResponse:
    """One candidate beside the probe, both aligned at the same scale and size, with linked zoom and
    pan, an overlay and a flicker; the probe's native resolution; the candidate's record's every view."""
    need(principal, "review", "confirm")
    context = rt.submissions.face_in_context(principal, face_id)
    tab = state if state in QUEUE_TABS else "unreviewed"
    return _compare(
        request,
        rt,
        face_id=face_id,
        image=context.image,
        candidates=context.face.candidates,
        candidate_id=candidate_id,
        link=f"/ui/review/faces/{face_id}/compare/{{}}?state={tab}",
        back=f"/ui/review/faces/{face_id}?state={tab}",
        candidate_src="/ui/candidates/{}/aligned",
    )


@router.get("/ui/review/persons/{person_id}/compare/{candidate_id}", response_class=HTMLResponse)
def compare_person_page(
    request: Request,
    rt: RuntimeDep,
    principal: PagePrincipal,
    person_id: Id,
    candidate_id: Id,
    face: Id | None = None,
) -> HTMLResponse:
    """A person's (or a track's) candidate beside one of its member faces — the one most like the
    candidate unless another is chosen — with every member face a click away."""
    need(principal, "review", "confirm")
    context = rt.submissions.person_in_context(principal, person_id)
    person = context.person
    candidate = next((c for c in person.candidates if c.id == candidate_id), None)
    if candidate is None:
        raise NotFound(f"candidate {candidate_id} is not a candidate of person {person_id}")
    members = context.members()
    shown = face if face in person.faces else candidate.best_face_id or person.faces[0]
    image = next(image for image, f in members if f.id == shown)
    return _compare(
        request,
        rt,
        face_id=shown,
        image=image,
        candidates=person.candidates,
        candidate_id=candidate_id,
        link=f"/ui/review/persons/{person_id}/compare/{{}}?face={shown}",
        back=f"/ui/review/persons/{person_id}",
        candidate_src="/ui/person-candidates/{}/aligned",
        members=members,
        member_link=f"/ui/review/persons/{person_id}/compare/{candidate_id}?face={{}}",
    )


def _compare(
    request: Request,
    rt: Runtime,
    *,
    face_id: int,
    image: ProbeImageResult,
    candidates: Sequence[CandidateOut | PersonCandidateOut],
    candidate_id: int,
    link: str,
    back: str,
    candidate_src: str,
    members: Sequence[tuple[ProbeImageResult, StoredFaceOut]] = (),
    member_link: str = "",
) -> HTMLResponse:
    """The comparison page of one probe face (of ``image``) and one of ``candidates``; ``link``,
    ``candidate_src`` and ``member_link`` are formatted with a candidate's or member face's id."""
    at = next((i for i, c in enumerate(candidates) if c.id == candidate_id), None)
    if at is None:
        raise NotFound(f"candidate {candidate_id} is not one of this face's")
    candidate = candidates[at]
    face = next(f for f in image.faces if f.id == face_id)
    native = eye_distance(face.landmarks)
    return render(
        request,
        "compare.html",
        image=image,
        face=face,
        candidate=candidate,
        candidate_src=candidate_src.format(candidate.id),
        record=rt.gallery.subject(candidate.subject_id),
        previous=link.format(candidates[at - 1].id) if at > 0 else None,
        following=link.format(candidates[at + 1].id) if at + 1 < len(candidates) else None,
        neighbours=(candidates[at - 1] if at > 0 else None, candidates[at + 1] if at + 1 < len(candidates) else None),
        back=f"{back}#candidate-{candidate.id}",
        members=members,
        member_link=member_link,
        native_eye_px=native,
        enlargement=COMPARISON_EYE_PX / native if native > 0 else None,
        threshold=face.threshold,
    )


@router.get("/ui/person-candidates/{candidate_id}/aligned")
def person_candidate_aligned(rt: RuntimeDep, principal: PagePrincipal, candidate_id: Id) -> Response:
    """A person's candidate's custody face aligned for the comparison view, audited."""
    need(principal, "review", "confirm")
    return image_response(rt.media.aligned_person_candidate(principal, candidate_id))


@router.get("/ui/faces/{face_id}/still")
def face_still(rt: RuntimeDep, principal: PagePrincipal, face_id: Id) -> Response:
    """The whole still the face was found in (a clip's face: its shot), audited."""
    need(principal, "read_own_submissions", "read_all_submissions")
    return image_response(rt.media.face_still(principal, face_id))


@router.get("/ui/probe-images/{image_id}/clip")
def probe_clip(request: Request, rt: RuntimeDep, principal: PagePrincipal, image_id: Id) -> Response:
    """The clip, for the player on a track's review page (audited like a still)."""
    need(principal, "read_own_submissions", "read_all_submissions")
    return clip_response(rt.media.clip(principal, image_id, record_view=first_range(request)))


# -- subjects, audit, admin --------------------------------------------------------------------


@router.get("/ui/subjects/{subject_id}", response_class=HTMLResponse)
def subject_page(request: Request, rt: RuntimeDep, principal: PagePrincipal, subject_id: Id) -> HTMLResponse:
    need(principal, "read_gallery")
    subject = rt.gallery.subject(subject_id)
    history = rt.linking.subject_appearances(principal, subject_id)  # audited, as the API's read
    return render(request, "subject.html", subject=subject, appearances=history["appearances"])


@router.get("/ui/custody-images/{image_id}")
def custody_image(rt: RuntimeDep, principal: PagePrincipal, image_id: Id) -> Response:
    need(principal, "read_gallery")
    return image_response(rt.media.custody_image(principal, image_id))


AUDIT_PAGE = 200  # events a page of the audit trail shows
AUDIT_FIELDS = ("user", "action", "object_type", "object_id", "since", "until")


def _audit_page(request: Request, rt: Runtime, filters: dict[str, str], before_seq: int | None = None) -> HTMLResponse:
    """A page of matching events, newest first (older pages by ``before_seq``), and the chain's
    verification (runs off the loop). ``since`` and ``until`` are dates (UTC), both included."""
    since = parse_when(filters.get("since"), "From")
    until = parse_when(filters.get("until"), "To")
    page = rt.audit.latest(
        AuditFilter(
            actor=filters.get("user") or None,
            action=filters.get("action") or None,
            object_type=filters.get("object_type") or None,
            object_id=filters.get("object_id") or None,
            since=since,
            until=until + timedelta(days=1) if until is not None and len(filters.get("until", "")) <= 10 else until,
        ),
        limit=AUDIT_PAGE,
        before_seq=before_seq,
    )
    rows = [{"event": e, "details_text": json.dumps(e.details, sort_keys=True)} for e in page.events]
    return render(
        request,
        "audit.html",
        events=rows,
        page=page,
        verification=rt.audit.verify(),
        filters=filters,
        actions=rt.audit.actions(),
    )


@router.get("/ui/audit", response_class=HTMLResponse)
def audit_page(request: Request, rt: RuntimeDep, principal: PagePrincipal) -> HTMLResponse:
    need(principal, "read_audit")
    return _audit_page(request, rt, {})


@router.post("/ui/audit", response_class=HTMLResponse)
async def audit_filter(request: Request, rt: RuntimeDep, principal: PagePrincipal) -> HTMLResponse:
    need(principal, "read_audit")
    form = await check_csrf(request)
    before = _text(form, "before_seq")
    before_seq = int(before) if before.isdigit() and len(before) < 19 else None
    filters = {k: _text(form, k) for k in AUDIT_FIELDS}
    return await run_in_threadpool(_audit_page, request, rt, filters, before_seq)


@router.get("/ui/admin", response_class=HTMLResponse)
def admin_page(request: Request, rt: RuntimeDep, principal: PagePrincipal) -> HTMLResponse:
    need(principal, "manage_users")
    return render(
        request,
        "admin.html",
        users=rt.users.list(),
        gallery_templates=rt.holder.index.count,
        pack_id=rt.pipeline.pack_id,
    )


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and their HTML error pages on ``app``."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    app.state.html_error = html_error

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)
