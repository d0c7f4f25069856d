"""The delay detector: is a queue building on the link? (GCC's inter-arrival grouping and trendline.)

Acknowledged messages are grouped by send time; for consecutive groups, the arrival delta minus
the send delta is the one-way delay variation, in which the unknown offset between the two
clocks cancels. A trendline of the accumulated variation over the last groups, compared with an
adaptive threshold, says overuse / normal / underuse (draft-ietf-rmcat-gcc-02, libwebrtc's
`InterArrival` and `TrendlineEstimator`, with their constants).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from facewire.sender.congestion.config import ControllerConfig


class Signal(enum.Enum):
    """The delay detector's verdict on the last packet group."""

    NORMAL = "normal"
    OVERUSE = "overuse"
    UNDERUSE = "underuse"


@dataclass
class _Group:
    first_send_s: float
    last_send_s: float
    first_arrival_s: float
    last_arrival_s: float
    nbytes: int


def linear_fit_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None when x does not vary."""
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return None if den == 0 else num / den


class InterArrival:
    """Groups acknowledged messages and yields (send delta, arrival delta) between complete groups."""

    def __init__(self, config: ControllerConfig) -> None:
        self._cfg = config
        self._current: _Group | None = None
        self._previous: _Group | None = None

    def add(self, send_s: float, arrival_s: float, nbytes: int) -> tuple[float, float, float] | None:
        """Returns (send_delta_s, arrival_delta_s, arrival_s of the completed group) when a group completes."""
        cur = self._current
        if cur is None:
            self._current = _Group(send_s, send_s, arrival_s, arrival_s, nbytes)
            return None
        if send_s < cur.first_send_s:
            return None  # reordered feedback: GCC ignores it too
        if self._belongs(cur, send_s, arrival_s):
            cur.last_send_s = max(cur.last_send_s, send_s)
            cur.last_arrival_s = max(cur.last_arrival_s, arrival_s)
            cur.nbytes += nbytes
            return None
        out = None
        prev = self._previous
        if prev is not None:
            out = (cur.last_send_s - prev.last_send_s, cur.last_arrival_s - prev.last_arrival_s, cur.last_arrival_s)
        self._previous = cur
        self._current = _Group(send_s, send_s, arrival_s, arrival_s, nbytes)
        return out

    def _belongs(self, cur: _Group, send_s: float, arrival_s: float) -> bool:
        if send_s - cur.first_send_s <= self._cfg.burst_s:
            return True
        # Messages held back by the one in front of them (TCP head-of-line, a queue draining) arrive
        # together; counted as separate groups they would read as a sharply falling delay.
        send_delta = send_s - cur.last_send_s
        arrival_delta = arrival_s - cur.last_arrival_s
        return (arrival_delta - send_delta < 0 and arrival_delta <= self._cfg.arrival_burst_s
                and arrival_s - cur.first_arrival_s < self._cfg.max_burst_duration_s)


class TrendlineDetector:
    """libwebrtc's TrendlineEstimator: delay-variation trend against an adaptive threshold."""

    def __init__(self, config: ControllerConfig, threshold_ms: float | None = None) -> None:
        self._cfg = config
        self.num_deltas = 0
        self.accumulated_ms = 0.0
        self.smoothed_ms = 0.0
        self.first_arrival_ms: float | None = None
        self.history: deque[tuple[float, float]] = deque(maxlen=config.trendline_window)
        self.trend = 0.0
        self.modified_trend = 0.0
        self.threshold_ms = config.threshold_init_ms if threshold_ms is None else threshold_ms
        self.signal = Signal.NORMAL
        self._prev_trend = 0.0
        self._time_over_using_ms = -1.0
        self._overuse_count = 0
        self._last_threshold_update_ms: float | None = None

    def update(self, send_delta_ms: float, arrival_delta_ms: float, arrival_ms: float) -> Signal:
        cfg = self._cfg
        self.num_deltas = min(self.num_deltas + 1, 1000)
        if self.first_arrival_ms is None:
            self.first_arrival_ms = arrival_ms
        self.accumulated_ms += arrival_delta_ms - send_delta_ms
        self.smoothed_ms = cfg.trendline_smoothing * self.smoothed_ms + (1 - cfg.trendline_smoothing) * self.accumulated_ms
        self.history.append((arrival_ms - self.first_arrival_ms, self.smoothed_ms))
        if len(self.history) == cfg.trendline_window:
            slope = linear_fit_slope(list(self.history))
            self.trend = self.trend if slope is None else slope
        self._detect(send_delta_ms, arrival_ms)
        return self.signal

    def _detect(self, send_delta_ms: float, now_ms: float) -> None:
        cfg = self._cfg
        if self.num_deltas < 2:
            return
        self.modified_trend = min(self.num_deltas, 60) * self.trend * cfg.threshold_gain
        if self.modified_trend > self.threshold_ms:
            if self._time_over_using_ms < 0:
                self._time_over_using_ms = send_delta_ms / 2
            else:
                self._time_over_using_ms += send_delta_ms
            self._overuse_count += 1
            if (self._time_over_using_ms > cfg.overusing_time_threshold_ms and self._overuse_count > 1
                    and self.trend >= self._prev_trend):
                self._time_over_using_ms = 0.0
                self._overuse_count = 0
                self.signal = Signal.OVERUSE
        elif self.modified_trend < -self.threshold_ms:
            self._time_over_using_ms, self._overuse_count = -1.0, 0
            self.signal = Signal.UNDERUSE
        else:
            self._time_over_using_ms, self._overuse_count = -1.0, 0
            self.signal = Signal.NORMAL
        self._prev_trend = self.trend
        self._update_threshold(now_ms)

    def _update_threshold(self, now_ms: float) -> None:
        cfg = self._cfg
        if self._last_threshold_update_ms is None:
            self._last_threshold_update_ms = now_ms
        magnitude = abs(self.modified_trend)
        if magnitude > self.threshold_ms + cfg.max_adapt_offset_ms:
            # A spike (a keyframe, an outage) must not drag the threshold up with it.
            self._last_threshold_update_ms = now_ms
            return
        k = cfg.k_down if magnitude < self.threshold_ms else cfg.k_up
        dt_ms = min(now_ms - self._last_threshold_update_ms, 100.0)
        self.threshold_ms += k * (magnitude - self.threshold_ms) * dt_ms
        self.threshold_ms = min(max(self.threshold_ms, cfg.threshold_min_ms), cfg.threshold_max_ms)
        self._last_threshold_update_ms = now_ms
