"""The ledger of messages in flight: sent under congestion control, not yet acknowledged or given up on."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Sent:
    send_s: float
    nbytes: int
    counted: bool = True  # still in flight (not acked, not expired)


class InFlight:
    """Sent messages by seq, and `bytes`: the bytes of those still counted in flight, which the window bounds.

    A message whose ack is overdue stops counting (a lost ack must not wedge the sender) but its record
    stays, so that a late ack still feeds the delay estimate; records older than `keep_s` go once there
    are many of them.
    """

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.bytes = 0
        self._sent: dict[int, Sent] = {}
        self._order: deque[int] = deque()  # seqs in send order, for expiry; pruned lazily

    def add(self, seq: int, nbytes: int, now: float) -> None:
        if seq in self._sent:
            raise ValueError(f"seq {seq} sent twice")
        self._sent[seq] = Sent(now, nbytes)
        self._order.append(seq)
        self.bytes += nbytes

    def send_time(self, seq: int) -> float | None:
        sent = self._sent.get(seq)
        return None if sent is None else sent.send_s

    def pop(self, seq: int) -> Sent | None:
        """The record of an acknowledged message, taken out of the ledger (None: not sent, or acked before)."""
        sent = self._sent.pop(seq, None)
        if sent is not None and sent.counted:
            self.bytes -= sent.nbytes
        return sent

    def oldest_send_s(self) -> float | None:
        """When the oldest message still counted in flight was sent."""
        while self._order and (self._order[0] not in self._sent or not self._sent[self._order[0]].counted):
            self._order.popleft()
        return self._sent[self._order[0]].send_s if self._order else None

    def expire(self, now: float, expiry_s: float) -> int:
        """Stops counting the messages sent `expiry_s` ago or more; returns how many."""
        expired = 0
        while True:
            oldest = self.oldest_send_s()
            if oldest is None or now - oldest < expiry_s:
                break
            sent = self._sent[self._order.popleft()]
            sent.counted = False
            self.bytes -= sent.nbytes
            expired += 1
        if len(self._sent) > 4096 or (self._sent and now - min(s.send_s for s in self._sent.values()) > self.keep_s):
            for seq in [k for k, s in self._sent.items() if not s.counted and now - s.send_s > self.keep_s]:
                del self._sent[seq]
        return expired
