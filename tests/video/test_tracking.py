"""Tracks by motion and identity (service.video.tracking), and best shots (service.video.shots), on
observations whose boxes and embeddings are laid out to test each rule."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.video.shots import best_shots
from service.video.tracking import Observation, TrackingParams, track_faces

PARAMS = TrackingParams()


def _identity(seed: int, dim: int = 128) -> NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    unit: NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return unit


def _near(base: NDArray[np.float32], seed: int, noise: float = 0.3) -> NDArray[np.float32]:
    v = base + noise * _identity(seed)
    unit: NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return unit


def _walk(person: int, times: list[float], x0: float, dx: float, y: float = 100.0) -> list[Observation]:
    base = _identity(person)
    return [
        Observation(t, (x0 + dx * i, y, 60.0, 60.0), 0.9, _near(base, person * 1000 + i)) for i, t in enumerate(times)
    ]


def _people(observations: list[Observation], tracks: list[list[int]]) -> list[set[int]]:
    """Which person (by nearest identity) each track holds."""
    ids = [_identity(p) for p in range(1, 5)]
    return [{int(np.argmax([observations[i].embedding @ e for e in ids])) + 1 for i in track} for track in tracks]


def test_one_person_walking_is_one_track() -> None:
    obs = _walk(1, [i / 6 for i in range(18)], 100, 8)
    tracks = track_faces(obs, PARAMS)
    assert tracks == [list(range(18))]


def test_two_people_side_by_side_are_two_tracks() -> None:
    times = [i / 6 for i in range(12)]
    obs = _walk(1, times, 100, 5) + _walk(2, times, 400, -5)
    tracks = track_faces(obs, PARAMS)
    assert len(tracks) == 2 and _people(obs, tracks) == [{1}, {2}]


def test_two_people_crossing_do_not_swap() -> None:
    # They walk towards each other and their boxes overlap at the crossing; one box's motion would
    # carry on into the other person.
    times = [i / 6 for i in range(16)]
    obs = _walk(1, times, 100, 30) + _walk(2, times, 550, -30, y=104)
    tracks = track_faces(obs, PARAMS)
    people = _people(obs, tracks)
    assert all(len(p) == 1 for p in people), people
    assert sorted(len(t) for t in tracks) == [16, 16]


def test_a_short_occlusion_keeps_the_track_and_a_long_absence_does_not() -> None:
    before = _walk(1, [i / 6 for i in range(6)], 100, 5)
    after_short = _walk(1, [2.5 + i / 6 for i in range(6)], 300, 5)  # gone 1.7 s, elsewhere in the frame
    assert len(track_faces(before + after_short, PARAMS)) == 1
    after_long = _walk(1, [9.0 + i / 6 for i in range(6)], 300, 5)  # gone 8 s: beyond join_gap_s
    assert len(track_faces(before + after_long, PARAMS)) == 2


def test_a_stranger_in_the_same_place_after_a_cut_starts_a_new_track() -> None:
    first = _walk(1, [i / 6 for i in range(6)], 100, 0)
    second = _walk(3, [1.0 + i / 6 for i in range(6)], 100, 0)  # same box, another person
    tracks = track_faces(first + second, PARAMS)
    assert _people(first + second, tracks) == [{1}, {3}]


def test_best_shots_are_the_best_spread_over_the_track() -> None:
    times = [i / 10 for i in range(50)]
    quality = [0.5] * 50
    quality[10], quality[11], quality[12], quality[40] = 0.9, 0.89, 0.88, 0.8
    picked = best_shots(times, quality, 3)
    assert 10 in picked and 40 in picked and len(picked) == 3
    assert 11 not in picked  # its neighbour is better and taken: another moment instead
    assert picked == sorted(picked)
    assert best_shots(times[:2], quality[:2], 5) == [0, 1]
    assert best_shots([], [], 5) == []
