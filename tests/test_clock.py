"""The clock offset from the heartbeat: recovered from stamps and round trips with jitter, ignored for a peer
that stamps with another clock, and carried by the protocol objects of a link between two clocks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from facewire.receiver.stats import StatsMeter
from facewire.shared.wire.clock import ClockOffset
from facewire.shared.wire.protocol import ReceiverProtocol, SenderProtocol

EPOCH_US = 1_796_000_000_000_000


def _exchanges(offset_us: int, seed: int, count: int = 16, base_us: int = 4_000,
               jitter_us: float = 6_000.0) -> ClockOffset:
    """`count` pings each way over a link whose two directions each take `base_us` plus queueing."""
    rng = np.random.default_rng(seed)
    clock = ClockOffset()
    ours = EPOCH_US
    for _ in range(count):
        ours += 1_000_000
        there, back = (base_us + rng.exponential(jitter_us, 2)).astype(int)
        clock.stamped(ours + offset_us, ours + there)  # the peer's ping: stamped by its clock, arrives by ours
        again, answer = (base_us + rng.exponential(jitter_us, 2)).astype(int)
        clock.round_trip(int(again + answer))
    return clock


@pytest.mark.parametrize("offset_us", [0, 37_250_000, -5_400_123, 3_600_000_000])
def test_the_offset_is_recovered_to_within_the_jitter_left_at_the_minima(offset_us: int) -> None:
    errors = []
    for seed in range(20):
        estimate = _exchanges(offset_us, seed).offset_us
        assert estimate is not None
        errors.append(estimate - offset_us)
    # what queueing the minima of 16 exchanges leave (6 ms of it on average each way, a round trip two of
    # those): about a millisecond, against 6 ms a single exchange would be off by
    assert np.median(np.abs(errors)) < 1_500
    assert max(np.abs(errors)) < 4_000


def test_nothing_is_known_before_both_directions_were_measured_and_a_foreign_clock_is_ignored() -> None:
    clock = ClockOffset()
    assert clock.offset_us is None
    clock.round_trip(2_000)
    assert clock.offset_us is None
    clock.stamped(stamp_us=12_345_678, arrival_us=EPOCH_US)  # a peer stamping with its monotonic clock
    assert clock.offset_us is None
    clock.stamped(stamp_us=EPOCH_US - 1_000, arrival_us=EPOCH_US)
    assert clock.offset_us == 0  # arrived 1 ms after its stamp, half of a 2 ms round trip each way


def test_the_window_forgets_old_exchanges() -> None:
    clock = ClockOffset(window=4)
    clock.round_trip(1_000)
    clock.stamped(EPOCH_US, EPOCH_US + 500)  # then the peer's clock was stepped a second back
    for _ in range(4):
        clock.round_trip(1_000)
        clock.stamped(EPOCH_US - 1_000_000, EPOCH_US + 500)
    assert clock.offset_us == -1_000_000


def test_two_protocol_objects_on_different_clocks_measure_each_other() -> None:
    """A sender whose wall clock runs 2.5 s ahead of the receiver's, both shells passing their own."""
    sender_ahead_us = 2_500_000
    one_way_s = 0.003
    sender = SenderProtocol("t", 0.0, wall_base_us=EPOCH_US + sender_ahead_us)
    receiver = ReceiverProtocol("t", 0.0, wall_base_us=EPOCH_US)

    def deliver(batches: list[tuple[list[bytes], SenderProtocol | ReceiverProtocol]], at: float) -> None:
        for batch, target in batches:
            for data in batch:
                target.receive(data, at)

    deliver([(sender.data_to_send(), receiver)], one_way_s)  # hello
    deliver([(receiver.data_to_send(), sender)], 2 * one_way_s)  # welcome
    now = 0.0
    for _ in range(5):
        now += 1.0
        sender.tick(now)
        receiver.tick(now)
        deliver([(sender.data_to_send(), receiver), (receiver.data_to_send(), sender)], now + one_way_s)  # pings
        deliver([(sender.data_to_send(), receiver), (receiver.data_to_send(), sender)], now + 2 * one_way_s)  # pongs
    offset = receiver.clock_offset_us
    assert offset is not None and abs(offset - sender_ahead_us) < 100
    assert sender.clock_offset_us is not None and abs(sender.clock_offset_us + sender_ahead_us) < 100
    assert ReceiverProtocol("t", 0.0).clock_offset_us is None  # a shell that gives no wall clock


def test_the_stats_apply_the_offset_and_report_it() -> None:
    stats = StatsMeter()
    stats.clock_offset_us = -10_000_000  # the sender's clock runs 10 s behind ours
    stats.shown(time.time_ns() // 1000 - 10_000_000 - 20_000)  # captured 20 ms ago by the sender's clock
    report = stats.tick(force=True)
    assert report is not None and report["clock_offset_ms"] == -10_000.0
    assert 19.0 <= report["latency_ms_p50"] < 1_000.0  # not 10 s: the offset is applied
