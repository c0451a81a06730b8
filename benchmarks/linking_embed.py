"""Embeddings of LFW people with several images, through the production face pipeline (cached).

Used by ``benchmarks/linking.py``. Each image goes through ``FacePipeline.analyse`` (detect,
align, quality gate, embed); the named person's face is the detected face nearest the image
centre (``benchmarks.lfw_verification.choose_central``). The cache (``benchmarks/results/cache``,
never committed) holds, per image: person, image number, whether a face was found, the quality
verdict and the embedding.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import RESULTS_DIR, build_pipeline
from benchmarks.lfw_verification import choose_central
from service.embeddings.pipeline import FacePipeline


@dataclass(frozen=True, slots=True)
class LfwFaces:
    people: NDArray[np.str_]  # (n,) person of each image
    numbers: NDArray[np.int64]  # (n,) image number (1-based)
    found: NDArray[np.bool_]  # a face was detected
    usable: NDArray[np.bool_]  # the quality gate passed it
    embeddings: NDArray[np.float32]  # (n, dim); zeros where no face was found
    seconds: float


def people_with_several(root: Path, minimum: int = 2) -> dict[str, int]:
    names = root / "protocol" / "lfw-names.txt"
    out: dict[str, int] = {}
    for line in names.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and int(parts[1]) >= minimum:
            out[parts[0]] = int(parts[1])
    return out


def cache_path(root: Path, pack_id: str, people: dict[str, int]) -> Path:
    key = hashlib.sha256(f"{root.resolve()}|{pack_id}|{sorted(people.items())}".encode()).hexdigest()[:12]
    return RESULTS_DIR / "cache" / f"linking_lfw_{pack_id}_{key}.npz"


def embed_lfw(root: Path, people: dict[str, int], *, refresh: bool = False, progress: bool = True) -> LfwFaces:
    """Every image of ``people`` (name -> image count)."""
    pipeline = build_pipeline()
    keys = [(name, number) for name, count in sorted(people.items()) for number in range(1, count + 1)]
    return embed_images(root, keys, cache_path(root, pipeline.pack_id, people), pipeline, refresh, progress)


def embed_named_images(root: Path, keys: list[tuple[str, int]], tag: str, *, progress: bool = True) -> LfwFaces:
    """The images named by ``keys`` (e.g. those of pairs.txt), cached by the list."""
    pipeline = build_pipeline()
    digest = hashlib.sha256(f"{root.resolve()}|{pipeline.pack_id}|{sorted(keys)}".encode()).hexdigest()[:12]
    path = RESULTS_DIR / "cache" / f"linking_{tag}_{pipeline.pack_id}_{digest}.npz"
    return embed_images(root, sorted(set(keys)), path, pipeline, False, progress)


def embed_images(
    root: Path, keys: list[tuple[str, int]], path: Path, pipeline: FacePipeline, refresh: bool, progress: bool
) -> LfwFaces:
    if path.exists() and not refresh:
        data = np.load(path)
        return LfwFaces(
            data["people"],
            data["numbers"],
            data["found"],
            data["usable"],
            data["embeddings"],
            float(data["seconds"]),
        )
    dim = pipeline.manifest.embedding_dim
    names: list[str] = []
    numbers: list[int] = []
    found: list[bool] = []
    usable: list[bool] = []
    vectors: list[NDArray[np.float32]] = []
    start = time.perf_counter()
    for name, number in keys:
        image = pipeline.decode((root / name / f"{name}_{number:04d}.jpg").read_bytes())
        faces = pipeline.analyse(image).faces
        names.append(name)
        numbers.append(number)
        if not faces:
            found.append(False)
            usable.append(False)
            vectors.append(np.zeros(dim, np.float32))
            continue
        face = faces[choose_central([f.face.box for f in faces], image.shape[1], image.shape[0])]
        found.append(True)
        usable.append(face.quality.usable)
        vectors.append(face.embedding.astype(np.float32))
        if progress and len(names) % 500 == 0:
            rate = len(names) / (time.perf_counter() - start)
            sys.stderr.write(f"embedded {len(names)}/{len(keys)} images ({rate:.1f}/s)\n")
    seconds = time.perf_counter() - start
    result = LfwFaces(
        np.array(names),
        np.array(numbers, np.int64),
        np.array(found),
        np.array(usable),
        np.stack(vectors).astype(np.float32),
        seconds,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        people=result.people,
        numbers=result.numbers,
        found=result.found,
        usable=result.usable,
        embeddings=result.embeddings,
        seconds=np.float64(seconds),
    )
    tmp.replace(path)
    return result


def people_with_one(root: Path) -> list[tuple[str, int]]:
    """The first (only) image of every LFW person with a single image: distractors."""
    names = root / "protocol" / "lfw-names.txt"
    out = []
    for line in names.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and int(parts[1]) == 1:
            out.append((parts[0], 1))
    return out


if __name__ == "__main__":
    from benchmarks.common import DEFAULT_LFW_ROOT

    faces = embed_lfw(DEFAULT_LFW_ROOT, people_with_several(DEFAULT_LFW_ROOT))
    embed_named_images(DEFAULT_LFW_ROOT, people_with_one(DEFAULT_LFW_ROOT), "singles")
    sys.stdout.write(
        f"{len(faces.people)} images, {int(faces.found.sum())} with a face, {int(faces.usable.sum())} usable\n"
    )
