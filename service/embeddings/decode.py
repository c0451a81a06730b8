"""Decode any still a retailer might send into an 8-bit BGR array.

JPEG, PNG, WebP, BMP, TIFF and GIF (first frame); EXIF orientation applied; grayscale,
palette, alpha, 16-bit and CMYK converted; a pixel limit guards against decompression bombs.
Anything else raises ``ImageUnreadable`` with the reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageUnreadable

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")


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


def decode_image(data: bytes, *, max_pixels: int) -> NDArray[np.uint8]:
    """An (H, W, 3) uint8 BGR array, upright per EXIF."""
    if not data:
        raise ImageUnreadable("empty file: no bytes to decode")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise ImageUnreadable(f"unsupported image format {image.format!r}")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageUnreadable(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
            if width < 1 or height < 1:
                raise ImageUnreadable("image has no pixels")
            image.seek(0)  # first frame of an animated GIF/WebP/TIFF
            image.load()
            upright: Image.Image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(upright)
            array = np.asarray(rgb, dtype=np.uint8)
    except ImageUnreadable:
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
    return np.ascontiguousarray(array[:, :, ::-1])
