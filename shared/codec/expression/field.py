"""The expression code on the codec seam (facewire.shared.codec.fields registers it as capability
`expression`, role `face`).

- The preparer (the sender's analysing thread) runs the neutral estimator and quantises each
  frame on absolute grids, so `Prepared.landmarks` is exactly what the receiver draws; a new
  neutral becomes a setup (`take_setup`), and `current_setup` is the one in use for a receiver
  that holds nothing.
- The encoder (send time) range-codes the indices predicted from the last frame it coded, so a
  skipped frame never feeds it; it learns the receiver's neutral from the setups that went.
- The decoder keeps the last few neutrals: frames decode with the newest, a keyframe's intra code
  with the one it names (its parts may cross the link while a newer neutral arrives).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from facewire.shared.codec.expression.basis import ExpressionBasis, Steps, shipped_basis
from facewire.shared.codec.expression.code import (
    GENERATION_MASK,
    I64,
    Grid,
    Neutral,
    Prediction,
    decode_frame,
    encode_frame,
    quantise,
    read_header,
    reconstruct,
)
from facewire.shared.codec.expression.neutral import NeutralConfig, NeutralSource, decode_setup, encode_setup
from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, Prepared
from facewire.shared.face.pose import head_pose, to_canonical
from facewire.shared.types import FrameAnalysis, Landmarks

log = logging.getLogger(__name__)

CAPABILITY = "expression"
NEUTRALS_HELD = 4  # a keyframe's code may name a neutral this many setups old


@dataclass(frozen=True, eq=False)
class ExpressionValues:
    """One frame's prepared code: its grid indices under `neutral`."""

    neutral: Neutral
    q: I64


class ExpressionPreparer:
    def __init__(self, basis: ExpressionBasis | None = None, steps: Steps | None = None,
                 config: NeutralConfig | None = None) -> None:
        basis = basis or shipped_basis()
        self.grid = Grid(basis, (steps or basis.default_steps).fixed())
        self.source = NeutralSource(self.grid, config)
        self._pending: bytes | None = None
        self._current: bytes | None = None
        self._warned = False
        # The least time between a setup and the next new neutral (the sender sets it from its budget: a
        # setup is ~450-650 bytes, a second of a 6-kbps link, and the first seconds bring 2-4 of them).
        self.min_setup_gap_s = 0.0
        self._setup_us: int | None = None  # when the last new neutral was adopted

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        face = analysis.face
        if face is None:
            return None
        try:
            if face.state == "tracked":  # a held face repeats the last one: nothing new about the neutral
                ts = analysis.frame.ts_us
                may_replace = self._setup_us is None or ts - self._setup_us >= self.min_setup_gap_s * 1e6
                new = self.source.observe(to_canonical(face.landmarks, face.pose), face.pose, may_replace)
                if new is not None:
                    self._current = self._pending = encode_setup(new)
                    self._setup_us = ts
            neutral = self.source.neutral
            if neutral is None:
                return None
            q = quantise(neutral, face.pose, face.landmarks)
        except (CodeError, ValueError) as exc:  # a degenerate face from the tracker: this frame goes without
            if not self._warned:
                log.warning("expression code: frame %d not coded (%s)", analysis.frame.index, exc)
                self._warned = True
            return None
        return Prepared(landmarks=reconstruct(neutral, q)[1], values=ExpressionValues(neutral, q))

    def take_setup(self) -> bytes | None:
        pending, self._pending = self._pending, None
        return pending

    def current_setup(self) -> bytes | None:
        return self._current

    def keyframe_code(self, prepared: Prepared) -> bytes:
        values = _values(prepared)
        return encode_frame(values.neutral, values.q, None)

    def recoded(self, prepared: Prepared, landmarks: Landmarks) -> Prepared:
        neutral = _values(prepared).neutral
        q = quantise(neutral, head_pose(landmarks), landmarks)
        return Prepared(landmarks=reconstruct(neutral, q)[1], values=ExpressionValues(neutral, q))


def _values(prepared: Prepared) -> ExpressionValues:
    if not isinstance(prepared.values, ExpressionValues):
        raise TypeError(f"the expression encoder was handed {type(prepared.values).__name__}, not its own values")
    return prepared.values


class ExpressionEncoder:
    def __init__(self, basis: ExpressionBasis | None = None) -> None:
        self.basis = basis or shipped_basis()
        self.neutral: Neutral | None = None  # what the receiver holds
        self.prediction = Prediction()
        self._warned = False

    def setup(self, payload: bytes) -> None:
        neutral = decode_setup(self.basis, payload)
        if self.neutral is not None and neutral.grid.steps != self.neutral.grid.steps:
            self.prediction.reset()  # the decoder forgets its prediction when the grids change
        self.neutral = neutral

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        prepared = frame.prepared.get(CAPABILITY)
        if prepared is None:
            return None
        values = _values(prepared)
        held = self.neutral
        if (held is None or held.generation != values.neutral.generation) and not self._warned:
            # Setups go before the frames prepared with them, so this means one was lost on the way:
            # the receiver refuses the frame and asks for a keyframe, which brings the setup again.
            log.warning("expression code: frame prepared for neutral %d, the receiver holds %s",
                        values.neutral.generation, "none" if held is None else held.generation)
            self._warned = True
        if intra:
            self.prediction.reset()
        return encode_frame(values.neutral, values.q, self.prediction)

    def reset(self) -> None:
        self.prediction.reset()


class ExpressionDecoder:
    def __init__(self, basis: ExpressionBasis | None = None) -> None:
        self.basis = basis or shipped_basis()
        self.neutrals: deque[Neutral] = deque(maxlen=NEUTRALS_HELD)
        self.prediction = Prediction()

    def setup(self, payload: bytes) -> None:
        neutral = decode_setup(self.basis, payload)
        if self.neutrals and neutral.grid.steps != self.neutrals[-1].grid.steps:
            self.prediction.reset()
        self.neutrals.append(neutral)

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        if not self.neutrals:
            raise CodeError("expression code before any setup (the sender's neutral face)")
        neutral = self.neutrals[-1]
        draft.landmarks = reconstruct(neutral, decode_frame(neutral, payload, self.prediction))[1]

    def decode_keyframe(self, payload: bytes) -> Landmarks:
        intra, generation = read_header(payload)
        if not self.neutrals:
            raise CodeError("a keyframe's expression code before any setup (the sender's neutral face)")
        if not intra:
            raise CodeError("a keyframe's expression code must be intra")
        neutral = next((n for n in reversed(self.neutrals) if n.generation & GENERATION_MASK == generation), None)
        if neutral is None:
            held = [n.generation for n in self.neutrals]
            raise CodeError(f"keyframe's expression code names neutral generation {generation} (mod 16), "
                            f"this decoder holds {held}")
        return reconstruct(neutral, decode_frame(neutral, payload, None))[1]

    def reset(self) -> None:
        self.prediction.reset()

