"""The reviewer pages in a real browser: Debian's Chromium driven headless by Playwright.

A sprint goes from upload to a confirmed match through the pages, by an analyst, a reviewer and a
different confirmer; the report and the audit trail show it; a user of the wrong role is refused.
Screenshots of every page are saved under ``test-output/screenshots/`` (or ``$RFR_SCREENSHOT_DIR``), and
each page shot is checked with axe-core for serious WCAG 2.1 A/AA violations and CSP violations.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.config import Settings, WorkerSettings
from service.domain.roles import operator_principal
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from service.services.views import SPRINT_FIGURES, WORK_FIGURES
from tests.clips import CLIP, VIDEO
from tests.conftest import PROJECT_ROOT, lfw_path
from tests.fixtures import serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

playwright_sync = pytest.importorskip("playwright.sync_api")
Axe = pytest.importorskip("axe_playwright_python.sync_playwright").Axe

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("RFR_SCREENSHOT_DIR", PROJECT_ROOT / "test-output" / "screenshots"))
PASSWORD = "correct horse battery staple"
GALLERY = ["Colin_Powell", "Serena_Williams", "Hugo_Chavez", "Ariel_Sharon", "Laura_Bush", "Al_Gore"]
CLIP_PEOPLE = ["lin-manuel-miranda", "alex-lacamoire"]
STILLS = [("Colin_Powell", 2), ("Serena_Williams", 3), ("John_Ashcroft", 1), ("Colin_Powell", 3)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: Settings, pipeline: FacePipeline) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("web")
    rt = Runtime.build(
        Settings(
            data_dir=root / "data", cache_dir=settings.cache_dir, worker=WorkerSettings(enabled=True, poll_seconds=0.1)
        ),
        pipeline=pipeline,
    )
    operator = operator_principal()
    for name in GALLERY:
        assert rt.gallery.enrol(operator, name, lfw_path(name, 1).read_bytes(), f"{name}_0001.jpg").status == "enrolled"
    for name in CLIP_PEOPLE:  # the shared clip's two known people
        assert (
            rt.gallery.enrol(operator, name, (VIDEO / f"{name}.png").read_bytes(), f"{name}.png").status == "enrolled"
        )
    for user, role in (("ana", "analyst"), ("rita", "reviewer"), ("cora", "confirmer"), ("audrey", "auditor")):
        rt.users.create(operator, user, role, PASSWORD)
    with serving(rt) as base:
        yield base
    rt.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_sync.sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


def open_page(browser: Browser, base: str) -> Page:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=base)
    # Anything the Content-Security-Policy blocks (an inline script or handler, a foreign asset) is collected.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    return context.new_page()


def sign_in(page: Page, user: str, here: bool = False) -> None:
    """Sign in on the sign-in page (``here``: the one the browser was sent to, which knows where to
    go back to)."""
    if not here:
        page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():  # the form posts, then the service redirects to the user's first page
        page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


def accessibility_problems(page: Page) -> list[str]:
    """The serious and critical WCAG 2.x A/AA violations axe-core finds on the page as it is now."""
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    result = Axe().run(page, options=options).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def shot(page: Page, name: str) -> None:
    assert page.evaluate("window.__csp || []") == [], f"{name}: blocked by the Content-Security-Policy"
    problems = accessibility_problems(page)
    assert not problems, f"{name}: axe-core finds " + "; ".join(problems)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sprint_from_upload_to_confirmed_match_in_the_browser(server: str, browser: Browser) -> None:
    page = open_page(browser, server)
    page.goto("/ui/submissions")
    assert "/login" in page.url, "pages need a signed-in user"
    shot(page, "01-login")

    # The analyst creates a sprint from a few stills, with provenance, and watches it process.
    sign_in(page, "ana")
    page.goto("/ui/submissions")
    page.fill("input[name=case_reference]", "OP-BELLEVILLE-7")
    page.fill("input[name=purpose]", "identify repeat shop theft suspects")
    page.fill("input[name=retailer]", "Acme Stores")
    page.fill("input[name=store]", "Leeds Briggate")
    page.fill("input[name=incident_reference]", "INC-2026-118")
    page.set_input_files("input[name=files]", [str(lfw_path(n, i)) for n, i in STILLS])
    shot(page, "02-new-sprint")
    page.click("text=Create sprint and upload")
    assert re.search(r"/ui/submissions/\d+$", page.url)
    submission_url = page.url
    page.wait_for_selector("#status:text('complete')", timeout=120_000)
    page.wait_for_load_state("networkidle")
    assert page.locator("svg rect").count() >= 3, "faces are boxed on each still"
    assert "Acme Stores" in page.content()
    persons = page.locator("ol.persons li")
    assert persons.count() == 1 and "2 faces" in persons.first.inner_text(), "one man in two stills of the incident"
    assert "Colin_Powell" in persons.first.inner_text()
    shot(page, "03-submission-processed")
    # The analyst may not open the audit trail or the review queue.
    response = page.goto("/ui/audit")
    assert response is not None and response.status == 403 and "Not permitted" in page.content()
    shot(page, "04-analyst-refused-audit")
    page.context.close()

    # The reviewer works the queue with the keyboard only.
    page = open_page(browser, server)
    sign_in(page, "rita")
    assert page.url.endswith("/ui/review")
    # Triage: the current tab is marked; each entry has its thumbnail, best score and case; faces
    # with nothing above the threshold (John Ashcroft is not enrolled) have a tab of their own.
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Waiting for a first decision"
    rows = page.locator("table.queue tbody tr")
    assert rows.count() >= 3 and rows.count() == page.locator("table.queue tbody tr.above").count()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('td.thumb img')).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert "OP-BELLEVILLE-7" in rows.first.inner_text() and re.search(r"0\.\d{3}", rows.first.inner_text())
    shot(page, "05-review-queue")
    page.goto("/ui/review?state=below_threshold")
    below = page.locator("table.queue tbody tr")
    assert below.count() >= 1 and below.count() == page.locator("table.queue tbody tr.below").count()
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Nothing above the threshold"
    shot(page, "05b-review-queue-below-threshold")
    page.goto("/ui/review")
    assert page.evaluate("document.activeElement.id") == "first-item"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/ui/review/faces/" in page.url
    assert re.fullmatch(r"1 of \d+ in “Waiting for a first decision”", page.inner_text("#queue-position"))
    # Find the face whose top candidate is its own person (Colin Powell), using ] to move on.
    for _ in range(6):
        top = page.locator("li.cand").first.inner_text()
        if "Colin_Powell" in top:
            break
        with page.expect_navigation():
            page.keyboard.press("]")
    assert "Colin_Powell" in page.locator("li.cand").first.inner_text()
    assert page.locator("li.cand.above").count() >= 1
    # Safe decisions: nothing is chosen for the reviewer, the candidates below the threshold are
    # folded away, and a possible match without a chosen candidate is stopped with a reason.
    assert page.locator("input[name=candidate_id]:checked").count() == 0
    assert page.locator("details.below-threshold").count() == 1
    assert not page.locator("details.below-threshold li.cand").first.is_visible()
    shot(page, "06-review-side-by-side")
    url = page.url
    page.keyboard.press("p")
    assert page.locator("#decide-error").is_visible() and "Choose the candidate" in page.inner_text("#decide-error")
    assert page.url == url, "nothing was decided"
    page.keyboard.press("j")
    page.keyboard.press("j")  # rank 2 is below the threshold: choosing it unfolds the list
    assert page.locator("details.below-threshold").get_attribute("open") is not None
    page.keyboard.press("p")
    assert "below the threshold" in page.inner_text("#decide-error") and page.url == url
    assert page.evaluate("document.activeElement.id") == "note", "the note is where to write the reason"
    shot(page, "06b-review-note-required")
    # The comparison view: the first candidate beside the probe, both aligned at the same size.
    face_url = page.url
    with page.expect_navigation():
        page.locator("a.compare-link").first.click()
    page.wait_for_function(
        "() => ['probe-aligned', 'candidate-aligned'].every(i => document.getElementById(i).complete"
        " && document.getElementById(i).naturalWidth === 448 && document.getElementById(i).naturalHeight === 448)"
    )
    assert re.search(r"\d+ px", page.inner_text("#native-eyes")) and "×" in page.inner_text("#enlargement")
    page.click("#zoom-in")
    page.click("#zoom-in")
    transforms = page.evaluate(
        "['probe-aligned', 'candidate-aligned'].map(i => document.getElementById(i).style.transform)"
    )
    assert transforms[0] == transforms[1] and "scale(1.5625)" in transforms[0], "zoom is linked"
    viewport = page.locator(".viewport").first.bounding_box()
    assert viewport is not None
    page.mouse.move(viewport["x"] + 200, viewport["y"] + 200)
    page.mouse.down()
    page.mouse.move(viewport["x"] + 150, viewport["y"] + 170)
    page.mouse.up()
    panned = page.evaluate(
        "['probe-aligned', 'candidate-aligned'].map(i => document.getElementById(i).style.transform)"
    )
    assert panned[0] == panned[1] != transforms[0], "so is pan"
    assert page.locator(".record-views li").count() >= 1 and "enrolled" in page.inner_text(".record-views")
    page.click("#full-still")
    assert page.locator("#still-details svg rect.this-face").count() == 1
    assert page.locator("#still-details svg text.face-number").count() >= 1
    shot(page, "06c-comparison")
    page.check("input[name=mode][value=overlay]")
    assert page.locator("#overlay-aligned").is_visible() and not page.locator("#candidate-aligned").is_visible()
    shot(page, "06d-comparison-overlay")
    page.check("input[name=mode][value=flicker]")
    # (a function, not an expression: polling an expression would need eval, which the CSP forbids)
    page.wait_for_function("() => document.getElementById('overlay-aligned').style.opacity === '0'")
    with page.expect_navigation():
        page.click("#back-to-decision")
    assert page.url.split("#")[0] == face_url
    checked = page.locator("input[name=candidate_id]:checked")
    assert checked.count() == 1 and "rank 1," in (checked.get_attribute("aria-label") or ""), "came back chosen"
    page.locator("input[name=candidate_id]").first.focus()
    with page.expect_navigation():
        page.keyboard.press("p")
    shot(page, "07-after-review")
    page.context.close()

    # A different person, a confirmer, confirms it.
    page = open_page(browser, server)
    sign_in(page, "cora")
    page.goto("/ui/review?state=awaiting_confirmation")
    shot(page, "08-confirmation-queue")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    decision = page.locator(".first-decision").inner_text()
    assert "possible match by rita" in decision and "Colin_Powell" in decision
    assert "clears the threshold" in decision and "Note: none" in decision
    checked = page.locator("input[name=candidate_id]:checked")
    assert checked.count() == 1 and "Colin_Powell" in (checked.get_attribute("aria-label") or ""), "the chosen one"
    shot(page, "09-confirm")
    face_url = page.url
    page.keyboard.press("o")
    assert "reason" in page.inner_text("#decide-error") and page.url == face_url, "an overturn needs a note"
    assert page.evaluate("document.activeElement.id") == "note"
    # Confirming needs the comparison of the chosen candidate opened first.
    assert page.locator("#btn-confirm").is_disabled() and page.locator("#needs-comparison").is_visible()
    with page.expect_navigation():
        page.click("#compare-chosen")
    assert "beside candidate #1" in page.inner_text("h1")
    with page.expect_navigation():
        page.click("#back-to-decision")
    assert page.locator("#btn-confirm").is_enabled()
    # A short undo: the confirmation waits a few seconds and can be taken back meanwhile.
    page.locator("#btn-confirm").focus()
    page.keyboard.press("c")
    assert page.locator("#confirm-pending").is_visible()
    shot(page, "09b-confirm-undo")
    page.keyboard.press("u")
    assert not page.locator("#confirm-pending").is_visible()
    page.wait_for_timeout(6000)
    assert page.url.split("#")[0] == face_url.split("#")[0] and "awaiting confirmation" in page.inner_text("h1")
    page.locator("#btn-confirm").focus()
    with page.expect_navigation(timeout=15_000):
        page.keyboard.press("c")

    # The subject page lists the custody images and the confirmed appearance with its provenance.
    page.goto(face_url.split("?")[0] + "?state=confirmed")
    assert "confirmed" in page.locator("h1").inner_text()
    with page.expect_navigation():
        page.locator("a.subject").first.click()
    assert "Colin_Powell" in page.locator("h1").inner_text()
    appearances = page.locator("table.list tbody tr")
    assert appearances.count() == 1 and "Leeds Briggate" in appearances.first.inner_text()
    assert page.locator(".gallery img").count() == 1
    shot(page, "10-subject")

    # The report shows the confirmed match, with a chart, and is printable.
    page.goto(submission_url + "/report")
    figures = {
        row.locator("th").inner_text(): int(row.locator("td").inner_text())
        for row in page.locator("table.figures tr").all()
    }
    assert figures["Images supplied"] == len(STILLS) and figures["Confirmed matches"] == 1
    assert figures["Distinct subjects confirmed"] == 1 and figures["Possible matches"] == 1
    # Every figure on the page is the API's; the page also says how, by whom and when.
    api = page.request.get(f"/submissions/{submission_url.rsplit('/', 1)[1]}/report").json()
    assert figures == {label: api[key] for label, key in SPRINT_FIGURES + WORK_FIGURES}
    facts = page.locator("dl.report-facts").inner_text()
    assert "ana" in facts and "yunet_sface" in facts and f"{api['threshold']:.3f}" in facts and "UTC" in facts
    assert page.locator("svg.chart rect").count() == 8
    shot(page, "11-report")
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert page.locator(".print-notice").is_visible(), "the print keeps the investigative-leads notice"
    page.emulate_media(media="screen")
    page.context.close()

    # The auditor sees every step in a verified chain.
    page = open_page(browser, server)
    sign_in(page, "audrey")
    assert page.url.endswith("/ui/audit")
    assert "Hash chain verified" in page.locator("#chain-status").inner_text()
    assert re.match(r"\d+ of \d+ matching event\(s\), newest first", page.inner_text("#audit-count"))
    text = page.locator("table.audit").inner_text()
    for action in (
        "submission_created",
        "images_uploaded",
        "search",
        "probe_image_viewed",
        "candidate_image_viewed",
        "review_decision",
        "login",
    ):
        assert action in text, action
    page.fill("input[name=action]", "review_decision")
    page.click("text=Filter")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 2 and "cora" in rows.first.inner_text()
    shot(page, "12-audit")
    assert "/ui/submissions" not in page.url
    response = page.goto("/ui/review")
    assert response is not None and response.status == 403
    page.context.close()


def test_images_need_a_signed_in_user_and_are_never_cached(server: str, browser: Browser) -> None:
    page = open_page(browser, server)
    anonymous = page.request.get("/probe-images/1/image")
    assert anonymous.status == 401
    sign_in(page, "rita")
    image = page.request.get("/probe-images/1/image")
    assert image.status == 200 and "no-store" in image.headers["cache-control"]
    listing = page.goto("/ui/submissions")
    assert listing is not None and "no-store" in listing.headers["cache-control"]
    page.context.close()


def confirm_person(browser: Browser, server: str, person_url: str, screenshot: str) -> None:
    """The confirmer (not the reviewer) confirms a person's possible match: every member face is confirmed."""
    page = open_page(browser, server)
    sign_in(page, "cora")
    page.goto(person_url)
    assert "possible match by rita" in page.locator(".first-decision").inner_text()
    with page.expect_navigation():
        page.keyboard.press("c")
    assert "confirmed" in page.locator("h1").inner_text()
    faces = page.locator("ol.member-faces li")
    assert faces.count() >= 2 and all("review: confirmed" in faces.nth(i).inner_text() for i in range(faces.count()))
    shot(page, screenshot)
    page.context.close()


def submit_sprint(browser: Browser, server: str, case: str, files: list[Path], **fields: str) -> str:
    """The analyst creates a sprint of ``files`` through the form (with provenance ``fields``) and waits
    for it to be processed; the submission page's URL."""
    page = open_page(browser, server)
    sign_in(page, "ana")
    page.goto("/ui/submissions")
    page.fill("input[name=case_reference]", case)
    page.fill("input[name=purpose]", "identify a repeat shop theft suspect")
    for name, value in fields.items():
        page.fill(f"input[name={name}]", value)
    page.set_input_files("input[name=files]", [str(f) for f in files])
    page.click("text=Create sprint and upload")
    submission_url = page.url
    page.wait_for_selector("#status:text('complete')", timeout=120_000)
    page.context.close()
    return submission_url


def test_a_person_of_an_incident_is_reviewed_as_one_in_the_browser(server: str, browser: Browser) -> None:
    stills = [lfw_path("Serena_Williams", n) for n in (2, 4)]
    submission_url = submit_sprint(browser, server, "OP-LANTERN-3", stills, incident_reference="INC-2026-204")

    # The reviewer opens the person from the submission: both faces beside the fused candidates.
    page = open_page(browser, server)
    sign_in(page, "rita")
    page.goto(submission_url)
    with page.expect_navigation():
        page.locator("a.review-person").first.click()
    assert "/ui/review/persons/" in page.url
    person_url = page.url
    assert page.locator("ol.member-faces li").count() == 2
    assert "Serena_Williams" in page.locator("li.cand").first.inner_text()
    shot(page, "13-review-person")
    # The comparison of a person's candidate: one member face at a time, every member a click away.
    with page.expect_navigation():
        page.locator("a.compare-link").first.click()
    page.wait_for_function(
        "() => ['probe-aligned', 'candidate-aligned'].every(i => document.getElementById(i).naturalWidth === 448)"
    )
    members = page.locator("ol.member-strip li a")
    assert members.count() == 2 and page.locator("ol.member-strip li.shown").count() == 1
    shown = page.locator("ol.member-strip a[aria-current=true]").get_attribute("href")
    other = next(h for h in members.evaluate_all("links => links.map(a => a.getAttribute('href'))") if h != shown)
    with page.expect_navigation():
        page.click(f"ol.member-strip a[href='{other}']")
    assert page.locator("ol.member-strip a[aria-current=true]").get_attribute("href") == other
    shot(page, "13b-compare-person")
    with page.expect_navigation():
        page.click("#back-to-decision")
    assert page.url.split("#")[0] == person_url
    assert page.locator("input[name=candidate_id]:checked").count() == 1, "back with the compared candidate chosen"
    with page.expect_navigation():
        page.keyboard.press("p")
    assert "awaiting confirmation" in page.locator("h1").inner_text()
    page.context.close()

    # A different person confirms it; the decision is on both faces.
    confirm_person(browser, server, person_url, "14-person-confirmed")


def test_a_track_of_a_clip_is_reviewed_and_confirmed_in_the_browser(server: str, browser: Browser) -> None:
    page = open_page(browser, server)
    sign_in(page, "ana")
    page.goto("/ui/submissions")
    page.fill("input[name=case_reference]", "OP-LANTERN-9")
    page.fill("input[name=purpose]", "identify a shop theft suspect from the till camera")
    page.fill("input[name=incident_reference]", "INC-2026-311")
    page.fill("input[name=camera]", "till 2")
    page.set_input_files("input[name=files]", [str(CLIP)])
    page.click("text=Create sprint and upload")
    submission_url = page.url
    # While the clip is processed the list shows its progress live, without reloading the page: a
    # new sprint half typed meanwhile is kept.
    page.goto("/ui/submissions")
    assert page.locator("#submissions").get_attribute("data-live") == "on"
    page.fill("input[name=case_reference]", "OP-HALF-TYPED")
    row = f"tr[data-submission='{submission_url.rsplit('/', 1)[1]}']"
    page.wait_for_selector(f"{row} [data-field=status]:text('complete')", timeout=180_000)
    assert page.input_value("input[name=case_reference]") == "OP-HALF-TYPED", "the page was not reloaded"
    assert page.locator("#submissions").get_attribute("data-live") == "off"
    page.goto(submission_url)
    assert "Footage:" in page.locator("#progress").inner_text()
    assert page.locator("ol.shots li").count() >= 5
    shot(page, "15-clip-submission")
    page.context.close()

    # The reviewer opens the track the enrolled man leads: its shots with their times, the clip.
    page = open_page(browser, server)
    sign_in(page, "rita")
    page.goto(submission_url)
    track = page.locator("ol.persons li", has_text="best candidate lin-manuel-miranda").first
    assert "Track" in track.inner_text() and "above threshold" in track.inner_text()
    with page.expect_navigation():
        track.locator("a.review-person").click()
    person_url = page.url
    assert "Track" in page.locator("h1").inner_text()
    times = page.locator("p.shot-time").all_inner_texts()
    assert len(times) >= 2 and all(t.startswith("Shot at") for t in times)
    assert "lin-manuel-miranda" in page.locator("li.cand").first.inner_text()
    # The clip plays in the page from the track's first shot (H.264 MP4).
    page.wait_for_function("() => document.querySelector('#track-video').readyState >= 1", timeout=20_000)
    start = page.evaluate("document.querySelector('#track-video').currentTime")
    first = float(times[0].split()[2])
    assert abs(start - first) < 0.5, (start, first)
    shot(page, "16-review-track")
    page.keyboard.press("j")  # nothing is chosen for the reviewer: take the first candidate
    with page.expect_navigation():
        page.keyboard.press("p")
    assert "awaiting confirmation" in page.locator("h1").inner_text()
    page.context.close()

    # A different person confirms it: every shot of the track is confirmed.
    confirm_person(browser, server, person_url, "17-track-confirmed")


def contrast(foreground: str, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """The WCAG contrast ratio of a CSS ``rgb(...)`` colour against ``background``."""

    def luminance(rgb: tuple[int, ...]) -> float:
        channels = [c / 255 for c in rgb]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    found = tuple(int(v) for v in re.findall(r"\d+", foreground)[:3])
    light, dark = sorted((luminance(found), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_nothing_typed_or_submitted_is_lost(server: str, browser: Browser, tmp_path: Path) -> None:
    # A sprint the service refuses to create (no file chosen) shows the form again as it was typed.
    page = open_page(browser, server)
    sign_in(page, "ana")
    page.goto("/ui/submissions")
    page.fill("input[name=case_reference]", "OP-KEPT-1")
    page.fill("input[name=purpose]", "identify a shop theft suspect")
    page.fill("input[name=retailer]", "Corner Shop")
    page.click("text=Create sprint and upload")
    assert "choose at least one still" in page.inner_text("#sprint-error")
    assert page.input_value("input[name=case_reference]") == "OP-KEPT-1"
    assert page.input_value("input[name=retailer]") == "Corner Shop"
    shot(page, "18-sprint-refused-input-kept")
    page.context.close()
    # A file that cannot be read is kept as a failed image with the provenance it came with.
    broken = tmp_path / "till-3.jpg"
    broken.write_bytes(b"not a picture at all")
    stills = [lfw_path("John_Ashcroft", 2), broken]  # he is not enrolled: nothing above the threshold
    url = submit_sprint(browser, server, "OP-KEPT-2", stills, retailer="Corner Shop")
    page = open_page(browser, server)
    sign_in(page, "ana")
    page.goto(url)
    card = page.locator("section.still-card", has_text="till-3.jpg")
    assert "failed" in card.inner_text() and "Corner Shop" in card.inner_text()
    page.context.close()

    # The session ends while a reviewer writes a note: after signing in again the same page comes back
    # with the note and the chosen candidate.
    page = open_page(browser, server)
    sign_in(page, "rita")
    page.goto("/ui/review?state=below_threshold")
    with page.expect_navigation():
        page.locator("#first-item").click()
    face_url = page.url
    page.keyboard.press("j")
    page.fill("#note", "the scar on the chin matches")
    page.context.clear_cookies()  # the session is gone (expired, or signed out elsewhere)
    page.locator("#btn-nomatch").focus()
    with page.expect_navigation():
        page.keyboard.press("n")
    assert "/login" in page.url
    sign_in(page, "rita", here=True)
    assert page.url == face_url, "back on the page the decision was sent from, not a 405"
    assert page.input_value("#note") == "the scar on the chin matches" and page.locator("#draft-restored").is_visible()
    assert page.locator("input[name=candidate_id]:checked").count() == 1
    shot(page, "19-note-restored-after-sign-in")
    page.locator("#btn-nomatch").focus()
    with page.expect_navigation():
        page.keyboard.press("n")
    page.goto(face_url)
    assert page.input_value("#note") == "", "a recorded decision leaves no draft behind"
    page.context.close()


def test_the_review_pages_are_accessible_and_their_shortcuts_can_be_turned_off(server: str, browser: Browser) -> None:
    stills = [lfw_path("Hugo_Chavez", n) for n in (2, 3)] + [lfw_path("Al_Gore", 2)]
    submit_sprint(browser, server, "OP-ALTGR-1", stills)
    page = open_page(browser, server)
    sign_in(page, "rita")
    assert page.locator("header nav a[aria-current=page]").inner_text() == "Review queue", "the section is marked"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # Every candidate's radio names its rank, custody reference, score and side of the threshold.
    labels = [r.get_attribute("aria-label") or "" for r in page.locator("input[name=candidate_id]").all()]
    named = r"Candidate rank \d+, \S+, score -?[\d.]+, (above|below) the threshold"
    assert labels and [x for x in labels if not re.fullmatch(named, x)] == []
    # The focus ring is visible at 3:1 or more.
    page.locator("input[name=candidate_id]").first.focus()
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert contrast(ring) >= 3, ring
    # The shortcuts turned off: a key does nothing, and the choice survives a reload.
    page.locator("#shortcuts-toggle").uncheck()
    page.locator("h1").click()
    url = page.url
    page.keyboard.press("j")
    page.keyboard.press("p")
    assert (
        page.locator("input[name=candidate_id]:checked").count() == 0 and not page.locator("#decide-error").is_visible()
    )
    page.reload()
    assert not page.locator("#shortcuts-toggle").is_checked()
    page.keyboard.press("]")
    assert page.url == url, "no key acts while the shortcuts are off"
    shot(page, "17-shortcuts-off")
    page.locator("#shortcuts-toggle").check()
    page.locator("h1").click()
    # ] typed with AltGr (Ctrl+Alt on some systems) still moves on; so does the "." alternative.
    with page.expect_navigation():
        page.evaluate(
            "document.dispatchEvent(new KeyboardEvent('keydown',"
            " {key: ']', ctrlKey: true, altKey: true, bubbles: true}))"
        )
    assert page.url != url
    with page.expect_navigation():
        page.keyboard.press(",")
    assert page.url == url
    page.context.close()


def test_the_accessibility_check_finds_what_it_should(server: str, browser: Browser) -> None:
    page = open_page(browser, server)
    page.goto("/login")
    assert accessibility_problems(page) == []
    page.evaluate(
        "document.querySelector('main').insertAdjacentHTML('beforeend',"
        ' \'<img src="/static/none.png"><button type="button"></button>\')'
    )
    found = " ".join(accessibility_problems(page))
    assert "image-alt" in found and "button-name" in found, found
    page.context.close()
