"""What one request may cost (issue 16, item 1): a large still is analysed at working size, a request
over the total cap is refused before anything is stored, uploads are streamed to disk, decodes are
bounded. (Memory and time themselves are measured in benchmarks/request_memory.py.)"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from service.app import create_app
from service.config import ImageSettings, Settings
from service.db.models import ProbeImage
from service.domain.roles import Role
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from tests.conftest import cosine, encode, lfw_bytes, lfw_rgb
from tests.fixtures import OPERATOR, PASSWORD, auth, make_settings

SIDE = 7000
AT = (4100, 2900)  # where the LFW still (250 x 250) is pasted


@pytest.fixture(scope="module")
def client(runtime: Runtime, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), headers=auth(tokens, "ana")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    """Colin Powell (enrolled with his first LFW still) in a 7000 x 7000 JPEG: 49 MP, under the limit."""
    canvas = Image.new("RGB", (SIDE, SIDE), (120, 124, 118))
    canvas.paste(lfw_rgb("Colin_Powell", 2), AT)
    return encode(canvas, "JPEG", quality=90)


def new_submission(client: TestClient) -> int:
    body = {"case_reference": "CASE/2026/0100", "purpose": "large stills"}
    response = client.post("/submissions", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def stored(runtime: Runtime) -> tuple[int, list[Path]]:
    """Probe images in the database, and every file under the store (staged ones included)."""
    with runtime.factory() as session:
        images = int(session.scalar(select(func.count()).select_from(ProbeImage)) or 0)
    root = runtime.store.root
    return images, sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def inside_pasted_face(box: list[float]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return AT[0] < cx < AT[0] + 250 and AT[1] < cy < AT[1] + 250 and 60 < box[2] < 200


def test_a_7000_px_jpeg_is_analysed_at_working_size_and_its_face_found(
    client: TestClient, runtime: Runtime, large_jpeg: bytes
) -> None:
    still = runtime.pipeline.decode_still(large_jpeg)
    assert runtime.settings.images.work_max_side == 4096
    assert still.pixels.shape == (3500, 3500, 3) and still.scale == 0.5, "JPEG draft mode: decoded at half size"
    form = {"case_reference": "CASE/2026/0100", "purpose": "one large still"}
    response = client.post("/search", data=form, files={"file": ("large.jpg", large_jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (SIDE, SIDE), "reported in the still's own pixels"
    [face] = [f for f in result["faces"] if inside_pasted_face(f["box"])]
    assert all(AT[0] < x < AT[0] + 250 and AT[1] < y < AT[1] + 250 for x, y in face["landmarks"])
    assert face["searched"] and face["candidates"][0]["custody_reference"] == "Colin_Powell"
    assert face["candidates"][0]["above_threshold"]


def test_a_large_still_submitted_is_stored_in_its_own_pixels_and_its_crop_is_the_face(
    client: TestClient, runtime: Runtime, tokens: dict[str, str], pipeline: FacePipeline, large_jpeg: bytes
) -> None:
    submission_id = new_submission(client)
    response = client.post(
        f"/submissions/{submission_id}/images", files=[("files", ("large.jpg", large_jpeg, "image/jpeg"))]
    )
    assert response.status_code == 202, response.text
    assert runtime.worker.run_until_empty() == 1
    [image] = client.get(f"/submissions/{submission_id}/results").json()["images"]
    assert image["status"] == "done" and (image["width"], image["height"]) == (SIDE, SIDE)
    [face] = [f for f in image["faces"] if inside_pasted_face(f["box"])]
    # The review crop is cut from the still decoded at working size, with the box scaled to it:
    # it holds the same face (its embedding matches the LFW still's own).
    crop = runtime.media.face_crop(runtime.users.authenticate(tokens["ana"]), face["id"])
    crop_pixels = cv2.imdecode(np.frombuffer(crop.data, np.uint8), cv2.IMREAD_COLOR)
    assert crop_pixels is not None
    w, h = face["box"][2] * 0.5, face["box"][3] * 0.5  # the box at working size
    assert abs(crop_pixels.shape[1] - (w + 2 * 0.35 * max(w, h))) < 3, "cut at working size around the scaled box"
    [found] = pipeline.analyse_bytes(crop.data).faces
    [original] = pipeline.analyse_bytes(lfw_bytes("Colin_Powell", 2)).faces
    assert cosine(found.embedding, original.embedding) > 0.8


def jpeg_of(size: int, seed: int) -> bytes:
    """A decodable JPEG of about ``size`` bytes (noise compresses badly)."""
    side = int((size / 1.2) ** 0.5)
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), "JPEG", quality=95)


def test_a_many_file_upload_is_streamed_to_the_store_and_all_or_nothing(client: TestClient, runtime: Runtime) -> None:
    small = [(f"lfw-{n}.jpg", lfw_bytes("Colin_Powell", n)) for n in range(3, 23)]
    spooled = [(f"big-{i}.jpg", jpeg_of(2_000_000, i)) for i in range(4)]  # spooled to disk by the parser
    files = small + spooled
    submission_id = new_submission(client)
    images_before, files_before = stored(runtime)

    # A bad file last: the files before it were staged, and are all removed.
    bad = [*files, ("cut.jpg", spooled[0][1][:5000])]
    parts = [("files", (name, data, "image/jpeg")) for name, data in bad]
    response = client.post(f"/submissions/{submission_id}/images", files=parts)
    assert response.status_code == 422 and response.json()["error"]["code"] == "image_unreadable"
    assert stored(runtime) == (images_before, files_before), "nothing stored, nothing staged left"

    parts = [("files", (name, data, "image/jpeg")) for name, data in files]
    response = client.post(f"/submissions/{submission_id}/images", files=parts)
    assert response.status_code == 202, response.text
    assert len(response.json()["image_ids"]) == len(files)
    detail = client.get(f"/submissions/{submission_id}").json()
    assert [i["file"] for i in detail["images"]] == [name for name, _ in files]
    images_after, files_after = stored(runtime)
    assert images_after == images_before + len(files)
    expected = {runtime.store.path_for(hashlib.sha256(data).hexdigest()) for _, data in files}
    assert set(files_after) - set(files_before) == expected - set(files_before), "each file whole, nothing staged"
    assert all(runtime.store.get(hashlib.sha256(data).hexdigest()) == data for _, data in files)
    assert not any(runtime.store.incoming.glob("*")) if runtime.store.incoming.exists() else True


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, settings: Settings, pipeline: FacePipeline) -> Iterator[Runtime]:
    """A service whose requests may carry at most 3 MB in all."""
    root = tmp_path_factory.mktemp("capped")
    custom = make_settings(
        root / "data",
        f"sqlite:///{root / 'rfr.db'}",
        settings.cache_dir,
        images=ImageSettings(max_request_bytes=3_000_000, max_concurrent_decodes=1),
    )
    rt = Runtime.build(custom, pipeline=pipeline)
    rt.users.create(OPERATOR, "ana", Role.ANALYST.value, PASSWORD)
    yield rt
    rt.close()


def test_a_request_over_the_total_cap_is_refused_with_413_and_stores_nothing(capped: Runtime) -> None:
    token = capped.users.issue_token(OPERATOR, "ana")
    with TestClient(create_app(runtime=capped), headers={"Authorization": f"Bearer {token}"}) as client:
        submission_id = new_submission(client)
        before = stored(capped)
        # Four stills of 1 MB, each within the still limit, 4 MB together: the body declares its length.
        parts = [("files", (f"s{i}.jpg", jpeg_of(1_000_000, i), "image/jpeg")) for i in range(4)]
        response = client.post(f"/submissions/{submission_id}/images", files=parts)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "request_too_large" and "3000000 bytes" in error["message"]
        assert stored(capped) == before

        # A body sent in chunks, with no length declared, is counted as it arrives.
        boundary = "rfr-test-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()

        def chunks() -> Iterator[bytes]:
            yield head
            for _ in range(8):
                yield os.urandom(500_000)
            yield f"\r\n--{boundary}--\r\n".encode()

        response = client.post(
            f"/submissions/{submission_id}/images",
            content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert stored(capped) == before

        # The search is capped alike; a request within the cap goes through.
        form = {"case_reference": "CASE/1", "purpose": "cap"}
        big = {"file": ("big.jpg", jpeg_of(3_500_000, 9), "image/jpeg")}
        response = client.post("/search", data=form, files=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        ok = client.post(f"/submissions/{submission_id}/images", files=parts[:2])
        assert ok.status_code == 202, ok.text
        assert stored(capped)[0] == before[0] + 2


def test_searches_wait_for_a_free_decode_slot(capped: Runtime) -> None:
    """One decode slot (``max_concurrent_decodes=1``): a search waits while another holds it."""
    analyst = capped.users.authenticate(capped.users.issue_token(OPERATOR, "ana"))
    results: list[Any] = []

    def search() -> None:
        results.append(capped.search.search_still(analyst, lfw_bytes("Colin_Powell", 2), "CASE/1", "slots"))

    assert capped.decode_slots.acquire(timeout=5)
    try:
        waiting = threading.Thread(target=search)
        waiting.start()
        waiting.join(timeout=3.0)
        assert waiting.is_alive() and not results, "no slot: the search has not decoded"
    finally:
        capped.decode_slots.release()
    waiting.join(timeout=60)
    assert not waiting.is_alive() and len(results) == 1 and len(results[0].faces) == 1
