"""Follow each face across a clip's sampled frames: a track is one person.

Two steps, so that a track survives a short occlusion and two people crossing don't swap:

1. **Motion**: ByteTrack (the ``trackers`` package, Apache-2.0) associates each sampled frame's
   faces with the tracks alive, by the overlap of their boxes with the tracks' Kalman-predicted
   boxes, at the frames' own times (sampling is not at a fixed rate).
2. **Identity**: a piece of track is cut where a face stops resembling the faces just before it
   (a swap when two people cross), and pieces are joined, most similar first, when their faces
   resemble each other, they are never in view at the same time, and the gap between them is
   short (an occlusion, or a face the detector missed for a while).

Pure apart from ByteTrack: observations in, tracks (lists of observation indices) out.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# ByteTrack counts its lost-track buffer in frames at this reference rate.
_REFERENCE_FPS = 30.0
# How many of a piece's latest faces a new face is compared with before it is cut.
_RECENT = 3


@dataclass(frozen=True, slots=True)
class Observation:
    """One face in one sampled frame."""

    time_s: float
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    det_score: float
    embedding: NDArray[np.float32]  # L2-normalised


@dataclass(frozen=True, slots=True)
class TrackingParams:
    lost_s: float = 1.0
    min_iou: float = 0.1
    join_threshold: float = 0.5
    join_gap_s: float = 3.0
    split_threshold: float = 0.35


def track_faces(observations: Sequence[Observation], params: TrackingParams) -> list[list[int]]:
    """The tracks, each the indices of its observations in time order; tracks ordered by first time."""
    if not observations:
        return []
    pieces: list[list[int]] = []
    for piece in _motion_tracks(observations, params):
        pieces.extend(_split_on_identity(piece, observations, params.split_threshold))
    tracks = _join_on_identity(pieces, observations, params)
    return sorted(tracks, key=lambda t: (observations[t[0]].time_s, t[0]))


def _motion_tracks(observations: Sequence[Observation], params: TrackingParams) -> list[list[int]]:
    import supervision as sv  # the worker's only; importing it costs ~0.5 s
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(
        lost_track_buffer=max(1, round(params.lost_s * _REFERENCE_FPS)),
        frame_rate=_REFERENCE_FPS,
        track_activation_threshold=0.0,  # every detected face may start a track
        minimum_consecutive_frames=1,
        minimum_iou_threshold=params.min_iou,
        high_conf_det_threshold=0.0,  # the detector's own threshold has already been applied
    )
    by_time: dict[float, list[int]] = {}
    for i, obs in enumerate(observations):
        by_time.setdefault(obs.time_s, []).append(i)
    # ByteTrack gives a track its id at its second face; the first is found again by the object
    # that holds the track (kept alive here, so ``id`` is never reused) and its initial box.
    known: dict[int, tuple[object, int]] = {}
    members: list[list[int]] = []
    for t in sorted(by_time):
        indices = by_time[t]
        boxes = np.array([_xyxy(observations[i].box) for i in indices], dtype=np.float32)
        detections = sv.Detections(
            xyxy=boxes,
            confidence=np.array([observations[i].det_score for i in indices], dtype=np.float32),
            data={"obs": np.array(indices)},
        )
        result = tracker.update(detections, timestamp=t)
        by_tracker_id = {tl.tracker_id: known[id(tl)][1] for tl in tracker.tracks if id(tl) in known}
        unassigned: list[int] = []
        assigned = result.tracker_id if result.tracker_id is not None else np.full(len(result), -1)
        for obs_index, tracker_id in zip(result.data["obs"], assigned, strict=True):
            if tracker_id >= 0 and tracker_id in by_tracker_id:
                members[by_tracker_id[tracker_id]].append(int(obs_index))
            else:
                unassigned.append(int(obs_index))
        for tl in tracker.tracks:
            if id(tl) in known:
                continue
            start = next(
                (o for o in unassigned if np.allclose(tl.get_state_bbox(), _xyxy(observations[o].box), atol=1e-3)),
                None,
            )
            if start is None:
                continue
            unassigned.remove(start)
            known[id(tl)] = (tl, len(members))
            members.append([start])
        members.extend([o] for o in unassigned)  # a face no track took: a track of its own
    return [sorted(m, key=lambda i: observations[i].time_s) for m in members]


def _split_on_identity(piece: list[int], observations: Sequence[Observation], threshold: float) -> list[list[int]]:
    """Cut a piece where a face's cosine to the mean of the faces just before it falls below ``threshold``."""
    parts: list[list[int]] = [[piece[0]]]
    for i in piece[1:]:
        recent = np.stack([observations[j].embedding for j in parts[-1][-_RECENT:]]).mean(axis=0)
        recent /= max(float(np.linalg.norm(recent)), 1e-9)
        if float(observations[i].embedding @ recent) < threshold:
            parts.append([i])
        else:
            parts[-1].append(i)
    return parts


def _join_on_identity(
    pieces: list[list[int]], observations: Sequence[Observation], params: TrackingParams
) -> list[list[int]]:
    """Join pieces never in view together, a short gap apart, whose mean faces are alike; best pair first.

    The pairs that may join are kept in a heap; a pair whose piece has since grown is scored again.
    """
    tracks: dict[int, list[int]] = dict(enumerate(pieces))
    means = {k: _mean_embedding(t, observations) for k, t in tracks.items()}
    version = dict.fromkeys(tracks, 0)

    def span(k: int) -> tuple[float, float]:
        return observations[tracks[k][0]].time_s, observations[tracks[k][-1]].time_s

    def may_join(a: int, b: int) -> bool:
        (a0, a1), (b0, b1) = span(a), span(b)
        gap = b0 - a1 if a1 < b0 else a0 - b1 if b1 < a0 else None
        return gap is not None and gap <= params.join_gap_s  # else in view together, or too far apart

    heap: list[tuple[float, int, int, int, int]] = []

    def push(a: int, b: int) -> None:
        if may_join(a, b):
            similarity = float(means[a] @ means[b])
            if similarity >= params.join_threshold:
                heapq.heappush(heap, (-similarity, a, b, version[a], version[b]))

    keys = sorted(tracks, key=lambda k: span(k)[0])
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if span(b)[0] - span(a)[1] > params.join_gap_s:
                break  # later pieces start later still
            push(a, b)
    while heap:
        _, a, b, va, vb = heapq.heappop(heap)
        if a not in tracks or b not in tracks or version[a] != va or version[b] != vb:
            continue  # a piece joined another, or grew, since this pair was scored
        if not may_join(a, b):
            continue
        tracks[a] = sorted(tracks[a] + tracks.pop(b), key=lambda i: observations[i].time_s)
        means[a] = _mean_embedding(tracks[a], observations)
        version[a] += 1
        for other in tracks:
            if other != a:
                push(min(a, other), max(a, other))
    return list(tracks.values())


def _mean_embedding(track: list[int], observations: Sequence[Observation]) -> NDArray[np.float64]:
    mean = np.stack([observations[i].embedding for i in track]).astype(np.float64).mean(axis=0)
    norm: NDArray[np.float64] = mean / max(float(np.linalg.norm(mean)), 1e-9)
    return norm


def _xyxy(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return x, y, x + w, y + h
