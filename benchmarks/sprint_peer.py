"""The sprint benchmark's peer: dlib HOG + ResNet (``benchmarks/dlib_peer.py``) on the same gallery and probes.

* :func:`peer_descriptors_job` — the peer's descriptors of gallery images (run in a child process
  while rfr enrols), kept across runs in a :class:`PeerStore` under ``benchmarks/results/cache``.
* :class:`PeerGallery` — the enrolled descriptors in a FAISS ``IndexFlatL2`` (exact euclidean distance).
* :func:`run_peer` — every prepared condition through the peer (a subsample of the probes: it is slow).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import degrade as deg
from benchmarks.common import RESULTS_DIR
from benchmarks.identification import Outcome, pick_probe_face
from benchmarks.sprint_probes import TOP_K, Prepared, log, timing_text

if TYPE_CHECKING:
    from benchmarks.dlib_peer import DlibPeer

PEER_THRESHOLD = 0.6  # face_recognition's default tolerance: euclidean distance between dlib descriptors
CACHE_DIR = RESULTS_DIR / "cache"

Descriptors = tuple[NDArray[np.float32], NDArray[np.bool_], float]  # descriptors, face found, seconds


def peer_tag() -> str:
    """A short hash of the peer's version and settings: the cache file's name changes with them."""
    from benchmarks import dlib_peer

    try:
        import dlib

        version = str(dlib.__version__)
    except ImportError:
        version = "none"
    text = f"dlib={version}|upsample={dlib_peer.UPSAMPLE}|jitters={dlib_peer.NUM_JITTERS}|nominal-centre-face"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def peer_descriptors_job(paths: list[str]) -> Descriptors:
    """The peer's descriptor of the face nearest each still's nominal centre (gallery images; child process)."""
    from benchmarks.dlib_peer import DlibPeer

    peer = DlibPeer()
    desc = np.zeros((len(paths), 128), np.float32)
    found = np.zeros(len(paths), bool)
    started = time.perf_counter()
    for i, name in enumerate(paths):
        rgb = peer.decode(Path(name).read_bytes())
        faces = peer.analyse(rgb)
        centre = deg.FaceGeometry.nominal(rgb.shape[1], rgb.shape[0]).centre
        pick = pick_probe_face([f.box for f in faces], centre)
        if pick is not None:
            desc[i] = faces[pick].descriptor
            found[i] = True
    return desc, found, time.perf_counter() - started


class PeerStore:
    """The peer's gallery descriptors per file, cached across runs (``benchmarks/results/cache``, not committed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, tuple[bool, NDArray[np.float32]]] = {}
        self.seconds_per_image: list[float] = []
        if path.exists():
            with np.load(path) as z:
                for name, ok, d in zip(z["paths"].tolist(), z["found"], z["desc"], strict=True):
                    self.rows[str(name)] = (bool(ok), d.astype(np.float32))
                self.seconds_per_image = [float(z["seconds_per_image"])]

    @classmethod
    def for_this_peer(cls) -> PeerStore:
        """The store of this dlib version and these peer settings."""
        return cls(CACHE_DIR / f"peer_descriptors_{peer_tag()}.npz")

    def missing(self, paths: Sequence[Path]) -> list[str]:
        return [str(p) for p in paths if str(p) not in self.rows]

    def add(self, paths: Sequence[str], desc: NDArray[np.float32], found: NDArray[np.bool_], seconds: float) -> None:
        for name, d, ok in zip(paths, desc, found, strict=True):
            self.rows[name] = (bool(ok), d)
        if paths:
            self.seconds_per_image.append(seconds / len(paths))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(self.rows)
        desc = np.stack([self.rows[n][1] for n in names]) if names else np.zeros((0, 128), np.float32)
        per = float(np.mean(self.seconds_per_image)) if self.seconds_per_image else 0.0
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(
            tmp,
            paths=np.array(names),
            found=np.array([self.rows[n][0] for n in names], bool),
            desc=desc,
            seconds_per_image=np.array(per),
        )
        os.replace(tmp, self.path)


@dataclass(slots=True)
class PeerGallery:
    references: list[str]
    index: Any  # faiss.IndexFlatL2 over the enrolled descriptors (faiss ships no type information)
    enrolled: int
    rejected: int

    @classmethod
    def build(cls, enrolled: dict[str, Path], store: PeerStore) -> PeerGallery:
        import faiss

        refs, rows, rejected = [], [], 0
        for person, path in enrolled.items():
            ok, d = store.rows[str(path)]
            if ok:
                refs.append(person)
                rows.append(d)
            else:
                rejected += 1
        index = faiss.IndexFlatL2(128)
        if rows:
            index.add(np.ascontiguousarray(np.stack(rows), dtype=np.float32))
        return cls(refs, index, len(refs), rejected)

    def search(self, descriptor: NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        if self.index.ntotal == 0:
            return []
        sq, ids = self.index.search(descriptor[None, :].astype(np.float32), min(k, self.index.ntotal))
        # Similarity-like scores: the negated euclidean distance (FAISS returns squared distances).
        pairs = zip(sq[0], ids[0], strict=True)
        return [(self.references[int(j)], -math.sqrt(max(float(d), 0.0))) for d, j in pairs if j >= 0]


def run_peer_condition(
    peer: DlibPeer, gallery: PeerGallery, cond: Prepared, limit: set[int]
) -> tuple[list[Outcome], dict[str, Any]]:
    outcomes = []
    started = time.perf_counter()
    count = 0
    for i, probe in enumerate(cond.probes):
        if i not in limit:
            continue
        count += 1
        o = Outcome(probe.key, probe.person, probe.mated)
        try:
            rgb = peer.decode(cond.data[i])
        except Exception as exc:  # PIL's errors vary by format
            o.error = f"decode: {exc}"
            outcomes.append(o)
            continue
        faces = peer.analyse(rgb)
        o.faces = len(faces)
        pick = pick_probe_face([f.box for f in faces], cond.expected[i])
        if pick is not None:
            o.found = o.usable = o.searched = True
            o.candidates = gallery.search(faces[pick].descriptor, TOP_K)
        outcomes.append(o)
    seconds = time.perf_counter() - started
    return outcomes, {
        "images": count,
        "end_to_end_s": round(seconds, 2),
        "images_per_s": round(count / seconds, 3) if seconds else None,
    }


def run_peer(
    store: PeerStore,
    enrolled: dict[str, Path],
    prepared: list[Prepared],
    results: list[dict[str, Any]],
    outcomes_by: dict[tuple[str, str], list[Outcome]],
    n_mated: int,
    *,
    peer_mated: int,
    peer_nonmated: int,
    cached: bool,
) -> dict[str, Any]:
    """The first ``peer_mated`` mated and ``peer_nonmated`` non-mated probes of each condition through the peer.

    Each condition's outcomes go in ``outcomes_by[("peer", name)]`` and its timing in its ``results``
    entry; returns the peer's set-up figures.
    """
    from benchmarks.dlib_peer import DlibPeer

    gallery = PeerGallery.build(enrolled, store)
    peer = DlibPeer()
    n_m = min(peer_mated, n_mated)
    n_n = min(peer_nonmated, len(prepared[0].probes) - n_mated) if prepared else 0
    subset = set(range(n_m)) | {n_mated + j for j in range(n_n)}
    total_images, total_s = 0, 0.0
    for cond, entry in zip(prepared, results, strict=True):
        outcomes, timing = run_peer_condition(peer, gallery, cond, subset)
        outcomes_by[("peer", cond.name)] = outcomes
        entry["peer_timing"] = timing
        total_images += timing["images"]
        total_s += timing["end_to_end_s"]
        log(f"peer {cond.name}: {timing_text(timing)}")
    per = float(np.mean(store.seconds_per_image)) if store.seconds_per_image else None
    return {
        "enrolled": gallery.enrolled,
        "rejected": gallery.rejected,
        "gallery_seconds_per_image": None if per is None else round(per, 4),
        "cached": cached,
        "mated": n_m,
        "nonmated": n_n,
        "images_per_s": round(total_images / total_s, 3) if total_s else None,
    }


def peer_units(summary: dict[str, Any]) -> dict[str, Any]:
    """Report the peer's thresholds as euclidean distances (they were negated to act as similarities)."""
    for key in ("fnir_at_fpir", "fnir_at_fpir_pooled"):
        for v in summary[key].values():
            if v["threshold"] is not None:
                v["threshold_distance"] = round(-v["threshold"], 5)
    return summary
