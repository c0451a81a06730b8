"""Video clips as DVRs export them: recognise, check and decode, with PyAV (FFmpeg's libraries, bundled).

Containers MP4, MOV, MKV, AVI and MPEG-TS (and MPEG-PS); codecs H.264, H.265, MPEG-4 Part 2 and
MJPEG. Nothing shells out to a binary. ``probe_clip`` refuses, with a typed error, a clip that is
empty, truncated, corrupt, of another container or codec, or over a limit; ``sampled_frames``
decodes a span of a clip and converts only the frames a sampler wants into pixels; ``frames_at``
reads the frames at given times again (the best shots of each track).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from service.errors import ClipUnreadable

# PyAV's demuxer names, and ours for them.
CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "matroska,webm": "mkv",
    "avi": "avi",
    "mpegts": "mpegts",
    "mpeg": "mpeg",
}
CODECS = {"h264": "H.264", "hevc": "H.265", "mpeg4": "MPEG-4 Part 2", "mjpeg": "MJPEG"}

Source = bytes | Path
SEEK_MARGIN_S = 1.0
# Damaged packets tolerated (a DVR export cut mid-GOP starts with a few undecodable frames).
MAX_DAMAGED_PACKETS = 2
MAX_DAMAGED_SHARE = 0.01
SEEK_AHEAD_S = 5.0  # decoding on is cheaper than seeking for a wanted frame closer than this


@dataclass(frozen=True, slots=True)
class ClipInfo:
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int  # packets of the video stream: its frames

    def to_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "duration_s": round(self.duration_s, 3),
            "frames": self.frames,
        }


@dataclass(frozen=True, slots=True)
class ClipLimits:
    max_duration_s: float
    max_frame_pixels: int


def _open(source: Source) -> Any:
    try:
        return av.open(
            str(source) if isinstance(source, Path) else io.BytesIO(source), mode="r", metadata_errors="ignore"
        )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipUnreadable(f"not a readable clip (truncated, corrupt, or not a video): {_reason(exc)}") from exc


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise ClipUnreadable("the file holds no video stream", code="clip_unsupported")
    return container.streams.video[0]


def probe_clip(source: Source, limits: ClipLimits) -> ClipInfo:
    """The clip's container, codec, frame size, rate and duration, once it is known whole and decodable.

    Every packet of its video stream is read and its keyframes decoded (the other frames are
    skipped, so this is fast), to find its true end and damaged data: a clip cut short after its
    index or header was written, or with damaged frames, is refused. (An MPEG-TS cut short is a
    shorter clip: the format declares no length.)
    """
    if isinstance(source, bytes) and not source:
        raise ClipUnreadable("empty file: a clip of zero bytes")
    container = _open(source)
    try:
        container_name = CONTAINERS.get(container.format.name)
        if container_name is None:
            raise ClipUnreadable(f"unsupported container {container.format.name!r}", code="clip_unsupported")
        stream = _video_stream(container)
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise ClipUnreadable(
                f"unsupported video codec {codec!r} (accepted: {', '.join(CODECS.values())})", code="clip_unsupported"
            )
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width < 1 or height < 1:
            raise ClipUnreadable("the video stream has no frame size")
        if width * height > limits.max_frame_pixels:
            raise ClipUnreadable(
                f"frames of {width}x{height} pixels exceed the limit of {limits.max_frame_pixels} pixels",
                code="clip_too_large",
            )
        scan = _scan(stream, container)
        if scan.packets == 0 or scan.decoded == 0:
            raise ClipUnreadable("no frame of the clip could be decoded")
        if scan.damaged > max(MAX_DAMAGED_PACKETS, scan.packets * MAX_DAMAGED_SHARE):
            raise ClipUnreadable(f"corrupt clip: {scan.damaged} of its {scan.packets} frames are damaged")
        declared = stream.frames
        if declared and scan.packets < declared:
            raise ClipUnreadable(f"truncated clip: {scan.packets} of its {declared} frames are present")
        base = stream.time_base or Fraction(1, 90000)
        duration = float((scan.end - scan.start) * base)
        header = container.duration / 1_000_000 if container.duration and container_name in ("mp4", "mkv") else None
        if header is not None and duration < header * 0.95 - 0.5:
            raise ClipUnreadable(f"truncated clip: {duration:.1f} s of its {header:.1f} s are present")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (scan.packets / duration if duration > 0 else 0.0)
        if duration <= 0 and fps > 0:
            duration = scan.packets / fps
        if duration > limits.max_duration_s:
            raise ClipUnreadable(
                f"a clip of {duration:.0f} s exceeds the limit of {limits.max_duration_s:.0f} s", code="clip_too_large"
            )
        return ClipInfo(container_name, codec, width, height, fps, duration, scan.packets)
    except ClipUnreadable:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise ClipUnreadable(f"truncated or corrupt clip: {_reason(exc)}") from exc
    finally:
        container.close()


@dataclass(slots=True)
class _Scan:
    start: int = 0  # first and last presentation times, in the stream's time base
    end: int = 0
    packets: int = 0
    decoded: int = 0  # keyframes decoded
    damaged: int = 0  # packets the demuxer or the decoder found damaged


def _scan(stream: Any, container: Any) -> _Scan:
    stream.codec_context.skip_frame = "NONKEY"
    scan, first = _Scan(), None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's flush packet
        scan.packets += 1
        if packet.is_corrupt:
            scan.damaged += 1
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is not None:
            first = pts if first is None else min(first, pts)
            scan.end = max(scan.end, pts + (packet.duration or 0))
        try:
            scan.decoded += len(packet.decode())
        except av.error.FFmpegError:
            scan.damaged += 1
    try:
        scan.decoded += len(stream.decode(None))  # the frames the decoder still holds
    except av.error.FFmpegError:
        scan.damaged += 1
    scan.start = first or 0
    return scan


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


class _Timeline:
    """A clip's video stream decoded with frame times in seconds from its start, and seeks to a time."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.stream = _video_stream(container)
        self.stream.thread_type = "AUTO"
        self.base = self.stream.time_base or Fraction(1, 90000)
        self.origin = self.stream.start_time or 0

    def seek_before(self, t: float) -> None:
        """To a keyframe a second or more before ``t`` (some demuxers land late), to decode on from."""
        target = max(0.0, t - SEEK_MARGIN_S)
        self.container.seek(self.origin + int(target / self.base), stream=self.stream, backward=True, any_frame=False)

    def frames(self) -> Iterator[tuple[float, Any]]:
        for frame in self.container.decode(self.stream):
            if frame.pts is not None:
                yield float((frame.pts - self.origin) * self.base), frame


def _pixels(frame: Any) -> NDArray[np.uint8]:
    return np.ascontiguousarray(frame.to_ndarray(format="bgr24"))


def sampled_frames(
    source: Source, start_s: float, end_s: float, wants: Callable[[float], bool]
) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    """(time in seconds from the clip's start, BGR pixels) of each frame in [start_s, end_s) that
    ``wants`` (asked in time order, lazily) takes; other frames are decoded but never converted."""
    container = _open(source)
    try:
        timeline = _Timeline(container)
        if start_s > 0:
            timeline.seek_before(start_s)
        for t, frame in timeline.frames():
            if t < start_s - 1e-6:
                continue
            if t >= end_s:
                break
            if wants(t):
                yield t, _pixels(frame)
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise ClipUnreadable(f"the clip could not be decoded past {start_s:.1f} s: {_reason(exc)}") from exc
    finally:
        container.close()


def frames_at(source: Source, times: list[float]) -> dict[float, NDArray[np.uint8]]:
    """The frames at these times (as ``sampled_frames`` gave them), in one pass that decodes forward
    and seeks ahead only past a long stretch without a wanted frame."""
    wanted = sorted(set(times))
    found: dict[float, NDArray[np.uint8]] = {}
    if not wanted:
        return found
    container = _open(source)
    try:
        timeline = _Timeline(container)
        i, jumped_at = 0, -math.inf
        while i < len(wanted):
            timeline.seek_before(wanted[i])
            jumped = False
            for t, frame in timeline.frames():
                while i < len(wanted) and wanted[i] < t - 1e-4:
                    i += 1  # not among the frames decoded: left out
                if i == len(wanted):
                    break
                if abs(t - wanted[i]) < 1e-4:
                    found[wanted[i]] = _pixels(frame)
                    i += 1
                elif wanted[i] - t > SEEK_AHEAD_S and t > jumped_at:
                    # (A seek that lands no later than the last one did is decoded on from instead.)
                    jumped, jumped_at = True, t
                    break
            if not jumped:
                break  # the end of the clip, or every time found
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise ClipUnreadable(f"the clip's shots could not be decoded again: {_reason(exc)}") from exc
    finally:
        container.close()
    return found
