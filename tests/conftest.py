"""Shared fixtures: the real bundled model pack and real LFW faces from ../shared/datasets."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from service.config import Settings
from service.domain.faces import FaceRecord
from service.embeddings.pipeline import FacePipeline

# The database, gallery, users and tokens fixtures, for every folder that needs them.
pytest_plugins = ["tests.fixtures", "tests.clips"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LFW = (PROJECT_ROOT.parent / "shared" / "datasets" / "lfw").resolve()


def lfw_path(name: str, number: int) -> Path:
    return LFW / name / f"{name}_{number:04d}.jpg"


def lfw_bytes(name: str, number: int) -> bytes:
    return lfw_path(name, number).read_bytes()


def lfw_bgr(name: str, number: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(lfw_bytes(name, number), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image)


def cctv_still(name: str, number: int, side: int = 100) -> bytes:
    """A small, soft, heavily compressed copy of an LFW still: a poor CCTV frame (JPEG bytes)."""
    small = cv2.resize(lfw_bgr(name, number), (side, side), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.GaussianBlur(small, (3, 3), 0.8), [cv2.IMWRITE_JPEG_QUALITY, 38])
    assert ok
    return data.tobytes()


def far_too_small_still(name: str, number: int, side: int = 36) -> bytes:
    """An LFW face shrunk to ``side`` px in a grey 160 px frame: about 6 px between the eyes, below the
    floor where a search is worthless, so the gate stops it (PNG bytes)."""
    frame = Image.new("RGB", (160, 160), (128, 128, 128))
    frame.paste(lfw_rgb(name, number).resize((side, side), Image.Resampling.LANCZOS), (62, 62))
    return encode(frame, "PNG")


def lfw_rgb(name: str, number: int) -> Image.Image:
    return Image.open(lfw_path(name, number)).convert("RGB")


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def main_face(faces: list[FaceRecord], width: int = 250, height: int = 250) -> FaceRecord:
    """The face nearest the frame's centre (LFW's named person)."""
    cx, cy = width / 2, height / 2
    return min(
        faces,
        key=lambda f: (f.face.box[0] + f.face.box[2] / 2 - cx) ** 2 + (f.face.box[1] + f.face.box[3] / 2 - cy) ** 2,
    )


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW}: tests need ../shared/datasets/lfw beside the project")
    root = tmp_path_factory.mktemp("rfr")
    return Settings(data_dir=root / "data", cache_dir=root / "cache")


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> FacePipeline:
    return FacePipeline.from_settings(settings)


@pytest.fixture(scope="session")
def threshold(pipeline: FacePipeline) -> float:
    return pipeline.manifest.operating_threshold


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
