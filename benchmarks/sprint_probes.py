"""What the sprint benchmark's parts share: its top-k, its log, and each condition's prepared probes.

A condition (``clean`` or a CCTV-like degradation, see ``benchmarks/degrade.py``) is prepared once:
the degraded bytes of every probe and where the named person's face should now be. The same bytes
go to rfr (``benchmarks/sprint.py``) and to the peer (``benchmarks/sprint_peer.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import degrade as deg
from benchmarks.identification import Probe

TOP_K = 50  # candidates per search: NIST's investigation mode


def log(message: str) -> None:
    sys.stderr.write(f"[sprint {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def timing_text(timing: dict[str, Any]) -> str:
    return f"{timing['images']} images in {timing['end_to_end_s']} s ({timing['images_per_s']} images/s)"


@dataclass(slots=True)
class Prepared:
    """One condition's probe files, ready to upload (and to hand to the peer)."""

    name: str
    description: str
    probes: list[Probe]
    data: list[bytes]
    expected: list[tuple[float, float]]  # where the named face's centre is, per probe
    seconds: float


def prepare_condition(name: str, probes: Sequence[Probe], seed: int) -> Prepared:
    steps = deg.parse_condition(name)
    started = time.perf_counter()
    data, expected = [], []
    for probe in probes:
        raw = probe.path.read_bytes()
        out = deg.degrade_file(raw, steps, deg.probe_rng(seed, name, probe.key))
        data.append(out.data)
        expected.append(out.face.centre)
    return Prepared(name, deg.describe(steps), list(probes), data, expected, time.perf_counter() - started)
