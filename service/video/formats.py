"""Whether an upload is meant as a clip, from its first bytes or its name (no decoder is loaded)."""

from __future__ import annotations

CLIP_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg")
# ISO base media brands of still images (HEIF/AVIF), not clips.
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
SNIFF_BYTES = 400


def looks_like_clip(head: bytes, file_name: str = "") -> bool:
    """Whether a file is meant as a clip: its first bytes are a video container's, or its name says so."""
    if file_name.lower().endswith(CLIP_SUFFIXES):
        return True
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # Matroska / WebM (EBML)
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] == b"\x00\x00\x01\xba":  # MPEG program stream
        return True
    # MPEG transport stream: a sync byte every 188 bytes (or 192, with a 4-byte timecode).
    return any(
        len(head) > step * 2 + off and all(head[off + step * i] == 0x47 for i in range(3))
        for step, off in ((188, 0), (192, 4))
    )
