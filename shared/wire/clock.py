"""The peer's clock against ours, from the heartbeat: what makes capture-to-output latency right when the
sender and the receiver are different machines whose clocks disagree.

Each side stamps its pings with its wall clock (µs since the epoch) and times the round trip of its own
pings (protocol.md 3.5). A ping from the peer arrives `offset + d` after its stamp by our clock, where
`offset` is our clock minus the peer's and `d` the one-way delay; a round trip is the two one-way delays.
As NTP does, the estimate trusts the least delayed exchanges: over a window of recent ones, the
smallest arrival-minus-stamp less half the smallest round trip. Queues (a busy loop, a full socket)
only ever add delay, so the minima are the exchanges closest to the bare link; what is left is the
asymmetry of the link's two directions, at most half a round trip.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 16  # exchanges: at one ping a second, a window of ~16 s (clocks drift by parts per million)
MAX_OFFSET_US = 86_400 * 10**6  # a stamp further than a day from our clock is not a wall clock's


@dataclass
class ClockOffset:
    """Pure: fed stamps and round trips, it says the peer's clock minus ours (None until it knows)."""

    window: int = WINDOW
    _apparent: deque[int] = field(default_factory=deque)  # arrival (our clock) − stamp (the peer's), µs
    _round_trips: deque[int] = field(default_factory=deque)  # µs

    def stamped(self, stamp_us: int, arrival_us: int) -> None:
        """A ping stamped `stamp_us` by the peer arrived at `arrival_us` by our clock."""
        apparent = arrival_us - stamp_us
        if abs(apparent) > MAX_OFFSET_US:
            return  # the peer stamps with another clock (a monotonic one): nothing to learn
        _push(self._apparent, apparent, self.window)

    def round_trip(self, rtt_us: int) -> None:
        """One of our pings came back after `rtt_us`."""
        if rtt_us >= 0:
            _push(self._round_trips, rtt_us, self.window)

    @property
    def offset_us(self) -> int | None:
        """The peer's clock minus ours, µs: add it to a time of ours to get the peer's reading then."""
        if not self._apparent or not self._round_trips:
            return None
        return -(min(self._apparent) - min(self._round_trips) // 2)


def _push(values: deque[int], value: int, window: int) -> None:
    values.append(value)
    while len(values) > window:
        values.popleft()
