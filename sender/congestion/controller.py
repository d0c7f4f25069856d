"""The rate controller: acknowledgements in; a target rate, an in-flight window and a pacer out.

It owns no socket and no clock: every call takes the sender's monotonic `now` in seconds. When an
ack left the receiver (acks.py), the delay detector (delay.py), the rates read from the acks
(rates.py), the AIMD rules (aimd.py) and the in-flight ledger (inflight.py) each do one part; this
object feeds them and answers the uplink's questions. Beyond GCC it has the rules a thin TCP link needs (a
standing queue, keyframe parts in flight until a later frame's ack, the frames' share of the window, link
pauses, expiry and a feedback timeout); each says why where it acts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from facewire.sender.congestion.acks import AckDeparture
from facewire.sender.congestion.aimd import AimdRate, RateState
from facewire.sender.congestion.config import ControllerConfig
from facewire.sender.congestion.delay import InterArrival, Signal, TrendlineDetector
from facewire.sender.congestion.inflight import InFlight
from facewire.sender.congestion.rates import AckedRate, MinFilter
from facewire.shared.process.tokens import TokenBucket


@dataclass(frozen=True)
class Decision:
    """The answer to 'may I send n bytes now?': `ok`, else when to ask again (None: after the next ack)."""

    ok: bool
    retry_at: float | None
    reason: str


@dataclass
class Counters:
    sent_messages: int = 0
    sent_bytes: int = 0
    uncontrolled_bytes: int = 0
    bulk_bytes: int = 0
    acked_messages: int = 0
    acked_bytes: int = 0
    unknown_acks: int = 0
    expired_messages: int = 0
    late_acks: int = 0
    pauses: int = 0
    overuse_events: int = 0
    decreases: int = 0
    feedback_timeouts: int = 0
    refused_window: int = 0
    refused_ceiling: int = 0
    refused_frames: int = 0  # refusals of messages other than bulk (a frame, a frame with its layer packet)
    # decreases by the rule that asked for them (overuse, standing queue)
    decrease_causes: dict[str, int] = field(default_factory=dict)


class RateController:
    """The uplink's rate estimate, in-flight window and pacer; see the package docstring."""

    def __init__(self, ceiling_bps: float, floor_bps: float = 4_000.0, config: ControllerConfig | None = None) -> None:
        if not 0 < floor_bps <= ceiling_bps:
            raise ValueError(f"need 0 < floor ({floor_bps}) <= ceiling ({ceiling_bps})")
        self.cfg = cfg = config or ControllerConfig()
        self.ceiling_bps = float(ceiling_bps)
        self.floor_bps = float(floor_bps)
        self.counters = Counters()
        self._rate = AimdRate(cfg, self.ceiling_bps, self.floor_bps)
        self._inter = InterArrival(cfg)
        self._trend = TrendlineDetector(cfg)
        self._acked = AckedRate(cfg.acked_window_s, cfg.acked_min_span_s, cfg.acked_max_gap_s)
        self._min_rtt = MinFilter(cfg.min_rtt_window_s)
        self._flight = InFlight(cfg.records_kept_s)
        # what the frames cost, by send time: the share of the window kept for them
        self._frame_rate = AckedRate(cfg.frame_rate_window_s, cfg.acked_min_span_s, cfg.frame_rate_window_s)
        self._srtt: float | None = None
        self._hold_s = cfg.initial_ack_hold_s  # smoothed longest wait of an ack's entries at the receiver
        # (ack time, RTT sample - min RTT) of the last standing_interval_s: the queue the sender sits behind
        self._queue_samples: deque[tuple[float, float]] = deque()
        self._last_acked: tuple[float, float] | None = None  # (send, arrival) of the previous ack in send order
        self._last_feedback_s: float | None = None
        self._last_timeout_cut_s: float | None = None
        self._pacer = TokenBucket(0.0, 0.0)
        self._ceiling = TokenBucket(self.ceiling_bps / 8, self._ceiling_depth())
        self._retune_pacer()

    # ----------------------------------------------------------------- inputs

    def on_send(self, seq: int, nbytes: int, now: float) -> None:
        """A congestion-controlled message (it will be acknowledged) went to the socket."""
        self._expire(now)
        self._flight.add(seq, nbytes, now, self._rate.target)
        self._frame_rate.add(now, nbytes)
        self._charge(nbytes, now)
        self.counters.sent_messages += 1
        self.counters.sent_bytes += nbytes

    def on_send_bulk(self, nbytes: int, now: float) -> None:
        """A message that is not acknowledged but goes under the window (a keyframe part): in flight until a
        frame sent after it is acknowledged (the link keeps order), so it cannot build a queue the window
        does not see."""
        self._expire(now)
        self._flight.add_bulk(nbytes, now, self._rate.target)
        self._charge(nbytes, now)
        self.counters.bulk_bytes += nbytes

    def on_send_uncontrolled(self, nbytes: int, now: float) -> None:
        """A message that will not be acknowledged (ping, stats, bye) still uses the link and the ceiling."""
        self._charge(nbytes, now)
        self.counters.uncontrolled_bytes += nbytes

    def on_acks(self, frames: Sequence[tuple[int, int]], now: float) -> None:
        """One ack message, as `Ack.frames`: (seq, receive time in µs of the receiver's clock) for each
        message received since the last ack. The two clocks need not agree: only differences are used."""
        self._last_feedback_s = now
        if not frames:
            return
        departure = AckDeparture.infer(frames, self.cfg)
        # The window covers the longest an entry waits for its ack (the first entry's wait), not the mean
        # wait: the bytes in flight peak just before an ack comes back, and a window that refuses frames
        # at each peak skips frames the link had room for.
        self._hold_s += 0.1 * (min(departure.longest_hold_s, 1.0) - self._hold_s)
        for seq, recv_us in sorted(frames, key=self._send_order):
            self._on_one_ack(seq, recv_us, now, departure)
        self._expire(now)
        cause = self._decrease_cause(now)
        if self._rate.update(now, cause, self._trend, self._acked.bps(), self.rtt_s):
            self.counters.decreases += 1
            rule = (cause or "").split(" ")[0]
            self.counters.decrease_causes[rule] = self.counters.decrease_causes.get(rule, 0) + 1
        self._retune_pacer()

    def on_rtt(self, rtt_s: float, now: float) -> None:
        """An RTT sample from elsewhere (ping/pong, the handshake)."""
        if rtt_s > 0:
            self._rtt_sample(rtt_s, now)

    def tick(self, now: float) -> None:
        """Time passes without feedback: expire old in-flight bytes, apply the feedback timeout."""
        self._expire(now)
        self._check_feedback_timeout(now)

    # ---------------------------------------------------------------- answers

    @property
    def target_bps(self) -> float:
        return self._rate.target

    @property
    def last_change(self) -> str:
        """Which rule last moved the target, and why."""
        return self._rate.last_change

    @property
    def rate_state(self) -> RateState:
        return self._rate.state

    @property
    def in_flight_bytes(self) -> int:
        return self._flight.bytes

    @property
    def rtt_s(self) -> float:
        """Smoothed RTT (feedback holding time removed); the configured guess before any sample."""
        return self._srtt if self._srtt is not None else self.cfg.initial_rtt_s

    @property
    def min_rtt_s(self) -> float:
        value = self._min_rtt.value()
        return value if value is not None else self.cfg.initial_rtt_s

    @property
    def state(self) -> str:
        """overuse / normal / underuse as the detector sees it, or stalled when feedback stopped."""
        if self._last_timeout_cut_s is not None and (self._last_feedback_s is None
                                                     or self._last_feedback_s < self._last_timeout_cut_s):
            return "stalled"
        return self._trend.signal.value

    @property
    def acked_bps(self) -> float | None:
        return self._acked.bps()

    @property
    def queue_delay_s(self) -> float:
        """The least queueing delay (ack RTT - min RTT) any message acknowledged in the last
        `standing_interval_s` met: above zero only when the queue never emptied (CoDel's idea)."""
        return min((q for _, q in self._queue_samples), default=0.0)

    def window_bytes(self) -> int:
        """Bytes allowed in flight: the target rate over min RTT + the longest ack wait + queue allowance."""
        cfg = self.cfg
        # A message stays in flight for a round trip plus the time its ack waits at the receiver.
        span = self.min_rtt_s + self._hold_s + cfg.queue_allowance_s
        return max(cfg.min_window_bytes, int(self._rate.target / 8 * span))

    def may_send(self, nbytes: int, now: float, essential: bool = False, bulk: bool = False,
                 urgent: bool = False) -> bool:
        """Window, ceiling and pacer check for one message; a refused frame should be dropped or replaced. `urgent`
        (a stale layer box) is sent as any other: the window's reserve keeps the frames moving on a live link."""
        return self.decide(nbytes, now, essential, bulk).ok

    def next_send_time(self, nbytes: int, now: float) -> float:
        """Earliest time the pacer and the ceiling bucket let `nbytes` go (`now` if it may go now)."""
        return max(self._pacer.time_for(nbytes, now), self._ceiling.time_for(nbytes, now))

    def decide(self, nbytes: int, now: float, essential: bool = False, bulk: bool = False) -> Decision:
        """Window, then ceiling, then pacer; the reason names the rule that refused.

        `essential` (a frame's features): may use the whole window and skips the pacer; others leave it a
        reserve. `bulk` (keyframe chunks, patches): paced by the window by design, so its refusals are not
        counted in `refused_frames` (which says how often the codec's output did not fit)."""
        self._expire(now)
        self._check_feedback_timeout(now)
        in_flight = self._charged_in_flight(essential)
        window = self.window_bytes()
        # A frame's features may always use the frames' share: the bulk already out (a keyframe's parts sent
        # before a cut shrank the window) holds them up on the link, but they are no reason to skip frames.
        own_share = essential and self._flight.frame_bytes + nbytes <= self.reserve_bytes()
        if self._flight.bytes > 0 and in_flight + nbytes > window and not own_share:
            self.counters.refused_window += 1
            if not bulk:
                self.counters.refused_frames += 1
            return Decision(False, None, f"window: {in_flight}+{nbytes} > {window} B")
        ceiling_at = self._ceiling.time_for(nbytes, now)
        if ceiling_at > now:
            self.counters.refused_ceiling += 1
            return Decision(False, ceiling_at, f"ceiling: bucket {self._ceiling.level:.0f} B < {nbytes} B")
        pacer_at = self._pacer.time_for(nbytes, now)
        # The features of a frame are paced by the camera already; like audio in WebRTC's pacer they
        # skip the queue (but are charged, so the bulk behind them slows down).
        if pacer_at > now and not essential:
            return Decision(False, pacer_at, f"pacer: {self._pacer.level:.0f} B < {nbytes} B")
        return Decision(True, None, "ok")

    def room_bytes(self, essential: bool = False) -> int:
        """Bytes that fit the window now (size a chunk or a residual frame to this)."""
        return max(0, self.window_bytes() - self._charged_in_flight(essential))

    def _charged_in_flight(self, essential: bool) -> int:
        """The bytes in flight a message is checked against: all of them for a frame's features; for anything
        else, the frames' share counts as taken even while the frames have less in flight, so a keyframe's
        parts cannot fill the window between two frames and lock the frames out, and a little more is left
        beyond what the frames have in flight."""
        if essential:
            return self._flight.bytes
        # and the next features find room even when the frames carry more (a residual layer's packets)
        frames = self._flight.frame_bytes
        return self._flight.bytes - frames + max(frames + self.cfg.essential_reserve_min_bytes, self.reserve_bytes())

    def bulk_window_bytes(self) -> int:
        """The most a message other than a frame's features can have in flight: the window less the frames'
        share (a layer key frame larger than this waits for an empty link, and the frames behind it with it)."""
        return max(0, self.window_bytes() - self.reserve_bytes() - self.cfg.essential_reserve_min_bytes)

    def layer_key_bytes(self) -> int:
        """The largest residual-layer key frame to let ride with a frame: what the window holds beside the
        frames' share, and no more than `layer_key_s` of the target."""
        return min(self.bulk_window_bytes(), int(self._rate.target / 8 * self.cfg.layer_key_s))

    def chunk_bytes(self) -> int:
        """Largest chunk to cut a keyframe into: ~`chunk_s` of the target rate."""
        return max(self.cfg.chunk_min_bytes, int(self._rate.target / 8 * self.cfg.chunk_s))

    def reserve_bytes(self) -> int:
        """The frames' share of the window: what they cost over a message's time in flight (their measured rate,
        never less than the target's `essential_reserve_s`), at most `essential_reserve_max` of the window so
        that a keyframe still crosses when the frames alone would fill it."""
        cfg = self.cfg
        span = max(self.min_rtt_s, self.rtt_s) + self._hold_s + cfg.essential_reserve_s
        frames_bps = max(self._frame_rate.bps() or 0.0, self._rate.target * cfg.essential_reserve_s / span)
        reserve = max(cfg.essential_reserve_min_bytes, int(frames_bps / 8 * span))
        return min(reserve, int(cfg.essential_reserve_max * self.window_bytes()))

    def budget_bytes(self, seconds: float, reserved_bps: float = 0.0) -> int:
        """Bytes the target leaves in `seconds` after `reserved_bps` (e.g. the features): a keyframe that
        fits 1 s of this crosses the link in about 1 s without starving the frames."""
        return max(0, int((self._rate.target - reserved_bps) * seconds / 8))

    def snapshot(self) -> dict[str, object]:
        """Every input a decision is made from, for stats lines and post-mortems."""
        acked = self._acked.bps()
        capacity = self._rate.capacity.estimate_kbps
        return {
            "target_bps": round(self._rate.target),
            "ceiling_bps": round(self.ceiling_bps),
            "floor_bps": round(self.floor_bps),
            "acked_bps": None if acked is None else round(acked),
            "capacity_bps": None if capacity is None else round(capacity * 1000),
            "rate_state": self._rate.state.value,
            "startup": self._rate.in_startup,
            "researching": self._rate.researching,
            "state": self.state,
            "trend": round(self._trend.trend, 5),
            "modified_trend_ms": round(self._trend.modified_trend, 2),
            "threshold_ms": round(self._trend.threshold_ms, 2),
            "accumulated_delay_ms": round(self._trend.accumulated_ms, 1),
            "in_flight_bytes": self._flight.bytes,
            "window_bytes": self.window_bytes(),
            "rtt_ms": round(self.rtt_s * 1000, 1),
            "queue_delay_ms": round(self.queue_delay_s * 1000, 1),
            "min_rtt_ms": round(self.min_rtt_s * 1000, 1),
            "ack_hold_ms": round(self._hold_s * 1000, 1),
            "pacer_level_bytes": round(self._pacer.level),
            "ceiling_level_bytes": round(self._ceiling.level),
            "last_change": self._rate.last_change,
            **{f"n_{k}": v for k, v in vars(self.counters).items()},
        }

    # -------------------------------------------------------------- internals

    def _on_one_ack(self, seq: int, recv_us: int, now: float, departure: AckDeparture) -> None:
        sent = self._flight.pop(seq)
        if sent is None:
            self.counters.unknown_acks += 1
            return
        if not sent.counted:
            self.counters.late_acks += 1
        self.counters.acked_messages += 1
        self.counters.acked_bytes += sent.nbytes
        arrival_s = recv_us / 1e6
        # The time the entry waited at the receiver for its ack is not part of the round trip.
        sample = now - sent.send_s - departure.hold_s(recv_us)
        self._rtt_sample(sample, now)
        self._queue_samples.append((now, max(0.0, sample - self.min_rtt_s)))
        # the bulk sent before this frame arrived before it: its bytes crossed the link in this span too
        self._acked.add(arrival_s, sent.nbytes + self._flight.release_bulk(sent.send_s))
        gap = self._pause_gap(sent.send_s, arrival_s)
        if gap is not None:
            # A link pause (a radio outage): the delay spike it leaves behind is not a growing queue.
            self.counters.pauses += 1
            self._trend = TrendlineDetector(self.cfg, threshold_ms=self._trend.threshold_ms)
            self._inter = InterArrival(self.cfg)
            self._rate.last_change = f"link pause ({gap:.2f} s without arrivals): trend reset"
        self._last_acked = (sent.send_s, arrival_s)
        deltas = self._inter.add(sent.send_s, arrival_s, sent.nbytes)
        if deltas is not None:
            send_delta, arrival_delta, group_arrival = deltas
            before = self._trend.signal
            signal = self._trend.update(send_delta * 1000, arrival_delta * 1000, group_arrival * 1000)
            if signal is Signal.OVERUSE and before is not Signal.OVERUSE:
                self.counters.overuse_events += 1

    def _send_order(self, ack: tuple[int, int]) -> float:
        """Acks are taken in send order (the delay detector groups by send time); unknown seqs first."""
        send_s = self._flight.send_time(ack[0])
        return -1.0 if send_s is None else send_s

    def _pause_gap(self, send_s: float, arrival_s: float) -> float | None:
        """The arrival gap if this ack reveals a link pause (nothing arrived though we kept sending)."""
        if self._last_acked is None:
            return None
        send_gap, arrival_gap = send_s - self._last_acked[0], arrival_s - self._last_acked[1]
        return arrival_gap if arrival_gap > self.cfg.pause_gap_s and send_gap < arrival_gap / 2 else None

    def _rtt_sample(self, rtt_s: float, now: float) -> None:
        rtt_s = max(rtt_s, 1e-4)
        self._min_rtt.add(rtt_s, now)
        self._srtt = rtt_s if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt_s

    def _decrease_cause(self, now: float) -> str | None:
        """Why the target should come down now, if it should: the detector's overuse, or a standing queue,
        which a delay gradient cannot see."""
        standing = self._standing_queue(now)  # always: it also drops the samples older than its interval
        if self._trend.signal is Signal.OVERUSE:
            return "overuse"
        return f"standing queue {self.queue_delay_s * 1000:.0f} ms" if standing else None

    def _standing_queue(self, now: float) -> bool:
        """A sender held by its window keeps the queue full but flat, which a delay *gradient* cannot see: the
        least queueing delay of the last `standing_interval_s` stayed above `standing_queue_s`."""
        interval = self.cfg.standing_interval_s
        while self._queue_samples and self._queue_samples[0][0] < now - interval:
            self._queue_samples.popleft()
        if not self._queue_samples or self._queue_samples[0][0] > now - interval * 0.8:
            return False  # not enough history in the interval to call the queue standing
        return self.queue_delay_s > self.cfg.standing_queue_s

    def _check_feedback_timeout(self, now: float) -> None:
        """No feedback for a while with bytes in flight: cut the target, once per timeout (GCC's feedback timeout)."""
        cfg = self.cfg
        if self._flight.frame_bytes <= 0:
            return
        # from when the oldest message was due to leave: one behind a keyframe's parts waits for them
        oldest = self._flight.oldest_due_s()
        if oldest is None:
            return
        timeout = max(cfg.feedback_timeout_min_s, 2 * self.rtt_s + 2 * self._hold_s)
        last_heard = self._last_feedback_s
        reference = max(last_heard if last_heard is not None else oldest, oldest)
        if now - reference < timeout:
            return
        if self._last_timeout_cut_s is not None and now - self._last_timeout_cut_s < timeout:
            return
        self._last_timeout_cut_s = now
        self.counters.feedback_timeouts += 1
        self._rate.cut(cfg.feedback_timeout_cut, f"feedback timeout ({now - reference:.2f} s without acks)")
        self._retune_pacer()

    def _expire(self, now: float) -> None:
        """In-flight bytes whose ack is overdue stop counting, so a lost ack cannot wedge the sender."""
        cfg = self.cfg
        expiry = max(cfg.expiry_min_s, cfg.expiry_rtt_multiple * self.rtt_s)
        self.counters.expired_messages += self._flight.expire(now, expiry)

    def _charge(self, nbytes: int, now: float) -> None:
        for bucket in (self._pacer, self._ceiling):
            bucket.charge(nbytes, now)

    def _retune_pacer(self) -> None:
        rate = self.cfg.pacing_factor * self._rate.target / 8
        self._pacer.retune(rate, max(self.cfg.pacer_min_burst_bytes, rate * self.cfg.pacer_burst_s))

    def _ceiling_depth(self) -> float:
        return max(self.cfg.ceiling_min_burst_bytes, self.ceiling_bps / 8 * self.cfg.ceiling_burst_s)
