"""Which frames go when a ceiling cannot carry them all: the pacer's even, fractional step, and a recording's
choices beside it (the frame picker's blink and word extremes, the still frames left to the layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from facewire.sender.coding import FRAMES_SHARE, MAX_FRAME_STEP
from facewire.shared.codec.fields import FIELD_CODECS
from facewire.shared.face import measures
from facewire.shared.face.measures import eye_opening, mouth_opening
from facewire.shared.types import Landmarks

if TYPE_CHECKING:
    from facewire.sender.coding import Outgoing


@dataclass
class FramePacer:
    """Which input frames go when the ceiling cannot carry them all: one every `step` input frames on
    average, evenly, at most `share` of the ceiling by what a sent frame has been costing (frames sent further
    apart cost more: their codes predict across a longer gap, so the cost is measured at the spacing in use).

    The step is fractional: the frames go where a running position, advanced by `step` per frame sent, lands
    (2.4: gaps of 2, 3, 2, 3, 2...). A whole step left what lay between two steps unused: a rate allowing 2.1
    frames' spacing sent every 3rd, 30% below what it could (at 6 kbps every clip ran at 4.1-5.5 kbps real)."""

    ceiling_bps: float
    fps: float
    # The rest is kept for keyframes to come; the pacer's owner lifts it to 1 when none may come (`keyframes`).
    share: float = FRAMES_SHARE
    max_step: int = MAX_FRAME_STEP
    step: float = 1.0
    _cost: float | None = None  # a sent frame's link bytes, smoothed
    _next: float = 0.0  # the running position: the first input frame at or after it goes
    # What the gate's debts (the session's start, later setups and keyframe heads) take of the link now: the
    # frames have only what that leaves (else the gate refuses them, unevenly). Set by the pacer's owner.
    repay_bps: float = 0.0

    def keyframes(self, coming: bool) -> None:
        """Whether keyframes of the sender's own may still come (FrameCoder.own_keyframes): the frames keep the
        ceiling's rest for them, else they may take all of it (at 6 kbps none comes in a 10-s file, and 35% of
        the ceiling went unspent once the start was repaid)."""
        self.share = FRAMES_SHARE if coming else 1.0

    def due(self, index: int) -> bool:
        """Whether input frame `index` is one the pacer sends (call `sent` when it went)."""
        return index >= self._next - 1e-9

    def sent(self, index: int, nbytes: int) -> None:
        """Frame `index` went with `nbytes` on the link (its layer packet aside)."""
        self._cost = float(nbytes) if self._cost is None else self._cost + 0.1 * (nbytes - self._cost)
        # all that the repayment leaves: a frame the gate refuses for being ahead of the schedule goes a frame late
        # (with 0.9 of it the 6-kbps recordings ran 0.3-0.5 kbps under the ceiling; none was refused with all of it)
        allowed = min(self.share * self.ceiling_bps, self.ceiling_bps - self.repay_bps) / 8  # bytes a second
        per_second = self._cost * self.fps
        self.step = float(self.max_step) if allowed <= 0 else min(float(self.max_step), max(1.0, per_second / allowed))
        # from the position, not from the frame that went (which lies up to a frame after it, or a frame either side
        # of it when FramePicker chose it), so the gaps average `step`; a position left further behind (frames the
        # gate held) starts again near the frame that went, not in a burst
        self._next = max(self._next, index - 1.0 - PICK_REACH) + self.step

    @property
    def rate(self) -> float:
        """The frames a second it sends."""
        return self.fps / self.step


# A recording's pacer may pick a frame this many input frames either side of its position (FramePicker).
PICK_REACH = 1
# and chooses only at a step of this or more: below it nearly every frame goes, and a choice skips one the pacer had
# room for (at steps of 1.5-2, choosing among the frames beside the position kept the played lids and lips as close
# to the input's as going at the position did, on 8 clips at 6 kbps, with no fewer frames)
PICK_STEP = 1.5
# How far a frame's lids and mouth stray from what playback would draw, per unit of each ratio: the lids' opening
# over the eye's width spans about half of what the mouth's does (0-0.45 against 0-0.8), so it counts double.
PICK_WEIGHTS = (1.0, 2.0)  # mouth, eyes


def openness(landmarks: Landmarks | None) -> tuple[float, float] | None:
    """(mouth, eyes): the inner lips' gap and the lids' (both eyes averaged), each over its width."""
    if landmarks is None:
        return None
    points = np.asarray(landmarks, np.float64)
    return measures.mouth_ratio(points), 0.5 * (measures.eye_open_ratio(points, "right") +
                                                measures.eye_open_ratio(points, "left"))


@dataclass
class FramePicker:
    """Which frame goes for each of the pacer's positions, in a recording (which may wait a few frames before it
    decides): of the frames within `reach` of the position, the one whose mouth and lids stray furthest from the
    straight line between the frame sent last and the frame at the pacer's next position (what playback would draw
    between them), so that a blink's or a word's extreme is the frame that goes rather than one beside it.

    Taken at the position itself, a blink two or three frames long fell between two frames sent every 3rd input
    frame and was drawn half shut or not at all (simulated on the input tracks, same number of frames, every 3rd:
    d6 eye correlation 0.79 -> 0.87, d12 0.86 -> 0.91; w0 mouth 0.89 -> 0.92; every 3.5th: w0 mouth 0.82 -> 0.89).

    Each input frame in order: `offer` it (returns the frame to send now, when it is the one the candidates are
    judged at), `went` when a frame went, `due` when the pacer has it due and no choice is open; `flush` at the
    input's end."""

    reach: int = PICK_REACH
    _candidates: list[tuple[int, Outgoing]] = field(default_factory=list)
    _previous: tuple[int, Outgoing] | None = None  # the input frame offered last
    _prior: tuple[int, Outgoing] | None = None  # and the one before it
    _position: int = 0
    _end: int = 0  # the frame at which the candidates are judged (about the pacer's next position)
    _last: tuple[int, tuple[float, float] | None] | None = None  # the frame that went last and its openness

    @property
    def choosing(self) -> bool:
        return bool(self._candidates)

    def offer(self, index: int, item: Outgoing) -> tuple[int, Outgoing] | None:
        """Input frame `index`, after every earlier one: the frame to send now, if the choice closes at it."""
        self._prior, self._previous = self._previous, (index, item)
        if not self._candidates:
            return None
        if index == self._candidates[-1][0] + 1 and index <= self._position + self.reach:
            self._candidates.append((index, item))
        if index < self._end:
            return None
        return self._pick(index, openness(drawn_landmarks(item)))

    def due(self, index: int, item: Outgoing, step: float) -> None:
        """The pacer has input frame `index` due (offered already): it and the frames within reach are candidates."""
        before = self._before(index)
        self._candidates = ([before] if before is not None else []) + [(index, item)]
        # judged at the pacer's next position or just before it (a window closing after it held that one back); at a
        # step under 2, at the next frame: a window of at least two frames held the frames to every 2nd, ~15% under
        # what the pacer allowed at 6 kbps
        self._position, self._end = index, index + max(int(step), 1)

    def went(self, index: int, item: Outgoing) -> None:
        self._last = (index, openness(drawn_landmarks(item)))

    def cancel(self) -> None:
        """Another frame goes instead (one that carries state goes when it comes)."""
        self._candidates = []

    def flush(self) -> tuple[int, Outgoing] | None:
        """The input ended: the pick among the frames waiting, if any (judged against the last of them)."""
        if not self._candidates:
            return None
        index, item = self._candidates[-1] if self._previous is None else self._previous
        return self._pick(index, openness(drawn_landmarks(item)))

    def _before(self, index: int) -> tuple[int, Outgoing] | None:
        """The input frame before `index`, when it came after the frame that went last."""
        entry = self._prior
        if entry is None or entry[0] != index - 1 or (self._last is not None and entry[0] <= self._last[0]):
            return None
        return entry

    def _pick(self, end_index: int, end: tuple[float, float] | None) -> tuple[int, Outgoing]:
        candidates, self._candidates = self._candidates, []
        last = self._last
        if last is None or last[1] is None or end is None:
            return candidates[len(candidates) // 2]
        start_index, start = last[0], last[1]
        span = max(end_index - start_index, 1)

        def stray(entry: tuple[int, Outgoing]) -> float:
            value = openness(drawn_landmarks(entry[1]))
            if value is None:
                return -1.0
            w = (entry[0] - start_index) / span
            return sum(weight * abs(v - (a + (b - a) * w)) for weight, v, a, b in zip(PICK_WEIGHTS, value, start, end, strict=True))

        return max(candidates, key=stray)


def drawn_landmarks(item: Outgoing) -> Landmarks | None:
    """The face the receiver will draw for this item's frame (its face code's landmarks), if it has one."""
    face = next((value for name, value in item.frame.prepared.items() if FIELD_CODECS[name].role == "face"), None)
    return None if face is None else face.landmarks


# With the residual layer under this ceiling the frames (~6.5 kbps at 30 fps) are 40% of it: a frame whose face hardly
# moved since the frame before, which went, is left to playback's in-between (the next one always goes), and its bytes
# go to the layer. Only a still face: fixed every-2nd-frame pacing lost where motion is irregular (d12's skipped
# frames 0.05-0.16 face SSIM each, w1 -0.011), while it gave d18 +0.009.
STILL_SKIP_BELOW_BPS = 20_000.0
STILL_SHARE = 0.004  # of the face's width: the median landmark's move under which a face is still (~1 px at 250 px)


def _openings(landmarks: Landmarks) -> npt.NDArray[np.float64]:
    points = landmarks.astype(np.float64)
    return np.array([eye_opening(points, "left"), eye_opening(points, "right"), mouth_opening(points)])


def still_face(landmarks: Landmarks, before: Landmarks, share: float = STILL_SHARE) -> bool:
    """Whether the face moved less than `share` of its width from `before`: its landmarks (the median's move), and
    the lids' and lips' openings, which a median over the whole mesh does not see (a blink is a few landmarks)."""
    limit = share * float(np.ptp(landmarks[:, 0]))
    moved = float(np.median(np.hypot(*(landmarks[:, :2] - before[:, :2]).T)))
    return moved < limit and float(np.abs(_openings(landmarks) - _openings(before)).max()) < limit


@dataclass
class StillFrames:
    """Which frames a recording with the layer leaves out because the face was still (`still_face`): never two in a
    row, so playback draws each between two frames that went."""

    share: float = STILL_SHARE
    _last: Landmarks | None = None  # the face of the last frame that went
    _last_index: int = -2

    def skips(self, index: int, landmarks: Landmarks | None) -> bool:
        return landmarks is not None and self._last is not None and self._last_index == index - 1 \
            and still_face(landmarks, self._last, self.share)

    def sent(self, index: int, landmarks: Landmarks | None) -> None:
        self._last, self._last_index = landmarks, index
