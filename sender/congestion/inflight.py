"""The ledger of bytes in flight: sent, not yet acknowledged or given up on.

Two kinds go on the link under the window. Frames are acknowledged one by one (by seq). Bulk
messages (keyframe parts) are not acknowledged at all, but the link is one ordered byte stream
(TCP): when a frame sent after a bulk message is acknowledged, the bulk message has arrived too.
So a bulk message is in flight until a later-sent frame's ack, or until it expires.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Sent:
    send_s: float
    nbytes: int
    due_s: float  # when its last byte should have left, had the link run at the rate it was sent at
    counted: bool = True  # still in flight (not acked, not expired)


class InFlight:
    """Sent frames by seq and bulk messages in send order; `bytes`: those still counted in flight, which the
    window bounds (`frame_bytes` of them frames).

    A message whose ack is overdue (`expiry_s` after it was due to leave: a message behind a keyframe's
    parts waits for them) stops counting (a lost ack must not wedge the sender) but a frame's
    record stays, so that a late ack still feeds the delay estimate; records older than `keep_s` go once
    there are many of them.
    """

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.bytes = 0
        self.frame_bytes = 0
        self._sent: dict[int, Sent] = {}
        self._order: deque[int] = deque()  # seqs in send order, for expiry; pruned lazily
        self._bulk: deque[Sent] = deque()  # bulk messages still counted, in send order
        self._last_due_s = -float("inf")

    def _due(self, nbytes: int, now: float, rate_bps: float) -> float:
        self._last_due_s = max(self._last_due_s, now) + nbytes * 8 / max(rate_bps, 1.0)
        return self._last_due_s

    def add(self, seq: int, nbytes: int, now: float, rate_bps: float) -> None:
        """A frame went, at `rate_bps` (the target: what the link is thought to drain)."""
        if seq in self._sent:
            raise ValueError(f"seq {seq} sent twice")
        self._sent[seq] = Sent(now, nbytes, self._due(nbytes, now, rate_bps))
        self._order.append(seq)
        self.bytes += nbytes
        self.frame_bytes += nbytes

    def add_bulk(self, nbytes: int, now: float, rate_bps: float) -> None:
        self._bulk.append(Sent(now, nbytes, self._due(nbytes, now, rate_bps)))
        self.bytes += nbytes

    def send_time(self, seq: int) -> float | None:
        sent = self._sent.get(seq)
        return None if sent is None else sent.send_s

    def pop(self, seq: int) -> Sent | None:
        """The record of an acknowledged frame, taken out of the ledger (None: not sent, or acked before)."""
        sent = self._sent.pop(seq, None)
        if sent is not None and sent.counted:
            self.bytes -= sent.nbytes
            self.frame_bytes -= sent.nbytes
        return sent

    def release_bulk(self, sent_by_s: float) -> int:
        """A frame sent at `sent_by_s` arrived: so did every bulk message sent before it. Returns their bytes."""
        released = 0
        while self._bulk and self._bulk[0].send_s <= sent_by_s:
            released += self._bulk.popleft().nbytes
        self.bytes -= released
        return released

    def oldest_due_s(self) -> float | None:
        """When the oldest frame still counted in flight was due to leave (only a frame brings an ack back)."""
        while self._order and (self._order[0] not in self._sent or not self._sent[self._order[0]].counted):
            self._order.popleft()
        return self._sent[self._order[0]].due_s if self._order else None

    def expire(self, now: float, expiry_s: float) -> int:
        """Stops counting the messages sent `expiry_s` ago or more; returns how many."""
        expired = 0
        # a part is released by the ack of a frame sent after it, which leaves behind the parts sent with it:
        # the parts go together, once the last of them is overdue
        while self._bulk and now - self._bulk[-1].due_s >= expiry_s:
            self.bytes -= self._bulk.popleft().nbytes
            expired += 1
        while True:
            oldest = self._order[0] if self._order else None
            if oldest is None or (oldest in self._sent and self._sent[oldest].counted
                                  and now - self._sent[oldest].due_s < expiry_s):
                break
            self._order.popleft()
            sent = self._sent.get(oldest)
            if sent is None or not sent.counted:
                continue
            sent.counted = False
            self.bytes -= sent.nbytes
            self.frame_bytes -= sent.nbytes
            expired += 1
        if len(self._sent) > 4096 or (self._sent and now - min(s.send_s for s in self._sent.values()) > self.keep_s):
            for seq in [k for k, s in self._sent.items() if not s.counted and now - s.send_s > self.keep_s]:
                del self._sent[seq]
        return expired
