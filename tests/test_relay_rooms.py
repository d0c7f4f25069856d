"""The relay's pure core: state kept for late joiners, latest-frame-wins outboxes that resume at an intra
frame, keyframe requests gated per sender, the room's choice of whom to show, codes, tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from facewire.relay.access import Access, AccessError
from facewire.relay.rooms import REQUEST_GAP_S, AdmissionError, Lost, Outbox, Room, Subscriber
from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p

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
    identity, old, setup, kf1, part1, kf2 = got[1:7]
    # The image the sender sent once, given again with the switch that made it active; the last setups in
    # order (a held keyframe's face code may name an older neutral), the newest last.
    assert isinstance(identity, m.Identity) and identity.image == b"img" and identity.activate
    assert (old, setup) == (m.Setup(code="landmarks", payload=b"old"), m.Setup(code="landmarks", payload=b"neutral"))
    assert (kf1.kf, part1.kf, kf2.kf) == (1, 1, 2)  # the complete keyframe and the one still arriving
    assert [f.seq for f in got[7:]] == [7, 8]  # frames 5 and 6 were predicted from frames it never had
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


def test_a_frame_another_relay_validated_is_passed_on_by_its_kind_as_a_decoded_one_is() -> None:
    rooms = [Room("call"), Room("call")]
    subs = [Subscriber(1, ["landmarks"]), Subscriber(1, ["landmarks"])]
    for room, sub in zip(rooms, subs, strict=True):
        state_of_a_sender(room)
        room.join(sub, 0.0)
        drain(sub.outbox)
    requests: list[list[object]] = [[], []]
    for seq in range(6):
        message, raw = frame(seq, intra=seq == 3)
        requests[0] += rooms[0].publish("alice", message, raw, 10.0 + seq / 30)
        requests[1] += rooms[1].publish_frame("alice", raw, message.intra, 10.0 + seq / 30)
    assert drain(subs[0].outbox) == drain(subs[1].outbox) == [frame(seq, intra=seq == 3)[0] for seq in (3, 4, 5)]
    assert requests[0] == requests[1] and len(requests[0]) == 1  # the gap before the intra frame asked for one
    assert rooms[1].publish_frame("nobody", b"x", True, 2.0) == []


def test_a_sender_that_leaves_has_its_queued_frames_written_before_the_next_sender() -> None:
    room = Room("call")
    state_of_a_sender(room, "alice")
    state_of_a_sender(room, "bob")
    sub = Subscriber(1, ["landmarks"], show="alice")
    room.join(sub, 0.0)
    drain(sub.outbox)
    for seq in range(3):
        publish(room, "alice", frame(seq, intra=seq == 0)[0], now=seq / 30)
    room.publish_end("alice")  # before the receiver's writer ran: its last frames are still queued
    got = drain(sub.outbox)
    assert [g.seq for g in got[:3] if isinstance(g, m.Frame)] == [0, 1, 2]
    assert isinstance(got[3], m.Source) and got[3].name == "bob"
    assert not any(isinstance(g, m.Frame) for g in got[3:])
    publish(room, "bob", frame(1)[0], now=0.2)  # bob's frames resume at an intra frame
    publish(room, "bob", frame(2, intra=True)[0], now=0.2)
    assert [g.seq for g in drain(sub.outbox)] == [2]


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
    assert [type(g) for g in got] == [m.Identity, m.Setup, m.Setup, m.Keyframe, m.KeyframePart, m.Keyframe]
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


def test_the_relay_protocol_takes_each_role_with_its_own_token() -> None:
    def hello(role: str, token: str) -> bytes:
        return m.encode(m.Hello(versions=[2], token=token, role=role, capabilities=["landmarks"]))  # type: ignore[arg-type]

    tokens = {"sender": "pub", "receiver": "sub"}
    welcome_codes = {"sender": ["landmarks", "alpha"], "receiver": ["landmarks"]}
    for role, token, accepted in (("sender", "pub", True), ("receiver", "sub", True), ("receiver", "pub", False),
                                  ("sender", "sub", False)):
        relay = p.RelayProtocol(tokens, 0.0, capabilities_for=welcome_codes.__getitem__)
        (event,) = relay.receive(hello(role, token), 0.0)
        if not accepted:
            assert isinstance(event, p.ConnectionFailed) and event.error.code.value == "unauthorized"
            continue
        assert isinstance(event, p.HandshakeDone) and relay.role == role
        (welcome,) = [m.decode(data) for data in relay.data_to_send()]
        assert isinstance(welcome, m.Welcome) and welcome.capabilities == welcome_codes[role]
    # A joined receiver may not publish, and is sent what a sender sends, led by `source`.
    relay = p.RelayProtocol(tokens, 0.0)
    relay.receive(hello("receiver", "sub"), 0.0)
    relay.data_to_send()
    relay.forward(m.encode(m.Source(name="alice", codes=["landmarks"])))
    assert isinstance(m.decode(relay.data_to_send()[0]), m.Source)
    (failed,) = relay.receive(m.encode(m.Frame(seq=1, dt_ms=0, kf=0, face=0)), 0.1)
    assert isinstance(failed, p.ConnectionFailed) and failed.close.code == 4008
    # A listening receiver refuses a receiver's hello: receivers join relays, not each other.
    receiver = p.ReceiverProtocol("sub", 0.0)
    (refused,) = receiver.receive(hello("receiver", "sub"), 0.0)
    assert isinstance(refused, p.ConnectionFailed) and refused.error.field == "role"


def test_the_joining_side_says_hello_as_a_receiver_and_takes_a_senders_messages() -> None:
    join = p.JoinProtocol("sub", 0.0, capabilities=["landmarks"])
    (hello,) = [m.decode(data) for data in join.data_to_send()]
    assert isinstance(hello, m.Hello) and hello.role == "receiver" and hello.capabilities == ["landmarks"]
    (done,) = join.receive(m.encode(m.Welcome(version=2, session="abcdef01")), 0.0)
    assert isinstance(done, p.HandshakeDone)
    for message in (m.Source(name="alice"), m.Frame(seq=1, dt_ms=0, kf=0, face=0), m.Setup(code="landmarks", payload=b"")):
        (event,) = join.receive(m.encode(message), 0.1)
        assert isinstance(event, p.MessageReceived) and event.message == message
    join.send(m.IntraRequest(reason="missed frames"))
    with pytest.raises(ValueError, match="frame"):
        join.send(m.Frame(seq=2, dt_ms=0, kf=0, face=0))
    (failed,) = join.receive(m.encode(m.Ack(frames=[(1, 1)])), 0.2)  # a receiver's message, from the relay
    assert isinstance(failed, p.ConnectionFailed) and failed.close.code == 4008


def test_frames_are_stale_by_age_not_by_a_burst() -> None:
    outbox = Outbox(max_age_s=0.25)
    for seq in range(30):  # a burst: the relay was off the CPU, then read one sender's backlog at once
        message, raw = frame(seq, intra=seq == 0)
        assert outbox.frame(raw, message.intra, now=1.0)
    assert outbox.frames == 30 and outbox.lost[Lost.STALE] == 0
    message, raw = frame(30)
    assert not outbox.frame(raw, message.intra, now=1.3)  # nothing was written for 300 ms: the queue is stale
    assert outbox.lost[Lost.STALE] == 31 and outbox.frames == 0 and outbox.waiting_for_intra


def test_an_outbox_notes_how_long_each_frame_waited() -> None:
    outbox = Outbox()
    outbox.state(m.encode(m.Setup(code="landmarks", payload=b"s")))
    for seq, came in enumerate((1.0, 1.01)):
        message, raw = frame(seq, intra=seq == 0)
        outbox.frame(raw, message.intra, now=came)
    while outbox.pop(now=1.05) is not None:
        pass
    assert outbox.held_s == pytest.approx([0.05, 0.04])  # frames only: state is not timed


def test_an_identity_in_parts_reaches_a_late_joiner_whole_and_an_asset_request_is_answered_in_parts() -> None:
    room = Room("call")
    room.publish_start("alice", ["landmarks"], 0.0)
    pieces = [b"im", b"ag", b"e"]
    publish(room, "alice", m.Identity(asset=ASSET, image=pieces[0], image_format="png", parts=3, image_bytes=5))
    publish(room, "alice", m.IdentityPart(asset=ASSET, part=1, data=pieces[1]))
    during = Subscriber(1, ["landmarks"])  # joins while the image is still arriving
    room.join(during, now=1.0)
    publish(room, "alice", m.IdentityPart(asset=ASSET, part=2, data=pieces[2]))
    late = Subscriber(2, ["landmarks"])
    room.join(late, now=2.0)
    for sub in (during, late):
        got = [message for message in drain(sub.outbox) if isinstance(message, (m.Identity, m.IdentityPart))]
        assert isinstance(got[0], m.Identity) and got[0].activate and got[0].parts == 3
        assert got[0].image + b"".join(part.data for part in got[1:] if isinstance(part, m.IdentityPart)) == b"image"
    publish(room, "alice", m.IdentitySwitch(asset="self"))
    assert room.from_receiver(2, m.AssetRequest(asset=ASSET), now=3.0) == []  # the relay holds it: no upstream request
    resent = drain(late.outbox)
    assert [type(message) for message in resent][-3:] == [m.Identity, m.IdentityPart, m.IdentityPart]
