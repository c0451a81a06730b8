"""service.domain.views: naming the views of a custody record."""

from __future__ import annotations

import pytest

from service.domain.views import label_view, normalise_view, view_from_yaw
from service.errors import InvalidRequest


def test_an_operators_label_is_tidied_and_bounded() -> None:
    assert normalise_view(" Left Profile ") == "left_profile"
    assert normalise_view("three-quarter  right") == "three_quarter_right"
    assert normalise_view("") is None and normalise_view(None) is None
    with pytest.raises(InvalidRequest):
        normalise_view("x" * 65)


def test_the_yaw_reads_as_a_named_view() -> None:
    assert view_from_yaw(10.0) == "front"
    assert view_from_yaw(-40.0) == "left" and view_from_yaw(40.0) == "right"
    assert view_from_yaw(-75.0) == "left_profile" and view_from_yaw(89.0) == "right_profile"


def test_an_unnamed_view_is_front_when_it_passes_the_gate_else_read_from_its_pose() -> None:
    assert label_view(None, turned=False, yaw_deg=30.0) == "front"
    assert label_view(None, turned=True, yaw_deg=-55.0) == "left"
    assert label_view(None, turned=True, yaw_deg=5.0) == "tilted", "turned by its pitch alone"
    assert label_view("right_profile", turned=True, yaw_deg=-55.0) == "right_profile", "as named"
