"""Stills and clips of a submission: what a probe image is, and when each shot of a clip was taken."""

from __future__ import annotations

from datetime import datetime, timedelta

STILL = "image"  # ProbeImage.media of a still
CLIP = "video"  # ProbeImage.media of a clip: its faces are its tracks' best shots


def shot_captured_at(clip_start: datetime | None, time_s: float) -> datetime | None:
    """A shot's capture time: the clip's start (its provenance ``captured_at``) plus the shot's offset."""
    return None if clip_start is None else clip_start + timedelta(seconds=time_s)
