"""Decoding every format a retailer might send, and refusing bad bytes with a typed error."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from service.embeddings.decode import decode_image, decode_still
from service.embeddings.pipeline import FacePipeline
from service.errors import ImageUnreadable
from tests.conftest import encode, lfw_bytes, lfw_rgb

LIMIT = 50_000_000


def _gray16(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(gray)


def _rgba(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.full((image.height, image.width), 255, np.uint8)
    alpha[:20, :] = 0  # a transparent strip at the top
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


VARIANTS = {
    "jpeg": lambda im: encode(im, "JPEG", quality=90),
    "png": lambda im: encode(im, "PNG"),
    "webp": lambda im: encode(im, "WEBP", quality=90),
    "bmp": lambda im: encode(im, "BMP"),
    "tiff": lambda im: encode(im, "TIFF"),
    "gif": lambda im: encode(im.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
    "grayscale": lambda im: encode(im.convert("L"), "PNG"),
    "png16": lambda im: encode(_gray16(im), "PNG"),
    "rgba": lambda im: encode(_rgba(im), "PNG"),
    "cmyk": lambda im: encode(im.convert("CMYK"), "JPEG", quality=92),
    "cmyk-tiff": lambda im: encode(im.convert("CMYK"), "TIFF"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_format_decodes_to_bgr_and_finds_the_face(pipeline: FacePipeline, variant: str) -> None:
    source = lfw_rgb("Colin_Powell", 1)
    data = VARIANTS[variant](source)
    image = pipeline.decode(data)
    assert image.dtype == np.uint8 and image.shape == (250, 250, 3)
    if variant not in {"grayscale", "png16", "gif"}:
        # Colour survives the round trip (BGR order): compare with the source's mean colour.
        expected = np.asarray(source, dtype=np.float64)[..., ::-1].mean(axis=(0, 1))
        got = image[20:].astype(np.float64).mean(axis=(0, 1))
        assert np.abs(got - expected[:3]).max() < 25
    faces = pipeline.analyse(image).faces
    assert len(faces) == 1


def test_animated_gif_gives_its_first_frame() -> None:
    first = lfw_rgb("Colin_Powell", 1).convert("P", palette=Image.Palette.ADAPTIVE)
    second = Image.new("P", (250, 250), 0)
    import io

    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100)
    image = decode_image(buffer.getvalue(), max_pixels=LIMIT)
    assert image.std() > 20, "the first frame (a face), not the blank second frame"


def _gif_header(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HH", width, height)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", width, height)
        + b"\x00\x02\x02D\x01\x00;"
    )


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "text": (b"this is not an image at all, just words\n" * 20, "not an image"),
    "truncated-jpeg": (lfw_bytes("Colin_Powell", 1)[:3000], "truncated"),
    "truncated-png": (encode(lfw_rgb("Colin_Powell", 1), "PNG")[:5000], "truncated"),
    "bomb": (_gif_header(60000, 60000), "exceeds the limit"),
    "pdf": (b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "not an image"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_bytes_raise_image_unreadable_with_reason(case: str) -> None:
    data, reason = BAD_INPUTS[case]
    with pytest.raises(ImageUnreadable) as info:
        decode_image(data, max_pixels=LIMIT)
    assert info.value.code == "image_unreadable"
    assert reason in info.value.message


def test_pixel_limit_is_configurable() -> None:
    data = encode(lfw_rgb("Colin_Powell", 1), "PNG")
    assert decode_image(data, max_pixels=250 * 250).shape == (250, 250, 3)
    with pytest.raises(ImageUnreadable, match="exceeds the limit"):
        decode_image(data, max_pixels=250 * 250 - 1)


def _large(fmt: str, width: int, height: int, **kwargs: object) -> bytes:
    """An LFW face (250 px) on a plain canvas of ``width`` x ``height``, at (1000, 600)."""
    canvas = Image.new("RGB", (width, height), (120, 124, 118))
    canvas.paste(lfw_rgb("Colin_Powell", 1), (1000, 600))
    return encode(canvas, fmt, **kwargs)


def test_a_large_jpeg_is_decoded_reduced_by_draft_mode() -> None:
    data = _large("JPEG", 7000, 5000, quality=90)
    still = decode_still(data, max_pixels=LIMIT, max_side=4096)
    assert still.pixels.shape == (2500, 3500, 3) and still.scale == 0.5 and still.reduced
    assert (still.width, still.height) == (7000, 5000), "the still's own size is kept"
    full = decode_still(data, max_pixels=LIMIT)
    assert full.pixels.shape == (5000, 7000, 3) and full.scale == 1.0 and not full.reduced
    # The same place at either size: the working pixel (x, y) is the still's (x, y) / scale.
    face = full.pixels[600:850, 1000:1250].astype(np.float64)
    small = still.pixels[300:425, 500:625].astype(np.float64)
    assert np.abs(face.reshape(125, 2, 125, 2, 3).mean(axis=(1, 3)) - small).mean() < 6.0
    eighth = decode_still(data, max_pixels=LIMIT, max_side=1000)
    assert eighth.pixels.shape == (625, 875, 3) and eighth.scale == 0.125


def test_a_still_within_the_working_size_is_decoded_whole() -> None:
    data = lfw_bytes("Colin_Powell", 1)
    still = decode_still(data, max_pixels=LIMIT, max_side=4096)
    assert still.pixels.shape == (250, 250, 3) and still.scale == 1.0 and (still.width, still.height) == (250, 250)


def test_exif_rotation_swaps_the_stills_own_size_too() -> None:
    canvas = Image.new("RGB", (6000, 3000), (120, 124, 118))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    data = encode(canvas, "JPEG", quality=80, exif=exif.tobytes())
    still = decode_still(data, max_pixels=LIMIT, max_side=4096)
    assert (still.width, still.height) == (3000, 6000) and still.pixels.shape == (3000, 1500, 3)


def test_a_large_png_has_no_draft_mode_and_is_reduced_after_decoding() -> None:
    still = decode_still(_large("PNG", 6000, 2000), max_pixels=LIMIT, max_side=4096)
    assert still.pixels.shape == (1000, 3000, 3) and still.scale == 0.5 and (still.width, still.height) == (6000, 2000)


def test_a_png_of_huge_dimensions_is_refused_by_the_pixel_limit_before_decoding() -> None:
    # 8000 x 8000 of one grey compresses to a few dozen kilobytes: a decompression bomb, which the
    # pixel limit refuses from its header whatever the working size (PNG has no draft mode).
    data = encode(Image.new("L", (8000, 8000), 128), "PNG")
    assert len(data) < 1_000_000
    with pytest.raises(ImageUnreadable, match="8000x8000 pixels exceeds the limit of 50000000"):
        decode_still(data, max_pixels=LIMIT, max_side=4096)
