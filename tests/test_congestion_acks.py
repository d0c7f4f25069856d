"""The controller's reading of when an ack left, against the reference receiver itself: its protocol object
(shared/wire/protocol.py) woken as its server loop wakes it (receiver/server.py: on each message it reads,
and `next_tick_s` after it last woke). If the receiver's ack rule changes, this fails and
sender/congestion/acks.py must follow."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.sender.congestion import ControllerConfig, RateController
from facewire.sender.congestion.acks import AckDeparture
from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p

TOKEN = "t" * 16
LATE_S = 1e-6  # a timer never fires early; this keeps a float sum from landing a hair before the deadline


def acks_sent(arrivals: list[float]) -> list[tuple[m.Ack, float]]:
    """Frames arriving at these times; each ack the receiver sends, with when it sent it."""
    snd = p.SenderProtocol(TOKEN, 0.0)
    rcv = p.ReceiverProtocol(TOKEN, 0.0)
    for data in snd.data_to_send():
        rcv.receive(data, 0.0)
    rcv.data_to_send()
    out: list[tuple[m.Ack, float]] = []
    pending, woke = list(arrivals), 0.0
    while pending or rcv.next_tick_s is not None:
        timer = woke + rcv.next_tick_s + LATE_S if rcv.next_tick_s is not None else None
        if pending and (timer is None or pending[0] <= timer):
            woke = pending.pop(0)
            rcv.receive(m.encode(m.Frame(seq=len(arrivals) - len(pending), dt_ms=0, kf=0, face=0, codes=[])), woke)
        else:
            assert timer is not None
            woke = timer
        rcv.tick(woke)
        out += [(msg, woke) for msg in map(m.decode, rcv.data_to_send()) if isinstance(msg, m.Ack)]
    return out


def check(arrivals: list[float]) -> int:
    """Every frame is acked once; each ack's departure is read right; the controller takes the acks as they are."""
    cfg = ControllerConfig()
    acks = acks_sent(arrivals)
    assert sum(len(ack.frames) for ack, _ in acks) == len(arrivals)
    for ack, sent_s in acks:
        departure = AckDeparture.infer(ack.frames, cfg)
        sent_us = sent_s * 1e6
        receipts = [us for _, us in ack.frames]
        # The receiver compares float seconds and stamps truncated µs: an entry within a µs of the first's
        # deadline may have been just before it or just after; read either way, the RTT sample is not low.
        on_the_edge = abs(max(receipts) - min(receipts) - cfg.ack_interval_s * 1e6) <= 1
        assert departure.earliest_us - 2 <= sent_us, (ack, sent_s)
        if not on_the_edge:  # only frames wake the receiver here: the likely departure is the one
            assert abs(departure.likely_us - sent_us) <= 2, (ack, sent_s)
    # the sender's side, 0.2 s each way: sends and acks in time order
    events = sorted([(arrival - 0.2, seq, None) for seq, arrival in enumerate(arrivals, start=1)]
                    + [(sent_s + 0.2, 0, ack) for ack, sent_s in acks], key=lambda e: (e[0], e[1] == 0))
    ctl = RateController(64_000, config=cfg)
    for now, seq, ack in events:
        if ack is None:
            ctl.on_send(seq, 100, now)
        else:
            ctl.on_acks(ack.frames, now)
            assert ctl.min_rtt_s >= 0.4 - 1e-5  # RTT samples never read low
    assert ctl.in_flight_bytes == 0 and ctl.counters.acked_messages == len(arrivals)
    return len(acks)


def test_frames_every_40ms_leave_with_the_third() -> None:
    assert check([1.0 + 0.04 * i for i in range(30)]) == 10


def test_gaps_and_bursts() -> None:
    arrivals = [1.0, 1.04, 1.3, 1.31, 1.312, 1.9] + [2.5 + 0.0001 * i for i in range(m.MAX_ACKS + 5)]
    assert check(arrivals) == 5  # (1.0, 1.04), (1.3, 1.31, 1.312), (1.9,), 64 at once, the 5 after


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=150))
def test_any_arrival_pattern(gaps: list[float]) -> None:
    arrivals, t = [], 1.0
    for gap in gaps:
        t += gap
        arrivals.append(round(t, 6))
    check(arrivals)
