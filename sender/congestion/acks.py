"""When an ack left the receiver: the protocol's ack carries no time of its own, so it is inferred.

An ack (`Ack.frames`) lists what arrived, each with its receive time in the receiver's clock. The
time an entry then waits for its ack is not part of the round trip, so the controller needs to
know when the ack left. The receiver's rule (shared/wire/protocol.py) says: once the first entry
is `ack_interval_s` old, or at once when the ack is full. The reference receiver checks the rule
whenever it wakes: on each message it receives, and `ack_interval_s` after it last woke with none
(receiver/server.py). So:

* an entry that arrived `ack_interval_s` or more after the first woke the receiver and left with
  its ack at once: the ack's last entry tells the time exactly (so does a full ack's);
* otherwise the ack left between the first entry's deadline and the timer the last entry set:
  the receiver's timer, or a message it does not ack (a ping, today a keyframe), woke it.

(The receiver compares float seconds but stamps whole µs, so an entry within a µs of the deadline
reads as having sent the ack at once though its timer may have: a sample that reads high, rarely.)

RTT samples use the earliest time, so they never read low (their minimum sets the window and the
standing-queue test; a receiver that acts late makes them read high, never low). The window uses
the reference receiver's timer, the wait it must cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facewire.sender.congestion.config import ControllerConfig


@dataclass(frozen=True)
class AckDeparture:
    """An ack's departure, in µs of the receiver's clock."""

    first_us: int  # when its first entry arrived
    earliest_us: int  # the earliest the rule lets it leave
    likely_us: int  # when the reference receiver sends it

    @staticmethod
    def infer(frames: Sequence[tuple[int, int]], config: ControllerConfig) -> AckDeparture:
        """From an ack's (seq, receive µs) entries, in any order; there is at least one."""
        receipts = [us for _, us in frames]
        first, last = min(receipts), max(receipts)
        interval_us = round(config.ack_interval_s * 1e6)
        if len(frames) >= config.ack_max_entries or last >= first + interval_us:
            return AckDeparture(first, last, last)
        return AckDeparture(first, first + interval_us, last + interval_us)

    def hold_s(self, receive_us: int) -> float:
        """The least time an entry received at `receive_us` waited for its ack."""
        return max(0.0, (self.earliest_us - receive_us) / 1e6)

    @property
    def longest_hold_s(self) -> float:
        """How long the first entry waited, by the reference receiver's timing."""
        return (self.likely_us - self.first_us) / 1e6
