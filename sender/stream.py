"""Sequence numbers, keyframe policy and feature encoding for one stream of analysed frames."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facewire.shared.codec.frames import FrameEncoder
from facewire.shared.face.measures import eyes_shut
from facewire.shared.types import FrameAnalysis
from facewire.shared.wire import messages as m


@dataclass
class KeyframePolicy:
    """When to send a keyframe: first, on request, when a face first shows, and every `interval_s`.

    The receiver measures expression against the keyframe's face, so a periodic keyframe waits (at
    most `max_wait_s`) while the eyes are shut: a blink caught there would be everyone's neutral.
    """

    interval_s: float = 10.0
    max_wait_s: float = 1.0
    _last_us: int | None = None
    _last_had_face: bool = False
    _requested: bool = True

    def request(self) -> None:
        self._requested = True

    def due(self, analysis: FrameAnalysis) -> bool:
        ts = analysis.frame.ts_us
        face_appeared = not self._last_had_face and analysis.face is not None and analysis.face.state == "tracked"
        if self._requested or face_appeared:
            return True
        if self._last_us is None or ts - self._last_us < self.interval_s * 1e6:
            return False
        overdue = ts - self._last_us >= (self.interval_s + self.max_wait_s) * 1e6
        return overdue or analysis.face is None or not eyes_shut(analysis.face.landmarks.astype(np.float64))

    def sent(self, analysis: FrameAnalysis) -> None:
        self._requested = False
        self._last_us = analysis.frame.ts_us
        self._last_had_face = analysis.face is not None


@dataclass
class FeatureStream:
    """Encodes analysed frames into the messages of one link session, in send order."""

    encoder: FrameEncoder = field(default_factory=FrameEncoder)
    policy: KeyframePolicy = field(default_factory=KeyframePolicy)
    seq: int = 0
    kf: int = 0
    keyframes: int = 0

    def restart(self) -> None:
        """A new link session: the receiver holds nothing, so start with a keyframe and intra codes."""
        self.encoder.force_intra()
        self.policy.request()

    def keyframe_due(self, analysis: FrameAnalysis) -> bool:
        return self.policy.due(analysis)

    def request_keyframe(self) -> None:
        self.policy.request()

    def encode(self, analysis: FrameAnalysis) -> list[m.Message]:
        out: list[m.Message] = []
        if self.policy.due(analysis):
            self.kf += 1
            self.keyframes += 1
            out.append(self.encoder.keyframe(analysis, kf=self.kf, seq=self._next_seq()))
            self.policy.sent(analysis)
        out.append(self.encoder.frame(analysis, seq=self._next_seq(), kf=self.kf))
        return out

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 2**32
        return self.seq
