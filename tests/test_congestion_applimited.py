"""The rate controller with a sender like the live one: small frames every 40 ms that the receiver
acknowledges, a keyframe's parts that it does not. Pure object, fed sends and acks; no timings."""

from __future__ import annotations

from facewire.sender.congestion import RateController

FRAME_S = 0.04
ONE_WAY_S = 0.15


class FlatLink:
    """A link far faster than the sender with a constant one-way delay: it never queues. Acks go back
    every 50 ms with what arrived since the last, as the reference receiver sends them."""

    def __init__(self, ctl: RateController) -> None:
        self.ctl = ctl
        self.seq = 0
        self.pending: list[tuple[int, int, float]] = []  # (seq, receive µs, arrival s)
        self.refused = 0

    def frame(self, nbytes: int, now: float) -> bool:
        if not self.ctl.may_send(nbytes, now, essential=True):
            self.refused += 1
            return False
        self.seq += 1
        self.ctl.on_send(self.seq, nbytes, now)
        self.pending.append((self.seq, round((now + ONE_WAY_S) * 1e6), now + ONE_WAY_S))
        return True

    def feedback(self, now: float) -> None:
        """Delivers the acks of everything that arrived by `now` - 50 ms (the ack's wait) - the way back."""
        due = [p for p in self.pending if p[2] + 0.05 + ONE_WAY_S <= now]
        if due:
            self.pending = [p for p in self.pending if p not in due]
            self.ctl.on_acks([(seq, us) for seq, us, _ in due], now)


def drive(ctl: RateController, seconds: float, frame_bytes: int, link: FlatLink | None = None,
          big_every: int = 0) -> FlatLink:
    """Frames every 40 ms; every `big_every`th is 30x larger (a layer's key frame), which the window refuses."""
    link = link or FlatLink(ctl)
    for i in range(round(seconds / FRAME_S)):
        now = i * FRAME_S
        link.feedback(now)
        ctl.tick(now)
        link.frame(frame_bytes * (30 if big_every and i % big_every == 0 else 1), now)
    return link


def test_an_app_limited_sender_is_not_cut_for_the_windows_refusals() -> None:
    """The codec makes ~10 kbps of 50-byte frames on a link with room to spare: the acked rate, and with it
    the increase limit, follows the codec. Before, a refusal there read as 'window-limited' and cut the
    target to 0.85 x acked, which shrank the window, which refused again: a 24 kbps link carried 8."""
    ctl = RateController(256_000)
    link = drive(ctl, 30.0, 50, big_every=50)
    assert link.refused > 0
    assert ctl.counters.decreases == 0, ctl.counters.decrease_causes
    assert ctl.target_bps >= 1.2 * 50 * 8 / FRAME_S  # room above the codec, for a layer to start


def test_a_queue_that_stands_still_cuts_the_target() -> None:
    """Frames the window refuses, and every ack shows 300 ms of queue that never drains: that is the link."""
    ctl = RateController(256_000)
    seq, pending = 0, []
    for i in range(round(20.0 / FRAME_S)):
        now = i * FRAME_S
        due = [p for p in pending if p[1] <= now]
        if due:
            pending = [p for p in pending if p not in due]
            ctl.on_acks([(s, round(t * 1e6)) for s, _, t in due], now)
        if ctl.may_send(400, now, essential=True):
            seq += 1
            ctl.on_send(seq, 400, now)
            # arrives after 0.15 s + a queue of 0.3 s once it has formed; the ack is back 0.2 s later
            queue = 0.3 if now > 2.0 else 0.0
            pending.append((seq, now + ONE_WAY_S + queue + 0.2, now + ONE_WAY_S + queue))
    assert ctl.counters.decreases > 0
    assert ctl.target_bps < 0.5 * 256_000


def test_no_increase_before_any_acked_rate() -> None:
    """Acks too few to measure a throughput say nothing about the link: the target holds at the start rate."""
    ctl = RateController(256_000)
    start = ctl.target_bps
    for i in range(1, 40):
        ctl.on_send(i, 50, now=i * 1.0)
        ctl.on_acks([(i, round((i * 1.0 + ONE_WAY_S) * 1e6))], now=i * 1.0 + 0.35)  # one per second
        assert ctl.target_bps <= start


def test_keyframe_parts_are_in_flight_until_a_later_frame_is_acked() -> None:
    ctl = RateController(24_000)
    ctl.on_rtt(0.3, now=0.0)
    ctl.on_send(1, 50, now=0.0)
    ctl.on_send_bulk(300, now=0.01)
    ctl.on_send_bulk(300, now=0.02)
    ctl.on_send(2, 50, now=0.03)
    assert ctl.in_flight_bytes == 700
    ctl.on_acks([(1, 1_000_000)], now=0.4)  # frame 1 went before the parts: they may still be on the way
    assert ctl.in_flight_bytes == 650
    ctl.on_acks([(2, 1_250_000)], now=0.65)
    assert ctl.in_flight_bytes == 0


def test_the_acked_rate_counts_the_parts_a_frame_arrived_behind() -> None:
    """A keyframe crossing a 24 kbps link with a frame after each part: the link carried 24 kbps, not the
    frames' share of it."""
    ctl = RateController(256_000)
    t_recv = 1.0
    for seq in range(1, 41):
        now = seq * 0.1
        ctl.on_send_bulk(250, now)
        ctl.on_send(seq, 50, now + 0.001)
        t_recv += 300 * 8 / 24_000  # the part and the frame, back to back at 24 kbps
        ctl.on_acks([(seq, round(t_recv * 1e6))], now=now + 0.4)
    acked = ctl.acked_bps
    assert acked is not None and abs(acked - 24_000) < 0.05 * 24_000


def test_the_frames_share_of_the_window_is_kept_from_a_keyframes_parts() -> None:
    """Parts go while room is left beyond what the frames cost over a round trip; then the frames still go."""
    ctl = RateController(24_000)
    link = drive(ctl, 5.0, 50)  # the frames' rate is known: 10 kbps
    now = 5.0
    window, reserve = ctl.window_bytes(), ctl.reserve_bytes()
    assert reserve >= 50 * 8 / FRAME_S / 8 * ctl.min_rtt_s  # a round trip of frames at least
    parts = 0
    while ctl.may_send(100, now, bulk=True):
        ctl.on_send_bulk(100, now)
        parts += 1
    assert parts > 0
    assert ctl.in_flight_bytes + reserve <= window + 100
    refused = link.refused
    for i in range(1, 6):  # the next frames, before any ack frees the parts
        assert link.frame(50, now + i * FRAME_S)
    assert link.refused == refused


def test_a_message_behind_a_keyframe_does_not_expire_while_the_keyframe_drains() -> None:
    """The first keyframe goes whole (6 KB: 2 s of a 24 kbps link) and the first frame behind it; the frame's
    ack cannot come back before the keyframe has crossed, which is no reason to give up on it or to cut."""
    ctl = RateController(24_000)
    for _ in range(20):
        ctl.on_send_bulk(300, now=0.0)
    ctl.on_send(1, 50, now=0.0)
    t = 0.0
    while t < 2.5:
        ctl.tick(t)
        t += 0.05
    assert ctl.counters.expired_messages == 0
    assert ctl.counters.feedback_timeouts == 0
    assert ctl.target_bps == 24_000


def test_frames_keep_their_share_behind_bulk_beyond_the_window_and_no_more() -> None:
    """Bulk sent before the window shrank (or a first keyframe, sent whole) fills more than the window: the
    frames still go up to their share (their rate over a round trip), then they are refused."""
    ctl = RateController(256_000)  # a ceiling far above: the window alone decides
    link = drive(ctl, 5.0, 50)
    now = 5.0
    for _ in range(10):
        ctl.on_send_bulk(300, now)
    assert ctl.in_flight_bytes > ctl.window_bytes()
    share, sent = ctl.reserve_bytes(), 0
    while link.frame(50, now):
        sent += 1
        now += FRAME_S
    assert sent >= 1 and ctl.snapshot()["in_flight_bytes"] - 3000 <= share + 50
    assert ctl.counters.refused_window >= 1


def test_a_message_of_the_bulk_window_fits_beside_the_frames_share() -> None:
    ctl = RateController(256_000)
    drive(ctl, 5.0, 50)
    bulk = ctl.bulk_window_bytes()
    assert 0 < bulk < ctl.window_bytes() - ctl.reserve_bytes()
    assert ctl.may_send(bulk, 5.0)
    assert not ctl.may_send(bulk + ctl.reserve_bytes(), 5.0)
