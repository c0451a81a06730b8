"""The house rules, checked in CI: the layer contracts (import-linter), lint, format and strict types.

These run the maintained tools on the whole tree, so a change that imports upwards, adds an import
circle, runs SQL in a router or leaves a type hole fails the suite like any other defect.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_layer_contracts_are_kept() -> None:
    result = run(tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_ruff_lint_and_format_are_clean() -> None:
    lint = run(tool("ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-6000:]
    formatted = run(tool("ruff"), "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout[-6000:]


def test_mypy_strict_is_clean() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
