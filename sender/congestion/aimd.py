"""The target rate and the AIMD rules that move it (libwebrtc's AimdRateControl, scaled to kbps).

On congestion the target drops to `beta` x the acknowledged throughput, at most once per round
trip; on underuse it holds; otherwise it grows: multiplicatively while the link's capacity is
unknown (fast in startup, until the first congestion), additively near a known capacity. It
never runs far ahead of what the link demonstrably carried, so an app-limited codec does not
inflate it, and it always stays within [floor, ceiling].
"""

from __future__ import annotations

import enum

from facewire.sender.congestion.config import ControllerConfig
from facewire.sender.congestion.delay import Signal, TrendlineDetector
from facewire.sender.congestion.rates import LinkCapacity


class RateState(enum.Enum):
    """GCC's Hold / Increase / Decrease."""

    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class AimdRate:
    """`target` and the state it moves by; `last_change` is a sentence naming the rule that last moved it."""

    def __init__(self, config: ControllerConfig, ceiling_bps: float, floor_bps: float) -> None:
        self.cfg = config
        self.ceiling_bps = ceiling_bps
        self.floor_bps = floor_bps
        self.target = self.clamp(config.start_bps)
        self.state = RateState.INCREASE
        self.in_startup = True
        self.researching = False
        self.capacity = LinkCapacity()
        self.last_change = f"start at {self.target:.0f} bps"
        self._last_rate_change_s: float | None = None
        self._last_decrease_s: float | None = None

    def update(self, now: float, cause: str | None, trend: TrendlineDetector, acked: float | None, rtt_s: float) -> bool:
        """GCC's ChangeState + ChangeBitrate, once per feedback message. `cause` names a reason to decrease
        (overuse, a standing queue), None if there is none. True when the target went down."""
        if cause is not None:
            if self._time_to_reduce(now, acked, rtt_s):
                self.state = RateState.DECREASE
                return self._decrease(now, acked, cause, trend)
            return False
        if trend.signal is Signal.UNDERUSE:
            self.state = RateState.HOLD
            self.last_change = f"hold: underuse (trend {trend.modified_trend:.1f} < -{trend.threshold_ms:.1f} ms)"
            self._last_rate_change_s = now
            return False
        if self.state is not RateState.INCREASE:
            self.state = RateState.INCREASE
            self._last_rate_change_s = now
            return False
        self._increase(now, acked, rtt_s)
        return False

    def cut(self, factor: float, why: str) -> None:
        """Scale the target down for a reason outside the AIMD rules (feedback stopped)."""
        self.target = self.clamp(self.target * factor)
        self.last_change = f"{why} -> {self.target:.0f} bps"

    def increase_limit(self, acked: float | None) -> tuple[float, str]:
        """How far above the acked rate the target may go, and the name of the rule."""
        cfg = self.cfg
        if acked is None:
            # No throughput measured yet: nothing says the link carries more than the start rate. Growing on
            # acks alone ran the target to the ceiling while a loaded sender got few frames out, and the
            # coder sized keyframes of tens of KB to it.
            return max(self.target, self.clamp(cfg.start_bps)), "no acked rate yet"
        limit, why = cfg.increase_limit_gain * acked + cfg.increase_limit_extra_bps, "app-limited"
        search = cfg.search_limit_gain * acked + cfg.search_limit_extra_bps
        if self.researching and search < limit:
            limit, why = search, "searching ahead of the acked rate"
        return limit, why

    def clamp(self, bps: float) -> float:
        return min(max(bps, self.floor_bps), self.ceiling_bps)

    def _time_to_reduce(self, now: float, acked: float | None, rtt_s: float) -> bool:
        """Once per round trip, or at once when the link carries less than half the target. libwebrtc caps
        the interval at 200 ms; these links' round trips are 0.3-1 s, and for a whole one the acks of what
        was sent before a cut still say 'overuse': cutting on them again and again, to 0.85 x an acked rate
        the cuts themselves lowered, left the target far below the link after a step down."""
        if self._last_decrease_s is None:
            return True
        if now - self._last_decrease_s >= max(rtt_s, 0.01):
            return True
        return acked is not None and acked < 0.5 * self.target

    def _decrease(self, now: float, acked: float | None, cause: str, trend: TrendlineDetector) -> bool:
        cfg = self.cfg
        decreased = False
        if acked is None:
            # Congestion before any throughput is known: halve, as libwebrtc does.
            new, why = self.target / 2, f"{cause}, no acked rate yet: halve"
        else:
            new, why = cfg.beta * acked, f"{cause}: {cfg.beta} x acked {acked:.0f}"
            if new > self.target and self.capacity.estimate_kbps is not None:
                new, why = cfg.beta * self.capacity.estimate_kbps * 1000, f"{cause}: {cfg.beta} x capacity"
            if acked < self.capacity.lower_bps():
                self.capacity.reset()
            self.capacity.on_overuse(acked)
        if new < self.target:
            self.target = self.clamp(new)
            decreased = True
            self.last_change = f"{why} -> {self.target:.0f} bps (trend {trend.modified_trend:.1f} > {trend.threshold_ms:.1f} ms)"
        self.in_startup = self.researching = False
        self._last_decrease_s = now
        self._last_rate_change_s = now
        self.state = RateState.HOLD
        return decreased

    def _increase(self, now: float, acked: float | None, rtt_s: float) -> None:
        cfg = self.cfg
        last = self._last_rate_change_s if self._last_rate_change_s is not None else now
        dt = min(max(now - last, 0.0), 1.0)
        self._last_rate_change_s = now
        if acked is not None and acked > self.capacity.upper_bps():
            self.capacity.reset()
        if (self.capacity.estimate_kbps is not None and self._last_decrease_s is not None
                and now - self._last_decrease_s > cfg.capacity_forget_s):
            # No congestion seen for a while although the rate kept rising: the link has likely grown,
            # so search as at startup (bounded by the increase limit and ended by the next congestion).
            self.capacity.reset()
            self.researching = True
        searching = self.capacity.estimate_kbps is None
        limit, why = self.increase_limit(acked)
        if self.target >= limit:
            basis = "" if acked is None else f" from acked {acked:.0f}"
            self.last_change = f"hold: {why} (target {self.target:.0f} >= {limit:.0f} bps{basis})"
            return
        if not searching:
            step = dt * self._near_max_increase_bps_per_s(rtt_s)
            how = "additive (near capacity)"
        else:
            gain = (cfg.startup_mi_per_s if self.in_startup else cfg.research_mi_per_s if self.researching
                    else cfg.mi_per_s)
            step = max(self.target * (gain ** dt - 1), cfg.min_increase_bps * dt)
            how = "startup" if self.in_startup else "re-search" if self.researching else "multiplicative"
        new = self.clamp(min(self.target + step, limit))
        if new != self.target:
            self.last_change = f"increase {how}: +{new - self.target:.0f} -> {new:.0f} bps"
        self.target = new

    def _near_max_increase_bps_per_s(self, rtt_s: float) -> float:
        """libwebrtc: about one average message per response time (RTT + 100 ms of detector delay, twice)."""
        frame_bits = self.target / 30
        response_s = 2 * (rtt_s + 0.1)
        return max(self.cfg.ai_min_bps_per_s, self.cfg.ai_fraction_per_s * self.target, frame_bits / response_s)
