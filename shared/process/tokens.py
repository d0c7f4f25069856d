"""A token bucket: a rate with bounded savings, on a clock the caller supplies.

One class serves both kinds of user. A limiter (the receiver's message and byte rate limits)
asks `take`, which refuses what the bucket cannot cover. A pacer (the sender's rate controller)
`charge`s what went whatever the level, so a message it could not refuse (a pong) leaves a
debt the next ones wait out, and asks `time_for` to learn when a message may go.
"""

from __future__ import annotations


class TokenBucket:
    """Allows `rate` units a second, saving up at most `burst`; full until it is first used."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self._stamp: float | None = None

    def retune(self, rate: float, burst: float) -> None:
        """A new rate and burst (a pacer follows its target); a bucket not used yet starts full at the new burst.
        The level is not cut to a smaller burst here but at the next refill, as savings are."""
        if self._stamp is None:
            self.level = burst
        self.rate, self.burst = rate, burst

    def refill(self, now: float) -> None:
        """Adds what accrued since the last call; a clock that steps back adds nothing."""
        if self._stamp is not None and now > self._stamp:
            self.level = min(self.burst, self.level + (now - self._stamp) * self.rate)
        self._stamp = now if self._stamp is None else max(self._stamp, now)

    def take(self, amount: float, now: float) -> bool:
        """Takes `amount` if the bucket holds it; refuses (and takes nothing) otherwise, so more than
        `burst` never passes."""
        self.refill(now)
        if amount > self.level:
            return False
        self.level -= amount
        return True

    def charge(self, amount: float, now: float) -> None:
        """Takes `amount` unconditionally: the level may go below zero, a debt later amounts wait for."""
        self.refill(now)
        self.level -= amount

    def time_for(self, amount: float, now: float) -> float:
        """When the bucket will hold `amount` (`now` if it does). An amount above the burst counts as the
        burst, so anything can go eventually (a keyframe chunk larger than a pacer's burst)."""
        self.refill(now)
        need = min(amount, self.burst) - self.level
        return now if need <= 0 else now + need / self.rate
