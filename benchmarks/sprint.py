"""Sprint benchmark: a whole retail sprint through the real service, clean and CCTV-degraded, with the peer.

What it does, end to end:

1. Splits a folder of identity folders (default ``../shared/datasets/lfw``) with a seed: one image
   per person (the first) in the custody gallery, except a held-out set of people; mated probes
   are other images of enrolled people (one per person, then a second round...), non-mated probes
   are images of held-out people.
2. Enrols the gallery with ``rfr gallery import --manifest`` into a fresh data directory, creates an
   analyst token with ``rfr users create ... --token --json`` when that command exists, and starts
   ``rfr serve`` on a free loopback port with ``RFR_SEARCH__TOP_K=50`` (NIST's investigation mode).
3. For each condition (``--degrade``: ``clean`` and CCTV-like levels, see ``benchmarks/degrade.py``)
   submits the probes as one submission over HTTP (``POST /submissions``, chunks of
   ``POST /submissions/{id}/images``), waits for ``status == "complete"`` and reads
   ``GET /submissions/{id}/results``. Images/s is measured from the first upload to completion.
4. Runs the peer (dlib HOG + ResNet, ``benchmarks/dlib_peer.py``) on the same gallery and the same
   degraded bytes (a subsample of the probes: it is slow), searched with FAISS.
5. Writes JSON + Markdown + PNG (CMC, DET) under ``benchmarks/results/``.

The probe face: LFW stills can show several people. The named person's face is the detected face
nearest to where it should be (the image centre for LFW, moved by any crop, rotation or
rescaling the degradation applied), and only if that point lies inside the face's box enlarged
1.5 times; otherwise the named person was not found (another face does not count, either way).

Run ``python -m benchmarks.sprint --help``; a default run takes about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import degrade as deg
from benchmarks.common import DEFAULT_LFW_ROOT, RESULTS_DIR, peak_rss_mib, stamp, write_json
from benchmarks.identification import (
    Outcome,
    Probe,
    by_group,
    list_identities,
    make_split,
    mated_probes,
    pick_probe_face,
    read_labels,
    summarise,
)

TOP_K = 50
PEER_THRESHOLD = 0.6  # face_recognition's default tolerance: euclidean distance between dlib descriptors
MET_SPRINT = {"supplied": 401, "usable": 302, "identifications": 149}
CACHE_DIR = RESULTS_DIR / "cache"


def log(message: str) -> None:
    sys.stderr.write(f"[sprint {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- the HTTP client: the only place that knows about authentication ----------------------------


class ApiError(RuntimeError):
    pass


class ApiClient:
    """A thin client for the rfr HTTP API. ``token`` (when the service has users) goes in every request."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 300.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.authenticated = token is not None

    def close(self) -> None:
        self._client.close()

    def _check(self, response: Any) -> Any:
        if response.status_code >= 400:
            raise ApiError(
                f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:500]}"
            )
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._check(self._client.get(path, params=params or None))

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._check(self._client.post(path, json=body))

    def post_files(self, path: str, files: list[tuple[str, bytes, str]], data: dict[str, str] | None = None) -> Any:
        parts = [("files", (name, payload, mime)) for name, payload, mime in files]
        return self._check(self._client.post(path, files=parts, data=data or {}))

    def wait_healthy(self, deadline_s: float, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        import httpx

        end = time.monotonic() + deadline_s
        last = ""
        while time.monotonic() < end:
            if process.poll() is not None:
                raise ApiError(f"rfr serve exited with status {process.returncode} before it was healthy")
            try:
                health: dict[str, Any] = self.get("/health")
                return health
            except (httpx.TransportError, ApiError) as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ApiError(f"rfr serve not healthy after {deadline_s:.0f} s: {last}")


# -- driving the CLI and the server ---------------------------------------------------------------


@dataclass(slots=True)
class Service:
    rfr: list[str]
    data_dir: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.rfr, "--data-dir", str(self.data_dir), *args]
        return subprocess.run(cmd, env=self.env, text=True, capture_output=capture, check=check)

    @contextmanager
    def serve(self, log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        port = free_port()
        cmd = [*self.rfr, "--data-dir", str(self.data_dir), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as fh:
            proc = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
            try:
                yield f"http://127.0.0.1:{port}", proc
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


def _timing_text(timing: dict[str, Any]) -> str:
    return f"{timing['images']} images in {timing['end_to_end_s']} s ({timing['images_per_s']} images/s)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def obtain_token(service: Service) -> tuple[str | None, str]:
    """An analyst token from ``rfr users create NAME --role analyst --token --json``, or none without that command.

    The password goes in on standard input (``--password-stdin`` when the CLI has it), so nothing
    waits on a terminal prompt.
    """
    import secrets

    password = secrets.token_urlsafe(24)
    name = f"sprint-benchmark-{secrets.token_hex(3)}"
    base = ["users", "create", name, "--role", "analyst", "--token", "--json"]
    attempts = [([*base, "--password-stdin"], f"{password}\n"), (base, f"{password}\n{password}\n")]
    last = ""
    for args, stdin in attempts:
        cmd = [*service.rfr, "--data-dir", str(service.data_dir), *args]
        try:
            done = subprocess.run(cmd, env=service.env, input=stdin, text=True, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"no token ({exc})"
        if done.returncode == 0:
            for line in reversed(done.stdout.strip().splitlines()):
                try:
                    payload = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(payload, dict) and payload.get("token"):
                    return str(payload["token"]), f"analyst token from `rfr users create ... {' '.join(args[3:])}`"
            return None, "no token: rfr users create printed no JSON with a token"
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else ""
        if "--password-stdin" not in last:
            break  # the command itself is missing or failed: no point in the second form
    return None, f"no token, requests sent without Authorization (rfr users create failed: {last})"


def _import_round(service: Service, batch: dict[str, Path], root: Path, manifest: Path) -> dict[str, Any]:
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "custody_reference", "source", "lawful_basis", "conviction_status"])
        for person, path in batch.items():
            writer.writerow([str(path), person, f"benchmark: {root.name}", "benchmark (public dataset)", "unknown"])
    cmd = [*service.rfr, "--data-dir", str(service.data_dir), "gallery", "import", "--manifest", str(manifest)]
    # stdout (the JSON summary) is parsed; stderr (the progress bar) shows on ours.
    done = subprocess.run([*cmd, "--json"], env=service.env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rfr gallery import failed with status {done.returncode}: {done.stdout[-2000:]}")
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            summary: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        return summary
    raise SystemExit("rfr gallery import --json printed no summary")


def enrol_gallery(
    service: Service, people: dict[str, list[Path]], gallery_people: list[str], root: Path, work: Path, attempts: int
) -> tuple[dict[str, Any], dict[str, Path]]:
    """``rfr gallery import --manifest`` of each person's first image; a rejected person's next image is
    tried in a further round (up to ``attempts`` images), as a custody suite would re-take a photograph.

    Returns the enrolment summary and ``{person: enrolled image}``.
    """
    next_image = dict.fromkeys(gallery_people, 0)
    enrolled: dict[str, Path] = {}
    rounds = []
    first_reasons: dict[str, int] = {}
    started = time.perf_counter()
    for attempt in range(attempts):
        batch = {p: people[p][i] for p, i in next_image.items() if i < len(people[p])}
        if not batch:
            break
        t0 = time.perf_counter()
        summary = _import_round(service, batch, root, work / f"gallery-{attempt + 1}.csv")
        rejected = {item.get("custody_reference", ""): item.get("code", "?") for item in summary["rejected_images"]}
        for person, path in batch.items():
            if person not in rejected:
                enrolled[person] = path
        if attempt == 0:
            for code in rejected.values():
                first_reasons[code] = first_reasons.get(code, 0) + 1
        next_image = {p: next_image[p] + 1 for p in rejected if p in next_image}
        rounds.append({"images": len(batch), "rejected": len(rejected), "seconds": round(time.perf_counter() - t0, 1)})
        log(f"enrolment round {attempt + 1}: {len(batch)} images, {len(rejected)} rejected")
    seconds = time.perf_counter() - started
    images = sum(r["images"] for r in rounds)
    info = {
        "people": len(gallery_people),
        "enrolled": len(enrolled),
        "not_enrolled": len(gallery_people) - len(enrolled),
        "first_image_rejected": sum(first_reasons.values()),
        "first_image_rejected_reasons": first_reasons,
        "rounds": rounds,
        "images_tried": images,
        "seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 2) if seconds else None,
    }
    return info, enrolled


# -- probes and conditions ------------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """One condition's probe files, ready to upload (and to hand to the peer)."""

    name: str
    description: str
    probes: list[Probe]
    data: list[bytes]
    expected: list[tuple[float, float]]  # where the named face's centre is, per probe
    seconds: float


def prepare_condition(name: str, probes: Sequence[Probe], seed: int) -> Prepared:
    steps = deg.parse_condition(name)
    started = time.perf_counter()
    data, expected = [], []
    for probe in probes:
        raw = probe.path.read_bytes()
        out = deg.degrade_file(raw, steps, deg.probe_rng(seed, name, probe.key))
        data.append(out.data)
        expected.append(out.face.centre)
    return Prepared(name, deg.describe(steps), list(probes), data, expected, time.perf_counter() - started)


def _mime(data: bytes) -> tuple[str, str]:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg", "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png", "image/png"
    return ".bin", "application/octet-stream"


def gated(o: Outcome) -> Outcome:
    """The outcome as the quality gate would leave it: a poor face is kept but not searched."""
    if o.usable:
        return o
    return replace(o, searched=False, candidates=[])


def run_service_condition(
    client: ApiClient, cond: Prepared, index: int, chunk: int, search_poor: bool, poll_s: float
) -> tuple[list[Outcome], dict[str, Any]]:
    """One submission per condition; returns per-probe outcomes and timings."""
    created = client.post_json(
        "/submissions",
        {
            "case_reference": f"BENCH/{index:02d}/{cond.name}"[:128],
            "purpose": "accuracy benchmark on public data (benchmarks/sprint.py)",
            "submitted_by": "sprint-benchmark",
            "search_poor_faces": search_poor,
        },
    )
    sid = int(created["id"])
    image_probe: dict[int, int] = {}
    started = time.perf_counter()
    for lo in range(0, len(cond.probes), chunk):
        files = []
        for i in range(lo, min(lo + chunk, len(cond.probes))):
            suffix, mime = _mime(cond.data[i])
            files.append((f"probe-{i:05d}{suffix}", cond.data[i], mime))  # no identity in the name
        accepted = client.post_files(f"/submissions/{sid}/images", files, {"retailer": "benchmark"})
        for offset, image_id in enumerate(accepted["image_ids"]):
            image_probe[int(image_id)] = lo + offset
    uploaded = time.perf_counter() - started
    status: dict[str, Any] = {}
    while True:
        status = client.get(f"/submissions/{sid}")
        if status["status"] == "complete":
            break
        time.sleep(poll_s)
    seconds = time.perf_counter() - started
    results = client.get(f"/submissions/{sid}/results")
    read_s = time.perf_counter() - started - seconds
    outcomes: list[Outcome | None] = [None] * len(cond.probes)
    top_k_seen = 0
    threshold: float | None = None
    for image in results["images"]:
        found_i = image_probe.get(int(image["id"]))
        if found_i is None:
            continue
        i = found_i
        probe = cond.probes[i]
        o = Outcome(probe.key, probe.person, probe.mated)
        faces = image.get("faces") or []
        o.faces = len(faces)
        if image.get("error"):
            o.error = f"{image['error'].get('code')}: {image['error'].get('message')}"
        pick = pick_probe_face([f["box"] for f in faces], cond.expected[i])
        if pick is not None:
            face = faces[pick]
            o.found = True
            o.usable = bool(face["quality"]["usable"])
            o.searched = bool(face["searched"])
            o.reasons = list(face["quality"]["reasons"])
            o.candidates = [(c["custody_reference"], float(c["score"])) for c in face["candidates"]]
            top_k_seen = max(top_k_seen, len(o.candidates))
            if face.get("threshold") is not None:
                threshold = float(face["threshold"])
        outcomes[i] = o
    missing = [cond.probes[i].key for i, o in enumerate(outcomes) if o is None]
    if missing:
        raise ApiError(f"submission {sid}: {len(missing)} probes missing from the results, e.g. {missing[:3]}")
    timing = {
        "submission_id": sid,
        "images": len(cond.probes),
        "upload_s": round(uploaded, 2),
        "end_to_end_s": round(seconds, 2),
        "images_per_s": round(len(cond.probes) / seconds, 3),
        "results_read_s": round(read_s, 2),
        "progress": status.get("progress"),
        "top_k_seen": top_k_seen,
        "threshold": threshold,
    }
    return [o for o in outcomes if o is not None], timing


# -- the peer --------------------------------------------------------------------------------------


def _peer_tag() -> str:
    from benchmarks import dlib_peer

    try:
        import dlib

        version = str(dlib.__version__)
    except ImportError:
        version = "none"
    text = f"dlib={version}|upsample={dlib_peer.UPSAMPLE}|jitters={dlib_peer.NUM_JITTERS}|nominal-centre-face"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def peer_descriptors_job(paths: list[str]) -> tuple[NDArray[np.float32], NDArray[np.bool_], float]:
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
    index: Any  # faiss.IndexFlatL2 over the enrolled descriptors
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
    peer: Any, gallery: PeerGallery, cond: Prepared, limit: set[int]
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


# -- report ----------------------------------------------------------------------------------------


def _pct(k: int | None, n: int | None) -> str:
    if k is None or not n:
        return "–"
    return f"{k} ({100.0 * k / n:.0f}%)"


def _r(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100.0 * x:.{digits}f}%"


SYSTEMS = [
    ("rfr", "rfr (YuNet+SFace)"),
    ("rfr_nogate", "rfr, quality gate off"),
    ("peer", "peer (dlib HOG+ResNet)"),
]


def _met_table(payload: dict[str, Any], columns: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    head = " | ".join(f"{s} {c['name']}" for s, _, c in columns)
    lines = [f"| | Met, Oct 2023 | {head} |", "|---|---|" + "---|" * len(columns)]

    def row(title: str, met: str, fn: Any) -> None:
        lines.append(f"| {title} | {met} | " + " | ".join(fn(c["systems"][s]) for s, _, c in columns) + " |")

    def of_supplied(m: dict[str, Any], k: int) -> str:
        return _pct(k, m["images"]["supplied"])

    row("images supplied", "401", lambda m: str(m["images"]["supplied"]))
    row("images with a face", "–", lambda m: of_supplied(m, m["images"]["with_a_face"]))
    row("usable (probe face searched)", "302 (75%)", lambda m: of_supplied(m, m["images"]["searched"]))
    row(
        "true person listed above threshold (a reviewer can confirm)",
        "149 (37%) positive identifications",
        lambda m: of_supplied(m, m["mated"]["listed_above_threshold"]),
    )
    row(
        "not enrolled, yet a candidate above threshold",
        "–",
        lambda m: of_supplied(m, m["nonmated"]["any_candidate_above_threshold"]),
    )
    cfg = payload["config"]
    lines += [
        "",
        "The Met's probes were all real CCTV; how many showed enrolled people is not public. Here "
        f"{cfg['mated']} of each rfr column's images show an enrolled person and {cfg['nonmated']} do not "
        "(the peer ran on a subsample, see below). Percentages are of images supplied.",
    ]
    return lines


def _condition_row(label: str, name: str, m: dict[str, Any]) -> str:
    mated, nm, images = m["mated"], m["nonmated"], m["images"]
    n, supplied = mated["n"], images["supplied"]

    def fnir(target: str) -> str:
        v, pooled = m["fnir_at_fpir"][target], m["fnir_at_fpir_pooled"][target]
        return f"{_r(v['fnir'])}{'' if v['resolved'] else '*'} / {_r(pooled['fnir'])}"

    cells = [
        label,
        name,
        str(supplied),
        _pct(images["with_a_face"], supplied),
        _pct(images["probe_face_found"], supplied),
        _pct(images["usable"], supplied),
        _pct(mated["rank1"], n),
        _pct(mated["top10"], n),
        _pct(mated["top50"], n),
        _pct(mated["rank1_above_threshold"], n),
        _pct(mated["listed_above_threshold"], n),
        _pct(nm["any_candidate_above_threshold"], nm["n"]),
        _pct(mated["wrong_candidate_above_threshold"], n),
        fnir("0.01"),
        fnir("0.003"),
        str(m["timing"]["images_per_s"]),
    ]
    return "| " + " | ".join(cells) + " |"


CONDITION_HEADER = [
    "system",
    "condition",
    "supplied",
    "with a face",
    "named face found",
    "usable",
    "rank 1",
    "top 10",
    "top 50",
    "rank 1 ≥ thr",
    "listed ≥ thr",
    "FPIR at thr",
    "wrong cand. ≥ thr (mated)",
    "FNIR @ FPIR 1%",
    "FNIR @ FPIR 0.3%",
    "images/s",
]


def _fairness_lines(payload: dict[str, Any], conds: list[dict[str, Any]]) -> list[str]:
    fairness = payload.get("fairness")
    if not fairness:
        return [
            "No per-person demographic labels were supplied (`--labels FILE.csv` with `name,sex,age_band,...`), "
            "so FNIR and FPIR are not broken down by group. LFW carries no such labels.",
        ]
    lines = [
        f"Labels from `{fairness['labels_file']}`. FNIR: the true person not listed above the threshold; "
        "FPIR: a non-mated search with a candidate above it. Groups under 20 searches are marked *small*.",
    ]
    for c in conds:
        for s, label in SYSTEMS:
            groups = c.get("fairness", {}).get(s)
            if not groups:
                continue
            lines += ["", f"**{label}, {c['name']}**", ""]
            lines += [
                "| label | group | mated | FNIR | rank-1 miss | non-mated | FPIR |",
                "|---|---|---|---|---|---|---|",
            ]
            for column, values in groups.items():
                for value, g in values.items():
                    small = " *small*" if g["small_sample"] else ""
                    cells = [column, value + small, str(g["mated"]), _r(g["fnir"]), _r(g["rank1_miss"])]
                    cells += [str(g["nonmated"]), _r(g["fpir"])]
                    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _setup_lines(payload: dict[str, Any]) -> list[str]:
    setup, cfg = payload["setup"], payload["config"]
    g = setup["gallery"]
    lines = [
        f"* Gallery enrolment (`rfr gallery import --manifest`): {g['enrolled']} of {g['people']} people enrolled "
        f"in {g['seconds']} s ({g['images_per_s']} images/s over {g['images_tried']} images tried). Each person's "
        f"first image was rejected for {g['first_image_rejected']} people ({g['first_image_rejected_reasons']}); "
        f"their next image was tried (rounds: {g['rounds']}).",
        f"* Authentication: {setup['auth']}.",
        f"* Probes per condition: {cfg['mated']} mated (other images of enrolled people, one per person first) and "
        f"{cfg['nonmated']} non-mated (images of held-out people); degradations apply to probes only, seeded per "
        "probe and condition.",
        f"* Probe face: {cfg['probe_face_rule']}.",
    ]
    peer = setup.get("peer")
    if peer:
        lines.append(
            "* Peer: dlib HOG (upsample 1) + 5-point landmarks + ResNet descriptor (face_recognition's pipeline), "
            "searched with FAISS `IndexFlatL2`: exact euclidean distance, dlib's native metric, so its own "
            f"threshold {PEER_THRESHOLD} keeps its meaning (scores are negated distances). Gallery: "
            f"{peer['enrolled']} enrolled (the same images as rfr), {peer['rejected']} with no face near the centre, "
            f"{peer['gallery_seconds_per_image']} s per image (descriptors cached per file). Probes: the first "
            f"{peer['mated']} mated and {peer['nonmated']} non-mated of each condition (a random subsample of "
            "rfr's). The peer has no quality gate: every named face found is searched."
        )
    lines.append(f"* Wall time {setup['wall_s']:.0f} s; peak RSS of this process {setup['peak_rss_mib']:.0f} MiB.")
    if setup.get("full_run_estimate"):
        lines.append(f"* {setup['full_run_estimate']}")
    lines += [f"* {note}" for note in payload.get("notes", [])]
    return lines


def markdown(payload: dict[str, Any]) -> str:
    conds = payload["conditions"]
    columns = [(s, label, c) for s, label in SYSTEMS for c in conds if c["systems"].get(s)]
    met_columns = [col for col in columns if col[0] != "rfr_nogate"]
    cfg, st = payload["config"], payload["stamp"]
    dirty = " (uncommitted changes)" if st["git_dirty"] else ""
    lines = [
        "# Sprint benchmark",
        "",
        f"Dataset `{cfg['dataset']}`: gallery {cfg['gallery_people']} people (one image each), "
        f"{cfg['held_out_people']} people held out; seed {cfg['seed']}; server top-k {TOP_K}; rfr operating "
        f"threshold {payload['rfr_threshold']} (cosine), peer {PEER_THRESHOLD} (euclidean). Commit "
        f"`{st['git_commit'][:12]}`{dirty}, pack `{st['pack_id']}`, {st['date_utc']}.",
        "",
        "## Beside the Met's first retail sprint",
        "",
        *_met_table(payload, met_columns),
        "",
        "## Per condition",
        "",
        "| " + " | ".join(CONDITION_HEADER) + " |",
        "|" + "---|" * len(CONDITION_HEADER),
        *[_condition_row(label, c["name"], c["systems"][s]) for s, label, c in columns],
        "",
        "Rank and threshold columns are of mated searches (misses include images where the named face was not "
        "found or not usable); FPIR is of non-mated searches. *FNIR @ FPIR* reads *held-out / pooled*: held-out "
        "uses the non-mated probes only (`*`: the target is below 1/n, not resolved by the sample); pooled adds "
        "each mated search with its mate removed (its best wrong candidate: a non-mated search at gallery size "
        "N-1). *wrong cand. ≥ thr (mated)*: mated searches whose best wrong candidate clears the threshold.",
    ]
    if cfg.get("extra_thresholds"):
        lines += ["", "## At other thresholds (recomputed from the returned scores)", ""]
        lines += ["| system | condition | threshold | FPIR | FNIR | rank 1 ≥ thr | wrong cand. ≥ thr |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for s, label, c in columns:
            for t, v in c["systems"][s]["at_thresholds"].items():
                cells = [label, c["name"], t, _r(v["fpir"]), _r(v["fnir"]), _r(v["rank1_above"])]
                lines.append("| " + " | ".join([*cells, _r(v["wrong_candidate_above"])]) + " |")
    lines += ["", "## Conditions", ""]
    for c in conds:
        lines.append(f"* **{c['name']}**: {c['description']}")
        rfr = c["systems"].get("rfr")
        if rfr and rfr["poor_face_reasons"]:
            reasons = ", ".join(f"{k} {v}" for k, v in rfr["poor_face_reasons"].items())
            lines.append(f"  (rfr quality-gate reasons on named faces found: {reasons})")
    lines += ["", "## Fairness (R5)", "", *_fairness_lines(payload, conds)]
    lines += ["", "## Set-up and timings", "", *_setup_lines(payload)]
    plots = payload.get("plots", {})
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{k}]({Path(v).name})" for k, v in plots.items()) + "."]
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], out_prefix: Path) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    paths = {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"rfr": "-", "rfr_nogate": ":", "peer": "--"}
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, c in enumerate(payload["conditions"]):
        for s, m in c["systems"].items():
            if m and m["cmc"]:
                ax.plot(
                    range(1, len(m["cmc"]) + 1),
                    m["cmc"],
                    styles[s],
                    color=colours[i % len(colours)],
                    label=f"{s} {c['name']}",
                )
    ax.set_xscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (true person within rank)")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("CMC (no threshold, investigation mode)")
    ax.legend(fontsize=8)
    path = out_prefix.with_name(out_prefix.name + "_cmc.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths["CMC"] = str(path)

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, c in enumerate(payload["conditions"]):
        for s, m in c["systems"].items():
            if not m:
                continue
            det = m["det"]
            fpir = np.array(det["fpir"])
            fnir = np.array(det["fnir"])
            ok = fpir > 0
            if ok.any():
                ax.plot(fpir[ok], fnir[ok], styles[s], color=colours[i % len(colours)], label=f"{s} {c['name']}")
    ax.set_xscale("log")
    ax.set_xlabel("FPIR (non-mated searches with a candidate above threshold)")
    ax.set_ylabel("FNIR (mated searches without the true person above threshold)")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("DET (held-out non-mated searches)")
    ax.legend(fontsize=8)
    path = out_prefix.with_name(out_prefix.name + "_det.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths["DET"] = str(path)
    return paths


# -- main ------------------------------------------------------------------------------------------


def _rfr_command(args: argparse.Namespace) -> list[str]:
    if args.rfr:
        return shlex.split(args.rfr)
    return [sys.executable, "-m", "service.cli"]


def _service_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RFR_DATA_DIR"] = str(data_dir)
    env["RFR_SEARCH__TOP_K"] = str(TOP_K)
    env.pop("RFR_DATABASE_URL", None)  # a fresh SQLite database in the fresh data directory
    if args.service_src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.service_src).resolve()), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", type=Path, default=DEFAULT_LFW_ROOT, help="folder of identity folders")
    p.add_argument("--seed", type=int, default=20231001)
    p.add_argument("--held-out", type=int, default=200, help="people kept out of the gallery (non-mated)")
    p.add_argument(
        "--gallery-size", type=int, default=2000, help="enrol this many people (0: all but the held-out, 5,549 on LFW)"
    )
    p.add_argument("--mated", type=int, default=200, help="mated probes per condition")
    p.add_argument("--nonmated", type=int, default=200, help="non-mated probes per condition")
    p.add_argument(
        "--degrade",
        default="clean,mild,moderate,severe",
        help="comma-separated conditions: presets (clean, mild, moderate, severe) or chains, see benchmarks/degrade.py",
    )
    p.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also run the dlib peer")
    p.add_argument(
        "--peer-mated", type=int, default=100, help="mated probes per condition for the peer (a prefix of ours)"
    )
    p.add_argument("--peer-nonmated", type=int, default=100, help="non-mated probes per condition for the peer")
    p.add_argument("--labels", type=Path, help="CSV name,<label>,... per person for the fairness breakdown (R5)")
    p.add_argument("--thresholds", default="", help="extra rfr thresholds (comma-separated) to recompute metrics at")
    p.add_argument(
        "--search-poor-faces", action="store_true", help="report with the poor-face override on (R9), not the gate"
    )
    p.add_argument(
        "--gate-analysis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="submit with search_poor_faces so poor faces are searched too (recorded per face), then report the "
        "operational figures with the gate's verdict applied and, beside them, what searching every face would give",
    )
    p.add_argument("--chunk", type=int, default=25, help="files per upload request")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between progress polls")
    p.add_argument("--work-dir", type=Path, help="where the fresh data directory goes (default: a temporary folder)")
    p.add_argument(
        "--keep-data-dir", action="store_true", help="keep the data directory (e.g. for calibrate.py --data-dir)"
    )
    p.add_argument("--rfr", help="command that runs the CLI (default: this Python's `-m service.cli`)")
    p.add_argument("--service-src", help="put this source tree first on PYTHONPATH for the service processes")
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "sprint", help="output prefix (.json, .md, _cmc.png, _det.png)"
    )
    p.add_argument("--no-peer-cache", action="store_true", help="recompute the peer's gallery descriptors")
    p.add_argument("--render", type=Path, help="only re-write the Markdown and plots of this results JSON")
    p.add_argument("--enrol-attempts", type=int, default=3, help="images tried per gallery person until one enrols")
    return p


def render(path: Path) -> int:
    """Re-write the Markdown and the plots of an existing results JSON (no benchmark is run)."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    prefix = path.with_suffix("")
    payload["plots"] = plot(payload, prefix)
    path.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    sys.stdout.write(markdown(payload))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        return render(args.render)
    wall0 = time.perf_counter()
    root = args.dataset.resolve()
    people = list_identities(root)
    split = make_split(root, people, args.seed, args.held_out, args.gallery_size or None, args.nonmated)
    log(f"{len(people)} people; gallery {len(split.gallery_people)}, held out {len(split.held_out)}")
    conditions = [c.strip() for c in args.degrade.split(",") if c.strip()]
    for c in conditions:
        deg.parse_condition(c)  # fail early on a typo
    extra = [float(t) for t in args.thresholds.split(",") if t.strip()]
    labels = read_labels(args.labels) if args.labels else None

    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rfr-sprint-", dir=args.work_dir))
    data_dir = work / "data"
    service = Service(_rfr_command(args), data_dir, _service_env(args, data_dir))
    notes = list(split.notes)

    # The peer's gallery descriptors (each person's first image; cached per file) are computed in a
    # child process while rfr enrols; the timed part starts only once both are done.
    store = PeerStore(CACHE_DIR / f"peer_descriptors_{_peer_tag()}.npz") if args.peer else None
    if store is not None and args.no_peer_cache:
        store.rows.clear()
    pool: concurrent.futures.ProcessPoolExecutor | None = None
    peer_future: concurrent.futures.Future[tuple[NDArray[np.float32], NDArray[np.bool_], float]] | None = None
    peer_first: list[str] = []
    if store is not None:
        peer_first = store.missing([people[p][0] for p in split.gallery_people])
        if peer_first:
            pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            peer_future = pool.submit(peer_descriptors_job, peer_first)
            log(f"peer: describing {len(peer_first)} gallery images in a child process")

    results: list[dict[str, Any]] = []
    outcomes_by: dict[tuple[str, str], list[Outcome]] = {}
    health: dict[str, Any] = {}
    rfr_threshold: float | None = None
    peer_info: dict[str, Any] | None = None
    try:
        log(f"enrolling {len(split.gallery_people)} people with rfr gallery import into {data_dir}")
        gallery_info, enrolled = enrol_gallery(service, people, split.gallery_people, root, work, args.enrol_attempts)
        if gallery_info["not_enrolled"]:
            notes.append(
                f"{gallery_info['not_enrolled']} gallery people had no image rfr would enrol: they are neither in "
                "the gallery nor probed"
            )
        mated, _ = mated_probes(root, people, enrolled, args.mated, args.seed)
        probes = mated + split.nonmated
        log(f"gallery {len(enrolled)} enrolled; {len(mated)} mated / {len(split.nonmated)} non-mated probes")
        token, auth_note = obtain_token(service)
        log(auth_note)

        if store is not None:
            if peer_future is not None:
                log("waiting for the peer's gallery descriptors")
                store.add(peer_first, *peer_future.result())
            substitutes = store.missing(list(enrolled.values()))
            if substitutes:
                store.add(substitutes, *peer_descriptors_job(substitutes))
            store.save()

        prepared = []
        for c in conditions:
            cond = prepare_condition(c, probes, args.seed)
            prepared.append(cond)
            log(f"prepared {c}: {len(cond.data)} probes in {cond.seconds:.1f} s")

        with service.serve(work / "serve.log") as (url, proc):
            client = ApiClient(url, token)
            try:
                health = client.wait_healthy(300.0, proc)
                log(f"rfr serve healthy at {url}: {health}")
                for i, cond in enumerate(prepared):
                    override = args.search_poor_faces or args.gate_analysis
                    outcomes, timing = run_service_condition(client, cond, i, args.chunk, override, args.poll)
                    if args.gate_analysis and not args.search_poor_faces:
                        outcomes_by[("rfr_nogate", cond.name)] = outcomes
                        outcomes = [gated(o) for o in outcomes]
                    if timing["threshold"] is not None:
                        rfr_threshold = timing["threshold"]
                    outcomes_by[("rfr", cond.name)] = outcomes
                    results.append({"name": cond.name, "description": cond.description, "rfr_timing": timing})
                    log(f"rfr {cond.name}: {_timing_text(timing)}")
                    if 0 < timing["top_k_seen"] < TOP_K < len(enrolled):
                        notes.append(f"{cond.name}: the service returned at most {timing['top_k_seen']} candidates")
            finally:
                client.close()

        if store is not None:
            peer_info = run_peer(store, enrolled, prepared, results, outcomes_by, len(mated), args)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if not args.keep_data_dir:
            shutil.rmtree(work, ignore_errors=True)

    if rfr_threshold is None:
        from service.config import Settings
        from service.embeddings.packs import load_manifest

        settings = Settings()
        rfr_threshold = float(load_manifest(settings.models_dir, settings.pack).operating_threshold)
        notes.append("no searched face reported its threshold; used the pack manifest's")

    conditions_out = summarise_all(results, outcomes_by, rfr_threshold, extra, labels)
    probe_rates = [e["rfr_timing"]["images_per_s"] for e in results]
    full = None
    if gallery_info.get("images_per_s") and probe_rates:
        # The whole dataset: every person but the held-out enrolled, every other image probed.
        held = set(split.held_out)
        gallery_all = len(people) - len(held)
        mated_all = sum(len(v) - 1 for k, v in people.items() if k not in held)
        nonmated_all = sum(len(people[k]) for k in held)
        rate = float(np.mean(probe_rates))
        hours = (
            gallery_all / gallery_info["images_per_s"] + len(conditions) * (mated_all + nonmated_all) / rate
        ) / 3600
        full = (
            f"A full run (gallery of all {gallery_all} people not held out, all {mated_all} mated and {nonmated_all} "
            f"non-mated images, {len(conditions)} conditions) would take about {hours:.1f} h for rfr at this run's "
            f"rates ({gallery_info['images_per_s']} enrolments/s, {rate:.1f} probe images/s)"
        )
        if peer_info and peer_info.get("images_per_s") and peer_info.get("gallery_seconds_per_image"):
            peer_hours = (
                gallery_all * peer_info["gallery_seconds_per_image"]
                + len(conditions) * (mated_all + nonmated_all) / peer_info["images_per_s"]
            ) / 3600
            full += f", plus about {peer_hours:.1f} h for the peer"
        full += "."
    payload: dict[str, Any] = {
        "stamp": stamp(str(health.get("pack_id", "unknown")), benchmark="sprint", load_average_1_5_15=os.getloadavg()),
        "config": {
            "dataset": str(root),
            "seed": args.seed,
            "gallery_people": len(enrolled),
            "held_out_people": len(split.held_out),
            "mated": len(mated),
            "nonmated": len(split.nonmated),
            "conditions": conditions,
            "top_k": TOP_K,
            "search_poor_faces": args.search_poor_faces,
            "gate_analysis": args.gate_analysis and not args.search_poor_faces,
            "extra_thresholds": extra,
            "probe_face_rule": "the detected face nearest the named face's expected centre (the image centre, moved "
            "by the degradation's crop, rotation or rescaling), if that point lies inside the face box enlarged 1.5x",
            "gallery_image_rule": f"each person's first image (file-name order) that rfr accepts, up to "
            f"{args.enrol_attempts} tried; the peer enrols the same image",
        },
        "rfr_threshold": rfr_threshold,
        "peer_threshold_euclidean": PEER_THRESHOLD,
        "met_sprint": MET_SPRINT,
        "setup": {
            "gallery": gallery_info,
            "auth": auth_note,
            "health": health,
            "peer": peer_info,
            "wall_s": time.perf_counter() - wall0,
            "peak_rss_mib": peak_rss_mib(),
            "full_run_estimate": full,
        },
        "conditions": conditions_out,
        "fairness": {"labels_file": labels[0]} if labels else None,
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload["plots"] = plot(payload, args.out)
    write_json(args.out.with_suffix(".json"), payload)
    args.out.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    if args.keep_data_dir:
        log(f"data directory kept at {data_dir}")
    log(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    sys.stdout.write(markdown(payload))
    return 0


def run_peer(
    store: PeerStore,
    enrolled: dict[str, Path],
    prepared: list[Prepared],
    results: list[dict[str, Any]],
    outcomes_by: dict[tuple[str, str], list[Outcome]],
    n_mated: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from benchmarks.dlib_peer import DlibPeer

    gallery = PeerGallery.build(enrolled, store)
    peer = DlibPeer()
    n_m = min(args.peer_mated, n_mated)
    n_n = min(args.peer_nonmated, len(prepared[0].probes) - n_mated) if prepared else 0
    subset = set(range(n_m)) | {n_mated + j for j in range(n_n)}
    total_images, total_s = 0, 0.0
    for cond, entry in zip(prepared, results, strict=True):
        outcomes, timing = run_peer_condition(peer, gallery, cond, subset)
        outcomes_by[("peer", cond.name)] = outcomes
        entry["peer_timing"] = timing
        total_images += timing["images"]
        total_s += timing["end_to_end_s"]
        log(f"peer {cond.name}: {_timing_text(timing)}")
    per = float(np.mean(store.seconds_per_image)) if store.seconds_per_image else None
    return {
        "enrolled": gallery.enrolled,
        "rejected": gallery.rejected,
        "gallery_seconds_per_image": None if per is None else round(per, 4),
        "cached": not args.no_peer_cache,
        "mated": n_m,
        "nonmated": n_n,
        "images_per_s": round(total_images / total_s, 3) if total_s else None,
    }


def summarise_all(
    results: list[dict[str, Any]],
    outcomes_by: dict[tuple[str, str], list[Outcome]],
    rfr_threshold: float,
    extra: list[float],
    labels: tuple[str, dict[str, dict[str, str]]] | None,
) -> list[dict[str, Any]]:
    thresholds = {"rfr": rfr_threshold, "peer": -PEER_THRESHOLD}
    out = []
    for entry in results:
        systems: dict[str, Any] = {}
        fairness: dict[str, Any] = {}
        for system in ("rfr", "rfr_nogate", "peer"):
            outcomes = outcomes_by.get((system, entry["name"]))
            if outcomes is None:
                continue
            kind = "peer" if system == "peer" else "rfr"
            summary = summarise(outcomes, thresholds[kind], TOP_K, extra_thresholds=extra if kind == "rfr" else [])
            if system == "peer":
                summary = _peer_units(summary)
            summary["timing"] = entry[f"{kind}_timing"]
            summary["probes"] = [o.to_dict() for o in outcomes]
            systems[system] = summary
            if labels:
                fairness[system] = by_group(outcomes, labels[1], thresholds[kind])
        out.append(
            {"name": entry["name"], "description": entry["description"], "systems": systems, "fairness": fairness}
        )
    return out


def _peer_units(summary: dict[str, Any]) -> dict[str, Any]:
    """Report the peer's thresholds as euclidean distances (they were negated to act as similarities)."""
    for key in ("fnir_at_fpir", "fnir_at_fpir_pooled"):
        for v in summary[key].values():
            if v["threshold"] is not None:
                v["threshold_distance"] = round(-v["threshold"], 5)
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
