"""The relay's pure core: state kept for late joiners, latest-frame-wins outboxes that resume at an intra
frame, keyframe requests gated per sender, the room's choice of whom to show, codes, tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from facewire.relay.access import Access, AccessError
from facewire.relay.rooms import REQUEST_GAP_S, AdmissionError, Lost, Outbox, Room, Subscriber
from facewire.shared.wire import messages as m

ASSET = "ab" * 32


def frame(seq: int, intra: bool = False, kf: int = 0) -> tuple[m.Frame, bytes]:
    message = m.Frame(seq=seq, dt_ms=seq, kf=kf, face=0, codes=[b"x" * 30], intra=intra)
    return message, m.encode(message)


def publish(room: Room, name: str, message: m.Message, now: float = 0.0) -> list[object]:
    return list(room.publish(name, message, m.encode(message), now))


def drain(outbox: Outbox) -> list[m.Message]:
    out = []
    while (raw := outbox.pop()) is not None:
        out.append(m.decode(raw))
    return out


def state_of_a_sender(room: Room, name: str = "alice") -> None:
    room.publish_start(name, ["landmarks"], 0.0)
    publish(room, name, m.Identity(asset=ASSET, image=b"img", image_format="png"))
    publish(room, name, m.Identity(asset=ASSET, activate=True))
    publish(room, name, m.Setup(code="landmarks", payload=b"old"))
    publish(room, name, m.Setup(code="landmarks", payload=b"neutral"))
    publish(room, name, m.Keyframe(kf=1, ts_us=1, width=64, height=64, image=b"a", image_format="avif", parts=2,
                                   image_bytes=2))
    publish(room, name, m.KeyframePart(kf=1, part=1, data=b"b"))
    publish(room, name, m.Keyframe(kf=2, ts_us=2, width=64, height=64, image=b"c", image_format="avif", parts=2,
                                   image_bytes=2))


def test_a_late_joiner_gets_the_current_state_then_frames_from_an_intra_one() -> None:
    room = Room("call")
    state_of_a_sender(room)
    for seq in range(5):
        publish(room, "alice", frame(seq, intra=seq == 0)[0])
    late = Subscriber(1, ["landmarks"])
    requests = room.join(late, now=10.0)
    assert [type(r.message) for r in requests] == [m.IntraRequest]  # an intra frame, not a new keyframe: it has one
    for seq in (5, 6):
        publish(room, "alice", frame(seq)[0], now=10.1)
    publish(room, "alice", frame(7, intra=True)[0], now=10.2)
    publish(room, "alice", frame(8)[0], now=10.3)
    got = drain(late.outbox)
    assert isinstance(got[0], m.Source) and got[0].name == "alice" and got[0].codes == ["landmarks"]
    identity, setup, kf1, part1, kf2 = got[1:6]
    # The image the sender sent once, given again with the switch that made it active; only the latest setup.
    assert isinstance(identity, m.Identity) and identity.image == b"img" and identity.activate
    assert setup == m.Setup(code="landmarks", payload=b"neutral")
    assert (kf1.kf, part1.kf, kf2.kf) == (1, 1, 2)  # the complete keyframe and the one still arriving
    assert [f.seq for f in got[6:]] == [7, 8]  # frames 5 and 6 were predicted from frames it never had
    assert late.outbox.lost[Lost.BEFORE_INTRA] == 2


def test_a_slow_receiver_loses_stale_frames_never_state_and_resumes_at_an_intra_frame() -> None:
    room = Room("call")
    state_of_a_sender(room)
    slow, quick = Subscriber(1, ["landmarks"], outbox=Outbox(max_frames=4)), Subscriber(2, ["landmarks"])
    room.join(slow, 0.0)
    room.join(quick, 0.0)
    drain(slow.outbox)
    drain(quick.outbox)
    quick_got = []
    for seq in range(12):  # the slow one reads nothing meanwhile, the quick one everything
        publish(room, "alice", frame(seq, intra=seq in (0, 10))[0], now=seq / 30)
        if seq == 5:
            publish(room, "alice", m.Setup(code="landmarks", payload=b"new"))
        quick_got += drain(quick.outbox)
    got = drain(slow.outbox)
    assert m.Setup(code="landmarks", payload=b"new") in got
    assert [g.seq for g in got if isinstance(g, m.Frame)] == [10, 11]
    # Frames 0-3 queued and dropped with 4 (stale); 5-9 continued the chain the receiver lost (before intra).
    assert (slow.outbox.lost[Lost.STALE], slow.outbox.lost[Lost.BEFORE_INTRA]) == (5, 5)
    assert [g.seq for g in quick_got if isinstance(g, m.Frame)] == list(range(12))


def test_keyframe_requests_reach_the_sender_at_most_once_per_gap() -> None:
    room = Room("call")
    state_of_a_sender(room)
    subs = [Subscriber(i, ["landmarks"]) for i in range(3)]
    sent = [r for sub in subs for r in room.join(sub, 100.0)]
    sent += [r for t in (100.1, 100.5, 101.0) for r in room.publish("alice", *_raw(frame(1)), t)]
    sent += [r for sub in subs for r in room.from_receiver(sub.key, m.KeyframeRequest(reason="lost"), 101.5)]
    assert len(sent) == 1
    later = room.publish("alice", *_raw(frame(2)), 100.0 + REQUEST_GAP_S + 0.01)
    assert [type(r.message) for r in later] == [m.IntraRequest]


def test_the_sender_is_asked_for_a_keyframe_when_the_relay_holds_none() -> None:
    room = Room("call")
    room.publish_start("alice", ["landmarks"], 0.0)
    (request,) = room.join(Subscriber(1, ["landmarks"]), 0.0)
    assert isinstance(request.message, m.KeyframeRequest) and (request.room, request.sender) == ("call", "alice")


def _raw(pair: tuple[m.Frame, bytes]) -> tuple[m.Frame, bytes]:
    return pair


def test_a_keyframe_request_is_answered_from_the_cache() -> None:
    room = Room("call")
    state_of_a_sender(room)
    sub = Subscriber(1, ["landmarks"])
    room.join(sub, 0.0)
    drain(sub.outbox)
    room.from_receiver(1, m.KeyframeRequest(reason="lost its reference"), 0.0)
    got = drain(sub.outbox)
    assert [type(g) for g in got] == [m.Identity, m.Setup, m.Keyframe, m.KeyframePart, m.Keyframe]
    room.from_receiver(1, m.AssetRequest(asset=ASSET), 0.0)
    (identity,) = drain(sub.outbox)
    assert isinstance(identity, m.Identity) and identity.image == b"img"


def test_whom_a_receiver_shows() -> None:
    room = Room("call")
    room.publish_start("alice", ["landmarks"], 1.0)
    fan, bob_fan = Subscriber(1, ["landmarks"]), Subscriber(2, ["landmarks"], show="bob")
    room.join(fan, 1.0)
    room.join(bob_fan, 1.0)
    assert (fan.shown, bob_fan.shown) == ("alice", "alice")  # bob is not here yet: the room's newest meanwhile
    room.publish_start("bob", ["landmarks"], 2.0)
    assert (fan.shown, bob_fan.shown) == ("alice", "bob")  # a newcomer takes only who asked for it
    room.publish_end("alice")
    assert fan.shown == "bob"
    with pytest.raises(AdmissionError, match="already publishes"):
        room.publish_start("bob", ["landmarks"], 3.0)


def test_a_receiver_must_decode_the_rooms_codes_and_senders_code_for_the_receivers() -> None:
    room = Room("call", max_receivers=2)
    room.publish_start("alice", ["landmarks", "alpha"], 0.0)
    with pytest.raises(AdmissionError, match=r"does not decode \['alpha'\]") as refused:
        room.join(Subscriber(1, ["landmarks"]), 0.0)
    assert refused.value.code == "unsupported_code"
    room.publish_end("alice")
    room.join(Subscriber(1, ["landmarks"]), 0.0)
    assert room.accepted_codes() == ["landmarks"]  # a sender joining now must not use alpha
    room.join(Subscriber(2, ["landmarks"]), 0.0)
    with pytest.raises(AdmissionError, match="receivers") as full:
        room.join(Subscriber(3, ["landmarks"]), 0.0)
    assert full.value.code == "busy"


def test_room_tokens(tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    path.write_text('[rooms.standup]\npublish = "p1"\nsubscribe = "s1"\n[rooms.board]\npublish = "p2"\nsubscribe = "s2"\n')
    access = Access.from_file(path, max_rooms_per_token=1)
    assert access.tokens("standup") == {"sender": "p1", "receiver": "s1"}
    assert access.tokens("nowhere") is None and access.tokens("../etc") is None
    assert access.enter("p1", "standup") and not access.enter("p1", "board")
    access.leave("p1", "standup")
    assert access.enter("p1", "board")
    path.write_text('[rooms.standup]\npublish = "p1"\n')
    with pytest.raises(AccessError, match="publish"):
        Access.from_file(path)
