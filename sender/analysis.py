"""Per-frame sender analysis: the face tracker and the matter behind shared.types.Analyzer."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

from facewire.sender.matte.skipping import SkippingMatter
from facewire.shared.types import (
    Analyzer,
    CapturedFrame,
    FaceObservation,
    FaceTracker,
    FrameAnalysis,
    Image,
    Matter,
    MatteSkippingAnalyzer,
)


class SenderAnalyzer:
    """Runs the tracker and the matter on each frame, side by side: the tracker on a thread of its own, the
    matter on the caller's (MediaPipe releases the GIL, so on two cores a frame's analysis takes about the
    longer of the two instead of their sum: ~6 ms each at 640x480). `last_timings_ms` holds each stage's own
    wall time for the last frame, for the bench and the sender's stats; a matter of None sends no alpha
    (--matte none). One caller at a time; the tracker is only ever run on its thread."""

    def __init__(self, tracker: FaceTracker, matter: Matter | None) -> None:
        self.tracker = tracker
        self.matter = matter
        self.last_timings_ms: dict[str, float] = {}
        self._skipped: CapturedFrame | None = None  # the last frame analysed, when its matte was left out
        self._tracking = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="track")

    def _track(self, frame: CapturedFrame) -> tuple[FaceObservation | None, float]:
        start = time.perf_counter()
        face = self.tracker.track(frame)
        return face, (time.perf_counter() - start) * 1e3

    def analyze(self, frame: CapturedFrame, matte: bool = True, coarse: bool = False) -> FrameAnalysis:
        """The frame's face and matte; `matte` False: no one asks for this frame's matte (FrameCoder.matte_every_frame),
        and a matter that can (SkippingMatter) leaves it out: `with_matte` makes it later if it is needed after
        all. (The matte is read on keyframes and by the per-frame alpha codes only: at 16 kbps with the residual
        layer, on keyframes alone.) `coarse`: such a frame still gets the matter's CoarseMatte where it makes one
        (the body's motion reads it: FrameCoder.coarse_every_frame); a frame matted gets it anyway."""
        tracking = self._tracking.submit(self._track, frame)
        start = time.perf_counter()
        alpha = None
        try:
            if not matte and isinstance(self.matter, SkippingMatter):
                alpha = self.matter.optional_matte(frame, coarse)
            elif self.matter is not None:
                alpha = self.matter.matte(frame)
            matte_ms = (time.perf_counter() - start) * 1e3
        finally:
            face, track_ms = tracking.result()  # the tracker is never left running into the next call
        self._skipped = frame if alpha is None and self.matter is not None else None
        self.last_timings_ms = {"track": track_ms, "matte": matte_ms}
        rough = self.matter.coarse(frame) if isinstance(self.matter, SkippingMatter) else None
        return FrameAnalysis(frame=frame, face=face, alpha=alpha, coarse=rough)

    def with_matte(self, analysis: FrameAnalysis) -> FrameAnalysis:
        """`analysis` with its matte when `analyze` left it out (the last frame analysed only), else as it is."""
        if self._skipped is None or analysis.frame is not self._skipped:
            return analysis
        assert isinstance(self.matter, SkippingMatter)
        self._skipped = None
        return dataclasses.replace(analysis, alpha=self.matter.late_matte(analysis.frame))

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
        self._tracking.shutdown(wait=True)
        self.tracker.close()
        if self.matter is not None:
            self.matter.close()


def analyse(analyzer: Analyzer, frame: CapturedFrame, matte: bool, coarse: bool = False) -> FrameAnalysis:
    """`analyzer.analyze(frame)`, its matte left out when `matte` is False and the analyzer can (MatteSkippingAnalyzer),
    then with its CoarseMatte when `coarse`."""
    if isinstance(analyzer, MatteSkippingAnalyzer):
        return analyzer.analyze(frame, matte, coarse)
    return analyzer.analyze(frame)


def with_matte(analyzer: Analyzer, analysis: FrameAnalysis) -> FrameAnalysis:
    """`analysis` with the matte `analyse` left out, when it did (MatteSkippingAnalyzer.with_matte)."""
    return analyzer.with_matte(analysis) if isinstance(analyzer, MatteSkippingAnalyzer) else analysis
