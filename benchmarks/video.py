"""Video benchmark: a track's fused search against per-frame search on the same footage, and throughput.

    python -m benchmarks.video [--distractors 2000] [--synthetic 30] [--strangers 15]

Hit rates run the service's own video steps in process (``service.video`` sampling, tracking and
best shots; the pipeline; ``service.domain.persons.fuse`` with the pack's person threshold) against
a gallery of LFW distractors (one still each) plus the enrolled people:

* **the shared clip** (two known people, strangers in the audience) and degraded copies of it
  (352x288; a DVR export: 352x288, 12.5 frames/s, heavy compression, soft);
* **synthetic clips** built from LFW: an enrolled person's other stills (never the enrolled one)
  small and moving across a 640x360 scene, growing as they come closer, with motion blur and an
  occluding pillar over part of the time, H.264-compressed; and clips of people never enrolled.

For each clip's subject track: rank-1 of the track's fused search, of its best single shot (the
shot of highest quality, as an analyst exporting one frame would pick), and the share of its
sampled frames whose own search ranks the person first. Strangers: tracks with a candidate above
the threshold. Throughput runs the real worker (``Runtime``, SQLite, segments and all) on the
shared clip at 640x360 and on a 1080p copy: seconds of footage per second.

Writes ``benchmarks/results/video_<pack>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.clips import DEGRADATIONS, degrade, read_clip, write_clip
from benchmarks.common import build_pipeline, default_out, stamp, write_json
from benchmarks.identification import list_identities
from service.config import Settings, VideoSettings, WorkerSettings
from service.domain.faces import FaceRecord
from service.domain.persons import Fusion, evidence_weight, fuse
from service.embeddings.pipeline import FacePipeline
from service.services.video import sample_span, tracks_and_shots

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
VIDEO = DATASETS / "video"
LFW = DATASETS / "lfw"
CLIP = VIDEO / "short_hamilton_clip.mp4"
LIN, ALEX = "lin-manuel-miranda", "alex-lacamoire"
CLOSE_UP = (2.84, 7.17)  # frames 85-215: Lin-Manuel Miranda alone (the dataset's README)
AUDIENCE = [(1.33, 2.67), (7.34, 9.3)]  # frames 40-80 and 220-275: strangers only


@dataclass
class Gallery:
    names: list[str]
    embeddings: NDArray[np.float32]

    def scores(self, queries: NDArray[np.float32]) -> NDArray[np.float64]:
        result: NDArray[np.float64] = (queries @ self.embeddings.T).astype(np.float64)
        return result

    def rank_of(self, scores: NDArray[np.float64], name: str) -> int:
        mate = self.names.index(name)
        return int((scores > scores[mate]).sum()) + 1


@dataclass
class TrackResult:
    times: list[float]
    records: list[FaceRecord]
    shots: list[int]


def largest(faces: Sequence[FaceRecord]) -> FaceRecord | None:
    return max(faces, key=lambda f: f.face.box[2] * f.face.box[3], default=None)


def build_gallery(pipeline: FacePipeline, distractors: int, extra: dict[str, Path]) -> Gallery:
    names, vectors = [], []
    for name, path in extra.items():
        face = largest(pipeline.analyse_bytes(path.read_bytes()).faces)
        assert face is not None, name
        names.append(name)
        vectors.append(face.embedding)
    people = list_identities(LFW)
    singles = sorted(n for n, paths in people.items() if len(paths) == 1 and n not in extra)[:distractors]
    for name in singles:
        face = largest(pipeline.analyse_bytes(people[name][0].read_bytes()).faces)
        if face is not None:
            names.append(name)
            vectors.append(face.embedding)
    return Gallery(names, np.stack(vectors).astype(np.float32))


def analyse_clip(pipeline: FacePipeline, path: Path, video: VideoSettings) -> list[TrackResult]:
    """The service's own sampling, tracking and best shots on one clip (one span), in process."""
    sampled, _ = sample_span(pipeline, path, 0.0, math.inf, video)
    tracks = []
    for track, shots in tracks_and_shots(sampled, video):
        tracks.append(
            TrackResult(
                [sampled[i].time_s for i in track], [sampled[i].record for i in track], [track.index(i) for i in shots]
            )
        )
    return tracks


@dataclass
class Scored:
    fused_rank: int
    fused_score: float
    fused_top: str
    fused_top_score: float
    best_shot_rank: int
    frame_rank1: float  # share of the track's sampled faces ranking the person first
    frames: int


def score_track(gallery: Gallery, track: TrackResult, name: str | None, fusion: Fusion) -> Scored:
    shots = [track.records[i] for i in track.shots]
    scores = gallery.scores(np.stack([s.embedding for s in shots]))
    weights = np.array([evidence_weight(s.quality.score, s.quality.usable) for s in shots])
    fused = fuse(scores, weights, fusion, np.array([s.quality.usable for s in shots])) if len(shots) > 1 else scores[0]
    best = int(np.argmax([s.quality.score for s in shots]))
    top = int(np.argmax(fused))
    every = gallery.scores(np.stack([r.embedding for r in track.records]))
    if name is None:
        return Scored(0, 0.0, gallery.names[top], float(fused[top]), 0, 0.0, len(track.records))
    return Scored(
        fused_rank=gallery.rank_of(fused, name),
        fused_score=float(fused[gallery.names.index(name)]),
        fused_top=gallery.names[top],
        fused_top_score=float(fused[top]),
        best_shot_rank=gallery.rank_of(scores[best], name),
        frame_rank1=float(np.mean([gallery.rank_of(row, name) == 1 for row in every])),
        frames=len(track.records),
    )


def subject_track(tracks: list[TrackResult]) -> TrackResult | None:
    return max(tracks, key=lambda t: len(t.records), default=None)


# -- the shared clip ---------------------------------------------------------------------------------
def shared_clip_rows(
    pipeline: FacePipeline, gallery: Gallery, video: VideoSettings, fusion: Fusion, person_t: float, face_t: float
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        copies = {"original 640x360": CLIP}
        for key, how in (("352x288", DEGRADATIONS["cif"]), ("DVR export", DEGRADATIONS["dvr"])):
            copies[key] = degrade(CLIP, Path(tmp) / f"{how.name}.mp4", how)
        for label, path in copies.items():
            tracks = analyse_clip(pipeline, path, video)

            def inside(track: TrackResult, window: tuple[float, float]) -> int:
                return sum(window[0] <= t <= window[1] for t in track.times)

            lin = max(tracks, key=lambda t: inside(t, CLOSE_UP))  # the close-up's track
            strangers = [t for t in tracks if all(any(a <= x <= b for a, b in AUDIENCE) for x in t.times)]
            s = score_track(gallery, lin, LIN, fusion)
            stranger_scores = [score_track(gallery, t, None, fusion) for t in strangers]
            stranger_frames = [
                float(gallery.scores(r.embedding[None, :])[0].max()) for t in strangers for r in t.records
            ]
            rows.append(
                {
                    "clip": label,
                    "tracks": len(tracks),
                    "lin_fused_rank": s.fused_rank,
                    "lin_fused_score": round(s.fused_score, 4),
                    "lin_above_threshold": s.fused_rank == 1 and s.fused_score >= person_t,
                    "lin_best_shot_rank": s.best_shot_rank,
                    "lin_frame_rank1": round(s.frame_rank1, 3),
                    "stranger_tracks": len(strangers),
                    "stranger_tracks_above_threshold": sum(x.fused_top_score >= person_t for x in stranger_scores),
                    "stranger_frames": len(stranger_frames),
                    "stranger_frames_above_threshold": sum(x >= face_t for x in stranger_frames),
                }
            )
    return rows


# -- synthetic clips from LFW ------------------------------------------------------------------------
def synthetic_clip(stills: list[NDArray[np.uint8]], target: Path, rng: np.random.Generator) -> Path:
    """One person's stills in turn (a second or so each) crossing a 640x360 scene as a ceiling camera
    sees a shopper: small (the still at 60 to 130 px, so about 10 to 22 px between the eyes), growing as
    they come closer, motion-blurred while fast, behind an occluding pillar for a stretch; H.264 CRF 34."""
    fps, seconds = 25.0, 4.0
    n = int(fps * seconds)
    background = cv2.GaussianBlur(rng.integers(40, 200, (360, 640, 3), dtype=np.uint8), (0, 0), 12)
    y0 = int(rng.integers(20, 80))
    occluded = (int(n * rng.uniform(0.3, 0.5)), int(n * rng.uniform(0.55, 0.7)))
    frames: list[NDArray[np.uint8]] = []
    for i in range(n):
        progress = i / (n - 1)
        size = int(60 + 70 * progress)
        still = cv2.resize(stills[min(len(stills) - 1, int(progress * len(stills)))], (size, size))
        speed = abs(math.sin(progress * math.pi * 2)) * 9
        if speed > 3:
            kernel = np.zeros((int(speed), int(speed)), np.float32)
            kernel[int(speed) // 2, :] = 1.0 / int(speed)
            still = cv2.filter2D(still, -1, kernel)
        frame = background.copy()
        x = int(20 + (640 - size - 40) * progress)
        y = min(360 - size, y0)
        frame[y : y + size, x : x + size] = still
        if occluded[0] <= i < occluded[1]:
            frame[:, x + size // 3 : x + size // 3 + size // 3] = (30, 30, 30)  # a pillar in front of the face
        frames.append(np.asarray(frame, dtype=np.uint8))
    return write_clip(frames, target, fps, "h264", quality=34)


def synthetic_rows(
    pipeline: FacePipeline,
    gallery: Gallery,
    video: VideoSettings,
    fusion: Fusion,
    person_t: float,
    mated: dict[str, list[Path]],
    strangers: dict[str, list[Path]],
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    mated_rows: list[Scored | None] = []
    stranger_rows: list[Scored | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, people, rows in (("mated", mated, mated_rows), ("stranger", strangers, stranger_rows)):
            for name, paths in people.items():
                stills = [np.asarray(cv2.imread(str(p)), dtype=np.uint8) for p in paths]
                clip = synthetic_clip(stills, Path(tmp) / f"{group}-{name}.mp4", rng)
                track = subject_track(analyse_clip(pipeline, clip, video))
                if track is None:
                    rows.append(None)
                    continue
                rows.append(score_track(gallery, track, name if group == "mated" else None, fusion))
    found = [r for r in mated_rows if r is not None]
    n = len(mated_rows)
    return {
        "mated_clips": n,
        "tracked": len(found),
        "track_fused_rank1": round(sum(r.fused_rank == 1 for r in found) / n, 3) if n else None,
        "track_fused_rank1_above_threshold": round(
            sum(r.fused_rank == 1 and r.fused_score >= person_t for r in found) / n, 3
        )
        if n
        else None,
        "best_single_shot_rank1": round(sum(r.best_shot_rank == 1 for r in found) / n, 3) if n else None,
        "track_fused_rank10": round(sum(r.fused_rank <= 10 for r in found) / n, 3) if n else None,
        "best_single_shot_rank10": round(sum(r.best_shot_rank <= 10 for r in found) / n, 3) if n else None,
        "per_frame_rank1": round(float(np.mean([r.frame_rank1 for r in found])), 3) if found else None,
        "stranger_clips": len(stranger_rows),
        "stranger_tracks_above_threshold": sum(r is not None and r.fused_top_score >= person_t for r in stranger_rows),
    }


# -- throughput through the worker ---------------------------------------------------------------------
def throughput(pipeline: FacePipeline, repeats: int) -> list[dict[str, Any]]:
    from service.domain.roles import operator_principal
    from service.runtime import Runtime
    from service.services.submissions import Upload

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        frames, fps = read_clip(CLIP)
        full_hd = write_clip(
            (np.asarray(cv2.resize(f, (1920, 1080)), dtype=np.uint8) for f in frames),
            Path(tmp) / "1080p.mp4",
            fps,
            quality=23,
        )
        for label, path in (("640x360", CLIP), ("1920x1080", full_hd)):
            settings = Settings(
                data_dir=Path(tmp) / f"data-{label}",
                worker=WorkerSettings(enabled=False),
                cache_dir=pipeline.settings.cache_dir,
            )
            runtime = Runtime.build(settings, pipeline=pipeline)
            actor = operator_principal()
            seconds = []
            for _ in range(repeats):
                sid = runtime.submissions.create(actor, "BENCH/V", "video throughput")
                runtime.submissions.add_images(actor, sid, [Upload(path.name, path.read_bytes())])
                start = time.perf_counter()
                runtime.worker.run_until_empty()
                seconds.append(time.perf_counter() - start)
                duration = runtime.submissions.get(actor, sid).progress.footage_s
            runtime.close()
            best = min(seconds)
            rows.append(
                {
                    "frame": label,
                    "footage_s": round(duration, 2),
                    "processing_s": [round(s, 2) for s in seconds],
                    "footage_s_per_s": round(duration / best, 2),
                }
            )
    return rows


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# Video benchmark ({payload['pack']})",
        "",
        f"Gallery: {payload['gallery_size']} subjects. Person threshold {payload['person_threshold']}, "
        f"face threshold {payload['face_threshold']}. Command: `{payload['command']}`.",
        "",
        "## The shared clip (Lin-Manuel Miranda's close-up track; the audience's tracks)",
        "",
        "| clip | tracks | fused rank | fused score | above threshold | best single shot rank | frames rank-1 "
        "| stranger tracks above threshold | stranger frames above threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["shared_clip"]:
        lines.append(
            f"| {r['clip']} | {r['tracks']} | {r['lin_fused_rank']} | {r['lin_fused_score']:.3f} | "
            f"{'yes' if r['lin_above_threshold'] else 'no'} | {r['lin_best_shot_rank']} | {r['lin_frame_rank1']:.0%} | "
            f"{r['stranger_tracks_above_threshold']} of {r['stranger_tracks']} | "
            f"{r['stranger_frames_above_threshold']} of {r['stranger_frames']} |"
        )
    s = payload["synthetic"]
    lines += [
        "",
        "## Synthetic clips from LFW (small, moving, growing, blurred, occluded; H.264 CRF 34)",
        "",
        "| mated clips | track fused rank-1 | ... above threshold | best single shot rank-1 | per-frame rank-1 "
        "| track fused rank-10 | best single shot rank-10 | stranger clips | stranger tracks above threshold |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {s['mated_clips']} | {s['track_fused_rank1']:.1%} | {s['track_fused_rank1_above_threshold']:.1%} | "
        f"{s['best_single_shot_rank1']:.1%} | {s['per_frame_rank1']:.1%} | {s['track_fused_rank10']:.1%} | "
        f"{s['best_single_shot_rank10']:.1%} | {s['stranger_clips']} | {s['stranger_tracks_above_threshold']} |",
        "",
        "## Throughput through the worker (segments, tracking, shots, search, storage)",
        "",
        "| frame | footage (s) | processing (s) | footage seconds per second |",
        "|---|---|---|---|",
    ]
    for r in payload["throughput"]:
        lines.append(f"| {r['frame']} | {r['footage_s']} | {r['processing_s']} | {r['footage_s_per_s']}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=2000, help="LFW people enrolled (one still each)")
    parser.add_argument("--synthetic", type=int, default=30, help="synthetic clips of enrolled people")
    parser.add_argument("--strangers", type=int, default=15, help="synthetic clips of people never enrolled")
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs per frame size (best kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    pipeline = build_pipeline()
    video = Settings().video
    fusion = Fusion(Settings().persons.fusion)
    person_t, face_t = pipeline.manifest.fused_threshold, pipeline.manifest.operating_threshold
    people = list_identities(LFW)
    several = sorted(n for n, paths in people.items() if len(paths) >= 4)
    rng = np.random.default_rng(args.seed)
    picked = list(rng.permutation(several)[: args.synthetic + args.strangers])
    mated = {n: sorted(people[n])[1:4] for n in picked[: args.synthetic]}
    strangers = {n: sorted(people[n])[1:4] for n in picked[args.synthetic :]}
    extra = {LIN: VIDEO / f"{LIN}.png", ALEX: VIDEO / f"{ALEX}.png"} | {n: sorted(people[n])[0] for n in mated}
    started = time.perf_counter()
    gallery = build_gallery(pipeline, args.distractors, extra)
    payload: dict[str, Any] = stamp(
        pipeline.pack_id,
        command="python -m benchmarks.video " + " ".join(argv or []),
        pack=pipeline.pack_id,
        gallery_size=len(gallery.names),
        person_threshold=person_t,
        face_threshold=face_t,
        video_settings=video.model_dump(),
    )
    payload["shared_clip"] = shared_clip_rows(pipeline, gallery, video, fusion, person_t, face_t)
    payload["synthetic"] = synthetic_rows(pipeline, gallery, video, fusion, person_t, mated, strangers, args.seed)
    payload["throughput"] = throughput(pipeline, args.repeats)
    payload["elapsed_s"] = round(time.perf_counter() - started, 1)
    out = args.out or default_out(f"video_{pipeline.pack_id}")
    write_json(out, payload)
    out.with_suffix(".md").write_text(markdown(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
