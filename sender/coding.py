"""The coding stage on the thread that analyses frames: keyframes decided and built, each code's
values prepared — the costly, pure part of coding, which the sender's replica of the receiver can
see. The uplink then only numbers, entropy-codes and paces what this stage hands it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from facewire.sender.analysis import with_matte
from facewire.sender.behind import Behind, background_worker
from facewire.sender.keyframes import KeyframePolicy
from facewire.sender.timing import StageTimes
from facewire.shared.codec.alpha_fix import AlphaFixPreparer
from facewire.shared.codec.body import BodyPreparer, BodyValues, motion_matrix
from facewire.shared.codec.expression.field import ExpressionPreparer
from facewire.shared.codec.fields import FIELD_CODECS, CodedFrame, FieldPreparer, Prepared, face_code
from facewire.shared.codec.frames import REFERENCES, KeyframePackage, build_keyframe
from facewire.shared.codec.keyframe import ALPHA_FACTOR, ALPHA_QUALITY, MIN_QUALITY, KeyframeTooLarge
from facewire.shared.codec.layer_field import LayerPreparer
from facewire.shared.face.likeness import FaceLikeness, warp_cost
from facewire.shared.types import Affine, Analyzer, FrameAnalysis, KeyframeState, Landmarks

log = logging.getLogger(__name__)

# A keyframe's picture may take this long of the budget left after the frames: it crosses the
# link in parts between frames, so its time is the delay before a new look shows, not a stall.
KEYFRAME_SECONDS = 1.5
# Live, a session's first keyframe is the first picture: nothing shows until all of it has crossed, and the
# link is not known yet. Half the usual seconds of the start rate: ~0.75 s sooner at 24 kbps; the periodic
# and drifted keyframes after it bring the quality back. (A recording's start is repaid over seconds: it
# keeps KEYFRAME_SECONDS.)
LIVE_FIRST_KEYFRAME_SECONDS = 0.75
MIN_KEYFRAME_BYTES = 1200  # below this a person at 512 px is mush at any AVIF quality (REPORT of codec-layer)
# A keyframe's alpha at 1/2 size is ~1.2 KB at 512 px (MAD 0.003), at 1/4 ~0.8 KB (MAD 0.006): the smaller one
# when the budget gives the picture no more than its floor (a ceiling of ~6 kbps), where the alpha at 1/2 would
# cost as much as the picture and the session's start is repaid over seconds in which the picture stands still.
THIN_ALPHA_FACTOR = 4
# and at a lower AVIF quality (~0.63 KB, MAD 0.006 -> 0.010 on the first frames of the 8 clips): at such a ceiling
# the session's start is repaid over 6 s in which the frames get what the repayment leaves, and ~170 bytes less
# of it is a step of frame rate sooner (every 4th input frame -> every 3rd).
THIN_ALPHA_QUALITY = 10
# When a ceiling cannot carry every frame, the frames go evenly, every `step`-th (FramePacer), at most this
# share of the ceiling: the rest repays the session's start (first keyframe, setups) and carries keyframes.
# Skipped irregularly by the bucket instead, the picture stood still for a varying number of frames (d3 at
# 6 kbps: 1 to 69), which is what the mouth and eye correlations with the input measure.
FRAMES_SHARE = 0.65
MAX_FRAME_STEP = 4  # below a quarter of the input's rate the face no longer moves as the input does
# A new neutral face (a setup, ~450-650 bytes) takes at most this share of what the link allows: at 6 kbps one
# every ~8 s instead of 3-4 in the first seconds (d18: 2.4 KB of setups froze the picture for 6.5 s); above
# ~50 kbps the estimator's own schedule (1, 2, 4 s...) is the limit.
SETUP_SHARE = 0.1
MAX_KEYFRAME_BYTES = 48 * 1024
# A session whose end is known (a recording of a file) holds the ceiling over the whole of it, however short: its
# first keyframe takes what the file's length allows less what the frames will cost (a frame of the face code is
# 17-24 bytes at 16 kbps, and the gate charges 6 of framing) and what else goes at the start (the identity, ~80 B).
# d0, 3.1 s at 16 kbps: its start sized for a 10-s window made it 20 kbps real.
FRAME_BYTES_PRIOR = 30
START_OTHER_BYTES = 128
KEYFRAME_ALPHA_PRIOR = 1300  # a keyframe's alpha at 1/2 size, bytes (1.0-1.5 KB on the 8 clips' first frames)
THIN_ALPHA_PRIOR = 650  # at THIN_ALPHA_FACTOR and THIN_ALPHA_QUALITY (~0.63 KB)
# A file too short to hold the picture's floor and the thin alpha beside the frames' share (d0, 3.1 s at 6 kbps: its
# start alone, 2.5 KB, was more than the file's 2.3 KB) holds the ceiling all the same: the frames give up their share
# down to every SHORT_FILE_STEP-th input frame (their cost at FRAME_BYTES_PRIOR), and the keyframe takes what that
# leaves, down to MIN_SHORT_PICTURE_BYTES of picture at a coarser scale (d0's first frame at 700 B: 1/2 scale, AVIF
# quality 11, softer but a face; at 500 B 1/4, mush) with the alpha at 1/8 size (~150 B where 1/4 was ~410).
SHORT_FILE_STEP = 3
MIN_SHORT_PICTURE_BYTES = 600
TINY_ALPHA_FACTOR = 8
TINY_ALPHA_PRIOR = 160
# A session's first keyframe sized to a short file takes the thin alpha when the usual one would be more than this
# share of what the file's length leaves it (at 16 kbps: files under ~4 s): d0, 3.1 s, picture AVIF quality 11 -> 23,
# face SSIM 0.858 -> 0.865 (alpha MAD ~0.003 -> ~0.010).
ALPHA_ROOM_SHARE = 0.25
DRIFT_KEYFRAME_SHARE = 0.25  # of the link, at most, for keyframes the face's drift brings
FINER_SCALE_QUALITY = 30  # a keyframe at 1/scale that reached this AVIF quality tries the finer scale next
DEFAULT_BITRATE_BPS = 256_000.0  # the ceiling without --bitrate: the rate control finds the link below it
# The codes this sender offers, in order of preference (negotiation keeps the first of each role):
# the expression code (~16 B a frame), else raw landmarks for a receiver that lacks it; the body's
# motion (1 B a frame at rest, ~7 moving) where the receiver decodes it, else the body stays where the keyframe has it.
# Where the receiver's predicted alpha is off, corrections of it (a few bytes a tile, held between frames).
DEFAULT_CODES = ("expression", "landmarks", "body-motion")
# Alpha corrections are offered only when asked for (`--alpha-fix on`): held 32-px tiles do not follow a moving
# head, and their edges show as square notches in the hair that a smooth, slightly wrong prediction does not.
ALPHA_FIX_CODES = (*DEFAULT_CODES, "alpha-fix")
# The residual layer's share: the gate keeps the rest as slack (frame sizes vary; a layer key frame is
# paid back over the next packets). SVT-AV1's real rate runs 0.5-1 kbps over its target at a few kbps,
# with the 3-byte packet headers (helper R6), so the target leaves that much.
LAYER_SHARE = 0.92
LAYER_OVERSHOOT_BPS = 800.0
MIN_LAYER_BPS = 2000.0  # below this a 96-px face box is mush and its key frames take seconds of the rate
MAX_LAYER_BPS = 64000.0  # a 96-px box gains little above this; the rest is left to the link
LAYER_CODES = ("residual-av1",)
# The alpha corrections' share of the rate: static errors are paid once, so a small share catches up in a
# second or two; what they spend the residual layer does without (it gets what the frames leave).
ALPHA_FIX_SHARE = 0.06
MAX_ALPHA_FIX_BPS = 6000.0
LAYERS = ("features", "features+residual")
# `--layers` by default: the residual layer when the ceiling leaves it its minimum beside the features
# (a few kbps with a compact face code) and the keyframes it yields to.
MIN_RESIDUAL_CEILING_BPS = 10_000.0
# Below this ceiling the residual layer, not the body's motion, gets the body code's ~1-1.3 kbps: the layer
# corrects the face with them, the body code only moves the shoulders (at 16 kbps on 8 clips, body off:
# face SSIM +0.002 to +0.012 at the same real rate; QUALITY's report). Above it the layer's share grows less.
MIN_BODY_WITH_LAYER_BPS = 20_000.0
# Below this ceiling (features only) the frames go every 3rd-4th input frame (FramePacer), and the body code's
# ~7 of a frame's ~40 link bytes buy frame rate instead: the mouth and lids are sampled more often, which is what
# the picture loses most at such rates (6 kbps, 8 clips, with THIN_ALPHA_QUALITY: MediaPipe mouth/eye correlation
# of the picture d12 0.55/0.64 -> 0.95/0.75, w0 0.74/0.81 -> 0.80/0.77, d6 0.85/0.71 -> 0.89/0.68; face SSIM equal or
# better; foreground SSIM -0.01, the shoulders stay where the keyframe has them).
MIN_BODY_FEATURES_BPS = 8_000.0
BODY_CODE = "body-motion"
# The codes that read every frame's matte (the alpha and its corrections code it). Without them only keyframes read
# it (the layer's residual is weighed by the receiver's alpha), and the analyser leaves the others' out.
MATTE_ROLES = ("alpha",)
# The codes that read every frame's CoarseMatte: the body's motion is fitted at 96 px wide, to which the network's mask
# at 320 px holds as much as the refined matte does (w1, d3, d6, d12: the keyframe's alpha moved by the motion fitted to
# either is off the frame's matte by the same, +-1%), and leaving the refinement out saves ~2.4 ms a frame at 640x480.
COARSE_ROLES = ("body",)


def codes_for(layers: str | None, ceiling_bps: float, self_mode: bool, face_codes: Sequence[str] = DEFAULT_CODES
              ) -> tuple[str, ...]:
    """The codes a sender offers for `--layers` (None: chosen by the budget). The residual layer corrects
    the sender's own face, so it is offered in self mode only: asked for with an avatar it is an error."""
    if layers is not None and layers not in LAYERS:
        raise ValueError(f"--layers must be one of {', '.join(LAYERS)}, got {layers!r}")
    if layers is None:
        layers = LAYERS[1] if self_mode and ceiling_bps >= MIN_RESIDUAL_CEILING_BPS else LAYERS[0]
    if layers == LAYERS[0]:
        if ceiling_bps < MIN_BODY_FEATURES_BPS:
            return tuple(code for code in face_codes if code != BODY_CODE)
        return tuple(face_codes)
    if not self_mode:
        raise ValueError("--layers features+residual corrects the sender's own face: it needs --identity self "
                         "and no --identity-dir")
    if ceiling_bps < MIN_BODY_WITH_LAYER_BPS:
        face_codes = tuple(code for code in face_codes if code != BODY_CODE)
    return (*face_codes, *LAYER_CODES)


@dataclass
class Budget:
    """The rate the uplink's control allows, for the analysing thread to size what it builds.

    Written by the uplink (or the recorder), read by the analysing thread: single floats, replaced
    whole, so no lock is needed.
    """

    ceiling_bps: float = DEFAULT_BITRATE_BPS  # --bitrate: never above it
    target_bps: float = DEFAULT_BITRATE_BPS  # what the link allows now (at most the ceiling)
    features_bps: float = 0.0  # what the frames alone have been costing (smoothed)
    first_keyframe_s: float = KEYFRAME_SECONDS  # seconds of the rate a session's first keyframe may take
    # Live, the most the layer may run at: its key frames (one per keyframe, ~200 B per kbps) must fit what
    # the uplink's window leaves beside the frames, or each waits for an empty link and the frames behind it
    # are skipped for a second (w1 at 24 kbps: 27% of the frames). Set by the uplink from its controller.
    layer_max_bps: float = float("inf")
    # When the session ends on the media clock, if known (a recording of a file: `ends`), and the input's rate.
    ends_us: int | None = None
    fps: float = 30.0
    # The session takes keyframes without their AVIF containers (`keyframe-av1`): a picture is sized by what travels.
    keyframe_av1: bool = False
    # Where the gate is known exactly (`gated`: a recording's `sending.Ceiling`, set by its runner): `features_bps` is
    # what the frames cost it (framing included, frames left out as nothing) and `repay_bps` what the session's start
    # takes of the ceiling now. The layer then has the rest, no margin kept (layer_bps).
    gated: bool = False
    repay_bps: float = 0.0
    _first: bool = True

    @classmethod
    def at_most(cls, ceiling_bps: float) -> Budget:
        return cls(ceiling_bps=ceiling_bps, target_bps=ceiling_bps)

    def observe_frame(self, nbytes: int, fps: float) -> None:
        """A frame of `nbytes` went, of a stream at `fps`."""
        rate = nbytes * 8 * fps
        # the first frame sets it: from 0 the layer would be offered the whole ceiling for its first (key) frames
        self.features_bps = rate if self._first else self.features_bps + 0.1 * (rate - self.features_bps)
        self._first = False

    def layer_bps(self) -> float:
        """The residual layer's rate: what the link allows (never above the ceiling) less the features, or 0
        when that leaves too little for a picture. Keyframes need no share of their own: the layer waits
        while a new one's parts are in transit, so they cross in the layer's time."""
        allowed = min(self.target_bps, self.ceiling_bps)
        if self.gated:
            # The gate itself keeps the slack (its bucket, the frames' reserve). Live margins here, with the frames
            # estimated as the features alone at every frame, left the layer ~2 kbps under what the gate passed at
            # 16 kbps: counted as what they cost the gate, the margins left 0.5-1.5 kbps of each recording unspent.
            spare = allowed - self.repay_bps - self.features_bps
        else:
            spare = LAYER_SHARE * allowed - self.features_bps - LAYER_OVERSHOOT_BPS
        spare = min(spare, self.layer_max_bps)
        return 0.0 if spare < MIN_LAYER_BPS else min(spare, MAX_LAYER_BPS)

    def alpha_fix_bps(self) -> float:
        """The alpha corrections' rate: a fixed share of what the link allows, never above MAX_ALPHA_FIX_BPS."""
        return min(ALPHA_FIX_SHARE * min(self.target_bps, self.ceiling_bps), MAX_ALPHA_FIX_BPS)

    def drift_gap_s(self, keyframe_bytes: int) -> float:
        """The least time between keyframes the sender sends for drift alone, so that they take at most
        DRIFT_KEYFRAME_SHARE of what the link allows (a keyframe is seconds of a thin link)."""
        return keyframe_bytes * 8 / max(DRIFT_KEYFRAME_SHARE * self.target_bps, 1.0)

    def setup_gap_s(self, setup_bytes: int) -> float:
        """The least time between setups of `setup_bytes` (SETUP_SHARE of what the link allows)."""
        return setup_bytes * 8 / max(SETUP_SHARE * self.target_bps, 1.0)

    def keyframe_bytes(self, first: bool = False) -> int:
        """The picture's bytes for a keyframe; `first`: the session's first (`first_keyframe_s`)."""
        spare = max(self.target_bps - self.features_bps, 0.25 * self.target_bps)
        seconds = self.first_keyframe_s if first else KEYFRAME_SECONDS
        return int(min(max(spare * seconds / 8, MIN_KEYFRAME_BYTES), MAX_KEYFRAME_BYTES))

    def ends(self, start_us: int, frames: int, fps: float) -> None:
        """The session, starting at `start_us`, lasts `frames` input frames at `fps` (a file of known length)."""
        self.ends_us, self.fps = start_us + round(frames * 1e6 / fps), fps

    def remaining_s(self, ts_us: int) -> float:
        """The media seconds the session has left after `ts_us` (infinite when its end is not known)."""
        return math.inf if self.ends_us is None else max(self.ends_us - ts_us, 0) / 1e6

    def start_room(self, ts_us: int, other_bytes: int, frame_bytes: int = 0) -> int | None:
        """The most a session's first keyframe (picture, alpha and face code) may take so that the whole session
        holds the ceiling: what its remaining seconds allow less the frames' expected cost (at most the pacer's
        share), `other_bytes` (the setups going with it, an intra first frame) and the identity. None when the
        end is not known."""
        seconds = self.remaining_s(ts_us)
        if math.isinf(seconds):
            return None
        allowance = self.ceiling_bps * seconds / 8
        every = max(FRAME_BYTES_PRIOR, frame_bytes) * self.fps * seconds  # every frame's cost
        frames = min(FRAMES_SHARE * allowance, every)
        room = allowance - frames - other_bytes - START_OTHER_BYTES
        floor = MIN_KEYFRAME_BYTES + THIN_ALPHA_PRIOR
        if room < floor:  # too short for the floor beside the frames' share: they give up some of it (SHORT_FILE_STEP)
            room = max(room, min(allowance - min(frames, every / SHORT_FILE_STEP) - other_bytes - START_OTHER_BYTES, floor))
        return max(int(room), 0)


def first_keyframe_plan(wanted: int, room: int | None) -> tuple[int, int | None, tuple[int, int]]:
    """A keyframe's picture budget, the most the whole keyframe may take (None: no such limit) and its alpha's
    (factor, AVIF quality), for a picture that wants `wanted` bytes when what the session's length leaves it is `room`
    (`Budget.start_room`; None: not a session's first keyframe, or its end is not known).

    The alpha's priors are AVIF's: without its container (`keyframe-av1`) the alpha leaves ~260 bytes of the room
    unspent, and that is kept. Given to the picture (the room less the raw alpha), d0 (3.1 s at 16 kbps) went
    13.6 -> 14.3 kbps real for face SSIM +0.0002, where SVT-AV1 gains 0.004 over that step."""
    usual, thin = (ALPHA_FACTOR, ALPHA_QUALITY), (THIN_ALPHA_FACTOR, THIN_ALPHA_QUALITY)
    if room is None or room - KEYFRAME_ALPHA_PRIOR >= wanted:
        return wanted, room, thin if wanted <= MIN_KEYFRAME_BYTES else usual
    if room - THIN_ALPHA_PRIOR < min(wanted, MIN_KEYFRAME_BYTES):
        # a file too short for the floor (SHORT_FILE_STEP): a smaller picture at a coarser scale, the smallest alpha
        budget = min(wanted, max(room - TINY_ALPHA_PRIOR, MIN_SHORT_PICTURE_BYTES))
        return budget, room if budget <= room - TINY_ALPHA_PRIOR else None, (TINY_ALPHA_FACTOR, THIN_ALPHA_QUALITY)
    budget = max(room - KEYFRAME_ALPHA_PRIOR, min(wanted, MIN_KEYFRAME_BYTES))
    if budget <= MIN_KEYFRAME_BYTES:
        return budget, None, thin  # the floor a thin ceiling gets
    # a picture that the length holds above the floor but below what it wanted: where the usual alpha takes a
    # large share of the room, the thin one leaves the picture the difference
    if ALPHA_ROOM_SHARE * room < KEYFRAME_ALPHA_PRIOR:
        return min(wanted, room - THIN_ALPHA_PRIOR), room, thin
    return budget, room, usual


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

    @property
    def carries_layer(self) -> bool:
        """It carries a residual of the layer (prepared on an earlier frame: the closed loop runs behind)."""
        return any(FIELD_CODECS[name].role == "layer" for name in self.frame.prepared)

    @staticmethod
    def merged(older: Outgoing, newer: Outgoing) -> Outgoing:
        """`newer` carrying what `older` carried too, for when `older` never went: its keyframe unless
        `newer` has one, its setups, in order before the newer ones, and its layer residual unless `newer`
        has one (a residual is seconds of the replica's work and the layer's only picture of that moment)."""
        keyframe = newer.keyframe if newer.keyframe is not None else older.keyframe
        frame = newer.frame
        carried = {name: value for name, value in older.frame.prepared.items()
                   if FIELD_CODECS[name].role == "layer" and name not in newer.frame.prepared}
        if carried:
            frame = dataclasses.replace(frame, prepared={**frame.prepared, **carried})
        return dataclasses.replace(newer, frame=frame, keyframe=keyframe, setups=older.setups + newer.setups)


@dataclass(frozen=True)
class BuiltKeyframe:
    """A keyframe build's outcome: the package and what the receiver decodes of it, or why it did not fit."""

    ts_us: int
    face: Prepared | None
    budget: int
    package: KeyframePackage | None = None
    state: KeyframeState | None = None
    error: KeyframeTooLarge | None = None


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
    _scale_hint: int = 1  # and the scale it needed (a budget that grew brings the finer one back)
    _last_keyframe_bytes: int = 0
    _resend: threading.Event = field(default_factory=threading.Event, repr=False)
    _resync: threading.Event = field(default_factory=threading.Event, repr=False)
    _references: ReferenceChooser = field(default_factory=ReferenceChooser)
    _bare: threading.Event = field(default_factory=threading.Event, repr=False)  # the receiver holds no keyframe
    # The keyframes built, as the receiver decodes them (the layer's replica draws from them): as many as
    # the chooser may name.
    _states: OrderedDict[int, KeyframeState] = field(default_factory=OrderedDict)
    # The keyframes the receiver holds as the uplink (or the recorder) last saw them, oldest first:
    # written by it, replaced whole, read here (the layer draws its residual from one of them).
    held: tuple[int, ...] = ()
    # Live, keyframes are built on a worker thread (an AVIF search at 640x480 takes 100-300 ms: the camera's
    # frames would be skipped meanwhile), and the closed loop runs on another; a recording does both in line,
    # so it does not depend on timing.
    background: bool = False
    _pending: concurrent.futures.Future[BuiltKeyframe] | None = field(default=None, repr=False)
    _executor: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)
    # The closed loop (the replica's drawing and the layer's residual against it) goes with a later frame: the
    # receiver applies a layer box to the frames after the one that carries it, so no frame waits for its own.
    _loop: Behind[tuple[str, Prepared] | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._preparers = {name: FIELD_CODECS[name].new_preparer() for name in self.codes}
        self._loop = Behind(name="closed-loop")

    def resync(self) -> None:
        """The receiver asked for a keyframe (any thread): it comes within the policy's limit, with every
        code's setup again."""
        self._resync.set()
        self.policy.request_from_peer()

    def restart(self) -> None:
        """A new session (any thread): its receiver holds nothing, so the next frame brings every code's
        setup again, and a keyframe."""
        self._resend.set()
        self._bare.set()
        self.policy.request()

    def code(self, analyzer: Analyzer, analysis: FrameAnalysis) -> Outgoing:
        ts_us = analysis.frame.ts_us
        for preparer in self._preparers.values():
            if isinstance(preparer, ExpressionPreparer):
                setup = preparer.current_setup()
                gap = 0.0 if setup is None else self.budget.setup_gap_s(len(setup))
                # a new neutral that the rest of a session of known length cannot repay in its share is not sent
                # (d0 at 16 kbps: 590 B of it 0.4 s before the end)
                preparer.min_setup_gap_s = gap if self.budget.remaining_s(ts_us) >= gap else math.inf
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
        if self._pending is not None and self._pending.done():
            keyframe, self._pending = self._adopt(self._pending.result()), None
        if self._pending is None and self.policy.decide(analysis, drift, self.budget.drift_gap_s(self._last_keyframe_bytes),
                                                        self.own_keyframes(ts_us)):
            analysis = with_matte(analyzer, analysis)
            # The despilled foreground is costly (~20 ms), so it is asked for keyframes only.
            taken = dataclasses.replace(analysis.frame, ts_us=self.policy.keyframe_ts(ts_us))
            build = self._keyframe_build(dataclasses.replace(analysis, frame=taken, foreground=analyzer.foreground()),
                                         prepared, sum(len(payload) for _, payload in setups))
            if self.background:
                self._pending = self._worker().submit(build)
            else:
                keyframe = self._adopt(build())
        if keyframe is not None:
            reference = keyframe.kf
        # A receiver starts over at a new session's first keyframe and at one it asked for (it lost a setup or
        # its prediction), so every code's setup in use goes with those; not with the sender's own keyframes
        # (periodic, drifted), whose receiver holds the setups: a neutral face is ~550 bytes. Checked after the
        # decision: restart() raises the flag before it requests the keyframe, so a session's first keyframe
        # never goes without its setups.
        resync = keyframe is not None and self._resync.is_set()
        if self._resend.is_set() or resync:
            self._resend.clear()
            if resync:
                self._resync.clear()
            fresh = {name for name, _ in setups}
            setups += [(name, setup) for name, preparer in self._preparers.items()
                       if name not in fresh and (setup := preparer.current_setup()) is not None]
        if self.matte_every_frame:
            analysis = with_matte(analyzer, analysis)
        self._prepare_body(analysis, prepared, reference)
        if (behind := self._loop.take()) is not None:
            prepared[behind[0]] = behind[1]
        self._start_layer(analysis, prepared, reference)
        self._prepare_alpha_fix(analysis, prepared, reference)
        return Outgoing(CodedFrame(analysis, prepared), keyframe, tuple(setups), reference=reference)

    def await_first_keyframe(self, timeout_s: float) -> None:
        """Live, on the analysing thread: while a session's first keyframe is being built, wait for the build
        (at most `timeout_s`). Its receiver shows nothing before that keyframe and the newest frame after it,
        so frames analysed meanwhile would only be dropped there; they took the cores from the build, which
        runs at the worker's lower priority (150-180 ms from a session's start to its first keyframe)."""
        pending = self._pending
        if pending is not None and self._bare.is_set():
            concurrent.futures.wait([pending], timeout_s)

    def own_keyframes(self, ts_us: int) -> bool:
        """Whether a keyframe of the sender's own (periodic, drifted) may still come after `ts_us`: not when the rest
        of a session of known length cannot repay one in the share drifted ones get. It would take what moves the
        picture (the frames at a thin ceiling, the layer) for the little time left to show it (d3, d6 at 6 kbps:
        1.9 KB of a keyframe 1.5-2 s before the end, d6's never complete)."""
        return self.budget.remaining_s(ts_us) >= self.budget.drift_gap_s(self._last_keyframe_bytes)

    def finish(self) -> KeyframePackage | None:
        """The input ended: the keyframe still being built, once built (None when none was). For the
        uplink, once the analysing thread is done: a clip shorter than the first keyframe's build still
        reaches the receiver, its frames behind the keyframe."""
        pending, self._pending = self._pending, None
        return None if pending is None else self._adopt(pending.result())

    def keyframe_state(self, kf: int | None) -> KeyframeState | None:
        """Keyframe `kf` as the receiver decodes it, while the coder keeps it."""
        return None if kf is None else self._states.get(kf)

    def _drawn_reference(self, reference: int | None) -> int | None:
        """The keyframe the receiver will draw a frame from: the chosen reference when it holds it, else
        the newest it holds (the stream's rule)."""
        held = self.held
        return reference if reference in held else (held[-1] if held else None)

    def _body_matrix(self, prepared: dict[str, Prepared], reference: int | None) -> Affine | None:
        """The body's motion against `reference` as the receiver decodes it, when that code goes with the frame."""
        keyframe = self.keyframe_state(reference)
        body = next((value.values.motions.get(reference) for value in prepared.values()
                     if isinstance(value.values, BodyValues) and reference is not None), None)
        size = None if keyframe is None else (keyframe.image.shape[1], keyframe.image.shape[0])
        return None if body is None or size is None else motion_matrix(body, size)

    def _prepare_alpha_fix(self, analysis: FrameAnalysis, prepared: dict[str, Prepared], reference: int | None) -> None:
        """The receiver's predicted alpha against the matte, for the keyframe it will draw this frame from."""
        reference = self._drawn_reference(reference)
        face = prepared.get(face_code(self.codes))
        for name, preparer in self._preparers.items():
            if isinstance(preparer, AlphaFixPreparer):
                value = preparer.prepare_fix(analysis, None if face is None else face.landmarks,
                                             self.keyframe_state(reference), self._body_matrix(prepared, reference),
                                             self.budget.alpha_fix_bps())
                if value is not None:
                    prepared[name] = value

    @property
    def matte_every_frame(self) -> bool:
        """Whether every frame's matte is read: only with a code that reads each (MATTE_ROLES). Else the analyser
        leaves it out, and a keyframe decided on a frame without one makes it then (`with_matte`: ~5 ms on the
        analysing thread, every few seconds)."""
        return any(FIELD_CODECS[name].role in MATTE_ROLES for name in self.codes)

    @property
    def coarse_every_frame(self) -> bool:
        """Whether every frame's CoarseMatte is read (COARSE_ROLES): the analyser makes it where it leaves the matte out."""
        return any(FIELD_CODECS[name].role in COARSE_ROLES for name in self.codes)

    def _layer(self) -> tuple[str, LayerPreparer] | None:
        return next(((name, p) for name, p in self._preparers.items() if isinstance(p, LayerPreparer)), None)

    def _start_layer(self, analysis: FrameAnalysis, prepared: dict[str, Prepared], reference: int | None) -> None:
        """Starts the layer's residual of this frame, for a later frame to carry (`Behind`), against the keyframe
        the receiver will draw this frame from: the chosen reference when it holds it, else the newest it holds
        (the stream's rule). A keyframe still on its way is not drawn from: the layer goes on correcting what the
        receiver shows while it crosses (with the drift-triggered keyframes, waiting for each starved the layer:
        d3 at 16 kbps got 1.3 kbps of it). The send-time encoder drops a residual whose keyframe is not the
        keyframe of the frame that carries it."""
        preparer = self._layer()
        if preparer is None or not self._loop.idle or not preparer[1].due(analysis.frame.ts_us):
            return
        self._loop.background = self.background
        name, layer = preparer
        reference = self._drawn_reference(reference)
        face = prepared.get(face_code(self.codes))
        landmarks = None if face is None else face.landmarks
        keyframe, kbps = self.keyframe_state(reference), self.budget.layer_bps() / 1000
        # the receiver moves the body as the frame's body motion says (when that code goes with it): so does the replica
        body_matrix = self._body_matrix(prepared, reference)

        def residual() -> tuple[str, Prepared] | None:
            value = layer.prepare_layer(analysis, landmarks, keyframe, kbps, body_matrix)
            return None if value is None else (name, value)

        self._loop.start(residual)

    def _prepare_body(self, analysis: FrameAnalysis, prepared: dict[str, Prepared], reference: int | None) -> None:
        """The body's motion against each keyframe the uplink may draw this frame from: the chosen reference,
        and while the receiver does not hold it whole (a new keyframe's parts crossing), the newest it holds
        (the stream's rule). The uplink only adds keyframes to what the receiver holds, so one of the two is
        the frame's. (Fitting the keyframe before the newest for 3 s after every build, held or not, doubled
        the fit on the frame's latency path: keyframes come every few seconds at 256 kbps.)"""
        face = prepared.get(face_code(self.codes))
        kfs = (reference, self._drawn_reference(reference))
        keyframes = {kf: state for kf in kfs if kf is not None and (state := self.keyframe_state(kf)) is not None}
        for name, preparer in self._preparers.items():
            if isinstance(preparer, BodyPreparer):
                value = preparer.prepare_body(analysis, None if face is None else face.landmarks, keyframes)
                if value is not None:
                    prepared[name] = value

    def _keyframe_build(self, analysis: FrameAnalysis, prepared: dict[str, Prepared],
                        setup_bytes: int = 0) -> Callable[[], BuiltKeyframe]:
        """The keyframe's build, to run on any thread: what it needs of this coder is taken now. `setup_bytes`:
        the setups going with it."""
        # the face codes' values for the landmarks this picture shows (the tracker's before smoothing, which lag a
        # moving head: every frame drawn from the keyframe would be drawn that far off, w0 3.3 px)
        unsmoothed = analysis.face.raw if analysis.face is not None else None
        if unsmoothed is not None:
            prepared = {name: self._preparers[name].recoded(value, unsmoothed) if FIELD_CODECS[name].role == "face"
                        else value for name, value in prepared.items()}
        face = prepared.get(face_code(self.codes))
        # every offered face code's: the session (negotiated on another thread, maybe later) picks one
        codes = {name: self._preparers[name].keyframe_code(prepared[name]) for name in self.codes
                 if FIELD_CODECS[name].role == "face" and name in prepared}
        bare = self._bare.is_set()
        budget, kf = self.budget.keyframe_bytes(first=bare), self.kf + 1
        # a session's first keyframe, when the session's end is known, fits what its length allows, alpha included
        # (a recording's session is the coder's: its first keyframe comes without a restart)
        # (and the first frame, intra, costs about the face code the keyframe carries)
        first_frame = min(map(len, codes.values()), default=0)
        room = self.budget.start_room(analysis.frame.ts_us, setup_bytes + first_frame, first_frame) \
            if bare or self.kf == 0 else None
        budget, room, alpha = first_keyframe_plan(budget, room)
        hints = (self._quality_hint, self._scale_hint, *alpha)
        raw = self.budget.keyframe_av1

        def build() -> BuiltKeyframe:
            try:
                try:
                    package, state = build_keyframe(analysis, kf, face, codes, budget, *hints, max_total_bytes=room,
                                                    raw=raw)
                    return BuiltKeyframe(analysis.frame.ts_us, face, budget, package, state)
                except KeyframeTooLarge as exc:
                    # a first keyframe that a short file's length leaves no room for goes as small as it can
                    if not (bare or room is not None) or exc.needed > MAX_KEYFRAME_BYTES:
                        raise
                    # A receiver without a keyframe shows nothing, and without frames flowing the rate control never
                    # learns that the link has room for one (after a reconnect it starts low): over budget beats never.
                    log.warning("the session's first keyframe goes over its budget: %s", exc)
                    package, state = build_keyframe(analysis, kf, face, codes, exc.needed, MIN_QUALITY, *hints[1:],
                                                    raw=raw)
                    return BuiltKeyframe(analysis.frame.ts_us, face, exc.needed, package, state)
            except KeyframeTooLarge as exc:
                return BuiltKeyframe(analysis.frame.ts_us, face, budget, error=exc)

        return build

    def _adopt(self, built: BuiltKeyframe) -> KeyframePackage | None:
        """A finished build, on the analysing thread: the keyframe to send, or None when it did not fit."""
        package, state = built.package, built.state
        if package is None or state is None:
            log.warning("no keyframe this time, trying again in a while: %s", built.error)
            self.policy.request_from_peer()  # rate-limited like a receiver's request: a hopeless budget is not retried every frame
            return None
        self._bare.clear()
        self.kf = package.kf
        self._quality_hint = package.quality
        self._last_keyframe_bytes = package.nbytes
        self._states[package.kf] = state
        while len(self._states) > 2 * REFERENCES:
            self._states.popitem(last=False)
        self._references.built(package.kf, None if built.face is None else built.face.landmarks)
        # A picture that fitted with quality to spare tries the finer scale next time.
        self._scale_hint = max(1, package.scale // 2) if package.quality >= FINER_SCALE_QUALITY else package.scale
        log.info("keyframe %d: %d bytes (picture %d at AVIF quality %d, scale 1/%d, budget %d)", self.kf,
                 package.nbytes, len(package.image), package.quality, package.scale, built.budget)
        return package

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = background_worker("keyframe")
        return self._executor
