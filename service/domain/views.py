"""Views of a custody record: the front view and the turned views taken beside it.

Custody suites photograph a detained person from several angles. Each image of a record is one
*view*, named from the camera's side by where the head is turned: ``front``; ``left`` and
``right`` (about 40 degrees); ``left_profile`` and ``right_profile`` (about 70-90 degrees). An
operator may also name a view in free text. A view named by nobody is read from the face's yaw.
"""

from __future__ import annotations

from service.errors import InvalidRequest

FRONT = "front"
NAMED_VIEWS = (FRONT, "left", "right", "left_profile", "right_profile")
# Yaw (degrees, positive when the nose points to the image's right) beyond which a face is a
# turned view, and beyond which a profile.
TURNED_YAW_DEG = 25.0
PROFILE_YAW_DEG = 60.0
MAX_VIEW_LENGTH = 64
# The kinds of gallery template: one per view, and a record's fused template (its views' mean).
VIEW_TEMPLATE = "view"
FUSED_TEMPLATE = "fused"


def normalise_view(text: str | None) -> str | None:
    """An operator's view label, tidied (``Left Profile`` -> ``left_profile``); None if empty."""
    if text is None or not text.strip():
        return None
    view = "_".join(text.strip().lower().replace("-", " ").split())
    if len(view) > MAX_VIEW_LENGTH:
        raise InvalidRequest(f"a view label is at most {MAX_VIEW_LENGTH} characters")
    return view


def view_from_yaw(yaw_deg: float) -> str:
    """The named view a face's yaw reads as."""
    if abs(yaw_deg) < TURNED_YAW_DEG:
        return FRONT
    side = "right" if yaw_deg > 0 else "left"
    return f"{side}_profile" if abs(yaw_deg) >= PROFILE_YAW_DEG else side


def label_view(given: str | None, turned: bool, yaw_deg: float) -> str:
    """The view an enrolled image is: as named, else ``front`` for a face that passes the front-view
    gate and the yaw's reading for a turned one (``tilted`` if it is turned by its pitch alone)."""
    if given:
        return given
    if not turned:
        return FRONT
    view = view_from_yaw(yaw_deg)
    return "tilted" if view == FRONT else view


def is_front(view: str) -> bool:
    return view == FRONT
