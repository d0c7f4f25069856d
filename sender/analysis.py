"""Per-frame sender analysis: the face tracker and the matter behind shared.types.Analyzer."""

from __future__ import annotations

import time

from facewire.shared.types import CapturedFrame, FaceTracker, FrameAnalysis, Image, Matter


class SenderAnalyzer:
    """Runs the tracker, then the matter (which may use the face, e.g. to place a region), on
    each frame. `last_timings_ms` holds the wall time of each stage for the last frame, for the
    bench and the sender's stats; a matter of None sends no alpha (--matte none)."""

    def __init__(self, tracker: FaceTracker, matter: Matter | None) -> None:
        self.tracker = tracker
        self.matter = matter
        self.last_timings_ms: dict[str, float] = {}

    def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
        t0 = time.perf_counter()
        face = self.tracker.track(frame)
        t1 = time.perf_counter()
        alpha = self.matter.matte(frame, face) if self.matter is not None else None
        t2 = time.perf_counter()
        self.last_timings_ms = {"track": (t1 - t0) * 1e3, "matte": (t2 - t1) * 1e3}
        return FrameAnalysis(frame=frame, face=face, alpha=alpha)

    def foreground(self) -> Image | None:
        """The last frame with the screen and its spill removed, when the matter computes that (chroma keys).

        Costly (about 20 ms at 640x480), so the sender asks only for frames that will become keyframes.
        """
        return self.matter.foreground() if self.matter is not None else None

    def reset(self) -> None:
        """A new scene or a seek: the matter forgets its temporal state (plate, choice)."""
        if self.matter is not None:
            self.matter.reset()
        self.tracker.reset()

    def close(self) -> None:
        self.tracker.close()
        if self.matter is not None:
            self.matter.close()
