"""Decode any still a retailer might send into an 8-bit BGR array at a working size.

JPEG, PNG, WebP, BMP, TIFF and GIF (first frame); EXIF orientation applied; grayscale,
palette, alpha, 16-bit and CMYK converted; a pixel limit guards against decompression bombs.
Anything else raises ``ImageUnreadable`` with the reason.

A still whose long side is over ``max_side`` is decoded reduced by a whole factor: a JPEG by its
decoder's draft mode (1/2, 1/4 or 1/8, never holding the full-size pixels), any other format
decoded whole, then reduced. ``DecodedStill.scale`` maps the working pixels back to the still's own
(``original = working / scale``), so faces are reported, stored and cropped in the still's pixels.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageUnreadable

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
# EXIF orientations that turn the still a quarter: its upright width is its stored height.
_QUARTER_TURNS = {5, 6, 7, 8}
# The reductions a JPEG decoder does itself (draft mode), largest first.
_DRAFT_FACTORS = (8, 4, 2)

Source = bytes | Path


@dataclass(frozen=True, slots=True)
class DecodedStill:
    """A still's pixels at working size, and the still's own (upright) size."""

    pixels: NDArray[np.uint8]  # (h, w, 3) BGR, the working size
    width: int  # the still's own width and height, upright
    height: int
    scale: float  # working pixels per pixel of the still (1.0: decoded at full size)

    @property
    def reduced(self) -> bool:
        return self.scale < 1.0


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = float(array.max() - array.min()) or 1.0
        gray = ((array - array.min()) / span * 255.0).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")  # L, P, 1, CMYK, YCbCr, LAB, RGBX ...


def reduction_factor(width: int, height: int, max_side: int | None) -> int:
    """The smallest whole factor that brings the long side to ``max_side`` or less (1: none needed)."""
    if max_side is None or max(width, height) <= max_side:
        return 1
    return math.ceil(max(width, height) / max_side)


def _draft(image: Image.Image, factor: int) -> int:
    """Let a JPEG decoder reduce by the largest power of two not above ``factor``; the factor it took."""
    if image.format not in ("JPEG", "MPO"):
        return 1
    wanted = next((f for f in _DRAFT_FACTORS if f <= factor), 1)
    if wanted == 1:
        return 1
    width, height = image.size
    drafted = image.draft(None, (width // wanted, height // wanted))
    if drafted is None:
        return 1
    return round(width / drafted[1][2])


def _open(source: Source) -> Image.Image:
    if isinstance(source, Path):
        if source.stat().st_size == 0:
            raise ImageUnreadable("empty file: no bytes to decode")
        return Image.open(source)
    if not source:
        raise ImageUnreadable("empty file: no bytes to decode")
    return Image.open(io.BytesIO(source))


def decode_still(source: Source, *, max_pixels: int, max_side: int | None = None) -> DecodedStill:
    """The still's (H, W, 3) uint8 BGR pixels, upright per EXIF, long side at most ``max_side``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(source) as image:
                if image.format not in ACCEPTED_FORMATS:
                    raise ImageUnreadable(f"unsupported image format {image.format!r}")
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageUnreadable(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
                if width < 1 or height < 1:
                    raise ImageUnreadable("image has no pixels")
                if image.getexif().get(0x0112) in _QUARTER_TURNS:
                    width, height = height, width
                factor = reduction_factor(width, height, max_side)
                image.seek(0)  # first frame of an animated GIF/WebP/TIFF
                drafted = _draft(image, factor)
                image.load()
                upright: Image.Image = ImageOps.exif_transpose(image) or image
                rgb = _to_rgb(upright)
                rest = reduction_factor(rgb.width, rgb.height, max_side)
                if rest > 1:  # no draft mode (PNG, WebP ...), or not enough of it
                    rgb = rgb.reduce(rest)
                array = np.asarray(rgb, dtype=np.uint8)
    except (ImageUnreadable, FileNotFoundError):
        raise
    except UnidentifiedImageError as exc:
        raise ImageUnreadable("not an image: the bytes match no supported image format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageUnreadable(
            f"image exceeds the limit of {max_pixels} pixels (decompression-bomb guard): {exc}"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageUnreadable(f"truncated or corrupt image data: {exc}") from exc
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageUnreadable(f"unexpected decoded shape {array.shape}")
    return DecodedStill(np.ascontiguousarray(array[:, :, ::-1]), width, height, 1.0 / (drafted * rest))


def decode_image(data: Source, *, max_pixels: int, max_side: int | None = None) -> NDArray[np.uint8]:
    """An (H, W, 3) uint8 BGR array, upright per EXIF (reduced as ``decode_still`` says)."""
    return decode_still(data, max_pixels=max_pixels, max_side=max_side).pixels
