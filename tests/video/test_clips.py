"""Clips recognised, checked and decoded (service.video.clips) on the real shared clip and copies of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.errors import ClipUnreadable
from service.video.clips import ClipLimits, frames_at, probe_clip, sampled_frames
from service.video.formats import looks_like_clip
from service.video.sampling import FrameSampler
from tests.clips import CLIP
from tests.conftest import lfw_bytes

LIMITS = ClipLimits(max_duration_s=3600, max_frame_pixels=3840 * 2160)


def test_the_shared_clip_is_probed_as_it_is() -> None:
    info = probe_clip(CLIP.read_bytes(), LIMITS)
    assert (info.container, info.codec, info.width, info.height, info.frames) == ("mp4", "h264", 640, 360, 275)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration_s == pytest.approx(9.18, abs=0.05)
    assert probe_clip(CLIP, LIMITS) == info  # from a path too


@pytest.mark.parametrize(
    ("name", "container", "codec"),
    [
        ("mkv_hevc", "mkv", "hevc"),
        ("avi_mpeg4", "avi", "mpeg4"),
        ("mov_mjpeg", "mp4", "mjpeg"),
        ("ts_h264", "mpegts", "h264"),
    ],
)
def test_dvr_containers_and_codecs_are_accepted(
    clip_copies: dict[str, Path], name: str, container: str, codec: str
) -> None:
    info = probe_clip(clip_copies[name].read_bytes(), LIMITS)
    assert (info.container, info.codec) == (container, codec)
    assert info.duration_s == pytest.approx(9.18, abs=0.1)


def test_a_clip_is_told_from_a_still_by_its_bytes_or_its_name(clip_copies: dict[str, Path]) -> None:
    for path in [CLIP, *clip_copies.values()]:
        assert looks_like_clip(path.read_bytes()[:400]), path.name
    assert not looks_like_clip(lfw_bytes("Tony_Blair", 1)[:400], "still.jpg")
    assert looks_like_clip(b"", "empty.mp4")  # a zero-length clip is still meant as a clip
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(32)
    assert not looks_like_clip(heic, "photo.heic")


def _refused(data: bytes, limits: ClipLimits = LIMITS) -> ClipUnreadable:
    with pytest.raises(ClipUnreadable) as caught:
        probe_clip(data, limits)
    return caught.value


def test_bad_clips_get_a_typed_error(clip_copies: dict[str, Path]) -> None:
    data = CLIP.read_bytes()
    assert "zero bytes" in _refused(b"").message
    assert _refused(data[: len(data) // 2]).code == "clip_unreadable"  # index at the end: cut off
    assert _refused(b"\x00\x00\x00\x18ftypmp42" + bytes(5000)).code == "clip_unreadable"
    damaged = _refused(data[:100_000] + bytes(50_000) + data[150_000:])
    assert "damaged" in damaged.message
    mkv = clip_copies["mkv_hevc"].read_bytes()
    assert "truncated" in _refused(mkv[: len(mkv) // 2]).message  # its header declares the length
    assert _refused(clip_copies["mkv_vp9"].read_bytes()).code == "clip_unsupported"
    assert _refused(data, ClipLimits(5, LIMITS.max_frame_pixels)).code == "clip_too_large"
    assert _refused(data, ClipLimits(3600, 640 * 359)).code == "clip_too_large"


def test_sampling_is_sparse_without_faces_and_dense_with_them() -> None:
    sampler = FrameSampler(sample_fps=2.0, dense_fps=6.0)
    taken = []
    for t, pixels in sampled_frames(CLIP, 0.0, 4.0, sampler.wants):
        assert pixels.shape == (360, 640, 3)
        taken.append(t)
        sampler.saw(t, faces=1 if t >= 2.0 else 0)
    gaps = np.diff(taken)
    early, late = gaps[np.array(taken[1:]) <= 2.0], gaps[np.array(taken[1:]) > 2.5]
    assert early.min() >= 0.49 and late.max() <= 0.2  # 2 per second, then 6 per second
    assert taken == sorted(taken) and taken[0] == 0.0 and taken[-1] < 4.0


def test_frames_are_found_again_at_their_times() -> None:
    sampler = FrameSampler(sample_fps=1.0, dense_fps=1.0, start_s=2.0)
    sampled = dict(sampled_frames(CLIP, 2.0, 9.0, sampler.wants))
    wanted = [sorted(sampled)[i] for i in (0, 3, 6)]
    again = frames_at(CLIP, [*wanted, 99.0])  # a time past the end is left out
    assert sorted(again) == wanted
    for t in wanted:
        assert np.array_equal(again[t], sampled[t])
