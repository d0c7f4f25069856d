"""A small discrete-event simulation of the facewire uplink over a bottleneck, for testing rate control.

    sender app (capture at fps, codec sized from the target, latest-frame-wins slot, keyframe chunks)
      -> bottleneck: one FIFO served at a piecewise-constant rate (TCP: nothing is dropped), outages
      -> one-way delay -> receiver (its own clock: offset + drift) -> acks as the reference receiver sends them
      -> reverse path (delay, optional rate) -> sender's controller

Optional constant-bitrate cross traffic shares the FIFO. Time is in seconds; the only clock is the
event queue, so a run is deterministic for a given seed. `run(Scenario(...))` returns a `Trace` with
every message's times and a 10 Hz timeline of the controller's state; the helpers on `Trace` compute
the figures the tests assert on.

The receiver acks every message the controller sent (frames and keyframe chunks alike), with the
timing of the reference receiver, in the protocol's own `ack` message (its real size counts on a
rate-limited reverse path).

A `policy="baseline"` run models today's uplink instead: no controller, a message is written
whenever the socket is writable (the sender's unsent bytes fit its kernel send buffer).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facewire.sender.congestion import ControllerConfig, RateController
from facewire.shared.wire import messages as m


@dataclass(frozen=True)
class Schedule:
    """A piecewise-constant rate: [(from_s, bps), ...] sorted by time, the first at 0."""

    steps: tuple[tuple[float, float], ...]

    @staticmethod
    def constant(bps: float) -> Schedule:
        return Schedule(((0.0, bps),))

    def at(self, t: float) -> float:
        rate = self.steps[0][1]
        for start, bps in self.steps:
            if start <= t:
                rate = bps
        return rate

    def finish(self, start: float, bits: float) -> float:
        """When `bits` started at `start` have been serialised, integrating the rate across its steps."""
        t = start
        remaining = bits
        bounds = [s for s, _ in self.steps if s > start] + [math.inf]
        for bound in bounds:
            rate = self.at(t)
            if rate > 0 and remaining <= rate * (bound - t):
                return t + remaining / rate
            remaining -= rate * (bound - t) if rate > 0 else 0.0
            t = bound
        return math.inf


@dataclass(frozen=True)
class Outages:
    """No bytes leave during [k * every_s + offset_s, + duration_s) for k = 1, 2, ..."""

    every_s: float
    duration_s: float
    offset_s: float = 0.0

    def next_up(self, t: float) -> float:
        k = math.floor((t - self.offset_s) / self.every_s)
        start = k * self.every_s + self.offset_s
        if k >= 1 and start <= t < start + self.duration_s:
            return start + self.duration_s
        return t

    def stretch(self, start: float, finish: float) -> float:
        """A transmission that an outage interrupts resumes after it (the rate is taken as unchanged)."""
        k = math.floor((start - self.offset_s) / self.every_s) + 1
        outage = k * self.every_s + self.offset_s
        while k >= 1 and outage < finish:
            finish += self.duration_s
            k += 1
            outage = k * self.every_s + self.offset_s
        return finish


@dataclass
class Bottleneck:
    """One FIFO served at `rate`; `overhead_bytes` per message models TCP/IP headers on the wire."""

    rate: Schedule
    delay_s: float
    overhead_bytes: int = 0
    outages: Outages | None = None
    busy_until: float = 0.0
    queued: list[tuple[float, int]] = field(default_factory=list)  # (departure, bytes) of own flow

    def transmit(self, t: float, nbytes: int) -> tuple[float, float]:
        """Enqueue at `t`; returns (departure, arrival). FIFO without drops, so both are known at once."""
        start = max(t, self.busy_until)
        if self.outages is not None:
            start = self.outages.next_up(start)
        finish = self.rate.finish(start, (nbytes + self.overhead_bytes) * 8)
        if self.outages is not None:
            finish = self.outages.stretch(start, finish)
        self.busy_until = finish
        return finish, finish + self.delay_s


@dataclass(frozen=True)
class Cross:
    """Constant-bitrate cross traffic on the same bottleneck between start_s and stop_s."""

    bps: float
    start_s: float
    stop_s: float
    packet_bytes: int = 200


@dataclass(frozen=True)
class CodecModel:
    """Message sizes like the codec's: features every frame, a residual layer filling the budget, keyframes.

    features_bytes: one frame message with pose + expression code + header (issue 11 aims at <= 30 B of code).
    The residual layer gets target - features - keyframe allowance; its frame sizes vary (lognormal).
    A keyframe is sized to `keyframe_spread_s` of the budget left after the features, within
    [keyframe_min_bytes, keyframe_max_bytes], and sent as chunks of at most `chunk_bytes`.
    """

    fps: float = 25.0
    features_bytes: int = 40
    residual: bool = True
    residual_min_bytes: int = 20
    size_sigma: float = 0.3
    keyframe_every_s: float = 10.0
    keyframe_spread_s: float = 1.0
    keyframe_min_bytes: int = 1500
    keyframe_max_bytes: int = 6000
    chunk_bytes: int = 1000
    # The layer restarts from each new keyframe with a key frame as large as the uplink's live cap lets it be
    # (`RateController.layer_key_bytes`); it rides on a frame once the window holds it, as the uplink's plan does.
    layer_key_after_keyframe: bool = False


@dataclass(frozen=True)
class Scenario:
    capacity: Schedule
    delay_s: float = 0.15
    duration_s: float = 40.0
    ceiling_bps: float = 64_000.0
    floor_bps: float = 4_000.0
    codec: CodecModel = CodecModel()
    config: ControllerConfig = ControllerConfig()
    ack_interval_s: float = 0.05
    reverse_bps: float | None = None
    overhead_bytes: int = 0
    outages: Outages | None = None
    cross: tuple[Cross, ...] = ()
    clock_offset_s: float = 1234.5
    clock_drift_ppm: float = 0.0
    ack_loss: Callable[[float], bool] | None = None  # drop the feedback message sent at t
    policy: str = "controller"  # or "baseline"
    baseline_buffer_bytes: int = 64 * 1024
    seed: int = 1


@dataclass
class Message:
    kind: str  # "frame" or "kf"
    seq: int
    nbytes: int
    capture_s: float
    residual_bytes: int = 0  # part of nbytes a frame may shed to go as features only
    send_s: float = math.nan
    arrival_s: float = math.nan
    last_chunk: bool = False


@dataclass
class Trace:
    scenario: Scenario
    messages: list[Message]
    dropped_frames: list[float]
    timeline: list[dict[str, Any]]
    keyframes: list[tuple[float, float]]  # (first chunk sent or queued, last chunk arrived)
    target_max_bps: float
    controller: RateController | None

    def frames(self, t0: float = 0.0, t1: float = math.inf) -> list[Message]:
        return [m for m in self.messages if m.kind == "frame" and t0 <= m.capture_s < t1 and not math.isnan(m.arrival_s)]

    def delivered_fps(self, t0: float, t1: float) -> float:
        arrived = [m for m in self.messages if m.kind == "frame" and t0 <= m.arrival_s < t1]
        return len(arrived) / (t1 - t0)

    def one_way_delay_p(self, q: float, t0: float, t1: float) -> float:
        """Percentile of send-to-arrival time of every message sent in [t0, t1)."""
        d = [m.arrival_s - m.send_s for m in self.messages if t0 <= m.send_s < t1 and not math.isnan(m.arrival_s)]
        return float(np.percentile(d, q)) if d else math.nan

    def latency_p(self, q: float, t0: float, t1: float) -> float:
        """Percentile of capture-to-arrival time of the frames captured in [t0, t1) that arrived."""
        d = [m.arrival_s - m.capture_s for m in self.frames(t0, t1)]
        return float(np.percentile(d, q)) if d else math.nan

    def goodput_bps(self, t0: float, t1: float) -> float:
        nbytes = sum(m.nbytes for m in self.messages if t0 <= m.arrival_s < t1)
        return nbytes * 8 / (t1 - t0)

    def utilisation(self, t0: float, t1: float) -> float:
        """Own bytes delivered over [t0, t1) against the capacity left by cross traffic."""
        cap = _integrate(self.scenario.capacity, t0, t1) - sum(
            c.bps * max(0.0, min(t1, c.stop_s) - max(t0, c.start_s)) for c in self.scenario.cross)
        return self.goodput_bps(t0, t1) * (t1 - t0) / cap

    def max_window_rate_bps(self, window_s: float = 10.0) -> float:
        """Highest send rate over any `window_s` window (every byte the sender wrote, headers excluded)."""
        sends = sorted((m.send_s, m.nbytes) for m in self.messages if not math.isnan(m.send_s))
        times = np.array([s for s, _ in sends])
        cum = np.concatenate([[0], np.cumsum([n for _, n in sends])])
        best = 0.0
        for i, start in enumerate(times):
            j = int(np.searchsorted(times, start + window_s, side="left"))
            best = max(best, (cum[j] - cum[i]) * 8 / window_s)
        return best

    def settle_time(self, t_change: float, t_end: float, low: float, high: float, hold_s: float = 3.0) -> float:
        """Seconds after `t_change` until the target stays within [low, high] bps for `hold_s` (inf if never)."""
        rows = [r for r in self.timeline if t_change <= r["t"] < t_end]
        for i, row in enumerate(rows):
            window = [r for r in rows[i:] if r["t"] < row["t"] + hold_s]
            if row["t"] + hold_s <= t_end and all(low <= r["target_bps"] <= high for r in window):
                return row["t"] - t_change
        return math.inf

    def mean_target(self, t0: float, t1: float) -> float:
        return float(np.mean([r["target_bps"] for r in self.timeline if t0 <= r["t"] < t1]))


def _integrate(schedule: Schedule, t0: float, t1: float) -> float:
    bounds = sorted({t0, t1, *(s for s, _ in schedule.steps if t0 < s < t1)})
    return sum(schedule.at(a) * (b - a) for a, b in itertools.pairwise(bounds))


class _Sim:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed)
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self._tie = itertools.count()
        self.link = Bottleneck(sc.capacity, sc.delay_s, sc.overhead_bytes, sc.outages)
        self.ctl = RateController(sc.ceiling_bps, sc.floor_bps, sc.config) if sc.policy == "controller" else None
        self.messages: list[Message] = []
        self.dropped: list[float] = []
        self.timeline: list[dict[str, Any]] = []
        self.keyframes: list[tuple[float, float]] = []
        self.slot: Message | None = None
        self.kf_left = 0
        self.kf_started = math.nan
        self.seq = 0
        self.pending_acks: list[tuple[int, int]] = []
        self.first_pending_s = 0.0
        self.receiver_timer = 0  # the receiver's latest wake-up timer; earlier ones are void
        self.reverse_busy = 0.0
        self.pump_at = math.inf
        self.next_keyframe_s = 0.0
        self.target_max = 0.0
        self.residual_skipped = 0
        self.layer_key_due = False

    # --- event queue
    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.events, (t, next(self._tie), fn))

    def run(self) -> Trace:
        sc = self.sc
        if self.ctl is not None:
            self.ctl.on_rtt(2 * sc.delay_s, 0.0)  # the hello -> welcome round trip
        self.at(0.0, self.capture)
        self.at(0.0, self.sample)
        for cross in sc.cross:
            self.at(cross.start_s, functools.partial(self.cross_packet, cross))
        while self.events:
            t, _, fn = heapq.heappop(self.events)
            if t > sc.duration_s:
                break
            self.now = t
            fn()
        return Trace(sc, self.messages, self.dropped, self.timeline, self.keyframes, self.target_max, self.ctl)

    # --- the sender app
    def target(self) -> float:
        return self.ctl.target_bps if self.ctl is not None else self.sc.ceiling_bps

    def capture(self) -> None:
        codec, now = self.sc.codec, self.now
        if now >= self.next_keyframe_s and not self.kf_left:
            self.start_keyframe()
        kf_bps = self.keyframe_allowance_bps()
        residual = 0
        if codec.residual:
            per_frame = (self.target() - codec.features_bytes * 8 * codec.fps - kf_bps) / codec.fps / 8
            if per_frame >= codec.residual_min_bytes:
                residual = int(per_frame * math.exp(self.rng.gauss(-codec.size_sigma ** 2 / 2, codec.size_sigma)))
            if self.layer_key_due and self.ctl is not None:
                residual = max(residual, self.ctl.layer_key_bytes())
        if self.slot is not None:
            self.dropped.append(self.slot.capture_s)
        self.slot = Message("frame", 0, codec.features_bytes + residual, now, residual_bytes=residual)
        self.pump()
        self.at(now + 1.0 / codec.fps, self.capture)

    def keyframe_allowance_bps(self) -> float:
        """While a keyframe is under way the residual layer yields the keyframe's share of the budget."""
        if not self.kf_left:
            return 0.0
        return min(self.target() * 0.8, self.kf_left * 8 / self.sc.codec.keyframe_spread_s)

    def start_keyframe(self) -> None:
        codec, now = self.sc.codec, self.now
        features_bps = codec.features_bytes * 8 * codec.fps
        budget = (self.ctl.budget_bytes(codec.keyframe_spread_s, features_bps) if self.ctl is not None
                  else codec.keyframe_max_bytes)
        size = min(max(budget, codec.keyframe_min_bytes), codec.keyframe_max_bytes)
        self.kf_left = size
        self.kf_started = now
        self.next_keyframe_s = now + codec.keyframe_every_s

    def pump(self) -> None:
        """Send what may go: the latest frame first (latency), then keyframe chunks in order."""
        while True:
            item = self.slot if self.slot is not None else self.next_chunk()
            if item is None:
                return
            if not self.writable(item.nbytes, essential=item.residual_bytes == 0 and item.kind == "frame",
                                 bulk=item.kind == "kf"):
                if item.kind != "frame" or item.residual_bytes == 0:
                    return
                # the residual layer's frame is skipped; the features go alone if they may
                if not self.writable(item.nbytes - item.residual_bytes, essential=True, bulk=False):
                    return
                item.nbytes -= item.residual_bytes
                item.residual_bytes = 0
                self.residual_skipped += 1
            if item is self.slot:
                self.slot = None
                if item.residual_bytes:
                    self.layer_key_due = False
            else:
                self.kf_left -= item.nbytes
                item.last_chunk = self.kf_left == 0
                self.layer_key_due = item.last_chunk and self.sc.codec.layer_key_after_keyframe
            self.send(item)

    def next_chunk(self) -> Message | None:
        """The next piece of the keyframe, cut to what the window has room for (never below a minimum)."""
        if not self.kf_left:
            return None
        size = min(self.kf_left, self.sc.codec.chunk_bytes)
        if self.ctl is not None:
            size = min(size, max(self.ctl.chunk_bytes() // 2, min(self.ctl.chunk_bytes(), self.ctl.room_bytes())))
        return Message("kf", 0, size, self.kf_started)

    def writable(self, nbytes: int, essential: bool, bulk: bool) -> bool:
        now = self.now
        if self.ctl is None:
            # today's uplink: a write goes whenever the kernel buffer has room
            if self.unsent_bytes() + nbytes <= self.sc.baseline_buffer_bytes:
                return True
            self.schedule_pump(min(d for d, _ in self.link.queued if d > now))
            return False
        decision = self.ctl.decide(nbytes, now, essential, bulk)
        if decision.ok:
            return True
        self.schedule_pump(decision.retry_at if decision.retry_at is not None else now + 0.1)  # 0.1: expiry
        return False

    def schedule_pump(self, t: float) -> None:
        if t < self.pump_at or self.pump_at <= self.now:
            self.pump_at = t
            self.at(t, self.pump_timer)

    def unsent_bytes(self) -> int:
        return sum(n for d, n in self.link.queued if d > self.now)

    def pump_timer(self) -> None:
        if self.now >= self.pump_at:
            self.pump_at = math.inf
            self.pump()

    def send(self, msg: Message) -> None:
        now = self.now
        self.seq += 1
        msg.seq, msg.send_s = self.seq, now
        departure, arrival = self.link.transmit(now, msg.nbytes)
        self.link.queued = [(d, n) for d, n in self.link.queued if d > now] + [(departure, msg.nbytes)]
        msg.arrival_s = arrival
        self.messages.append(msg)
        if self.ctl is not None:
            # as the uplink does: frames are acknowledged, keyframe parts go under the window unacknowledged
            if msg.kind == "kf":
                self.ctl.on_send_bulk(msg.nbytes, now)
            else:
                self.ctl.on_send(msg.seq, msg.nbytes, now)
        self.at(arrival, functools.partial(self.arrived, msg))

    # --- receiver and feedback
    def receiver_us(self, t: float) -> int:
        return int((t * (1 + self.sc.clock_drift_ppm * 1e-6) + self.sc.clock_offset_s) * 1e6)

    def arrived(self, msg: Message) -> None:
        if msg.last_chunk:
            self.keyframes.append((msg.capture_s, self.now))
        if msg.kind == "kf":
            self.receiver_wakes()  # the receiver acks frames only, but any message wakes it
            return
        if not self.pending_acks:
            self.first_pending_s = self.now
        self.pending_acks.append((msg.seq, self.receiver_us(self.now)))
        self.receiver_wakes()

    def receiver_wakes(self) -> None:
        """The reference receiver's loop (receiver/server.py with shared/wire/protocol.py): it wakes on every
        message, and `ack_interval_s` after it last woke when none came; it sends the pending acks once the
        first is `ack_interval_s` old, or at once when MAX_ACKS are pending."""
        now, interval = self.now, self.sc.ack_interval_s
        # 1 ns: the timer set at the first arrival fires exactly `interval` later, which float sums can miss
        if self.pending_acks and (now - self.first_pending_s >= interval - 1e-9 or len(self.pending_acks) >= m.MAX_ACKS):
            self.send_acks()
        if self.pending_acks:
            self.receiver_timer += 1
            self.at(now + interval, functools.partial(self.receiver_timeout, self.receiver_timer))

    def receiver_timeout(self, timer: int) -> None:
        if timer == self.receiver_timer:  # else a message woke the receiver since this timer was set
            self.receiver_wakes()

    def send_acks(self) -> None:
        now = self.now
        acks, self.pending_acks = self.pending_acks, []
        if self.sc.ack_loss is not None and self.sc.ack_loss(now):
            return
        nbytes = len(m.encode(m.Ack(frames=acks)))
        start = max(now, self.reverse_busy)
        done = start + (nbytes * 8 / self.sc.reverse_bps if self.sc.reverse_bps else 0.0)
        self.reverse_busy = done
        self.at(done + self.sc.delay_s, functools.partial(self.feedback, acks))

    def feedback(self, acks: list[tuple[int, int]]) -> None:
        if self.ctl is not None:
            self.ctl.on_acks(acks, self.now)
            self.pump()

    # --- cross traffic and sampling
    def cross_packet(self, c: Cross) -> None:
        if self.now >= c.stop_s:
            return
        self.link.transmit(self.now, c.packet_bytes)
        self.at(self.now + c.packet_bytes * 8 / c.bps, lambda: self.cross_packet(c))

    def sample(self) -> None:
        now = self.now
        row: dict[str, Any] = {"t": now, "capacity_bps": self.sc.capacity.at(now), "target_bps": self.target(),
                                 "queue_delay_s": max(0.0, self.link.busy_until - now)}
        if self.ctl is not None:
            self.ctl.tick(now)
            snap = self.ctl.snapshot()
            row |= {"in_flight": snap["in_flight_bytes"], "window": snap["window_bytes"],
                    "acked_bps": snap["acked_bps"] or 0, "state": snap["state"]}
            self.target_max = max(self.target_max, self.ctl.target_bps)
            self.pump()
        self.timeline.append(row)
        self.at(now + 0.1, self.sample)


def run(scenario: Scenario) -> Trace:
    return _Sim(scenario).run()


def summarise(trace: Trace, t0: float, t1: float) -> dict[str, float]:
    """The figures the report quotes for a steady window [t0, t1)."""
    return {
        "delivered_fps": round(trace.delivered_fps(t0, t1), 2),
        "owd_p50_ms": round(trace.one_way_delay_p(50, t0, t1) * 1000, 1),
        "owd_p95_ms": round(trace.one_way_delay_p(95, t0, t1) * 1000, 1),
        "latency_p95_ms": round(trace.latency_p(95, t0, t1) * 1000, 1),
        "utilisation": round(trace.utilisation(t0, t1), 3),
        "goodput_kbps": round(trace.goodput_bps(t0, t1) / 1000, 2),
        "mean_target_kbps": round(trace.mean_target(t0, t1) / 1000, 2) if trace.controller else math.nan,
    }


def steps(*pairs: Sequence[float]) -> Schedule:
    return Schedule(tuple((float(a), float(b)) for a, b in pairs))
