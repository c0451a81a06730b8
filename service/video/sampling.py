"""Which frames of a clip are analysed: a few a second, denser while faces are in view."""

from __future__ import annotations


class FrameSampler:
    """Takes the first frame at or after each due time.

    After a frame with faces the next is due ``1/dense_fps`` later, otherwise ``1/sample_fps``
    later. A span (a segment of a clip) starts afresh at its start, so the frames a span samples
    do not depend on whether the span before it was processed in the same run.
    """

    def __init__(self, sample_fps: float, dense_fps: float, start_s: float = 0.0) -> None:
        self.sparse_step = 1.0 / sample_fps
        self.dense_step = 1.0 / max(dense_fps, sample_fps)
        self.due = start_s
        self.taken: list[float] = []

    def wants(self, t: float) -> bool:
        """Whether the frame at ``t`` is taken; asked once per decoded frame, in time order."""
        if t + 1e-6 < self.due:
            return False
        self.taken.append(t)
        self.due = t + self.sparse_step  # until told the frame held faces
        return True

    def saw(self, t: float, faces: int) -> None:
        """What the frame taken at ``t`` held: with faces, the next frame is due sooner."""
        if faces:
            self.due = t + self.dense_step
