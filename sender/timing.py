"""Where a frame's time goes on the sender: stamped per stage, reported as medians in `stats`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from facewire.shared.wire.messages import SENDER_STAGES


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class StageTimes:
    """Wall-clock stamps (µs) of one frame on the sender."""

    captured_us: int
    analysis_start_us: int
    analysed_us: int
    coded_us: int

    def durations_ms(self, sent_us: int) -> tuple[float, ...]:
        """Per SENDER_STAGES, for a frame that went at `sent_us`."""
        stamps = (self.captured_us, self.analysis_start_us, self.analysed_us, self.coded_us, sent_us)
        return tuple(max(0.0, (b - a) / 1000.0) for a, b in zip(stamps, stamps[1:], strict=False))


@dataclass
class StageMeter:
    """Collects the stages of frames sent in an interval; `take()` gives their medians and starts over."""

    _rows: list[tuple[float, ...]] = field(default_factory=list)

    def sent(self, times: StageTimes, sent_us: int | None = None) -> None:
        self._rows.append(times.durations_ms(now_us() if sent_us is None else sent_us))

    def take(self) -> list[float]:
        if not self._rows:
            return []
        medians = np.median(np.array(self._rows), axis=0)
        self._rows.clear()
        assert len(medians) == len(SENDER_STAGES)
        return [round(float(v), 2) for v in medians]
