"""Sans-I/O protocol state machines for both ends of a facewire link.

These objects never touch a socket or a clock of their own: the websocket shells feed
them the payload of each websocket message (bytes, or str for a text frame) with the
current time, call `tick(now)` now and then (pings, timeouts), hand every outgoing message
to `send()`, and write what `data_to_send()` returns. Hostile input is therefore tested
by calling `receive()` directly. A violation queues an `error` message and sets
`close`, after which the shell closes the websocket with that code and reason; so does
`bye` either way (`close_with_bye()` to send one).
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from facewire.shared.process.tokens import TokenBucket
from facewire.shared.wire import messages as m
from facewire.shared.wire.clock import ClockOffset
from facewire.shared.wire.errors import ErrorCode, ProtocolError


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_WELCOME = "await_welcome"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class HandshakeDone:
    """The peer was accepted (receiver side: the hello; sender side: the welcome)."""

    message: m.Hello | m.Welcome


@dataclass(frozen=True)
class MessageReceived:
    message: m.Message


@dataclass(frozen=True)
class ConnectionFailed:
    """The peer broke the protocol; `close` says how the shell must close the socket."""

    error: ProtocolError
    close: Close


Event = HandshakeDone | MessageReceived | ConnectionFailed


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = m.MAX_MESSAGE_BYTES
    messages_per_second: float = 240.0
    message_burst: float = 480.0
    bytes_per_second: float = 16 * 1024 * 1024
    byte_burst: float = 2 * m.MAX_MESSAGE_BYTES
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 20.0
    ack_interval_s: float = 0.05  # the receiver acks the frames that arrived at most this long ago
    # Liveness: each side pings every `ping_interval_s` and the peer answers at once, so a live link always
    # carries something; hearing nothing at all (not a byte, `heard()`) for `dead_after_s` means it is dead
    # (a cable pulled, a NAT forgot us), noticed within that time instead of TCP's ~15 min.
    ping_interval_s: float = 1.0
    dead_after_s: float = 4.0
    max_hello_bytes: int = 4096  # the largest message before the handshake (a `hello` fits in 1 KiB)


def close_reason(text: str) -> str:
    """`text` cut to the 123 UTF-8 bytes RFC 6455 allows; it may echo peer-chosen strings, so cut by bytes."""
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


def tokens_match(expected: str, given: str) -> bool:
    """Constant-time comparison of authentication tokens."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


NORMAL_CLOSURE = 1000


class _Connection:
    allowed: tuple[type, ...] = ()  # what the peer may send us
    sendable: tuple[type, ...] = ()  # what we may send the peer
    handshake: tuple[type, ...] = ()  # what we may send before the handshake is done
    # The message forms (m.WIRE_CAPABILITIES) this side offers in its hello or grants in its welcome.
    wire_capabilities: tuple[str, ...] = m.WIRE_CAPABILITIES
    packed_frames = False  # the session agreed on packed frames: `send` packs them
    keyframe_av1 = False  # the session agreed on `keyframe-av1`: the sender's keyframes may leave out the AVIF container

    def __init__(self, limits: Limits, now: float, wall_base_us: int | None = None) -> None:
        self.limits = limits
        self.state = State.AWAIT_HELLO
        self.close: Close | None = None
        self.last_activity = now
        self.last_heard = now
        # The shell's wall clock minus the `now` it passes (µs): pings are then stamped with the wall clock and
        # the peer's stamps measured against ours (None: stamped with `now`, no clock offset estimated).
        self.wall_base_us = wall_base_us
        self.heartbeat = Heartbeat(limits.ping_interval_s, wall_base_us=wall_base_us or 0)
        self.clock = ClockOffset()
        self._outgoing: list[bytes] = []

    def heard(self, now: float) -> None:
        """The transport delivered bytes from the peer at `now` (a part of a message counts: on a thin link
        one large message can take longer to arrive than `dead_after_s`)."""
        self.last_heard = max(self.last_heard, now)

    def silent_for(self, now: float) -> float:
        """Seconds since anything was heard from the peer."""
        return now - self.last_heard

    @property
    def rtt_ms(self) -> float | None:
        """The last measured round trip (a ping answered by its pong), None before the first."""
        return self.heartbeat.rtt_ms

    @property
    def clock_offset_us(self) -> int | None:
        """The peer's wall clock minus ours (µs), from the heartbeat; None until known, or without `wall_base_us`."""
        return None if self.wall_base_us is None else self.clock.offset_us

    def send(self, message: m.Message) -> bytes:
        """Encode a message for the peer and queue it; returns the bytes.

        Sending what this side may not send, or anything but the handshake before it is done, or
        anything once closed, is a bug in the caller and raises ValueError.
        """
        if not isinstance(message, self.sendable) or self.state is State.CLOSED or (
            self.state is not State.OPEN and not isinstance(message, (*self.handshake, m.Error))
        ):
            raise ValueError(f"cannot send `{type(message).__name__.lower()}` in state {self.state.value}")
        data = m.encode(message, self.packed_frames)
        self._outgoing.append(data)
        return data

    def close_with_bye(self, reason: str) -> None:
        """Say goodbye and close normally (the shell then closes the websocket with `close`)."""
        if self.state is State.OPEN:
            self.send(m.Bye(reason=reason[:256]))
        self.state = State.CLOSED
        self.close = Close(NORMAL_CLOSURE, close_reason(reason))

    def tick(self, now: float) -> list[Event]:
        """Timeouts, and a ping when one is due (the round trip comes back with its pong)."""
        events = self.check_timeouts(now)
        if self.state is State.OPEN:
            ping = self.heartbeat.due(now)
            if ping is not None:
                self.send(ping)
        return events

    def data_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def fail(self, error: ProtocolError) -> ConnectionFailed:
        """Queue an `error` message and mark the connection closed with the matching code."""
        if self.state is not State.CLOSED:
            self.send(m.Error(code=error.code.value, message=str(error)[:512], fatal=True))
        self.state = State.CLOSED
        self.close = Close(int(error.close_code), close_reason(str(error)))
        return ConnectionFailed(error, self.close)

    def _decode(self, data: bytes | str, now: float) -> m.Message:
        self.heard(now)
        if isinstance(data, str):
            raise ProtocolError(ErrorCode.TEXT_FRAME, "text frames are not part of the protocol")
        if len(data) > self.limits.max_message_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {len(data)} bytes exceeds {self.limits.max_message_bytes}")
        message = m.decode(data, self.limits.max_message_bytes)
        if not isinstance(message, self.allowed):
            raise ProtocolError(ErrorCode.UNEXPECTED, f"`{type(message).__name__.lower()}` is not sent to this side", "t")
        self.last_activity = now
        return message

    def _opened(self, message: m.Message, handshake: type, now: float) -> list[Event]:
        """A message after the handshake: a second handshake is a violation, pings are answered and
        pongs matched here, and `bye` closes the connection normally."""
        if isinstance(message, handshake):
            raise ProtocolError(ErrorCode.UNEXPECTED, f"{handshake.__name__.lower()} after the handshake", "t")
        if isinstance(message, m.Ping):
            self.send(m.Pong(nonce=message.nonce, ts_us=message.ts_us))
            if self.wall_base_us is not None:
                self.clock.stamped(message.ts_us, round(now * 1e6) + self.wall_base_us)
        elif isinstance(message, m.Pong):
            rtt_ms = self.heartbeat.answered(message, now)
            if rtt_ms is not None:
                self.clock.round_trip(round(rtt_ms * 1000))
        elif isinstance(message, m.Bye):
            self.state = State.CLOSED
            self.close = Close(NORMAL_CLOSURE, close_reason(f"bye: {message.reason}"))
        return [MessageReceived(message)]

    def check_timeouts(self, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        if self.state is not State.OPEN and now - self.last_activity > self.limits.handshake_timeout_s:
            return [self.fail(ProtocolError(ErrorCode.HANDSHAKE_TIMEOUT, "no handshake in time"))]
        if self.state is State.OPEN and now - self.last_heard > self.limits.dead_after_s:
            return [self.fail(ProtocolError(ErrorCode.UNRESPONSIVE, f"nothing heard for {self.limits.dead_after_s:g} s "
                                                                    "(pings unanswered): the link is dead"))]
        if self.state is State.OPEN and now - self.last_activity > self.limits.idle_timeout_s:
            return [self.fail(ProtocolError(ErrorCode.IDLE_TIMEOUT, f"nothing received for {self.limits.idle_timeout_s:g} s"))]
        return []


class ReceiverProtocol(_Connection):
    """The receiver's side of one connection: authenticates the hello, then yields messages."""

    allowed = m.SENDER_MESSAGES
    sendable = m.RECEIVER_MESSAGES
    handshake = (m.Welcome,)

    def __init__(
        self,
        token: str,
        now: float,
        *,
        limits: Limits | None = None,
        capabilities: Sequence[str] = (),
        renderers: Sequence[str] = (),
        assets: Sequence[str] = (),
        wall_base_us: int | None = None,
    ) -> None:
        super().__init__(limits or Limits(), now, wall_base_us)
        self._token = token
        self._capabilities = list(capabilities)
        self._renderers = list(renderers)
        self._assets = list(assets)[:1024]
        self._message_bucket = TokenBucket(self.limits.messages_per_second, self.limits.message_burst)
        self._byte_bucket = TokenBucket(self.limits.bytes_per_second, self.limits.byte_burst)
        self._arrivals: list[tuple[int, int]] = []  # frames not acked yet: (seq, arrival µs)
        self._last_seq: int | None = None  # frames' seq MUST increase (protocol.md 5)
        self._first_arrival = 0.0
        self.session_id = secrets.token_hex(8)
        self.version: int | None = None
        self.peer_capabilities: list[str] = []  # what the sender's hello offered
        self.peer_instance = ""  # the sender process's random id from its hello ("" when it sent none)

    def receive(self, data: bytes | str, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        try:
            if not self._message_bucket.take(1, now) or not self._byte_bucket.take(len(data), now):
                raise ProtocolError(ErrorCode.RATE_LIMITED, "message or byte rate over the limit")
            if self.state is State.AWAIT_HELLO and len(data) > self.limits.max_hello_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {len(data)} bytes before the handshake exceeds "
                                                         f"{self.limits.max_hello_bytes}")
            message = self._decode(data, now)
            if self.state is State.AWAIT_HELLO:
                return [self._accept(message)]
            if isinstance(message, m.Frame):
                self._arrived(message.seq, now)
            return self._opened(message, m.Hello, now)
        except ProtocolError as exc:
            return [self.fail(exc)]

    def _arrived(self, seq: int, now: float) -> None:
        if self._last_seq is not None and seq <= self._last_seq:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame seq {seq} does not follow {self._last_seq}", "seq")
        self._last_seq = seq
        if not self._arrivals:
            self._first_arrival = now
        self._arrivals.append((seq, int(now * 1e6)))
        if len(self._arrivals) >= m.MAX_ACKS:
            self._send_acks()

    def tick(self, now: float) -> list[Event]:
        """Timeouts and pings (every side), and the acks of frames that arrived `ack_interval_s` ago or more."""
        events = super().tick(now)
        if self._arrivals and self.state is State.OPEN and now - self._first_arrival >= self.limits.ack_interval_s:
            self._send_acks()
        return events

    @property
    def next_tick_s(self) -> float | None:
        """How soon the shell should call tick() again for the acks (None: no ack is pending)."""
        return self.limits.ack_interval_s if self._arrivals else None

    def _send_acks(self) -> None:
        self.send(m.Ack(frames=self._arrivals))
        self._arrivals = []

    def refuse(self, error: ProtocolError) -> ConnectionFailed:
        """Refuse a peer that passed the handshake (e.g. `busy`): the error replaces the queued `welcome`."""
        self._outgoing.clear()
        return self.fail(error)

    def _authorise(self, hello: m.Hello) -> None:
        """Raises unless the hello may open this connection: a sender with the token."""
        if hello.role != "sender":
            raise ProtocolError(ErrorCode.UNEXPECTED, "a receiver joins a relay's room, not another receiver", "role")
        if not tokens_match(self._token, hello.token):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "wrong token", "token")

    def _accept(self, message: m.Message) -> HandshakeDone:
        if not isinstance(message, m.Hello):
            raise ProtocolError(ErrorCode.UNEXPECTED, "the first message must be `hello`", "t")
        self._authorise(message)
        common = set(message.versions) & set(m.SUPPORTED_VERSIONS)
        if not common:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"receiver speaks versions {list(m.SUPPORTED_VERSIONS)}", "versions")
        self.version = max(common)
        self.peer_capabilities = list(message.capabilities)
        self.peer_instance = message.instance
        # the message forms both sides know go with the codes: the sender uses one only if the welcome grants it
        granted = [name for name in self.wire_capabilities if name in message.capabilities and name not in self._capabilities]
        self.packed_frames = m.PACKED_FRAMES in granted
        self.keyframe_av1 = m.KEYFRAME_AV1 in granted
        self.send(m.Welcome(
            version=self.version, session=self.session_id, capabilities=[*self._capabilities, *granted],
            renderers=self._renderers, assets=self._assets, max_message_bytes=self.limits.max_message_bytes,
        ))
        self.state = State.OPEN
        return HandshakeDone(message)


class RelayProtocol(ReceiverProtocol):
    """A relay's side of one connection into a room: a sender publishing (the relay answers as a receiver
    does) or a receiver joining (the relay then sends it what a sender sends, and `source`). Which one the
    hello's `role` says, and each role has its own token (None: that role may not enter)."""

    # A relay passes a sender's frames on as they came, to receivers that may join later and may not unpack them.
    wire_capabilities = ()

    def __init__(self, tokens: Mapping[str, str | None], now: float, *, limits: Limits | None = None,
                 capabilities_for: Callable[[str], Sequence[str]] = lambda role: ()) -> None:
        super().__init__("", now, limits=limits)
        self._tokens = tokens
        self._capabilities_for = capabilities_for  # the welcome's capabilities, by role, when the hello comes
        self.role: str | None = None

    def _authorise(self, hello: m.Hello) -> None:
        token = self._tokens.get(hello.role)
        if token is None or not tokens_match(token, hello.token):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"wrong token for a {hello.role} of this room", "token")
        self.role = hello.role
        self._capabilities = list(self._capabilities_for(hello.role))
        if hello.role == "receiver":
            self.allowed = m.JOINED_RECEIVER_SENDS
            self.sendable = m.JOINED_RECEIVER_GETS

    def forward(self, data: bytes) -> None:
        """Queue a sender's message, as validated bytes, for the receiver on this connection (the relay
        passes messages on without encoding them again)."""
        if self.role != "receiver" or self.state is not State.OPEN:
            raise ValueError(f"cannot forward to a {self.role} in state {self.state.value}")
        self._outgoing.append(data)


class SenderProtocol(_Connection):
    """The sender's side: sends hello, waits for welcome, then yields the receiver's messages."""

    allowed = m.RECEIVER_MESSAGES
    sendable = m.SENDER_MESSAGES
    handshake = (m.Hello,)
    role: Literal["sender", "receiver"] = "sender"

    def __init__(self, token: str, now: float, *, agent: str = "facewire", capabilities: Sequence[str] = (),
                 limits: Limits | None = None, instance: str = "", wall_base_us: int | None = None) -> None:
        super().__init__(limits or Limits(), now, wall_base_us)
        self.state = State.AWAIT_WELCOME
        self.welcome: m.Welcome | None = None
        offered = [*capabilities, *(name for name in self.wire_capabilities if name not in capabilities)]
        self.send(m.Hello(versions=list(m.SUPPORTED_VERSIONS), token=token, agent=agent, capabilities=offered,
                          instance=instance, role=self.role))

    def receive(self, data: bytes | str, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        try:
            message = self._decode(data, now)
            if self.state is State.AWAIT_WELCOME:
                if isinstance(message, m.Error):
                    self.state = State.CLOSED  # refused: the receiver is closing, no error goes back
                    raise ProtocolError(_known_code(message.code), f"receiver refused: {message.message}")
                if not isinstance(message, m.Welcome):
                    raise ProtocolError(ErrorCode.UNEXPECTED, "the first reply must be `welcome`", "t")
                if message.version not in m.SUPPORTED_VERSIONS:
                    raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"receiver chose version {message.version}", "version")
                self.welcome = message
                self.packed_frames = m.PACKED_FRAMES in self.wire_capabilities and m.PACKED_FRAMES in message.capabilities
                self.keyframe_av1 = m.KEYFRAME_AV1 in self.wire_capabilities and m.KEYFRAME_AV1 in message.capabilities
                self.state = State.OPEN
                return [HandshakeDone(message)]
            return self._opened(message, m.Welcome, now)
        except ProtocolError as exc:
            return [self.fail(exc)]


class JoinProtocol(SenderProtocol):
    """A receiver joining a relay's room: it dials and says hello as a sender does (`role` receiver,
    capabilities: the codes it decodes), then gets what a sender sends, each sender's run led by `source`."""

    allowed = m.JOINED_RECEIVER_GETS
    sendable = m.JOINED_RECEIVER_SENDS
    role = "receiver"
    wire_capabilities = ()  # it sends no frames (and unpacks whatever form the relay passes on)


def _known_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL


@dataclass
class Heartbeat:
    """Sends a ping every `interval_s` and tracks the round trip (used by both shells). Pings are stamped
    with `now` plus `wall_base_us`: the wall clock, when the shell gives its offset from `now`."""

    interval_s: float = 2.0
    next_nonce: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    last_sent: float = 0.0
    rtt_ms: float | None = None
    wall_base_us: int = 0

    def due(self, now: float) -> m.Ping | None:
        if now - self.last_sent < self.interval_s:
            return None
        self.last_sent = now
        self.next_nonce = (self.next_nonce + 1) % 2**32
        self.sent = {k: v for k, v in self.sent.items() if now - v < 30.0}
        self.sent[self.next_nonce] = now
        return m.Ping(nonce=self.next_nonce, ts_us=min(max(round(now * 1e6) + self.wall_base_us, 0), 2**63 - 1))

    def answered(self, pong: m.Pong, now: float) -> float | None:
        """The round trip this pong closes (ms), None for a nonce not (or no longer) awaited."""
        start = self.sent.pop(pong.nonce, None)
        if start is None:
            return None
        self.rtt_ms = (now - start) * 1000.0
        return self.rtt_ms
