"""Clips made for tests and benchmarks: a real clip's degraded copies (a retailer's DVR export), and
synthetic clips of LFW stills moving across a scene. Written with PyAV's encoders (no binary is run).

Never committed: every clip is made on the fly from ``../shared/datasets``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]

# PyAV encoder per codec name, and the pixel format it takes.
ENCODERS = {
    "h264": ("libx264", "yuv420p"),
    "hevc": ("libx265", "yuv420p"),
    "mpeg4": ("mpeg4", "yuv420p"),
    "mjpeg": ("mjpeg", "yuvj420p"),
    "vp9": ("libvpx-vp9", "yuv420p"),
}


def read_clip(path: Path) -> tuple[list[Frame], float]:
    """Every frame of a clip (BGR) and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        return [
            np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8) for frame in container.decode(stream)
        ], rate


def write_clip(
    frames: Iterable[Frame], path: Path, fps: float, codec: str = "h264", quality: int | None = None
) -> Path:
    """Frames (BGR, all one size with even sides) encoded as ``codec`` in the container ``path``'s suffix
    names. ``quality``: the CRF for H.264/H.265 (higher is worse), the qscale for the others."""
    encoder, pix_fmt = ENCODERS[codec]
    iterator = iter(frames)
    first = next(iterator)
    height, width = first.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream: Any = out.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        x26x = encoder in ("libx264", "libx265")
        options: dict[str, str] = {"preset": "veryfast"} if x26x else {}
        if encoder == "libx265":
            options["x265-params"] = "log-level=error"
        if quality is not None and x26x:
            options["crf"] = str(quality)
        elif quality is not None:  # a fixed quantiser, as ffmpeg's -q:v does
            stream.codec_context.qscale = quality
        stream.options = options
        for frame in _chain(first, iterator):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
            for packet in stream.encode(video_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


@dataclass(frozen=True, slots=True)
class Degradation:
    """A DVR export of a clip: frame size, frame rate, compression and softness."""

    name: str
    size: tuple[int, int] | None = None  # width, height
    fps: float | None = None
    quality: int | None = None  # CRF (H.264): 23 is good, 40 heavy
    blur_sigma: float = 0.0
    codec: str = "h264"
    suffix: str = ".mp4"


DEGRADATIONS = {
    "cif": Degradation("cif", size=(352, 288)),
    "low_fps": Degradation("low_fps", fps=6.0),
    "compressed": Degradation("compressed", quality=40),
    "blur": Degradation("blur", blur_sigma=1.6),
    "dvr": Degradation("dvr", size=(352, 288), fps=12.5, quality=34, blur_sigma=0.8),
}


def degrade(source: Path, target: Path, how: Degradation) -> Path:
    """A degraded copy of ``source`` at ``target`` (frames dropped to the lower rate, not blended)."""
    frames, fps = read_clip(source)
    rate = how.fps or fps
    step = fps / rate
    picked = [frames[int(i * step)] for i in range(int(len(frames) / step))]

    def render(frame: Frame) -> Frame:
        out: Any = frame
        if how.size is not None:
            out = cv2.resize(out, how.size, interpolation=cv2.INTER_AREA)
        if how.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), how.blur_sigma)
        return np.asarray(out, dtype=np.uint8)

    return write_clip((render(f) for f in picked), target, rate, how.codec, how.quality)
