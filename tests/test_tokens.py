"""The one token bucket: a limiter's take, a pacer's charge and time_for, retuning."""

from __future__ import annotations

import pytest

from facewire.shared.process.tokens import TokenBucket


def test_take_refuses_what_the_bucket_does_not_hold() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(1, 10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1, 10.5) and not bucket.take(1, 10.5)
    assert bucket.take(3, 100.0)  # refills up to the burst, never beyond
    assert not bucket.take(0.5, 100.0)
    assert not bucket.take(4, 200.0)  # more than the burst never passes


def test_charge_goes_into_debt_and_time_for_waits_it_out() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0)
    bucket.charge(80, now=1.0)  # an uncontrolled message: 30 units of debt
    assert bucket.level == pytest.approx(-30)
    assert bucket.time_for(20, now=1.0) == pytest.approx(1.5)
    assert not bucket.take(20, now=1.49) and bucket.take(20, now=1.5)


def test_time_for_counts_an_amount_above_the_burst_as_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0)
    assert bucket.time_for(500, now=0.0) == 0.0
    bucket.charge(500, now=0.0)
    assert bucket.time_for(500, now=0.0) == pytest.approx(5.0)  # the debt, then one burst


def test_a_clock_that_steps_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0)
    bucket.charge(10, now=5.0)
    bucket.refill(4.0)
    bucket.refill(5.0)
    assert bucket.level == 0.0


def test_retune_starts_an_unused_bucket_full_and_keeps_a_used_ones_level() -> None:
    unused = TokenBucket(rate=0.0, burst=0.0)
    unused.retune(rate=100.0, burst=40.0)
    assert unused.take(40, now=0.0)
    used = TokenBucket(rate=100.0, burst=40.0)
    used.charge(30, now=0.0)
    used.retune(rate=200.0, burst=20.0)
    assert used.level == pytest.approx(10)
    used.refill(1.0)
    assert used.level == pytest.approx(20)  # savings are cut to the new burst at the refill
