"""Wire messages: every type round-trips, every validation rule rejects its bad case naming the field."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, MessageValidationError

ASSET = hashlib.sha256(b"avatar image bytes").hexdigest()
NAN = float("nan")
INF = float("inf")


def pack(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def rejected(data: bytes) -> MessageValidationError:
    with pytest.raises(MessageValidationError) as info:
        m.decode(data)
    assert info.value.code is ErrorCode.BAD_MESSAGE
    return info.value


# One valid instance of every message type, with every optional field set where that is legal.
EXAMPLES: list[m.Message] = [
    m.Hello(versions=[1], token="secret", agent="facewire/0.1", capabilities=["alpha.v1", "landmarks.v1"]),
    m.Hello(versions=[1, 2, 255], token=""),
    m.Hello(versions=[2], token="t", role="receiver", capabilities=["landmarks"]),
    m.Welcome(version=1, session="0123abcd", capabilities=["alpha.v1"], renderers=["mesh"], assets=[ASSET, "self"],
              max_message_bytes=65536),
    m.Welcome(version=1, session="f" * 64),
    m.Identity(asset=ASSET, image=b"\x89PNG...", image_format="png", landmarks=b"\x01" * 100,
               embedding=b"\x00" * m.EMBEDDING_BYTES, activate=False),
    m.Identity(asset=ASSET),
    m.Identity(asset=ASSET, image=b"\x89PN", image_format="png", parts=3, image_bytes=9),
    m.IdentityPart(asset=ASSET, part=1, data=b"G..."),
    m.Identity(asset="self", landmarks=b"lm"),
    m.IdentitySwitch(asset=ASSET),
    m.IdentitySwitch(asset="self"),
    m.AssetRequest(asset=ASSET),
    m.Keyframe(kf=3, ts_us=1_700_000_000_000_000, width=640, height=480, image=b"\xff\xd8jpeg",
               image_format="jpeg", alpha=b"alpha", landmarks=b"lm"),
    m.Keyframe(kf=0, ts_us=0, width=16, height=4096, image=b"w", image_format="webp"),
    m.Keyframe(kf=4, ts_us=5, width=640, height=480, image=b"avif", image_format="avif", box=[10, 20, 300, 460]),
    m.Keyframe(kf=5, ts_us=6, width=640, height=480, image=b"first", image_format="avif", parts=3, image_bytes=900),
    m.KeyframePart(kf=5, part=1, data=b"second"),
    m.Setup(code="expression", payload=b"\x01" * 200),
    m.Frame(seq=121, dt_ms=33, kf=3, face=0, codes=[b"\x00" * 900, b"\x01" * 300, None]),
    m.Frame(seq=0, dt_ms=0, kf=0, face=2),
    m.Frame(seq=5, dt_ms=0, kf=0, face=0, codes=[b"\x00"], intra=True),
    m.Frame(seq=2**32 - 1, dt_ms=2**32 - 1, kf=2**32 - 1, face=1, codes=[None] * m.MAX_CODES),
    m.Ack(frames=[(1, 2)]),
    m.Ack(frames=[(2**32 - 1, 2**63 - 1)] * m.MAX_ACKS),
    m.KeyframeRequest(reason="no reference"),
    m.KeyframeRequest(),
    m.IntraRequest(reason="joined mid-stream"),
    m.Ping(nonce=7, ts_us=123),
    m.Pong(nonce=2**32 - 1, ts_us=2**63 - 1),
    m.Stats(fps=29.97, kbps=48.5, frames=1000, dropped=3),
    m.Stats(),
    m.Error(code="busy", message="another sender is being shown", fatal=True),
    m.Error(code="rate_limited", fatal=False),
    m.Bye(reason="user quit"),
    m.Bye(),
    m.Source(name="alice", codes=["landmarks", "alpha"], senders=["alice", "bob"]),
    m.Source(name=""),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda msg: type(msg).__name__)
def test_round_trip(message: m.Message) -> None:
    data = m.encode(message)
    assert m.decode(data) == message
    raw = msgspec.msgpack.decode(data)
    if isinstance(message, (m.Frame, m.Ack)):  # stream messages: arrays led by their tag
        assert isinstance(raw, list) and raw[0] == type(message).__struct_config__.tag
    else:
        assert isinstance(raw, dict) and raw["t"] == type(message).__struct_config__.tag


def test_examples_cover_every_type() -> None:
    assert {type(msg) for msg in EXAMPLES} == set(m.Message.__args__)  # type: ignore[attr-defined]


def test_every_type_has_a_direction() -> None:
    types = set(m.Message.__args__)  # type: ignore[attr-defined]
    assert set(m.SENDER_MESSAGES) | set(m.RECEIVER_MESSAGES) | {m.Source} == types
    assert set(m.SENDER_MESSAGES) & set(m.RECEIVER_MESSAGES) == {m.Ping, m.Pong, m.Stats, m.Error, m.Bye}
    # A relay's joined receiver: a sender's messages and `source` one way, a receiver's and `hello` the other.
    assert set(m.JOINED_RECEIVER_GETS) == (set(m.SENDER_MESSAGES) - {m.Hello}) | {m.Welcome, m.Source}
    assert set(m.JOINED_RECEIVER_SENDS) == (set(m.RECEIVER_MESSAGES) - {m.Welcome}) | {m.Hello}
    # What a sender publishes is state, stream or hop by hop, never two of them.
    assert not set(m.STATE_MESSAGES) & set(m.STREAM_MESSAGES)
    assert set(m.STATE_MESSAGES) | set(m.STREAM_MESSAGES) <= set(m.SENDER_MESSAGES)


def test_tags_are_the_documented_names() -> None:
    tags = {type(msg).__struct_config__.tag for msg in EXAMPLES}
    assert tags == {"hello", "welcome", "identity", "identity_part", "identity_switch", "asset_request", "keyframe",
                    "keyframe_part",
                    "setup", "f", "a",
                    "keyframe_request", "intra_request", "ping", "pong", "stats", "error", "bye", "source"}


# --- every rule, one bad case each -------------------------------------------------------------

BASE: dict[str, dict[str, Any]] = {
    "hello": {"t": "hello", "versions": [1], "token": "tok"},
    "welcome": {"t": "welcome", "version": 1, "session": "abcdef01"},
    "identity": {"t": "identity", "asset": ASSET, "image": b"img", "image_format": "png"},
    "identity_switch": {"t": "identity_switch", "asset": ASSET},
    "asset_request": {"t": "asset_request", "asset": ASSET},
    "keyframe": {"t": "keyframe", "kf": 1, "ts_us": 10, "width": 640, "height": 480, "image": b"i",
                 "image_format": "webp"},
    "setup": {"t": "setup", "code": "expression", "payload": b"p"},
    "keyframe_request": {"t": "keyframe_request"},
    "ping": {"t": "ping", "nonce": 1, "ts_us": 1},
    "pong": {"t": "pong", "nonce": 1, "ts_us": 1},
    "stats": {"t": "stats"},
    "error": {"t": "error", "code": "busy"},
    "bye": {"t": "bye"},
}
DROP = object()


def with_(tag: str, **changes: Any) -> dict[str, Any]:
    out = dict(BASE[tag])
    for key, value in changes.items():
        if value is DROP:
            out.pop(key)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("base", BASE.values(), ids=list(BASE))
def test_bases_are_valid(base: dict[str, Any]) -> None:
    m.decode(pack(base))


BIG = m.MAX_FRAME_FIELD_BYTES + 1
BAD: list[tuple[str, dict[str, Any], str]] = [
    # hello
    ("versions empty", with_("hello", versions=[]), "versions"),
    ("versions too many", with_("hello", versions=[1] * 17), "versions"),
    ("version 0", with_("hello", versions=[0]), "versions[0]"),
    ("version 256", with_("hello", versions=[1, 256]), "versions[1]"),
    ("versions not a list", with_("hello", versions=1), "versions"),
    ("token missing", with_("hello", token=DROP), "token"),
    ("token oversize", with_("hello", token="x" * 513), "token"),
    ("token not str", with_("hello", token=b"tok"), "token"),
    ("role unknown", with_("hello", role="relay"), "role"),
    ("agent oversize", with_("hello", agent="a" * 257), "agent"),
    ("capabilities too many", with_("hello", capabilities=[f"c{i}" for i in range(33)]), "capabilities"),
    ("capability upper case", with_("hello", capabilities=["Alpha"]), "capabilities[0]"),
    ("capability empty", with_("hello", capabilities=["ok", ""]), "capabilities[1]"),
    ("capability leading dash", with_("hello", capabilities=["-x"]), "capabilities[0]"),
    ("capability too long", with_("hello", capabilities=["c" * 65]), "capabilities[0]"),
    # welcome
    ("welcome version 0", with_("welcome", version=0), "version"),
    ("welcome version 256", with_("welcome", version=256), "version"),
    ("session short", with_("welcome", session="abcdef0"), "session"),
    ("session long", with_("welcome", session="a" * 65), "session"),
    ("session not hex", with_("welcome", session="abcdefgh"), "session"),
    ("session upper", with_("welcome", session="ABCDEF01"), "session"),
    ("welcome capabilities too many", with_("welcome", capabilities=["c"] * 33), "capabilities"),
    ("renderers too many", with_("welcome", renderers=["r"] * 17), "renderers"),
    ("renderer bad name", with_("welcome", renderers=["Mesh Warp"]), "renderers[0]"),
    ("assets too many", with_("welcome", assets=[ASSET] * 1025), "assets"),
    ("asset bad", with_("welcome", assets=[ASSET, ASSET[:-1]]), "assets[1]"),
    ("max_message_bytes small", with_("welcome", max_message_bytes=1023), "max_message_bytes"),
    ("max_message_bytes big", with_("welcome", max_message_bytes=m.MAX_MESSAGE_BYTES + 1), "max_message_bytes"),
    # identity
    ("asset upper hex", with_("identity", asset=ASSET.upper()), "asset"),
    ("asset short", with_("identity", asset=ASSET[:63]), "asset"),
    ("asset Self", with_("identity", asset="Self", image=DROP, image_format=DROP), "asset"),
    ("asset path", with_("identity", asset="../etc/passwd"), "asset"),
    ("image empty", with_("identity", image=b""), "image"),
    ("image oversize", with_("identity", image=b"\x00" * (m.MAX_IMAGE_BYTES + 1)), "image"),
    ("image as str", with_("identity", image="img"), "image"),
    ("image_format gif", with_("identity", image_format="gif"), "image_format"),
    ("image without image_format", with_("identity", image_format=DROP), "image_format"),
    ("image_format without image", with_("identity", image=DROP), "image_format"),
    ("self with image", with_("identity", asset="self"), "image"),
    ("identity landmarks oversize", with_("identity", landmarks=b"\x00" * BIG), "landmarks"),
    ("embedding short", with_("identity", embedding=b"\x00" * (m.EMBEDDING_BYTES - 1)), "embedding"),
    ("embedding long", with_("identity", embedding=b"\x00" * (m.EMBEDDING_BYTES + 1)), "embedding"),
    ("activate int", with_("identity", activate=1), "activate"),
    ("identity_switch bad asset", with_("identity_switch", asset="x"), "asset"),
    ("identity_switch missing asset", with_("identity_switch", asset=DROP), "asset"),
    ("asset_request bad asset", with_("asset_request", asset=""), "asset"),
    # keyframe
    ("kf negative", with_("keyframe", kf=-1), "kf"),
    ("kf over u32", with_("keyframe", kf=2**32), "kf"),
    ("keyframe ts negative", with_("keyframe", ts_us=-1), "ts_us"),
    ("keyframe ts over i64", with_("keyframe", ts_us=2**63), "ts_us"),
    ("width small", with_("keyframe", width=m.MIN_SIDE - 1), "width"),
    ("width big", with_("keyframe", width=m.MAX_SIDE + 1), "width"),
    ("height small", with_("keyframe", height=0), "height"),
    ("height float", with_("keyframe", height=480.0), "height"),
    ("keyframe image missing", with_("keyframe", image=DROP), "image"),
    ("keyframe image empty", with_("keyframe", image=b""), "image"),
    ("keyframe image_format missing", with_("keyframe", image_format=DROP), "image_format"),
    ("keyframe image_format bmp", with_("keyframe", image_format="bmp"), "image_format"),
    ("keyframe alpha oversize", with_("keyframe", alpha=b"\x00" * (m.MAX_IMAGE_BYTES + 1)), "alpha"),
    ("keyframe alpha empty", with_("keyframe", alpha=b""), "alpha"),
    ("keyframe landmarks oversize", with_("keyframe", landmarks=b"\x00" * BIG), "landmarks"),
    ("keyframe box short", with_("keyframe", box=[0, 0, 10]), "box"),
    ("keyframe box negative", with_("keyframe", box=[-1, 0, 10, 10]), "box[0]"),
    ("keyframe box outside", with_("keyframe", box=[600, 0, 100, 10]), "box"),
    ("keyframe box empty", with_("keyframe", box=[0, 0, 0, 10]), "box"),
    ("keyframe parts without their size", with_("keyframe", parts=2), "image_bytes"),
    ("keyframe size without parts", with_("keyframe", image_bytes=10), "image_bytes"),
    ("keyframe first part as long as the whole", with_("keyframe", parts=2, image_bytes=1), "image"),
    ("keyframe too many parts", with_("keyframe", parts=65, image_bytes=10), "parts"),
    ("setup code bad name", with_("setup", code="Expression!"), "code"),
    ("setup payload oversize", with_("setup", payload=b"\x00" * BIG), "payload"),
    # control
    ("reason oversize", with_("keyframe_request", reason="r" * 257), "reason"),
    ("ping nonce negative", with_("ping", nonce=-1), "nonce"),
    ("ping nonce over u32", with_("ping", nonce=2**32), "nonce"),
    ("ping ts missing", with_("ping", ts_us=DROP), "ts_us"),
    ("pong ts negative", with_("pong", ts_us=-1), "ts_us"),
    ("pong nonce missing", with_("pong", nonce=DROP), "nonce"),
    ("fps negative", with_("stats", fps=-1.0), "fps"),
    ("fps too high", with_("stats", fps=1000.5), "fps"),
    ("kbps too high", with_("stats", kbps=1e6 + 1), "kbps"),
    ("frames negative", with_("stats", frames=-1), "frames"),
    ("dropped negative", with_("stats", dropped=-1), "dropped"),
    ("error code upper", with_("error", code="Busy"), "code"),
    ("error code empty", with_("error", code=""), "code"),
    ("error code long", with_("error", code="a" * 33), "code"),
    ("error message oversize", with_("error", message="m" * 513), "message"),
    ("error fatal str", with_("error", fatal="yes"), "fatal"),
    ("bye reason oversize", with_("bye", reason="r" * 257), "reason"),
    # envelope
    ("unknown field", with_("keyframe", extra=1), "extra"),
    ("unknown field on control", with_("bye", why="x"), "why"),
    ("unknown tag", {"t": "video", "data": b"raw"}, "t"),
    ("tag missing", {"seq": 1}, "t"),
    ("tag not str", {"t": 3}, "t"),
    ("tag wrong case", with_("bye", t="Bye"), "t"),
]


FRAME: list[Any] = ["f", 6, 11, 1, 0, [b"code", None]]
ACK: list[Any] = ["a", [[6, 1_000]]]


def frame_with(index: int, value: Any) -> list[Any]:
    out = list(FRAME)
    out[index] = value
    return out


# Stream messages are arrays: a field is named by its position.
BAD_STREAM: list[tuple[str, list[Any], str]] = [
    ("negative seq", frame_with(1, -1), "[1]"),
    ("seq over u32", frame_with(1, 2**32), "[1]"),
    ("seq bool", frame_with(1, True), "[1]"),
    ("dt negative", frame_with(2, -5), "[2]"),
    ("kf negative", frame_with(3, -1), "[3]"),
    ("face unknown", frame_with(4, 3), "[4]"),
    ("face as text", frame_with(4, "tracked"), "[4]"),
    ("codes not a list", frame_with(5, b"x"), "[5]"),
    ("too many codes", frame_with(5, [None] * (m.MAX_CODES + 1)), "[5]"),
    ("code oversize", frame_with(5, [b"\x00" * BIG]), "[5][0]"),
    ("code as text", frame_with(5, ["abc"]), "[5][0]"),
    ("intra not a bool", [*FRAME, 1], "[6]"),
    ("frame too long", [*FRAME, False, 1], None),
    ("frame too short", FRAME[:4], None),
    ("unknown array tag", ["v", 1], "[0]"),
    ("ack empty", ["a", []], "[1]"),
    ("ack too many", ["a", [[1, 1]] * (m.MAX_ACKS + 1)], "[1]"),
    ("ack seq negative", ["a", [[-1, 1]]], "[1][0][0]"),
    ("ack entry short", ["a", [[1]]], "[1][0]"),
]


def test_stream_bases_are_valid() -> None:
    assert isinstance(m.decode(pack(FRAME)), m.Frame) and isinstance(m.decode(pack(ACK)), m.Ack)


@pytest.mark.parametrize(("case", "value", "field"), BAD_STREAM, ids=[case for case, _, _ in BAD_STREAM])
def test_stream_rule_rejects_bad_case(case: str, value: list[Any], field: str | None) -> None:
    error = rejected(pack(value))
    assert error.field == field, f"{case}: {error}"


@pytest.mark.parametrize(("case", "value", "field"), BAD, ids=[case for case, _, _ in BAD])
def test_rule_rejects_bad_case(case: str, value: dict[str, Any], field: str) -> None:
    error = rejected(pack(value))
    assert error.field == field, f"{case}: {error}"
    assert f"(field {field})" in str(error)


@pytest.mark.parametrize("data", [pack(5), pack("frame"), pack(None), pack(b"\x00"), pack(1.5)],
                         ids=["int", "str", "nil", "bin", "float"])
def test_neither_map_nor_array_rejected(data: bytes) -> None:
    assert "Expected `object`" in str(rejected(data))


@pytest.mark.parametrize("data", [b"", b"\xc1", pack(FRAME)[:-3], pack(BASE["bye"]) + b"\x00", b"\x81"],
                         ids=["empty", "reserved opcode", "truncated", "trailing", "map without entries"])
def test_malformed_msgpack_rejected(data: bytes) -> None:
    assert "not a msgpack message" in str(rejected(data))


@pytest.mark.parametrize("data", [
    b"\x81\xa1t\xa1\x80",  # {"t": <invalid UTF-8>}
    b"\x82\xa1t\xa3bye\xa6reason\xa1\x80",  # reason: invalid UTF-8
    b"\x82\xa1t\xa3bye\xa1\x80\xa1x",  # key: invalid UTF-8
    b"\x82\xa1x" + b"\x91" * 100_000 + b"\xc0\xa1t\xa3bye",  # nesting deeper than any parser stack
], ids=["utf8 tag", "utf8 value", "utf8 key", "deep nesting"])
def test_hostile_encodings_rejected(data: bytes) -> None:
    rejected(data)


def test_non_str_key_rejected() -> None:
    rejected(b"\x81\x01\x02")  # {1: 2}


def test_oversize_frame_message_rejected() -> None:
    # Each code is within its own limit but the whole frame is over MAX_FRAME_MESSAGE_BYTES.
    value = frame_with(5, [b"\x00" * m.MAX_FRAME_FIELD_BYTES, b"\x00" * (40 * 1024)])
    data = pack(value)
    assert len(data) > m.MAX_FRAME_MESSAGE_BYTES
    assert "exceeds" in str(rejected(data))


def test_frame_at_the_field_limits_accepted() -> None:
    value = frame_with(5, [b"\x00" * m.MAX_FRAME_FIELD_BYTES, b"\x00" * (20 * 1024)])
    assert len(pack(value)) <= m.MAX_FRAME_MESSAGE_BYTES
    assert isinstance(m.decode(pack(value)), m.Frame)


def test_message_over_max_bytes_rejected_before_parsing() -> None:
    data = pack(with_("identity", image=b"\x00" * 3000))
    m.decode(data, max_bytes=4000)
    assert "exceeds the limit" in str(rejected_with_limit(data, 2000))


def rejected_with_limit(data: bytes, limit: int) -> MessageValidationError:
    with pytest.raises(MessageValidationError) as info:
        m.decode(data, max_bytes=limit)
    return info.value


def test_limit_boundaries_accepted() -> None:
    ok: list[Any] = [
        with_("hello", versions=[255] * 16, token="x" * 512, agent="a" * 256, capabilities=["c" * 64] * 32),
        with_("identity", image=b"\x00" * m.MAX_IMAGE_BYTES),
        with_("keyframe", width=m.MAX_SIDE, height=m.MIN_SIDE, ts_us=2**63 - 1, kf=2**32 - 1),
        ["f", 2**32 - 1, 2**32 - 1, 2**32 - 1, 2, [None] * m.MAX_CODES],
        ["a", [[2**32 - 1, 2**63 - 1]] * m.MAX_ACKS],
        with_("stats", fps=1000, kbps=1e6, frames=2**64 - 1),
        with_("error", code="a" * 32, message="m" * 512),
        with_("welcome", assets=[ASSET] * 1024, max_message_bytes=1024, session="a" * 64),
    ]
    for value in ok:
        m.decode(pack(value))


# --- properties -------------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
ts = st.integers(0, 2**63 - 1)
names = st.from_regex(r"[a-z0-9][a-z0-9_.:-]{0,63}", fullmatch=True)
assets = st.one_of(st.just("self"), st.binary(min_size=32, max_size=32).map(bytes.hex))
hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)
short = st.text(max_size=256)
small_bytes = st.binary(max_size=2048)
images = st.binary(min_size=1, max_size=4096)
formats: st.SearchStrategy[m.ImageFormat] = st.sampled_from(["avif", "webp", "jpeg", "png"])


def finite(low: float, high: float, exclude_min: bool = False) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, exclude_min=exclude_min)



@st.composite
def identities(draw: st.DrawFn) -> m.Identity:
    asset = draw(assets)
    image = None if asset == "self" else draw(st.none() | images)
    return m.Identity(
        asset=asset, image=image, image_format=None if image is None else draw(formats),
        landmarks=draw(st.none() | small_bytes),
        embedding=draw(st.none() | st.binary(min_size=m.EMBEDDING_BYTES, max_size=m.EMBEDDING_BYTES)),
        activate=draw(st.booleans()),
    )


@st.composite
def frames(draw: st.DrawFn) -> m.Frame:
    return m.Frame(seq=draw(u32), dt_ms=draw(u32), kf=draw(u32), face=draw(st.integers(0, 2)),
                   codes=draw(st.lists(st.none() | small_bytes, max_size=m.MAX_CODES)))


valid_messages = st.one_of(
    st.builds(m.Hello, versions=st.lists(st.integers(1, 255), min_size=1, max_size=16), token=st.text(max_size=512),
              agent=short, capabilities=st.lists(names, max_size=32)),
    st.builds(m.Welcome, version=st.integers(1, 255), session=st.binary(min_size=4, max_size=32).map(bytes.hex),
              capabilities=st.lists(names, max_size=32), renderers=st.lists(names, max_size=16),
              assets=st.lists(assets, max_size=50), max_message_bytes=st.integers(1024, m.MAX_MESSAGE_BYTES)),
    identities(),
    st.builds(m.IdentitySwitch, asset=assets),
    st.builds(m.AssetRequest, asset=hashes),
    st.builds(m.Keyframe, kf=u32, ts_us=ts, width=st.integers(m.MIN_SIDE, m.MAX_SIDE),
              height=st.integers(m.MIN_SIDE, m.MAX_SIDE), image=images, image_format=formats,
              alpha=st.none() | images, landmarks=st.none() | small_bytes),
    st.builds(m.Setup, code=names, payload=small_bytes),
    frames(),
    st.builds(m.Ack, frames=st.lists(st.tuples(u32, ts), min_size=1, max_size=m.MAX_ACKS)),
    st.builds(m.KeyframeRequest, reason=short),
    st.builds(m.Ping, nonce=u32, ts_us=ts),
    st.builds(m.Pong, nonce=u32, ts_us=ts),
    st.builds(m.Stats, fps=finite(0, 1000), kbps=finite(0, 1e6),
              frames=st.integers(0, 2**64 - 1), dropped=st.integers(0, 2**64 - 1)),
    st.builds(m.Error, code=st.from_regex(r"[a-z_]{1,32}", fullmatch=True), message=st.text(max_size=512),
              fatal=st.booleans()),
    st.builds(m.Bye, reason=short),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages)
def test_property_round_trip(message: m.Message) -> None:
    assert m.decode(m.encode(message)) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_property_arbitrary_bytes_only_raise_validation_error(data: bytes) -> None:
    with contextlib.suppress(MessageValidationError):
        m.decode(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
FIELD_NAMES = sorted({key for base in BASE.values() for key in base} | {
    "role", "agent", "capabilities", "renderers", "assets", "max_message_bytes", "landmarks", "embedding",
    "activate", "alpha", "confidence", "ref", "reason", "fps", "kbps", "frames", "dropped", "message", "fatal",
})


@st.composite
def near_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Maps with a real tag and real field names but arbitrary values: the validator's hard cases."""
    value = dict(BASE[draw(st.sampled_from(sorted(BASE)))])
    for key in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=4)):
        value[key] = draw(msgpack_values)
    return value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_messages())
def test_property_structured_garbage_only_raises_validation_error(value: dict[str, Any]) -> None:
    data = pack(value)
    try:
        message = m.decode(data)
    except MessageValidationError as exc:
        assert exc.field is None or exc.field.split("[")[0] in value or exc.field == "t", str(exc)
        return
    assert m.decode(m.encode(message)) == message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages, st.data())
def test_property_damaged_messages_only_raise_validation_error(message: m.Message, data: st.DataObject) -> None:
    raw = bytearray(m.encode(message))
    cut = data.draw(st.integers(0, len(raw)))
    damaged = raw[:cut]
    if damaged:
        index = data.draw(st.integers(0, len(damaged) - 1))
        damaged[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MessageValidationError):
        m.decode(bytes(damaged))
