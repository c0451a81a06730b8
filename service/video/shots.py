"""A track's best shots: its best faces by quality, a handful, spread over the time it is in view."""

from __future__ import annotations

from collections.abc import Sequence


def best_shots(times: Sequence[float], qualities: Sequence[float], k: int) -> list[int]:
    """Indices of up to ``k`` faces of one track, in time order.

    The best face by quality first, then the best of the rest that is at least a ``1/(2k)`` share
    of the track's span away from every face taken, so the shots show the person at several
    moments (other angles, other light) rather than ``k`` neighbouring frames of one; if that
    leaves fewer than ``k``, the best of the remaining faces fill up.
    """
    if not times:
        return []
    span = max(times) - min(times)
    spacing = span / (2 * k) if k > 1 else 0.0
    order = sorted(range(len(times)), key=lambda i: (-qualities[i], times[i]))
    chosen: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        if all(abs(times[i] - times[j]) >= spacing for j in chosen):
            chosen.append(i)
    for i in order:
        if len(chosen) == k:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen, key=lambda i: times[i])
