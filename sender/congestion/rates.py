"""Rates read from the acknowledgements: the acked throughput, the link's capacity, a windowed minimum."""

from __future__ import annotations

import math
from collections import deque


class AckedRate:
    """Throughput of acknowledged bytes over the last `window_s` of receive time (receiver clock).

    As in libwebrtc's BitrateEstimator, an arrival gap longer than `max_gap_s` (an outage, the sender
    idle) starts the measurement afresh instead of counting as a slow link; until the new span is
    `min_span_s` long the previous value stands.
    """

    def __init__(self, window_s: float, min_span_s: float, max_gap_s: float) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.max_gap_s = max_gap_s
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._last_value: float | None = None

    def add(self, arrival_s: float, nbytes: int) -> None:
        if self._samples and arrival_s - self._samples[-1][0] > self.max_gap_s:
            self._last_value = self.bps()
            self._samples.clear()
            self._bytes = 0
        if self._samples:
            arrival_s = max(arrival_s, self._samples[-1][0])
        self._samples.append((arrival_s, nbytes))
        self._bytes += nbytes
        while len(self._samples) > 1 and arrival_s - self._samples[1][0] >= self.window_s:
            self._bytes -= self._samples.popleft()[1]

    def bps(self) -> float | None:
        if not self._samples:
            return self._last_value
        span = self._samples[-1][0] - self._samples[0][0]
        if span < self.min_span_s:
            return self._last_value
        # the first sample's bytes crossed the link before the span began: leave them out
        return (self._bytes - self._samples[0][1]) * 8 / span


class LinkCapacity:
    """libwebrtc's LinkCapacityEstimator: the acked rate at overuse, averaged, with a deviation band."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self.deviation = 0.4

    def on_overuse(self, acked_bps: float) -> None:
        self._update(acked_bps / 1000, 0.05)

    def _update(self, sample_kbps: float, alpha: float) -> None:
        if self.estimate_kbps is None:
            self.estimate_kbps = sample_kbps
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample_kbps
        norm = max(self.estimate_kbps, 1.0)
        error = self.estimate_kbps - sample_kbps
        self.deviation = min(max((1 - alpha) * self.deviation + alpha * error * error / norm, 0.4), 2.5)

    def _band_kbps(self) -> float:
        assert self.estimate_kbps is not None
        return 3 * math.sqrt(self.estimate_kbps * self.deviation)

    def upper_bps(self) -> float:
        return math.inf if self.estimate_kbps is None else (self.estimate_kbps + self._band_kbps()) * 1000

    def lower_bps(self) -> float:
        return 0.0 if self.estimate_kbps is None else max(0.0, self.estimate_kbps - self._band_kbps()) * 1000

    def reset(self) -> None:
        self.estimate_kbps = None


class MinFilter:
    """Minimum of the samples of the last `window_s` seconds (monotonic deque)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: deque[tuple[float, float]] = deque()

    def add(self, value: float, now: float) -> None:
        while self._q and self._q[-1][1] >= value:
            self._q.pop()
        self._q.append((now, value))
        self._expire(now)

    def _expire(self, now: float) -> None:
        while len(self._q) > 1 and self._q[0][0] < now - self.window_s:
            self._q.popleft()

    def value(self) -> float | None:
        return self._q[0][1] if self._q else None
