"""The rate controller: unit behaviour, invariants (hypothesis), and closed loop over the simulated link."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.sender.congestion import ControllerConfig, RateController, Signal
from facewire.sender.congestion.acks import AckDeparture
from facewire.sender.congestion.delay import TrendlineDetector
from tests.linksim import CodecModel, Cross, Outages, Scenario, Schedule, run, steps

# ------------------------------------------------------------------ unit behaviour


def test_start_rate_is_clamped_to_ceiling_and_floor() -> None:
    assert RateController(16_000, 4_000).target_bps == 16_000
    assert RateController(64_000, 4_000, ControllerConfig(start_bps=1_000)).target_bps == 4_000
    with pytest.raises(ValueError):
        RateController(4_000, 8_000)


def test_in_flight_counts_sent_minus_acked_and_ignores_unknown_and_duplicate_acks() -> None:
    ctl = RateController(64_000)
    for seq in range(1, 4):
        ctl.on_send(seq, 100, now=seq * 0.04)
    assert ctl.in_flight_bytes == 300
    ctl.on_acks([(1, 5_000_000), (99, 5_000_001)], now=0.5)
    ctl.on_acks([(1, 5_000_000)], now=0.55)
    assert ctl.in_flight_bytes == 200
    assert ctl.counters.unknown_acks == 2


def test_window_refuses_then_an_ack_makes_room() -> None:
    ctl = RateController(24_000)
    ctl.on_rtt(0.3, now=0.0)
    window = ctl.window_bytes()
    assert window == int(24_000 / 8 * (0.3 + 0.05 + 0.15))
    ctl.on_send(1, window - 50, now=0.0)
    decision = ctl.decide(100, now=0.001, essential=True)
    assert not decision.ok and decision.retry_at is None and decision.reason.startswith("window")
    ctl.on_acks([(1, 1_000_000)], now=0.31)
    assert ctl.may_send(100, now=0.31, essential=True)


def test_a_message_larger_than_the_window_goes_when_nothing_is_in_flight() -> None:
    ctl = RateController(16_000)
    assert ctl.may_send(5_000, now=0.0)


def test_essential_messages_keep_a_reserve_that_others_cannot_use() -> None:
    ctl = RateController(24_000)
    ctl.on_rtt(0.3, now=0.0)
    ctl.on_send(1, ctl.window_bytes() - ctl.reserve_bytes(), now=0.0)
    assert not ctl.decide(40, now=0.2).ok
    assert ctl.decide(40, now=0.2, essential=True).ok


def test_lost_acks_expire_and_the_feedback_timeout_cuts_the_rate() -> None:
    ctl = RateController(24_000)
    ctl.on_rtt(0.3, now=0.0)
    seq, t, sent_late = 0, 0.0, 0
    while t < 3.0:  # the receiver never answers
        if ctl.may_send(100, now=t, essential=True):
            seq += 1
            ctl.on_send(seq, 100, now=t)
            sent_late += t >= 2.05
        ctl.tick(t)
        t += 0.04
    assert ctl.counters.expired_messages > 0
    assert ctl.counters.feedback_timeouts >= 1
    assert ctl.target_bps < 24_000
    assert ctl.state == "stalled"
    assert sent_late > 0  # not wedged: expired bytes made room
    # a late ack for an expired message is taken for the delay estimate but not subtracted twice
    ctl.on_acks([(1, 9_000_000)], now=t)
    assert ctl.in_flight_bytes >= 0 and ctl.counters.late_acks == 1


def test_an_acks_departure_is_inferred_from_the_receivers_rule() -> None:
    cfg = ControllerConfig(ack_interval_s=0.05, ack_max_entries=4)
    # an entry 50 ms or more after the first woke the receiver, which acked at once
    assert AckDeparture.infer([(1, 2_000_000), (3, 2_080_000), (2, 2_040_000)], cfg) == AckDeparture(2_000_000, 2_080_000, 2_080_000)
    # a full ack leaves at once
    full = [(seq, 2_000_000 + seq * 1_000) for seq in range(4)]
    assert AckDeparture.infer(full, cfg) == AckDeparture(2_000_000, 2_003_000, 2_003_000)
    # else: not before the first entry's deadline, likely on the timer the last entry set
    late = AckDeparture.infer([(2, 2_010_000), (1, 2_000_000)], cfg)
    assert late == AckDeparture(2_000_000, 2_050_000, 2_060_000)
    assert late.hold_s(2_010_000) == pytest.approx(0.04) and late.longest_hold_s == pytest.approx(0.06)


def test_rtt_samples_leave_out_the_receivers_holding_time_and_never_read_low() -> None:
    def min_rtt(ack_late_s: float) -> float:
        ctl = RateController(24_000)
        ctl.on_send(1, 50, now=10.0)
        ctl.on_send(2, 50, now=10.01)
        # 0.15 s each way; received at 2.000 and 2.010 s of the receiver's clock; the ack leaves when the
        # first is 50 ms old (+ the receiver's lateness) and is back at the sender 0.15 s later
        ctl.on_acks([(1, 2_000_000), (2, 2_010_000)], now=10.0 + 0.15 + 0.05 + ack_late_s + 0.15)
        return ctl.min_rtt_s

    assert min_rtt(0.0) == pytest.approx(0.30, abs=1e-6)
    # a receiver that woke up late: the sample reads high by as much, never low
    assert min_rtt(0.03) == pytest.approx(0.33, abs=1e-6)


def test_the_window_covers_the_longest_ack_wait() -> None:
    """A receiver that acks every 200 ms, frames every 40 ms: the sixth frame's arrival sends the ack, for
    which the first frame waited 200 ms."""
    ctl = RateController(24_000, config=ControllerConfig(ack_interval_s=0.2))
    ctl.on_rtt(0.3, now=0.0)
    before = ctl.window_bytes()
    for batch in range(60):
        seqs = range(batch * 6 + 1, batch * 6 + 7)
        for seq in seqs:
            ctl.on_send(seq, 50, now=seq * 0.04)
        ctl.on_acks([(seq, seq * 40_000 + 150_000) for seq in seqs], now=seqs[-1] * 0.04 + 0.15 + 0.15)
    assert ctl.snapshot()["ack_hold_ms"] == pytest.approx(200, abs=1)
    assert ctl.min_rtt_s == pytest.approx(0.30, abs=1e-6)
    assert ctl.window_bytes() == pytest.approx(ctl.target_bps / 8 * (0.3 + 0.2 + 0.15), rel=0.01)
    assert ctl.window_bytes() > before * ctl.target_bps / 24_000


def test_pacer_spaces_a_chunked_keyframe_at_the_pacing_rate() -> None:
    ctl = RateController(24_000)
    now, sent_at = 0.0, []
    for seq in range(1, 11):
        now = max(now, ctl.next_send_time(300, now))
        ctl.on_send(seq, 300, now)
        ctl.on_acks([(seq, int(now * 1e6) + 150_000)], now)  # keep the window out of the way
        sent_at.append(now)
    rate = 300 * 9 * 8 / (sent_at[-1] - sent_at[0])
    assert rate <= ControllerConfig().pacing_factor * 24_000 * 1.01


def test_ceiling_bucket_holds_any_10s_window_within_5_percent() -> None:
    ctl = RateController(16_000, config=ControllerConfig(start_bps=16_000))
    sends: list[tuple[float, int]] = []
    t, seq = 0.0, 0
    while t < 30.0:
        if ctl.decide(200, t).ok:
            seq += 1
            ctl.on_send(seq, 200, t)
            ctl.on_acks([(seq, int(t * 1e6))], t)  # an infinitely fast link: only the ceiling holds it back
            sends.append((t, 200))
        t += 0.005
    for start, _ in sends:
        window = sum(n for s, n in sends if start <= s < start + 10.0)
        if start + 10.0 <= 30.0:
            assert window * 8 / 10.0 <= 16_000 * 1.05


def test_trendline_calls_overuse_on_a_growing_queue_and_normal_on_a_flat_one() -> None:
    det = TrendlineDetector(ControllerConfig())
    for i in range(40):  # every 40 ms group arrives 8 ms later than the one before: the queue grows
        det.update(40.0, 48.0, i * 48.0)
    assert det.signal is Signal.OVERUSE
    det = TrendlineDetector(ControllerConfig())
    for i in range(40):
        det.update(40.0, 40.0 + (3.0 if i % 2 else -3.0), i * 40.0)
    assert det.signal is Signal.NORMAL


def test_overuse_drops_the_target_to_beta_times_the_acked_rate() -> None:
    ctl = RateController(64_000, config=ControllerConfig(start_bps=48_000))
    ctl.on_rtt(0.3, 0.0)
    # 120 B every 40 ms (24 kbps sent) through a 20 kbps link: arrivals spread, the queue grows
    arrival = 0.15
    for seq in range(1, 60):
        send = seq * 0.04
        arrival = max(arrival, send + 0.15) + 120 * 8 / 20_000
        ctl.on_send(seq, 120, send)
        ctl.on_acks([(seq, int(arrival * 1e6))], now=arrival + 0.05 + 0.15)  # the ack waits 50 ms
    assert ctl.counters.decreases >= 1
    assert ctl.target_bps <= 0.85 * 20_000 * 1.1
    assert "acked" in ctl.last_change or "standing queue" in ctl.last_change


def test_snapshot_is_json_and_names_the_last_change() -> None:
    ctl = RateController(24_000)
    ctl.on_send(1, 100, 0.0)
    snap = ctl.snapshot()
    json.dumps(snap)
    assert {"target_bps", "acked_bps", "state", "trend", "threshold_ms", "in_flight_bytes", "window_bytes",
            "rtt_ms", "min_rtt_ms", "queue_delay_ms", "last_change"} <= set(snap)


# ------------------------------------------------------------------ invariants


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["send", "ack", "tick", "rtt"]), st.integers(1, 3000),
                           st.floats(0.0, 0.5)), min_size=1, max_size=200),
    ceiling=st.floats(8_000, 200_000),
    offset_us=st.integers(0, 2**40),
)
def test_invariants_hold_for_any_event_sequence(ops: list[tuple[str, int, float]], ceiling: float,
                                                offset_us: int) -> None:
    ctl = RateController(ceiling, floor_bps=4_000)
    now, seq = 0.0, 0
    unacked: dict[int, int] = {}
    for kind, n, dt in ops:
        now += dt
        if kind == "send":
            seq += 1
            ctl.on_send(seq, n, now)
            unacked[seq] = n
        elif kind == "ack" and unacked:
            acked = sorted(unacked)[: 1 + n % len(unacked)]
            ctl.on_acks([(s, offset_us + int((now - 0.1) * 1e6) + s) for s in acked], now)
            for s in acked:
                del unacked[s]
        elif kind == "tick":
            ctl.tick(now)
        else:
            ctl.on_rtt(n / 1000, now)
        assert ctl.floor_bps <= ctl.target_bps <= ctl.ceiling_bps
        assert 0 <= ctl.in_flight_bytes <= sum(unacked.values())
        assert ctl.window_bytes() >= ctl.cfg.min_window_bytes
    json.dumps(ctl.snapshot())


@settings(max_examples=30, deadline=None)
@given(offset_us=st.integers(0, 2**50))
def test_the_receivers_clock_offset_does_not_matter(offset_us: int) -> None:
    def drive(offset: int) -> list[float]:
        ctl = RateController(64_000)
        targets, arrival = [], 0.0
        for seq in range(1, 200):
            send = seq * 0.04
            arrival = max(arrival, send + 0.15) + 150 * 8 / 30_000
            ctl.on_send(seq, 150, send)
            ctl.on_acks([(seq, offset + int(arrival * 1e6))], arrival + 0.05 + 0.15)
            targets.append(ctl.target_bps)
        return targets

    assert drive(offset_us) == pytest.approx(drive(0), rel=1e-6)


# ------------------------------------------------------------------ closed loop over the simulated link

SEEDS = (1, 2, 3)


@pytest.mark.parametrize("kbps", [16, 24, 64])
@pytest.mark.parametrize("delay_ms", [150, 300])
@pytest.mark.parametrize("seed", SEEDS)
def test_converges_below_capacity_with_bounded_delay(kbps: int, delay_ms: int, seed: int) -> None:
    cap, delay = kbps * 1000.0, delay_ms / 1000
    trace = run(Scenario(capacity=Schedule.constant(cap), delay_s=delay, duration_s=40, seed=seed))
    assert trace.settle_time(0, 40, 0.7 * cap, 1.05 * cap) <= 5.0
    assert trace.one_way_delay_p(95, 10, 40) < delay + 0.25
    assert trace.utilisation(10, 40) >= 0.75
    assert trace.delivered_fps(10, 40) >= 24.0  # the codec captures at 25 fps
    assert trace.target_max_bps <= trace.scenario.ceiling_bps


@settings(max_examples=20, deadline=None, derandomize=True)
@given(kbps=st.floats(12, 128), delay_ms=st.floats(20, 450), seed=st.integers(0, 10_000))
def test_any_thin_link_not_just_the_tuned_grid(kbps: float, delay_ms: float, seed: int) -> None:
    """Capacities and delays the defaults were not tuned on (the grid above was). On short paths the target
    can sit up to ~1.3x above capacity for seconds while the window keeps the queue short (see REPORT.md),
    so this asserts what the viewer gets: delay, throughput, frame rate, and a quick first ramp."""
    cap, delay = kbps * 1000, delay_ms / 1000
    trace = run(Scenario(capacity=Schedule.constant(cap), delay_s=delay, duration_s=30, seed=seed, ceiling_bps=256e3))
    ramp = [r["t"] for r in trace.timeline if r["target_bps"] >= 0.7 * cap]
    assert ramp and ramp[0] <= 5.0
    assert trace.one_way_delay_p(95, 10, 30) < delay + 0.25
    assert trace.utilisation(10, 30) >= 0.75
    assert trace.delivered_fps(10, 30) >= 23.5


@pytest.mark.parametrize("seed", SEEDS)
def test_24kbps_150ms_meets_the_latency_budget_and_first_picture(seed: int) -> None:
    trace = run(Scenario(capacity=Schedule.constant(24_000), delay_s=0.15, duration_s=40, seed=seed))
    # capture-to-arrival; the live target (550 ms capture-to-sink) also pays analysis and rendering
    assert trace.latency_p(95, 10, 40) < 0.40
    first_keyframe_s = trace.keyframes[0][1] - trace.keyframes[0][0]
    assert first_keyframe_s < 2.5


@pytest.mark.parametrize("kbps", [24, 64, 128])
@pytest.mark.parametrize("seed", (1, 2))
def test_a_layer_key_frame_after_each_keyframe_holds_no_frame_up_for_long(kbps: int, seed: int) -> None:
    """The residual layer starts again from every new keyframe with a key frame as large as the live cap lets
    it be, and it rides whole with one frame: sized to the window it held the frames behind it for a round
    trip (at 64 kbps/300 ms: 25 fps delivered, one-way delay p95 0.96 s)."""
    codec = CodecModel(fps=30.0, features_bytes=20, keyframe_every_s=3.0, layer_key_after_keyframe=True)
    trace = run(Scenario(capacity=Schedule.constant(kbps * 1000.0), delay_s=0.3, duration_s=40, seed=seed,
                         ceiling_bps=256e3, codec=codec))
    assert trace.delivered_fps(15, 40) >= 29.0
    assert trace.one_way_delay_p(95, 15, 40) < 0.3 + 0.25


@pytest.mark.parametrize("seed", SEEDS)
def test_capacity_step_down_and_up(seed: int) -> None:
    trace = run(Scenario(capacity=steps((0, 64e3), (20, 24e3), (40, 64e3)), duration_s=60, seed=seed))
    assert trace.settle_time(20, 40, 0.6 * 24e3, 1.05 * 24e3) <= 3.0
    assert trace.one_way_delay_p(95, 24, 40) < 0.15 + 0.25
    assert trace.utilisation(24, 40) >= 0.75
    recovered = [r["t"] for r in trace.timeline if r["t"] >= 40 and r["target_bps"] >= 0.7 * 64e3]
    assert recovered and recovered[0] - 40 <= 10.0
    assert trace.utilisation(50, 60) >= 0.7


@pytest.mark.parametrize("seed", SEEDS)
def test_never_above_the_ceiling_over_any_10s(seed: int) -> None:
    trace = run(Scenario(capacity=Schedule.constant(64e3), ceiling_bps=16e3, duration_s=40, seed=seed))
    assert trace.target_max_bps <= 16e3
    assert trace.max_window_rate_bps(10.0) <= 16e3 * 1.1


def test_three_seconds_of_lost_acks_do_not_wedge_it() -> None:
    trace = run(Scenario(capacity=Schedule.constant(24e3), ack_loss=lambda t: 10 <= t < 13, duration_s=40))
    assert trace.controller is not None and trace.controller.counters.expired_messages > 0
    assert trace.delivered_fps(16, 40) >= 24.0
    assert trace.one_way_delay_p(95, 16, 40) < 0.15 + 0.25
    assert trace.mean_target(30, 40) >= 0.5 * 24e3


def test_cross_traffic_takes_its_share_and_gives_it_back() -> None:
    trace = run(Scenario(capacity=Schedule.constant(32e3), cross=(Cross(12e3, 10, 30),), duration_s=50))
    assert trace.utilisation(14, 30) >= 0.7  # of the 20 kbps the cross traffic leaves
    assert trace.one_way_delay_p(95, 14, 30) < 0.15 + 0.25
    assert trace.mean_target(40, 50) >= 0.7 * 32e3


def test_short_outages_do_not_collapse_the_rate() -> None:
    trace = run(Scenario(capacity=Schedule.constant(24e3), outages=Outages(5.0, 0.5), duration_s=40))
    assert trace.delivered_fps(5, 40) >= 22.0
    assert trace.mean_target(20, 40) >= 0.7 * 24e3
    assert trace.controller is not None and trace.controller.counters.pauses >= 6


def test_receiver_clock_drift_is_harmless() -> None:
    trace = run(Scenario(capacity=Schedule.constant(24e3), clock_drift_ppm=200, duration_s=40))
    assert trace.one_way_delay_p(95, 10, 40) < 0.15 + 0.25
    assert trace.utilisation(10, 40) >= 0.75


def test_todays_uplink_bloats_in_the_simulation_too() -> None:
    """No controller, a 64 KiB send buffer, a 45 KB keyframe every 10 s: the simulated link shows the
    seconds of queue that the live measurement shows (25 s p95)."""
    codec = CodecModel(features_bytes=1000, residual=False, keyframe_min_bytes=45_000, keyframe_max_bytes=45_000)
    trace = run(Scenario(capacity=Schedule.constant(24e3), policy="baseline", codec=codec, duration_s=40))
    assert trace.latency_p(95, 20, 40) > 10.0
    assert not math.isnan(trace.latency_p(50, 20, 40))
