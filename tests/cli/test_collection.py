"""Which commands run with the cyclic garbage collector on.

A short command runs with it off (its time is mostly imports); a command whose work grows with its
input must collect, or the cyclic garbage of every image it handles stays in memory (an import of
4,000 custody images grew steadily by 9 MiB per 1,000 with it off: ``benchmarks/enrolment.py``).
"""

from __future__ import annotations

import argparse
import gc
from types import ModuleType

import pytest

from service import cli
from service.cli import audit, faces, gallery, retention, submissions, users


def _seen_collecting(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, argv: list[str]) -> bool:
    """Run ``rfr ARGV`` with its command replaced by one noting whether the collector is on."""
    seen: list[bool] = []

    def note(args: argparse.Namespace) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(module, name, note)
    assert cli.main(argv) == 0
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    ("module", "name", "argv"),
    [
        (gallery, "cmd_gallery_import", ["gallery", "import", "FOLDER"]),
        (submissions, "cmd_submit", ["submit", "FOLDER", "--case", "C", "--purpose", "P"]),
        (faces, "cmd_faces", ["faces", "FOLDER"]),
        (retention, "cmd_purge", ["purge"]),
        (audit, "cmd_audit", ["audit", "verify"]),
        (audit, "cmd_audit", ["audit", "export", "--recipient", "R"]),
    ],
)
def test_commands_whose_work_grows_with_their_input_collect(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, argv: list[str]
) -> None:
    assert gc.isenabled()
    assert _seen_collecting(monkeypatch, module, name, argv)
    assert gc.isenabled()


def test_a_short_command_runs_without_collecting_and_leaves_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _seen_collecting(monkeypatch, users, "cmd_users", ["users", "list"])
    assert gc.isenabled()
