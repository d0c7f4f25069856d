"""Once-a-second link statistics: fps, capture-to-sink latency percentiles and where it went, kbps, drops."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facewire.shared.wire.messages import SENDER_STAGES


def json_safe(value: Any) -> Any:
    """A report as JSON can hold it: JSON has no NaN (a browser's JSON.parse refuses it), so a figure
    not measured yet is null."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class StatsMeter:
    """Accumulates per-frame events; `tick()` closes an interval of at least `interval_s`."""

    interval_s: float = 1.0
    print_lines: bool = False
    json_path: Path | None = None
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)  # each report, as made
    rtt_ms: float | None = None  # the link's round trip, set by whoever measures it (the server's pings)
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    dropped: int = 0
    frames_new: int = 0  # pictures of a new frame (frames_out also counts repeats on a steady clock)
    sender_stages_ms: tuple[float, ...] = ()  # the sender's stage medians, as its `stats` last said
    clock_offset_us: int | None = None  # the sender's clock minus ours, when known (ping stamps and round trips)
    _latencies: list[float] = field(default_factory=list)
    _stages: dict[str, list[float]] = field(default_factory=dict)
    _interval_new: int = 0
    _interval_frames: int = 0
    _interval_bytes: int = 0
    _start: float = field(default_factory=time.monotonic)
    last: dict[str, Any] = field(default_factory=dict)

    def received(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        self._interval_bytes += nbytes

    def decoded(self) -> None:
        self.frames_in += 1

    def shown(self, capture_ts_us: int | None) -> None:
        """A picture went to the sink: of a new frame captured at `capture_ts_us`, or a repeat (None)."""
        self.frames_out += 1
        self._interval_frames += 1
        if capture_ts_us is not None:
            self.frames_new += 1
            self._interval_new += 1
            self._latencies.append((time.time_ns() // 1000 - capture_ts_us + (self.clock_offset_us or 0)) / 1000.0)

    def stages(self, spans_us: dict[str, int]) -> None:
        """Where one shown frame's latency went on this side, by stage (µs); `upstream` is capture to arrival."""
        for name, span in spans_us.items():
            offset = (self.clock_offset_us or 0) if name == "upstream" else 0
            self._stages.setdefault(name, []).append((span + offset) / 1000.0)

    def _stage_medians(self) -> dict[str, float]:
        """The interval's medians: the sender's own stages, the link (what upstream leaves to it), ours."""
        ours = {name: float(np.median(spans)) for name, spans in self._stages.items() if spans}
        upstream = ours.pop("upstream", None)
        if upstream is None:
            return {}
        sender = dict(zip((f"sender_{name}" for name in SENDER_STAGES), self.sender_stages_ms, strict=False))
        link = max(0.0, upstream - sum(sender.values())) if sender else upstream
        return {name: round(value, 2) for name, value in {**sender, "link": link, **ours}.items()}

    def _slowest_stages(self) -> dict[str, float]:
        """Where the interval's slowest frames' time went: the mean span per stage over the frames at or above
        the 95th percentile of this side's total (upstream, capture to arrival, is the sender and the link
        together: the sender reports only its medians). The latency target is a p95, and the medians do not
        say which stage its tail is made of."""
        if "upstream" not in self._stages:
            return {}
        spans = {name: np.array(values) for name, values in self._stages.items()}
        totals = np.sum(list(spans.values()), axis=0)
        slowest = totals >= np.percentile(totals, 95)
        return {name: round(float(values[slowest].mean()), 2) for name, values in spans.items()}

    def tick(self, now: float | None = None, force: bool = False) -> dict[str, Any] | None:
        now = time.monotonic() if now is None else now
        elapsed = now - self._start
        if elapsed < self.interval_s and not force:
            return None
        elapsed = max(elapsed, 1e-6)
        latencies = np.array(self._latencies) if self._latencies else np.array([np.nan])
        report = {
            "fps": round(self._interval_frames / elapsed, 2),
            "fps_new": round(self._interval_new / elapsed, 2),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
            "latency_ms_max": round(float(np.max(latencies)), 2),
            "kbps_in": round(self._interval_bytes * 8 / 1000 / elapsed, 2),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "bytes_in": self.bytes_in,
            "rtt_ms": math.nan if self.rtt_ms is None else round(self.rtt_ms, 2),
            "clock_offset_ms": math.nan if self.clock_offset_us is None else round(self.clock_offset_us / 1000, 2),
            "frames_new": self.frames_new,
            "stages_ms": self._stage_medians(),
            "stages_ms_slowest": self._slowest_stages(),
        }
        self._latencies.clear()
        self._stages.clear()
        self._interval_frames = self._interval_bytes = self._interval_new = 0
        self._start = now
        self.last = report
        self._emit(report)
        return report

    def _emit(self, report: dict[str, Any]) -> None:
        if self.print_lines:
            print(
                f"fps {report['fps']:6.1f}  latency p50 {report['latency_ms_p50']:6.1f} ms  "
                f"p95 {report['latency_ms_p95']:6.1f} ms  in {report['kbps_in']:7.1f} kbps  "
                f"out {report['frames_out']:6d}  dropped {report['dropped']}",
                file=sys.stderr, flush=True,
            )
        if self.json_path is not None:
            with self.json_path.open("a") as out:
                out.write(json.dumps({"t": round(time.time(), 3), **json_safe(report)}) + "\n")
        for listener in self.listeners:
            listener(report)
