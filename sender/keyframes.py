"""When the sender sends a keyframe (decided on the thread that analyses frames, once per frame)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from facewire.shared.face.measures import eyes_shut, mouth_ratio
from facewire.shared.types import FrameAnalysis

# How long a recording's first keyframe may wait for a closed mouth (KeyframePolicy.settle_s).
RECORDING_SETTLE_S = 0.5


@dataclass
class KeyframePolicy:
    """When to send a keyframe: first, when a session starts, when a face first shows, every
    `interval_s`, and when the receiver asks — at most once every `peer_request_gap_s` (a receiver
    cannot make the sender spend its link on keyframes; a request is deferred, not dropped).

    The receiver measures expression against the keyframe's face, so a periodic keyframe waits (at
    most `max_wait_s`) while the eyes are shut: a blink caught there would be everyone's neutral.

    And when the face has drifted: when even the best keyframe the receiver holds is expected to
    lose more than `drift_cost` of face SSIM drawing this frame (facewire.shared.face.likeness), at
    most once every `drift_gap_s`.
    """

    interval_s: float = 10.0
    max_wait_s: float = 1.0
    peer_request_gap_s: float = 2.0
    drift_cost: float = 0.07  # about the median cost of a random keyframe for a frame of the same clip
    drift_gap_s: float = 3.0
    settle_s: float = 0.0
    settle_open: float = 0.25  # the inner lips' gap over the mouth's width (facewire.shared.face.measures.mouth_ratio)
    settle_closed: float = 0.08
    _settling_since_us: int | None = None  # when the first keyframe began to wait for a closed mouth
    _settled_from_us: int | None = None  # ... once it came: the time it stands for
    _last_us: int | None = None
    _last_had_face: bool = False
    _last_peer_us: int | None = None
    _requested: threading.Event = field(default_factory=threading.Event)
    _peer_requested: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._requested.set()  # the first frame is a keyframe

    def request(self) -> None:
        """A keyframe as soon as possible: a session (re)starts (any thread)."""
        self._requested.set()

    def request_from_peer(self) -> None:
        """The receiver asked for a keyframe (any thread); served within the rate limit."""
        self._peer_requested.set()

    def decide(self, analysis: FrameAnalysis, drift: float = 0.0, drift_gap_s: float | None = None,
               own: bool = True) -> bool:
        """Whether this frame becomes a keyframe (the analysing thread only); a yes counts as sent.
        `drift`: the expected loss of the best keyframe held for this frame; `drift_gap_s`: the least
        time between drifted keyframes now, if longer than the policy's own (a thin budget's); `own`: whether
        the sender's own keyframes (periodic, drifted) may come now (requested ones always may)."""
        ts = analysis.frame.ts_us
        requested = self._requested.is_set()
        if requested and self._last_us is None and self._settling(analysis):
            return False
        if requested:
            self._requested.clear()  # a request landing after this is served by a later frame
            if self._last_us is None:
                self._settled_from_us = self._settling_since_us
        peer = self._peer_requested.is_set() and (
            self._last_peer_us is None or ts - self._last_peer_us >= self.peer_request_gap_s * 1e6)
        if peer:
            self._peer_requested.clear()
            self._last_peer_us = ts
        gap_s = max(self.drift_gap_s, drift_gap_s or 0.0)
        drifted = own and drift > self.drift_cost and self._last_us is not None and ts - self._last_us >= gap_s * 1e6
        if not (requested or peer or drifted or (own and self._due(analysis))):
            return False
        self._last_us = ts
        self._last_had_face = analysis.face is not None
        return True

    def keyframe_ts(self, ts_us: int) -> int:
        """The capture time a keyframe decided at `ts_us` carries: the session's first, when it waited for a closed
        mouth, carries the time it began to wait, so the frames before its own are drawn from it (a frame's time is
        coded after its keyframe's)."""
        since, self._settled_from_us = self._settled_from_us, None
        return ts_us if since is None else min(since, ts_us)

    def _settling(self, analysis: FrameAnalysis) -> bool:
        """Whether the session's first keyframe waits for this face's mouth to close."""
        if self.settle_s <= 0.0 or analysis.face is None:
            return False
        ratio = mouth_ratio(analysis.face.landmarks.astype(np.float64))
        ts = analysis.frame.ts_us
        if self._settling_since_us is None:
            if ratio <= self.settle_open:
                return False
            self._settling_since_us = ts
        return ratio > self.settle_closed and ts - self._settling_since_us < self.settle_s * 1e6

    def _due(self, analysis: FrameAnalysis) -> bool:
        ts = analysis.frame.ts_us
        if not self._last_had_face and analysis.face is not None and analysis.face.state == "tracked":
            return True  # a face appeared
        if self._last_us is None or ts - self._last_us < self.interval_s * 1e6:
            return False
        overdue = ts - self._last_us >= (self.interval_s + self.max_wait_s) * 1e6
        return overdue or analysis.face is None or not eyes_shut(analysis.face.landmarks.astype(np.float64))
