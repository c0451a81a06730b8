"""The reviewer pages in a real browser: Debian's Chromium driven headless by Playwright.

A sprint goes from upload to a confirmed match through the pages, by an analyst, a reviewer and a
different confirmer; the report and the audit trail show it; a user of the wrong role is refused.
Screenshots of every page are saved under ``test-output/screenshots/`` (or ``$RFR_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from service.app import create_app
from service.config import Settings, WorkerSettings
from service.domain.roles import operator_principal
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from tests.conftest import PROJECT_ROOT, lfw_path

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("RFR_SCREENSHOT_DIR", PROJECT_ROOT / "test-output" / "screenshots"))
PASSWORD = "correct horse battery staple"
GALLERY = ["Colin_Powell", "Serena_Williams", "Hugo_Chavez", "Ariel_Sharon", "Laura_Bush", "Al_Gore"]
STILLS = [("Colin_Powell", 2), ("Serena_Williams", 3), ("John_Ashcroft", 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    for user, role in (("ana", "analyst"), ("rita", "reviewer"), ("cora", "confirmer"), ("audrey", "auditor")):
        rt.users.create(operator, user, role, PASSWORD)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(runtime=rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    rt.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
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


def open_page(browser: object, base: str) -> object:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=base)  # type: ignore[attr-defined]
    return context.new_page()


def sign_in(page: object, user: str) -> None:
    page.goto("/login")  # type: ignore[attr-defined]
    page.fill("input[name=username]", user)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_sprint_from_upload_to_confirmed_match_in_the_browser(server: str, browser: object) -> None:
    page = open_page(browser, server)
    page.goto("/ui/submissions")  # type: ignore[attr-defined]
    assert "/login" in page.url, "pages need a signed-in user"  # type: ignore[attr-defined]
    shot(page, "01-login")

    # The analyst creates a sprint from a few stills, with provenance, and watches it process.
    sign_in(page, "ana")
    page.goto("/ui/submissions")  # type: ignore[attr-defined]
    page.fill("input[name=case_reference]", "OP-BELLEVILLE-7")  # type: ignore[attr-defined]
    page.fill("input[name=purpose]", "identify repeat shop theft suspects")  # type: ignore[attr-defined]
    page.fill("input[name=retailer]", "Acme Stores")  # type: ignore[attr-defined]
    page.fill("input[name=store]", "Leeds Briggate")  # type: ignore[attr-defined]
    page.fill("input[name=incident_reference]", "INC-2026-118")  # type: ignore[attr-defined]
    page.set_input_files("input[name=files]", [str(lfw_path(n, i)) for n, i in STILLS])  # type: ignore[attr-defined]
    shot(page, "02-new-sprint")
    page.click("text=Create sprint and upload")  # type: ignore[attr-defined]
    assert re.search(r"/ui/submissions/\d+$", page.url)  # type: ignore[attr-defined]
    submission_url = page.url  # type: ignore[attr-defined]
    page.wait_for_selector("#status:text('complete')", timeout=120_000)  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    assert page.locator("svg rect").count() >= 3, "faces are boxed on each still"  # type: ignore[attr-defined]
    assert "Acme Stores" in page.content()  # type: ignore[attr-defined]
    shot(page, "03-submission-processed")
    # The analyst may not open the audit trail or the review queue.
    response = page.goto("/ui/audit")  # type: ignore[attr-defined]
    assert response.status == 403 and "Not permitted" in page.content()  # type: ignore[attr-defined]
    shot(page, "04-analyst-refused-audit")
    page.context.close()  # type: ignore[attr-defined]

    # The reviewer works the queue with the keyboard only.
    page = open_page(browser, server)
    sign_in(page, "rita")
    assert page.url.endswith("/ui/review")  # type: ignore[attr-defined]
    shot(page, "05-review-queue")
    assert page.evaluate("document.activeElement.id") == "first-item"  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert "/ui/review/faces/" in page.url  # type: ignore[attr-defined]
    # Find the face whose top candidate is its own person (Colin Powell), using ] to move on.
    for _ in range(6):
        top = page.locator("li.cand").first.inner_text()  # type: ignore[attr-defined]
        if "Colin_Powell" in top:
            break
        with page.expect_navigation():  # type: ignore[attr-defined]
            page.keyboard.press("]")  # type: ignore[attr-defined]
    assert "Colin_Powell" in page.locator("li.cand").first.inner_text()  # type: ignore[attr-defined]
    assert page.locator("li.cand.above").count() >= 1  # type: ignore[attr-defined]
    shot(page, "06-review-side-by-side")
    page.keyboard.press("j")  # type: ignore[attr-defined]
    page.keyboard.press("k")  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("p")  # type: ignore[attr-defined]
    shot(page, "07-after-review")
    page.context.close()  # type: ignore[attr-defined]

    # A different person, a confirmer, confirms it.
    page = open_page(browser, server)
    sign_in(page, "cora")
    page.goto("/ui/review?state=awaiting_confirmation")  # type: ignore[attr-defined]
    shot(page, "08-confirmation-queue")
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]
    decision = page.locator(".first-decision").inner_text()  # type: ignore[attr-defined]
    assert "possible match by rita" in decision and "Colin_Powell" in decision
    shot(page, "09-confirm")
    face_url = page.url  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.keyboard.press("c")  # type: ignore[attr-defined]

    # The subject page lists the custody images and the confirmed appearance with its provenance.
    page.goto(face_url.split("?")[0] + "?state=confirmed")  # type: ignore[attr-defined]
    assert "confirmed" in page.locator("h1").inner_text()  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.locator("a.subject").first.click()  # type: ignore[attr-defined]
    assert "Colin_Powell" in page.locator("h1").inner_text()  # type: ignore[attr-defined]
    appearances = page.locator("table.list tbody tr")  # type: ignore[attr-defined]
    assert appearances.count() == 1 and "Leeds Briggate" in appearances.first.inner_text()
    assert page.locator(".gallery img").count() == 1  # type: ignore[attr-defined]
    shot(page, "10-subject")

    # The report shows the confirmed match, with a chart, and is printable.
    page.goto(submission_url + "/report")  # type: ignore[attr-defined]
    figures = {
        row.locator("th").inner_text(): int(row.locator("td").inner_text())
        for row in page.locator("table.figures tr").all()  # type: ignore[attr-defined]
    }
    assert figures["Images supplied"] == 3 and figures["Confirmed matches"] == 1
    assert figures["Distinct subjects confirmed"] == 1 and figures["Possible matches"] == 1
    assert page.locator("svg.chart rect").count() == 8  # type: ignore[attr-defined]
    shot(page, "11-report")
    page.emulate_media(media="print")  # type: ignore[attr-defined]
    assert not page.locator("header.top").is_visible()  # type: ignore[attr-defined]
    page.emulate_media(media="screen")  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]

    # The auditor sees every step in a verified chain.
    page = open_page(browser, server)
    sign_in(page, "audrey")
    assert page.url.endswith("/ui/audit")  # type: ignore[attr-defined]
    assert "Hash chain verified" in page.locator("#chain-status").inner_text()  # type: ignore[attr-defined]
    text = page.locator("table.audit").inner_text()  # type: ignore[attr-defined]
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
    page.fill("input[name=action]", "review_decision")  # type: ignore[attr-defined]
    page.click("text=Filter")  # type: ignore[attr-defined]
    rows = page.locator("table.audit tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == 2 and "cora" in rows.first.inner_text()  # type: ignore[attr-defined]
    shot(page, "12-audit")
    assert "/ui/submissions" not in page.url  # type: ignore[attr-defined]
    response = page.goto("/ui/review")  # type: ignore[attr-defined]
    assert response.status == 403  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]


def test_images_need_a_signed_in_user_and_are_never_cached(server: str, browser: object) -> None:
    page = open_page(browser, server)
    anonymous = page.request.get("/probe-images/1/image")  # type: ignore[attr-defined]
    assert anonymous.status == 401
    sign_in(page, "rita")
    image = page.request.get("/probe-images/1/image")  # type: ignore[attr-defined]
    assert image.status == 200 and "no-store" in image.headers["cache-control"]
    listing = page.goto("/ui/submissions")  # type: ignore[attr-defined]
    assert "no-store" in listing.headers["cache-control"]  # type: ignore[union-attr]
    page.context.close()  # type: ignore[attr-defined]
