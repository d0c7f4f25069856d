"""Who may hold a connection to the receiver before authenticating, and how often an address may guess.

Pure policy, no I/O: the server tells it of arrivals, authentications, departures and failed tokens
with the time, and does what it answers.

* Connections that have not authenticated share a small pool (`pool`) with a cap per address
  (`per_address`). A newcomer is never refused: when the pool or its address is full, the *oldest*
  unauthenticated connection there is evicted. A silent crowd therefore cannot keep the owner out: its
  connection is the newest, and it authenticates within a round trip, after which it no longer counts.
  (A crowd must open connections faster than `pool` per round trip to evict it first.)
* A wrong token costs the address a growing delay: the k-th failure in a row makes the address's next
  hello wait `first_delay_s * 2**(k-1)` (at most `max_delay_s`), and hellos from one address are
  examined one per delay, so parallel connections guess no faster. A success clears it; so does
  `forget_after_s` without a failure.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Record:
    failures: int = 0
    next_slot: float = 0.0  # the earliest time the address's next hello is examined
    last_failure: float = 0.0


@dataclass
class Admission:
    pool: int = 64
    per_address: int = 8
    first_delay_s: float = 0.5
    max_delay_s: float = 60.0
    forget_after_s: float = 600.0
    max_addresses: int = 4096  # failure records kept (oldest dropped): memory stays bounded under a spray
    _waiting: OrderedDict[Hashable, str] = field(default_factory=OrderedDict)  # unauthenticated, oldest first
    _records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def arrive(self, key: Hashable, address: str) -> list[Hashable]:
        """A connection from `address` is waiting for its hello; returns the connections to evict for it."""
        evicted: list[Hashable] = []
        same = [other for other, addr in self._waiting.items() if addr == address]
        if len(same) >= self.per_address:
            evicted.append(same[0])
        elif len(self._waiting) >= self.pool:
            evicted.append(next(iter(self._waiting)))
        for victim in evicted:
            del self._waiting[victim]
        self._waiting[key] = address
        return evicted

    def authenticated(self, key: Hashable, address: str) -> None:
        """`key` passed the token check: it leaves the pool, and its address's failures are forgotten."""
        self._waiting.pop(key, None)
        self._records.pop(address, None)

    def left(self, key: Hashable) -> None:
        self._waiting.pop(key, None)

    @property
    def unauthenticated(self) -> int:
        return len(self._waiting)

    def hello_slot(self, address: str, now: float) -> float:
        """When a hello from `address` that arrived at `now` may be examined (now, unless it has failed)."""
        record = self._record(address, now)
        if record is None or record.failures == 0:
            return now
        slot = max(now, record.next_slot)
        record.next_slot = slot + self.delay_s(record.failures)  # the next guess waits for this one's delay
        return slot

    def failed(self, address: str, now: float) -> float:
        """A wrong token from `address` at `now`; returns the delay its next hello will wait."""
        record = self._record(address, now) or _Record()
        record.failures += 1
        record.last_failure = now
        delay = self.delay_s(record.failures)
        record.next_slot = max(record.next_slot, now + delay)
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        return delay

    def delay_s(self, failures: int) -> float:
        return 0.0 if failures <= 0 else min(self.max_delay_s, self.first_delay_s * 2.0 ** min(failures - 1, 30))

    def _record(self, address: str, now: float) -> _Record | None:
        record = self._records.get(address)
        if record is not None and now - record.last_failure > self.forget_after_s:
            del self._records[address]
            return None
        return record
