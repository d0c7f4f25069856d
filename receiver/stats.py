"""Once-a-second link statistics: fps, capture-to-sink latency percentiles, kbps, drops."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class StatsMeter:
    """Accumulates per-frame events; `tick()` closes an interval of at least `interval_s`."""

    interval_s: float = 1.0
    print_lines: bool = False
    json_path: Path | None = None
    listeners: list[Callable[[dict[str, float]], None]] = field(default_factory=list)  # each report, as made
    rtt_ms: float | None = None  # the link's round trip, set by whoever measures it (the server's pings)
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    dropped: int = 0
    _latencies: list[float] = field(default_factory=list)
    _interval_frames: int = 0
    _interval_bytes: int = 0
    _start: float = field(default_factory=time.monotonic)
    last: dict[str, float] = field(default_factory=dict)

    def received(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        self._interval_bytes += nbytes

    def decoded(self) -> None:
        self.frames_in += 1

    def shown(self, capture_ts_us: int | None) -> None:
        self.frames_out += 1
        self._interval_frames += 1
        if capture_ts_us is not None:
            self._latencies.append((time.time_ns() // 1000 - capture_ts_us) / 1000.0)

    def tick(self, now: float | None = None, force: bool = False) -> dict[str, float] | None:
        now = time.monotonic() if now is None else now
        elapsed = now - self._start
        if elapsed < self.interval_s and not force:
            return None
        elapsed = max(elapsed, 1e-6)
        latencies = np.array(self._latencies) if self._latencies else np.array([np.nan])
        report = {
            "fps": round(self._interval_frames / elapsed, 2),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
            "kbps_in": round(self._interval_bytes * 8 / 1000 / elapsed, 2),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "bytes_in": self.bytes_in,
            "rtt_ms": math.nan if self.rtt_ms is None else round(self.rtt_ms, 2),
        }
        self._latencies.clear()
        self._interval_frames = self._interval_bytes = 0
        self._start = now
        self.last = report
        self._emit(report)
        return report

    def _emit(self, report: dict[str, float]) -> None:
        if self.print_lines:
            print(
                f"fps {report['fps']:6.1f}  latency p50 {report['latency_ms_p50']:6.1f} ms  "
                f"p95 {report['latency_ms_p95']:6.1f} ms  in {report['kbps_in']:7.1f} kbps  "
                f"out {report['frames_out']:6d}  dropped {report['dropped']}",
                file=sys.stderr, flush=True,
            )
        if self.json_path is not None:
            with self.json_path.open("a") as out:
                clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in report.items()}
                out.write(json.dumps({"t": round(time.time(), 3), **clean}) + "\n")
        for listener in self.listeners:
            listener(report)
