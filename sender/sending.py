"""What goes on the link for each prepared frame, and when: one plan for the live uplink (under the
rate controller, sender/congestion) and for a recording (under the `--bitrate` ceiling alone).

Per frame, in order: the codes' setups (state: always), the frame itself when the gate lets its
bytes go (the features are what keeps the picture alive: `essential`; a residual layer packet rides
with it only when the gate holds that too), then as many parts of a
keyframe on its way as the gate allows — so a keyframe crosses a thin link between frames instead
of in front of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

from facewire.sender.coding import Outgoing
from facewire.sender.stream import FeatureStream
from facewire.shared.process.tokens import TokenBucket
from facewire.shared.wire import messages as m

MIN_PART_BYTES = 256
# What a message costs the link beyond its bytes, charged with it: a WebSocket frame's header as the
# sender writes it (2 bytes, 4 of mask; 2 more above 125 bytes). A stream file's record costs 4.
FRAMING_BYTES = 6
START_REPAY_WINDOW_S = 10.0  # a recording repays its start within this at most: the ceiling's window


def link_bytes(message: m.Message, packed_frames: bool = False) -> int:
    """What `message` costs the `--bitrate` budget: its bytes (a frame packed when the session packs them) and
    its framing."""
    return len(m.encode(message, packed_frames)) + FRAMING_BYTES


class SendGate(Protocol):
    """The part of the rate controller a sending plan needs."""

    @property
    def target_bps(self) -> float: ...

    def may_send(self, nbytes: int, now: float, essential: bool = False, bulk: bool = False,
                 urgent: bool = False) -> bool: ...

    def on_send(self, seq: int, nbytes: int, now: float) -> None:
        """A frame went (it will be acknowledged)."""
        ...

    def on_send_bulk(self, nbytes: int, now: float) -> None:
        """A keyframe part went (not acknowledged, but under the window)."""
        ...

    def on_send_uncontrolled(self, nbytes: int, now: float) -> None:
        """Anything else went (it uses the link but is not acknowledged)."""
        ...

    def chunk_bytes(self) -> int: ...


@dataclass
class Ceiling:
    """The gate of a recording: no link to measure, only `--bitrate` over the media clock. A frame is
    skipped when the bucket cannot pay for it (playback repeats the picture before it).

    The session's start (its setups and first keyframe, sent whole) borrows from the bucket. The frames
    may run on while that debt is being repaid, as long as it shrinks at least linearly to nothing
    within `repay_s` of the first frame: what is sent over those seconds still totals the ceiling, but
    a face code that fits beside the debt's repayment keeps the picture moving instead of freezing it
    for the seconds the keyframe took (d3 at 16 kbps: 78 frames held, face SSIM 0.834 -> 0.871 with the
    expression code). What else goes (the residual layer, later keyframes' parts) may use the room the
    schedule leaves above the frames' reserve, so the layer starts before the debt is gone.

    State sent later (a new neutral's setup, a keyframe's head larger than the bucket) borrows the same way:
    what it puts the bucket in debt beyond the schedule is repaid linearly within `repay_s` of its sending.
    Paid at once instead, it held every frame behind it for as long as it took (at 6 kbps a 530-byte setup
    or a keyframe's 1.2-KB head froze the picture for 0.6-1.1 s, in every clip: d12's mouth correlation
    0.72, 0.93 without the freeze)."""

    ceiling_bps: float
    bucket_s: float = 0.5  # savings: a keyframe part may borrow half a second, no more
    repay_s: float = 6.0  # the start's debt is repaid within this (at most the ceiling's 10-s window)
    reserve_s: float = 0.1  # while it is: the frames' lead over everything else
    # When the recording ends, if known: what else goes (the layer, keyframe parts) has the start repaid by then
    # when that comes before `repay_s`, so a file shorter than that still holds the ceiling. The frames keep
    # `repay_s`: they are what moves the picture, and the start was sized to the file. (Repaying over up to 10 s of
    # a longer file started d18's layer sooner, face SSIM +0.006 at 16 kbps, but at 6 kbps the frames that went
    # missed the blinks: d6's eye correlation 0.69 -> 0.38.)
    end_s: float | None = None
    # The start's own schedule when it differs from `repay_s` (`start_repay_s`): a recording repays its start over
    # the file, up to the ceiling's 10-s window, for frames and layer alike. On `repay_s`
    # the layer had nothing beside the frames until 6 s in (d6, 10 s at 16 kbps: first layer packet at 6.2 s).
    start_repay_s: float | None = None
    _bucket: TokenBucket = field(init=False)
    _start_debt: float = 0.0  # what went before the first frame
    _first_frame_s: float | None = None
    _debts: list[tuple[float, float]] = field(default_factory=list)  # later state's (bytes, when it went)

    def __post_init__(self) -> None:
        rate = self.ceiling_bps / 8
        self._bucket = TokenBucket(rate, rate * self.bucket_s)
        self._bucket.level = 0.0  # start empty: a short recording must not spend a burst it never earns back

    @property
    def target_bps(self) -> float:
        return self.ceiling_bps

    def may_send(self, nbytes: int, now: float, essential: bool = False, bulk: bool = False,
                 urgent: bool = False) -> bool:
        """Essential bytes go while the bucket is not in debt beyond what is left of the start's (and may put
        it there); others when it holds them, `urgent` ones (a stale layer box) without the frames' reserve."""
        self._bucket.refill(now)
        if essential:
            return self._bucket.level >= -self._start_allowance(now, self._start_repay())
        allowance = self._start_allowance(now, self._repaid_by_end())
        # what the repayment schedule leaves, less a reserve that keeps the frames ahead of the rest; a
        # message larger than the bucket (a keyframe's head with its alpha, at a thin ceiling) goes when
        # the bucket is full, or it would never go
        reserve = self.reserve_s * self.ceiling_bps / 8 if allowance > 0 and not urgent else 0.0
        return self._bucket.level - min(nbytes, self._bucket.burst) >= -allowance + reserve

    def _start_allowance(self, now: float, repay_s: float | None = None) -> float:
        """How far in debt the bucket may be now: what is left of each debt on its schedule (the start's within
        `repay_s` of the first frame when given)."""
        if self._first_frame_s is None:
            return self._start_debt
        start = self._start_debt * max(0.0, 1.0 - (now - self._first_frame_s) / (repay_s or self.repay_s))
        return start + sum(amount * max(0.0, 1.0 - (now - since) / self.repay_s) for amount, since in self._later(now))

    def _later(self, now: float) -> list[tuple[float, float]]:
        """The later state's debts still being repaid."""
        self._debts = [(amount, since) for amount, since in self._debts if now - since < self.repay_s]
        return self._debts

    def repay_bps(self, now: float) -> float:
        """What the debts being repaid take of the link now (the frames have the rest of the ceiling)."""
        if self._first_frame_s is None:
            return 0.0
        # the frames' schedule for the start, as may_send has it
        return self._start_rate(now, self._start_repay()) + sum(amount * 8 / self.repay_s for amount, _ in self._later(now))

    def start_repay_bps(self, now: float) -> float:
        """What the session's start takes of the link now, on the schedule of what is not a frame: flat until it is
        repaid. (Later state's debts are left out: each is a setup or a keyframe's head repaid over `repay_s`, and
        counted, the layer's rate followed them up and down, every move of more than RATE_STEP a restart.)"""
        return self._start_rate(now, self._repaid_by_end())

    def _start_rate(self, now: float, start_s: float) -> float:
        """The start's repayment now on a schedule of `start_s` from the first frame, bits a second."""
        if self._first_frame_s is None or now - self._first_frame_s >= start_s:
            return 0.0
        return self._start_debt * 8 / start_s

    def _start_repay(self) -> float:
        """The seconds from the first frame within which the frames repay the start."""
        return self.start_repay_s or self.repay_s

    def _repaid_by_end(self) -> float:
        """The seconds from the first frame within which the start is repaid for what is not a frame: the frames'
        schedule, or less when the recording ends sooner."""
        if self.end_s is None or self._first_frame_s is None:
            return self._start_repay()
        return min(self._start_repay(), max(self.end_s - self._first_frame_s, 1e-3))

    def on_send(self, seq: int, nbytes: int, now: float) -> None:
        if self._first_frame_s is None:
            self._first_frame_s = now
        elif now <= self._first_frame_s:
            # frames that waited for the session's first keyframe (KeyframePolicy.settle_s) go with it: they are
            # the start too, repaid with it (paid at once, they held the frames after them for ~0.5 s at 6 kbps)
            self._start_debt += nbytes
        self._bucket.charge(nbytes, now)

    def on_send_bulk(self, nbytes: int, now: float) -> None:
        self.on_send_uncontrolled(nbytes, now)

    def on_send_uncontrolled(self, nbytes: int, now: float) -> None:
        if self._first_frame_s is None:
            self._start_debt += nbytes
        self._bucket.charge(nbytes, now)
        if self._first_frame_s is not None:  # later state: the debt beyond the schedule gets a schedule of its own
            excess = -self._bucket.level - self._start_allowance(now)
            if excess > 0:
                self._debts.append((excess, now))

    def chunk_bytes(self) -> int:
        # The session's first keyframe goes whole before the first frame (nothing is drawn without it): in parts it
        # only paid their headers (~40 B each; d0 at 6 kbps: 4 of them, 0.4 kbps of its 3.1 s).
        if self._first_frame_s is None:
            return m.MAX_IMAGE_BYTES
        return max(MIN_PART_BYTES, int(self.ceiling_bps / 8 * 0.1))


def plan(stream: FeatureStream, item: Outgoing, gate: SendGate, now: float) -> list[m.Message]:
    """The messages to send now for this item, in order, charged to the gate.

    Before the session's first keyframe nothing can be drawn: an item then waits whole (its setups too,
    which must reach the receiver in order with the frames), and the keyframe, when it comes, goes with
    the first of them; their frames follow it whatever the gate says (features only: they are small)."""
    if stream.current is None and item.keyframe is None and stream.next_part() is None:
        stream.hold(item)
        return []
    waiting = stream.take_waiting()
    if not waiting:
        return _plan(stream, item, gate, now)
    keyframe = item.keyframe
    # The keyframe goes with the frame it was taken from (or the first after it): the setups that frame was
    # prepared with go before it, in the items before; one coded before the session started has none.
    first = next((i for i, held in enumerate(waiting) if keyframe is not None and _ts(held) >= keyframe.ts_us), None)
    if first is not None:
        waiting[first] = dataclasses.replace(waiting[first], keyframe=keyframe)
        item = dataclasses.replace(item, keyframe=None)
    # the item the keyframe came with goes whatever the gate says too, as a session's first frame always did
    return [message for queued in (*waiting, item) for message in _plan(stream, queued, gate, now, force=True)]


def _plan(stream: FeatureStream, item: Outgoing, gate: SendGate, now: float, force: bool = False) -> list[m.Message]:
    out: list[m.Message] = []
    for setup in stream.state_messages(item, max(MIN_PART_BYTES, gate.chunk_bytes())):
        out.append(setup)
        gate.on_send_uncontrolled(link_bytes(setup), now)
    first = stream.current is None
    if first:
        out += parts(stream, gate, now)  # nothing can be shown before the first keyframe: it goes first, whole
    # The first keyframe's own frame goes with it, whatever the gate says: together they are the first picture.
    current = stream.current
    if force and current is not None and _ts(item) < current.ts_us:
        pass  # analysed before the keyframe's own frame: nothing to draw it from (its setups went)
    elif current is not None and (first or force or gate.may_send(stream.last_features_bytes, now, essential=True)):
        # The layer's packet is not essential: it rides with the frame only when the gate holds both, so a
        # layer key frame does not put the frames behind it in debt (unless it is larger than the gate can
        # ever hold: then it goes when the gate is full). Nor are alpha corrections (they go first: a few
        # bytes, and what they fix stays fixed): while the start's debt is repaid, the frames come first.
        # Frames forced out behind the first keyframe carry neither.
        fix_bytes = 0 if force else stream.fix_bytes_due(item)
        fix = fix_bytes > 0 and gate.may_send(stream.last_features_bytes + fix_bytes, now)
        features_bytes = stream.last_features_bytes + (fix_bytes if fix else 0)
        layer_bytes = 0 if force else stream.layer_bytes_due(item)
        # ... and when the box the receiver holds has gone stale, it may use the frames' reserve (not their schedule:
        # as essential bytes, stale boxes put the end of a file in debt and its last frames waited, d12 -0.007)
        layer = layer_bytes > 0 and gate.may_send(features_bytes + layer_bytes, now, urgent=stream.layer_stale(item))
        frame = stream.frame(item, layer=layer, fix=fix)
        if frame is not None:
            out.append(frame)
            gate.on_send(frame.seq, link_bytes(frame, stream.packed), now)
    out += parts(stream, gate, now)
    return out


def _ts(item: Outgoing) -> int:
    return item.frame.analysis.frame.ts_us


def parts(stream: FeatureStream, gate: SendGate, now: float) -> list[m.Message]:
    """Keyframe parts the gate lets go now (all of the session's first keyframe: until it is there the
    receiver shows nothing, so it may borrow from the budget, which the frames after it pay back)."""
    out: list[m.Message] = []
    while (part := stream.next_part()) is not None:
        size = link_bytes(part)
        # bulk: a part waits for room by design, its refusal says nothing about the link
        if stream.current is not None and not gate.may_send(size, now, bulk=True):
            break
        out.append(part)
        stream.part_sent()
        gate.on_send_bulk(size, now)
    return out
