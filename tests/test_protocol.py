"""Sans-I/O protocol: handshake, auth, hostile input, limits and timeouts with a fake clock, heartbeats."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p
from facewire.shared.wire.errors import CLOSE_CODE_FOR, CloseCode, ErrorCode, ProtocolError

TOKEN = "correct horse battery staple"
ASSET = "ab" * 32


def frame(seq: int) -> m.Frame:
    return m.Frame(seq=seq, dt_ms=seq, kf=0, face=0, codes=[b"code"])


def sent(conn: p.ReceiverProtocol | p.SenderProtocol) -> list[m.Message]:
    return [m.decode(data) for data in conn.data_to_send()]


def failed(events: list[p.Event], code: ErrorCode, close: int) -> p.ConnectionFailed:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, p.ConnectionFailed), event
    assert event.error.code is code
    assert event.close.code == close
    return event


def assert_error_queued(conn: p.ReceiverProtocol | p.SenderProtocol, code: ErrorCode) -> m.Error:
    out = sent(conn)
    assert len(out) == 1 and isinstance(out[0], m.Error), out
    assert out[0].code == code.value and out[0].fatal
    assert conn.state is p.State.CLOSED
    return out[0]


def receiver(now: float = 0.0, **kwargs: object) -> p.ReceiverProtocol:
    return p.ReceiverProtocol(TOKEN, now, **kwargs)  # type: ignore[arg-type]


def open_pair(now: float = 0.0, limits: p.Limits | None = None) -> tuple[p.SenderProtocol, p.ReceiverProtocol]:
    snd = p.SenderProtocol(TOKEN, now, agent="test")
    rcv = p.ReceiverProtocol(TOKEN, now, limits=limits, assets=[ASSET])
    for data in snd.data_to_send():
        rcv.receive(data, now)
    for data in rcv.data_to_send():
        snd.receive(data, now)
    assert snd.state is p.State.OPEN and rcv.state is p.State.OPEN
    return snd, rcv


# --- handshake --------------------------------------------------------------------------------

def test_handshake() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0, agent="facewire-test", capabilities=["alpha.v1"])
    assert snd.state is p.State.AWAIT_WELCOME
    (hello_bytes,) = snd.data_to_send()
    hello = m.decode(hello_bytes)
    assert hello == m.Hello(versions=[2], token=TOKEN, agent="facewire-test", capabilities=["alpha.v1", *m.WIRE_CAPABILITIES])

    rcv = p.ReceiverProtocol(TOKEN, 0.0, capabilities=["alpha.v1"], renderers=["mesh"], assets=[ASSET])
    assert rcv.state is p.State.AWAIT_HELLO
    events = rcv.receive(hello_bytes, 0.1)
    assert events == [p.HandshakeDone(hello)]
    assert rcv.state is p.State.OPEN and rcv.version == 2 and rcv.close is None
    (welcome_bytes,) = rcv.data_to_send()
    welcome = m.decode(welcome_bytes)
    assert isinstance(welcome, m.Welcome)
    assert welcome.version == 2 and welcome.session == rcv.session_id
    assert welcome.capabilities == ["alpha.v1", *m.WIRE_CAPABILITIES] and welcome.renderers == ["mesh"] and welcome.assets == [ASSET]
    assert welcome.max_message_bytes == m.MAX_MESSAGE_BYTES

    assert snd.receive(welcome_bytes, 0.2) == [p.HandshakeDone(welcome)]
    assert snd.state is p.State.OPEN and snd.welcome == welcome

    data = snd.send(frame(1))
    assert snd.data_to_send() == [data]
    assert rcv.receive(data, 0.3) == [p.MessageReceived(frame(1))]
    assert rcv.data_to_send() == []


def test_sessions_are_distinct() -> None:
    assert receiver().session_id != receiver().session_id


def test_version_negotiation_picks_the_highest_common() -> None:
    rcv = receiver()
    events = rcv.receive(m.encode(m.Hello(versions=[7, 1, 2], token=TOKEN)), 0.0)
    assert isinstance(events[0], p.HandshakeDone)
    assert rcv.version == 2


def test_wrong_token() -> None:
    rcv = receiver()
    event = failed(rcv.receive(m.encode(m.Hello(versions=[2], token="guess")), 0.0), ErrorCode.UNAUTHORIZED, 4001)
    assert event.error.field == "token"
    assert rcv.close == event.close
    error = assert_error_queued(rcv, ErrorCode.UNAUTHORIZED)
    assert "guess" not in error.message
    # After the failure nothing more is read or answered.
    assert rcv.receive(m.encode(m.Hello(versions=[2], token=TOKEN)), 0.1) == []
    assert rcv.data_to_send() == [] and rcv.state is p.State.CLOSED


@pytest.mark.parametrize("token", ["", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "\u00e9" * 10])
def test_near_miss_tokens_refused(token: str) -> None:
    failed(receiver().receive(m.encode(m.Hello(versions=[2], token=token)), 0.0), ErrorCode.UNAUTHORIZED, 4001)


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(p.hmac, "compare_digest", spy)
    receiver().receive(m.encode(m.Hello(versions=[2], token="x")), 0.0)
    assert calls == [(TOKEN.encode(), b"x")]
    assert p.tokens_match("\u00e9t\u00e9", "\u00e9t\u00e9") and not p.tokens_match("a", "ab")


def test_unsupported_version() -> None:
    rcv = receiver()
    event = failed(rcv.receive(m.encode(m.Hello(versions=[1, 3], token=TOKEN)), 0.0),
                   ErrorCode.UNSUPPORTED_VERSION, 4003)
    assert event.error.field == "versions"
    assert_error_queued(rcv, ErrorCode.UNSUPPORTED_VERSION)


def test_sender_refuses_a_version_it_does_not_speak() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0)
    snd.data_to_send()
    welcome = m.Welcome(version=9, session="abcdef01")
    failed(snd.receive(m.encode(welcome), 0.0), ErrorCode.UNSUPPORTED_VERSION, 4003)
    assert_error_queued(snd, ErrorCode.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(("code", "close"), [
    (ErrorCode.UNAUTHORIZED, 4001), (ErrorCode.BUSY, 4004), (ErrorCode.UNSUPPORTED_VERSION, 4003),
])
def test_sender_refused_by_receiver(code: ErrorCode, close: int) -> None:
    snd = p.SenderProtocol(TOKEN, 0.0)
    snd.data_to_send()
    event = failed(snd.receive(m.encode(m.Error(code=code.value, message="no")), 0.1), code, close)
    assert "no" in str(event.error)
    assert snd.data_to_send() == []  # the receiver is closing; nothing is sent back
    assert snd.state is p.State.CLOSED


def test_sender_refused_with_an_unknown_code() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0)
    failed(snd.receive(m.encode(m.Error(code="from_the_future")), 0.1), ErrorCode.INTERNAL, 1011)


def test_unauthorized_round_trip_through_both_ends() -> None:
    snd = p.SenderProtocol("wrong", 0.0)
    rcv = receiver()
    for data in snd.data_to_send():
        failed(rcv.receive(data, 0.0), ErrorCode.UNAUTHORIZED, 4001)
    for data in rcv.data_to_send():
        failed(snd.receive(data, 0.0), ErrorCode.UNAUTHORIZED, 4001)


# --- hostile or out-of-order input ----------------------------------------------------------------

@pytest.mark.parametrize("opened", [False, True], ids=["before hello", "open"])
def test_text_frame(opened: bool) -> None:
    rcv = open_pair()[1] if opened else receiver()
    failed(rcv.receive('{"t": "hello"}', 1.0), ErrorCode.TEXT_FRAME, CloseCode.UNSUPPORTED_DATA)
    assert_error_queued(rcv, ErrorCode.TEXT_FRAME)


def test_sender_rejects_text_frame() -> None:
    snd, _ = open_pair()
    failed(snd.receive("hi", 1.0), ErrorCode.TEXT_FRAME, 1003)
    assert_error_queued(snd, ErrorCode.TEXT_FRAME)


def test_message_before_hello() -> None:
    rcv = receiver()
    event = failed(rcv.receive(m.encode(frame(1)), 0.0), ErrorCode.UNEXPECTED, 4008)
    assert event.error.field == "t"
    assert_error_queued(rcv, ErrorCode.UNEXPECTED)


def test_hello_twice() -> None:
    snd, rcv = open_pair()
    failed(rcv.receive(m.encode(m.Hello(versions=[2], token=TOKEN)), 1.0), ErrorCode.UNEXPECTED, 4008)
    assert_error_queued(rcv, ErrorCode.UNEXPECTED)


def test_welcome_twice() -> None:
    snd, _ = open_pair()
    failed(snd.receive(m.encode(m.Welcome(version=2, session="abcdef01")), 1.0), ErrorCode.UNEXPECTED, 4008)


def test_sender_wants_welcome_first() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0)
    failed(snd.receive(m.encode(m.KeyframeRequest()), 0.0), ErrorCode.UNEXPECTED, 4008)


@pytest.mark.parametrize("message", [
    m.Welcome(version=2, session="abcdef01"), m.AssetRequest(asset=ASSET), m.KeyframeRequest(reason="x"),
], ids=lambda msg: type(msg).__name__)
def test_receiver_only_messages_refused_by_receiver(message: m.Message) -> None:
    _, rcv = open_pair()
    event = failed(rcv.receive(m.encode(message), 1.0), ErrorCode.UNEXPECTED, 4008)
    assert event.error.field == "t"


@pytest.mark.parametrize("message", [
    m.Hello(versions=[2], token=TOKEN), frame(3), m.IdentitySwitch(asset=ASSET), m.Identity(asset="self"),
    m.Keyframe(kf=1, ts_us=1, width=64, height=64, image=b"x", image_format="png"),
], ids=lambda msg: type(msg).__name__)
def test_sender_only_messages_refused_by_sender(message: m.Message) -> None:
    snd, _ = open_pair()
    failed(snd.receive(m.encode(message), 1.0), ErrorCode.UNEXPECTED, 4008)


@pytest.mark.parametrize("message", [
    m.Ping(nonce=1, ts_us=2), m.Pong(nonce=1, ts_us=2), m.Stats(fps=30), m.Error(code="internal", fatal=False), m.Bye(),
], ids=lambda msg: type(msg).__name__)
def test_messages_both_ways(message: m.Message) -> None:
    snd, rcv = open_pair()
    assert rcv.receive(m.encode(message), 1.0) == [p.MessageReceived(message)]
    assert snd.receive(m.encode(message), 1.0) == [p.MessageReceived(message)]
    still_open = not isinstance(message, m.Bye)  # goodbye closes (test_bye_closes_normally_either_way)
    assert (rcv.state is p.State.OPEN) == still_open and (snd.state is p.State.OPEN) == still_open


@pytest.mark.parametrize("data", [b"\xc1", b"", msgspec.msgpack.encode({"t": "frame", "seq": -1}),
                                  msgspec.msgpack.encode([1, 2, 3]), b"\x81\xa1t\xa1\x80"],
                         ids=["opcode", "empty", "negative seq", "array", "bad utf-8"])
def test_malformed_message_closes_with_bad_message(data: bytes) -> None:
    _, rcv = open_pair()
    failed(rcv.receive(data, 1.0), ErrorCode.BAD_MESSAGE, 4002)
    assert_error_queued(rcv, ErrorCode.BAD_MESSAGE)


def test_bad_message_names_the_field() -> None:
    _, rcv = open_pair()
    data = msgspec.msgpack.encode({"t": "keyframe", "kf": 1, "ts_us": 0, "width": 64, "height": 64,
                                   "image": b"i", "image_format": "avif", "box": [0, 0, 65, 10]})
    event = failed(rcv.receive(data, 1.0), ErrorCode.BAD_MESSAGE, 4002)
    assert event.error.field == "box"
    assert "box" in assert_error_queued(rcv, ErrorCode.BAD_MESSAGE).message


def test_message_over_the_limit_is_too_large() -> None:
    limits = p.Limits(max_message_bytes=2048)
    _, rcv = open_pair(limits=limits)
    big = m.encode(m.Identity(asset=ASSET, image=b"\x00" * 4000, image_format="png"))
    failed(rcv.receive(big, 1.0), ErrorCode.TOO_LARGE, CloseCode.TOO_BIG)
    assert_error_queued(rcv, ErrorCode.TOO_LARGE)


def test_oversize_frame_message_is_a_bad_message() -> None:
    _, rcv = open_pair()
    data = m.encode(m.Frame(seq=1, dt_ms=1, kf=0, face=0, codes=[b"\x00" * m.MAX_FRAME_FIELD_BYTES] * 2))
    failed(rcv.receive(data, 1.0), ErrorCode.BAD_MESSAGE, 4002)


def test_hostile_close_reason_fits_a_close_frame() -> None:
    rcv = receiver()
    events = rcv.receive(msgspec.msgpack.encode({"t": "\u00e9" * 300}), 0.0)
    event = failed(events, ErrorCode.BAD_MESSAGE, 4002)
    assert len(event.close.reason.encode("utf-8")) <= 123
    event.close.reason.encode("utf-8").decode("utf-8")  # still valid UTF-8 after the cut
    (error,) = sent(rcv)  # the queued error itself must be a valid message
    assert isinstance(error, m.Error)


def test_close_reason_cut_by_bytes() -> None:
    assert p.close_reason("a" * 200) == "a" * 123
    assert p.close_reason("\u20ac" * 100) == "\u20ac" * 41  # 3 bytes each
    assert p.close_reason("short") == "short"


# --- limits and timeouts ------------------------------------------------------------------------

def test_message_rate_limit() -> None:
    limits = p.Limits(messages_per_second=10.0, message_burst=5.0)
    snd, rcv = open_pair(now=0.0, limits=limits)  # the hello took one token
    ping = m.encode(m.Ping(nonce=1, ts_us=1))
    for _ in range(4):
        assert isinstance(rcv.receive(ping, 0.0)[0], p.MessageReceived)
    failed(rcv.receive(ping, 0.0), ErrorCode.RATE_LIMITED, 4005)
    errors = [msg for msg in sent(rcv) if isinstance(msg, m.Error)]
    assert [e.code for e in errors] == ["rate_limited"]


def test_message_rate_refills() -> None:
    limits = p.Limits(messages_per_second=10.0, message_burst=2.0)
    _, rcv = open_pair(now=0.0, limits=limits)
    ping = m.encode(m.Ping(nonce=1, ts_us=1))
    # 10 a second sustained for 3 s is within the limit even though the burst is only 2.
    for i in range(1, 31):
        assert isinstance(rcv.receive(ping, i * 0.1)[0], p.MessageReceived), i


def test_byte_rate_limit() -> None:
    limits = p.Limits(bytes_per_second=1000.0, byte_burst=3000.0)
    _, rcv = open_pair(now=0.0, limits=limits)
    first, second, third = (m.encode(m.Frame(seq=seq, dt_ms=1, kf=0, face=1, codes=[b"\x00" * 1400])) for seq in (1, 2, 3))
    assert 1000 < len(first) < 1500
    assert isinstance(rcv.receive(first, 0.0)[0], p.MessageReceived)
    assert isinstance(rcv.receive(second, 0.0)[0], p.MessageReceived)
    failed(rcv.receive(third, 0.0), ErrorCode.RATE_LIMITED, 4005)


def test_frame_seq_must_increase() -> None:
    _, rcv = open_pair(now=0.0)
    for seq in (1, 2, 7):  # a gap is allowed (frames lost upstream of a relay)
        assert isinstance(rcv.receive(m.encode(m.Frame(seq=seq, dt_ms=0, kf=0, face=0)), 0.0)[0], p.MessageReceived)
    failed(rcv.receive(m.encode(m.Frame(seq=7, dt_ms=0, kf=0, face=0)), 0.0), ErrorCode.BAD_MESSAGE, 4002)
    assert "(field seq)" in [msg for msg in sent(rcv) if isinstance(msg, m.Error)][-1].message


def test_receiver_handshake_timeout() -> None:
    rcv = receiver(now=100.0)
    assert rcv.check_timeouts(104.9) == []
    failed(rcv.check_timeouts(105.1), ErrorCode.HANDSHAKE_TIMEOUT, 4007)
    assert_error_queued(rcv, ErrorCode.HANDSHAKE_TIMEOUT)
    assert rcv.check_timeouts(200.0) == []


def test_sender_handshake_timeout() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0, limits=p.Limits(handshake_timeout_s=1.0))
    snd.data_to_send()
    assert snd.check_timeouts(0.9) == []
    failed(snd.check_timeouts(1.1), ErrorCode.HANDSHAKE_TIMEOUT, 4007)


def test_idle_timeout() -> None:
    snd, rcv = open_pair(now=1.0)
    for side in (snd, rcv):
        side.heard(31.0)  # bytes keep arriving (the link is alive), but no whole message after t=10
    assert rcv.check_timeouts(20.9) == []
    assert isinstance(rcv.receive(m.encode(m.Ping(nonce=1, ts_us=1)), 10.0)[0], p.MessageReceived)
    rcv.data_to_send()
    assert rcv.check_timeouts(29.9) == []  # the ping at t=10 reset the clock
    failed(rcv.check_timeouts(30.1), ErrorCode.IDLE_TIMEOUT, 4006)
    assert_error_queued(rcv, ErrorCode.IDLE_TIMEOUT)
    assert snd.check_timeouts(20.9) == []
    failed(snd.check_timeouts(21.1), ErrorCode.IDLE_TIMEOUT, 4006)


def test_idle_timeout_configurable() -> None:
    _, rcv = open_pair(now=0.0, limits=p.Limits(idle_timeout_s=3.0))
    assert rcv.check_timeouts(2.9) == []
    failed(rcv.check_timeouts(3.1), ErrorCode.IDLE_TIMEOUT, 4006)


# --- heartbeat --------------------------------------------------------------------------------

def test_ping_answered_with_pong_by_both_ends() -> None:
    snd, rcv = open_pair()
    ping = m.Ping(nonce=42, ts_us=123_456)
    assert rcv.receive(m.encode(ping), 1.0) == [p.MessageReceived(ping)]
    assert sent(rcv) == [m.Pong(nonce=42, ts_us=123_456)]
    assert snd.receive(m.encode(ping), 1.0) == [p.MessageReceived(ping)]
    assert sent(snd) == [m.Pong(nonce=42, ts_us=123_456)]


def test_heartbeat_schedule_and_rtt() -> None:
    beat = p.Heartbeat(interval_s=2.0)
    assert beat.due(1.0) is None
    first = beat.due(2.0)
    assert first is not None and first.nonce == 1 and first.ts_us == 2_000_000
    assert beat.due(3.9) is None
    second = beat.due(4.0)
    assert second is not None and second.nonce == 2
    assert beat.rtt_ms is None
    beat.answered(m.Pong(nonce=second.nonce, ts_us=second.ts_us), 4.025)
    assert beat.rtt_ms == pytest.approx(25.0)
    beat.answered(m.Pong(nonce=99, ts_us=0), 5.0)  # unknown nonce: ignored
    beat.answered(m.Pong(nonce=second.nonce, ts_us=0), 6.0)  # answered twice: ignored
    assert beat.rtt_ms == pytest.approx(25.0)
    beat.answered(m.Pong(nonce=first.nonce, ts_us=0), 4.5)  # a late answer still measures its own ping
    assert beat.rtt_ms == pytest.approx(2500.0)


def test_heartbeat_forgets_old_pings_and_wraps_nonce() -> None:
    beat = p.Heartbeat(interval_s=1.0, next_nonce=2**32 - 1)
    ping = beat.due(10.0)
    assert ping is not None and ping.nonce == 0
    later = beat.due(50.0)
    assert later is not None and later.nonce == 1
    assert set(beat.sent) == {1}


def test_heartbeat_over_the_protocol() -> None:
    snd, rcv = open_pair(now=0.0)
    beat = p.Heartbeat(interval_s=2.0)
    ping = beat.due(2.0)
    assert ping is not None
    snd.send(ping)
    for data in snd.data_to_send():
        rcv.receive(data, 2.01)
    for data in rcv.data_to_send():
        (event,) = snd.receive(data, 2.02)
        assert isinstance(event, p.MessageReceived) and isinstance(event.message, m.Pong)
        beat.answered(event.message, 2.02)
    assert beat.rtt_ms == pytest.approx(20.0)


# --- error and close code tables -----------------------------------------------------------------

def test_every_error_code_has_a_close_code() -> None:
    assert set(CLOSE_CODE_FOR) == set(ErrorCode)
    for error, close in CLOSE_CODE_FOR.items():
        assert 1000 <= close <= 1011 or 4000 <= close <= 4999, error
        assert ProtocolError(error, "x").close_code is close
        m.decode(m.encode(m.Error(code=error.value)))  # every code is a valid `code` on the wire


# --- protocol.md agrees with the code -------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "protocol.md"


def doc_section(heading_word: str) -> str:
    sections = DOC.read_text(encoding="utf-8").split("\n### ")
    matches = [s for s in sections if re.match(rf"[^\n]*\b{re.escape(heading_word)}\b", s)]
    assert matches, f"protocol.md has no section for `{heading_word}`"
    return matches[0].split("\n## ")[0]


@pytest.mark.parametrize("cls", m.Message.__args__, ids=lambda cls: cls.__name__)
def test_doc_describes_every_field(cls: type) -> None:
    section = doc_section(cls.__struct_config__.tag)  # type: ignore[attr-defined]
    for item in msgspec.structs.fields(cls):
        assert re.search(rf"^\|[^|\n]*\b{item.name}\b[^|\n]*\|", section, re.M), f"{cls.__name__}.{item.name}"


def test_doc_lists_every_error_with_its_close_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    for code, close in CLOSE_CODE_FOR.items():
        assert f"| `{code.value}` | {int(close)} |" in text, code


def test_doc_states_the_limits() -> None:
    text = DOC.read_text(encoding="utf-8")
    for value in (m.MAX_MESSAGE_BYTES, m.MAX_FRAME_MESSAGE_BYTES, m.MAX_IMAGE_BYTES, m.MAX_FRAME_FIELD_BYTES):
        assert f"{value:,}".replace(",", " ") in text, value
    limits = p.Limits()
    assert f"{limits.messages_per_second:g} / s" in text and f"{limits.message_burst:g}" in text
    assert f"within {limits.handshake_timeout_s:g} s" in text and f"every {limits.idle_timeout_s:g} s" in text


def test_tick_pings_and_the_pong_gives_the_round_trip() -> None:
    snd, rcv = open_pair(now=0.0)
    assert rcv.rtt_ms is None
    rcv.tick(2.0)
    (ping,) = sent(rcv)
    assert isinstance(ping, m.Ping)
    snd.receive(m.encode(ping), 2.01)
    (pong,) = sent(snd)
    rcv.receive(m.encode(pong), 2.03)
    assert rcv.rtt_ms == pytest.approx(30.0)


# --- sends go through the protocol -------------------------------------------------------------

def test_send_refuses_what_this_side_may_not_send_or_not_yet() -> None:
    snd = p.SenderProtocol(TOKEN, 0.0)
    with pytest.raises(ValueError, match="frame"):
        snd.send(frame(1))  # the handshake is not done
    snd, rcv = open_pair()
    with pytest.raises(ValueError, match="welcome"):
        snd.send(m.Welcome(version=2, session="abcdef01"))  # the receiver's message
    with pytest.raises(ValueError, match="frame"):
        rcv.send(frame(1))


def test_bye_closes_normally_either_way() -> None:
    snd, rcv = open_pair()
    snd.close_with_bye("end of input")
    assert sent(snd) == [m.Bye(reason="end of input")]
    assert snd.state is p.State.CLOSED and snd.close == p.Close(1000, "end of input")
    with pytest.raises(ValueError):
        snd.send(frame(2))  # nothing after goodbye
    events = rcv.receive(m.encode(m.Bye(reason="end of input")), 1.0)
    assert events == [p.MessageReceived(m.Bye(reason="end of input"))]
    assert rcv.state is p.State.CLOSED and rcv.close is not None and rcv.close.code == 1000
    assert rcv.receive(m.encode(frame(3)), 1.1) == []  # closed: nothing more is read


# --- acks ------------------------------------------------------------------------------------------

def test_the_receiver_acks_frames_within_the_ack_interval() -> None:
    _, rcv = open_pair(now=0.0)
    rcv.data_to_send()
    assert rcv.next_tick_s is None
    rcv.receive(m.encode(frame(1)), 10.0)
    rcv.receive(m.encode(frame(2)), 10.02)
    assert rcv.next_tick_s == pytest.approx(0.05)
    rcv.tick(10.049)
    assert [msg for msg in sent(rcv) if isinstance(msg, m.Ack)] == []
    rcv.tick(10.05)
    assert [msg for msg in sent(rcv) if isinstance(msg, m.Ack)] == [m.Ack(frames=[(1, 10_000_000), (2, 10_020_000)])]
    assert rcv.next_tick_s is None


def test_a_full_ack_goes_at_once() -> None:
    _, rcv = open_pair(now=0.0)
    rcv.data_to_send()
    for seq in range(1, m.MAX_ACKS + 1):
        rcv.receive(m.encode(frame(seq)), 1.0)
    (ack,) = [msg for msg in sent(rcv) if isinstance(msg, m.Ack)]
    assert [seq for seq, _ in ack.frames] == list(range(1, m.MAX_ACKS + 1))
