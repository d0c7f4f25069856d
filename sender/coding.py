"""The coding stage on the thread that analyses frames: keyframes decided and built, each code's
values prepared — the costly, pure part of coding, which the sender's replica of the receiver can
see. The uplink then only numbers, entropy-codes and paces what this stage hands it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from facewire.sender.keyframes import KeyframePolicy
from facewire.sender.timing import StageTimes
from facewire.shared.codec.body import BodyPreparer
from facewire.shared.codec.fields import FIELD_CODECS, CodedFrame, FieldPreparer, Prepared, face_code
from facewire.shared.codec.frames import REFERENCES, KeyframePackage, build_keyframe
from facewire.shared.codec.keyframe import KeyframeTooLarge
from facewire.shared.face.likeness import FaceLikeness, warp_cost
from facewire.shared.types import Analyzer, FrameAnalysis, KeyframeState, Landmarks

log = logging.getLogger(__name__)

# A keyframe's picture may take this long of the budget left after the frames: it crosses the
# link in parts between frames, so its time is the delay before a new look shows, not a stall.
KEYFRAME_SECONDS = 1.5
MIN_KEYFRAME_BYTES = 1200  # below this a person at 512 px is mush at any AVIF quality (REPORT of codec-layer)
MAX_KEYFRAME_BYTES = 48 * 1024
DEFAULT_BITRATE_BPS = 256_000.0  # the ceiling without --bitrate: the rate control finds the link below it
# The codes this sender offers, in order of preference (negotiation keeps the first of each role):
# the expression code (~16 B a frame), else raw landmarks for a receiver that lacks it; the body's
# motion (1 B a frame at rest, ~7 moving) where the receiver decodes it, else the body stays where the keyframe has it.
DEFAULT_CODES = ("expression", "landmarks", "body-motion")
# The body's motion is estimated against the keyframe chosen for a frame and the newest built, and for
# a while after a keyframe is built against the one before it too: the uplink draws a frame from the
# newest keyframe the receiver holds whole when it lacks the chosen one, and a new keyframe's parts
# take up to KEYFRAME_SECONDS to cross (twice that leaves room for a late start).
BODY_PREVIOUS_SECONDS = 2 * KEYFRAME_SECONDS


@dataclass
class Budget:
    """The rate the uplink's control allows, for the analysing thread to size what it builds.

    Written by the uplink (or the recorder), read by the analysing thread: single floats, replaced
    whole, so no lock is needed.
    """

    ceiling_bps: float = DEFAULT_BITRATE_BPS  # --bitrate: never above it
    target_bps: float = DEFAULT_BITRATE_BPS  # what the link allows now (at most the ceiling)
    features_bps: float = 0.0  # what the frames alone have been costing (smoothed)

    @classmethod
    def at_most(cls, ceiling_bps: float) -> Budget:
        return cls(ceiling_bps=ceiling_bps, target_bps=ceiling_bps)

    def observe_frame(self, nbytes: int, fps: float) -> None:
        """A frame of `nbytes` went, of a stream at `fps`."""
        self.features_bps += 0.1 * (nbytes * 8 * fps - self.features_bps)

    def keyframe_bytes(self) -> int:
        spare = max(self.target_bps - self.features_bps, 0.25 * self.target_bps)
        return int(min(max(spare * KEYFRAME_SECONDS / 8, MIN_KEYFRAME_BYTES), MAX_KEYFRAME_BYTES))


@dataclass(frozen=True)
class Outgoing:
    """One analysed frame ready for the uplink: its coded values, and what must reach the receiver
    before it (a new keyframe, setups of the codes). Items that carry state are never skipped."""

    frame: CodedFrame
    keyframe: KeyframePackage | None = None
    setups: tuple[tuple[str, bytes], ...] = ()
    times: StageTimes | None = None  # when live: how long its stages took
    reference: int | None = None  # the keyframe that draws this frame best, if the receiver holds it

    @property
    def carries_state(self) -> bool:
        return self.keyframe is not None or bool(self.setups)

    @staticmethod
    def merged(older: Outgoing, newer: Outgoing) -> Outgoing:
        """`newer` carrying what `older` carried too, for when `older` never went: its keyframe unless
        `newer` has one, and its setups, in order before the newer ones."""
        keyframe = newer.keyframe if newer.keyframe is not None else older.keyframe
        return dataclasses.replace(newer, keyframe=keyframe, setups=older.setups + newer.setups)


@dataclass
class ReferenceChooser:
    """Which of the keyframes built draws a frame best (the lowest expected warp loss), with a margin
    before switching (each switch makes the receiver's renderer prepare another keyframe). Keeps the
    faces of the last keyframes built, a few more than the receiver holds: the stream only uses a
    choice the receiver holds."""

    switch_margin: float = 0.02
    _faces: OrderedDict[int, FaceLikeness] = field(default_factory=OrderedDict)
    _chosen: int | None = None

    def clear(self) -> None:
        self._faces.clear()
        self._chosen = None

    def built(self, kf: int, landmarks: Landmarks | None) -> None:
        if landmarks is not None:
            self._faces[kf] = FaceLikeness.of(landmarks)
            while len(self._faces) > 2 * REFERENCES:
                self._faces.popitem(last=False)
        self._chosen = kf

    def choose(self, landmarks: Landmarks | None) -> tuple[int | None, float]:
        """The keyframe for a frame with these landmarks and its expected loss (0 with no face to judge)."""
        if landmarks is None or not self._faces:
            return self._chosen, 0.0
        face = FaceLikeness.of(landmarks)
        costs = {kf: warp_cost(reference, face) for kf, reference in self._faces.items()}
        best = min(costs, key=costs.__getitem__)
        held = costs.get(self._chosen) if self._chosen is not None else None
        if held is None or costs[best] < held - self.switch_margin:
            self._chosen = best
        return self._chosen, costs[self._chosen] if self._chosen in costs else costs[best]


@dataclass
class FrameCoder:
    """Takes the keyframe decision (KeyframePolicy), builds keyframes sized to the budget and prepares
    every code this sender offers (whichever the session picks is then ready). One per stream, used by
    the analysing thread only; the policy's requests may come from any thread."""

    codes: Sequence[str] = DEFAULT_CODES
    budget: Budget = field(default_factory=Budget)
    policy: KeyframePolicy = field(default_factory=KeyframePolicy)
    kf: int = 0
    _preparers: dict[str, FieldPreparer] = field(init=False, repr=False)
    _quality_hint: int = 40  # the last keyframe's AVIF quality: the next search starts there
    _resend: threading.Event = field(default_factory=threading.Event, repr=False)
    _references: ReferenceChooser = field(default_factory=ReferenceChooser)
    # The keyframes built, as the receiver decodes them (the layer's replica draws from them): as many as
    # the chooser may name.
    _states: OrderedDict[int, KeyframeState] = field(default_factory=OrderedDict)
    _built_us: int = 0  # when the newest keyframe was built

    def __post_init__(self) -> None:
        self._preparers = {name: FIELD_CODECS[name].new_preparer() for name in self.codes}

    def restart(self) -> None:
        """A new session (any thread): its receiver holds nothing, so the next frame brings every code's
        setup again, and a keyframe."""
        self._resend.set()
        self.policy.request()

    def code(self, analyzer: Analyzer, analysis: FrameAnalysis) -> Outgoing:
        prepared = {name: value for name, preparer in self._preparers.items()
                    if (value := preparer.prepare(analysis)) is not None}
        setups = [(name, setup) for name, preparer in self._preparers.items()
                  if (setup := preparer.take_setup()) is not None]
        if self._resend.is_set():
            self._references.clear()  # a new receiver holds none of them
            self._states.clear()
        face = prepared.get(face_code(self.codes))
        landmarks = None if face is None else face.landmarks
        reference, drift = self._references.choose(landmarks)
        keyframe = None
        if self.policy.decide(analysis, drift):
            # The despilled foreground is costly (~20 ms), so it is asked for keyframes only.
            keyframe = self._keyframe(dataclasses.replace(analysis, foreground=analyzer.foreground()), prepared)
            if keyframe is not None:
                self._references.built(keyframe.kf, landmarks)
                reference = keyframe.kf
        # A keyframe is where a receiver starts over (a new session, a lost setup, a request), so every
        # code's setup in use goes with it. Checked after the decision: restart() raises the flag before
        # it requests the keyframe, so a session's first keyframe never goes without its setups.
        if self._resend.is_set() or keyframe is not None:
            self._resend.clear()
            fresh = {name for name, _ in setups}
            setups += [(name, setup) for name, preparer in self._preparers.items()
                       if name not in fresh and (setup := preparer.current_setup()) is not None]
        self._prepare_body(analysis, prepared, reference)
        return Outgoing(CodedFrame(analysis, prepared), keyframe, tuple(setups), reference=reference)

    def keyframe_state(self, kf: int | None) -> KeyframeState | None:
        """Keyframe `kf` as the receiver decodes it, while the coder keeps it."""
        return None if kf is None else self._states.get(kf)

    def _prepare_body(self, analysis: FrameAnalysis, prepared: dict[str, Prepared], reference: int | None) -> None:
        """The body's motion against each keyframe the uplink may draw this frame from."""
        face = prepared.get(face_code(self.codes))
        built = list(self._states)
        recent = analysis.frame.ts_us - self._built_us < BODY_PREVIOUS_SECONDS * 1e6
        kfs = [*built[-2 if recent else -1:], *([] if reference is None else [reference])]
        keyframes = {kf: state for kf in kfs if (state := self.keyframe_state(kf)) is not None}
        for name, preparer in self._preparers.items():
            if isinstance(preparer, BodyPreparer):
                value = preparer.prepare_body(analysis, None if face is None else face.landmarks, keyframes)
                if value is not None:
                    prepared[name] = value

    def _keyframe(self, analysis: FrameAnalysis, prepared: dict[str, Prepared]) -> KeyframePackage | None:
        face = prepared.get(face_code(self.codes))
        # every offered face code's: the session (negotiated on another thread, maybe later) picks one
        codes = {name: self._preparers[name].keyframe_code(prepared[name]) for name in self.codes
                 if FIELD_CODECS[name].role == "face" and name in prepared}
        budget = self.budget.keyframe_bytes()
        try:
            package, state = build_keyframe(analysis, self.kf + 1, face, codes, budget, self._quality_hint)
        except KeyframeTooLarge as exc:
            log.warning("no keyframe this time, trying again in a while: %s", exc)
            self.policy.request_from_peer()  # rate-limited like a receiver's request: a hopeless budget is not retried every frame
            return None
        self.kf += 1
        self._quality_hint = package.quality
        self._states[package.kf] = state
        self._built_us = analysis.frame.ts_us
        while len(self._states) > 2 * REFERENCES:
            self._states.popitem(last=False)
        log.info("keyframe %d: %d bytes (picture %d at AVIF quality %d, budget %d)", self.kf, package.nbytes,
                 len(package.image), package.quality, budget)
        return package
