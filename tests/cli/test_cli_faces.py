"""``rfr faces``: one JSON line per file in argument order; bad files don't stop the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from service.config import Settings
from tests.conftest import PROJECT_ROOT, lfw_path


def run_rfr(args: list[str], settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "RFR_CACHE_DIR": str(settings.cache_dir),
        "RFR_DATA_DIR": str(settings.data_dir),
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def test_faces_prints_one_line_per_file_and_saves_embeddings(tmp_path: Path, settings: Settings) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    files = [
        str(lfw_path("Colin_Powell", 1)),
        str(bad),
        str(lfw_path("Jean_Chretien", 1)),  # two faces in this frame
        str(empty),
        str(tmp_path / "missing.jpg"),
        str(lfw_path("Serena_Williams", 1)),
    ]
    out = tmp_path / "emb.npy"
    result = run_rfr(["faces", *files, "--embeddings", str(out)], settings)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert [("error" in line) for line in lines] == [False, True, False, True, True, False]
    for line in lines:
        if "error" in line:
            assert line["error"]["code"] == "image_unreadable" and line["error"]["message"]
            continue
        for face in line["faces"]:
            assert set(face) == {"box", "landmarks", "det_score", "quality"}
            assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
            assert set(face["quality"]) == {"score", "usable", "reasons"}
    counts = [len(line.get("faces", [])) for line in lines]
    assert counts[0] == 1 and counts[2] == 2 and counts[5] == 1
    matrix = np.load(out)
    assert matrix.shape == (sum(counts), 128) and matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    # Row order follows print order: Colin Powell's row is closer to itself than to Serena's.
    assert float(matrix[0] @ matrix[-1]) < 0.5


def test_faces_with_unavailable_model_exits_with_model_unavailable(tmp_path: Path, settings: Settings) -> None:
    models = tmp_path / "models"
    models.mkdir()
    manifest = (PROJECT_ROOT / "models" / "yunet_sface.toml").read_text()
    (models / "yunet_sface.toml").write_text(manifest.replace("fb143eea07838aa5", "0000000000000000"))
    result = run_rfr(["faces", str(lfw_path("Colin_Powell", 1))], settings, RFR_MODELS_DIR=str(models))
    assert result.returncode == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "model_unavailable"
    assert "0000000000000000" in error["message"]
