"""The relay's websocket server: rooms at ws://HOST:PORT/rooms/NAME, a thin asyncio shell around
`RelayProtocol` (one per connection) and the pure `Room`s of relay/rooms.py.

A connection's hello says whether it publishes (`role` sender) or joins (`role` receiver). A sender may
name itself with `?name=NAME` (else the relay names it), a receiver may ask for one sender with
`?show=NAME`. Validation, rate limits, timeouts and errors are the protocol object's, as on the receiver.
A sender's messages are passed on as the bytes that arrived (validated once, never encoded again). The
outboxes that filled in one event-loop turn are written in one callback, each in one write, into a
small socket buffer; a receiver whose buffer is full is left to its writer task, which waits for it, so
a slow receiver's backlog stays in its outbox, where stale frames are dropped (relay/rooms.py). One
clock ticks every sender's connection (acks, pings, timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State as WebsocketState

from facewire.relay.access import ROOM_NAME, Access
from facewire.relay.rooms import AdmissionError, Lost, Room, Subscriber, Upstream
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.predictive import CodeError
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, ProtocolError
from facewire.shared.wire.protocol import ConnectionFailed, HandshakeDone, Limits, MessageReceived, RelayProtocol, State

log = logging.getLogger(__name__)
POLL_S = 0.5
WS_OPEN = WebsocketState.OPEN
TRY_AGAIN_LATER = 1013
# A receiver's socket and websocket buffers: a few frames and a keyframe part. Bigger ones would hold a slow
# receiver's backlog as seconds of stale frames (loopback's kernel buffers grow to MiBs); the outbox holds it instead.
DOWNSTREAM_BUFFER_BYTES = 8 * 1024
WRITE_BATCH = 64  # messages written to a receiver at a time


@dataclass
class RelayStats:
    messages_in: int = 0
    messages_out: int = 0
    refused: int = 0
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys((lost.value for lost in Lost), 0))
    # Each frame's time from its arrival to its write since the last report (the last 64 Ki when nobody reports).
    held_s: deque[float] = field(default_factory=lambda: deque(maxlen=65536))

    def as_dict(self, rooms: dict[str, Room] | None = None) -> dict[str, object]:
        """The counters, frames lost by cause including the receivers still joined to `rooms`."""
        lost = dict(self.lost)
        for room in (rooms or {}).values():
            for sub in room.subscribers.values():
                for cause, count in sub.outbox.lost.items():
                    lost[cause.value] += count
        held = sorted(self.held_s)
        self.held_s.clear()
        return {"messages_in": self.messages_in, "messages_out": self.messages_out, "refused": self.refused,
                "lost": lost, "frames_written": len(held), "held_ms_p50": _percentile_ms(held, 0.50),
                "held_ms_p95": _percentile_ms(held, 0.95)}


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    return None if not ordered else round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


class Bridge:
    """Where a relay's rooms meet other relays' (relay/bridge.py: Redis); this one joins nothing."""

    async def sender_started(self, room: str, sender: str, codes: list[str]) -> None:
        """A sender connected to this relay publishes in `room`."""

    def sender_message(self, room: str, sender: str, raw: bytes, message: m.Message) -> None:
        """One of its messages, validated: the bytes that arrived and what they decode to; queued, never waited for."""

    async def sender_ended(self, room: str, sender: str) -> None:
        """It left."""

    async def upstream(self, request: Upstream, origin: str) -> None:
        """A request for a sender connected to relay `origin`."""

    async def watch(self, room: str) -> None:
        """The first local receiver joined `room`: start receiving its remote senders."""

    async def unwatch(self, room: str) -> None:
        """The last local receiver left `room`."""

    async def close(self) -> None:
        """The relay stops."""


@dataclass(eq=False)
class _Downlink:
    """A joined receiver's connection and what is written to it."""

    ws: ServerConnection
    protocol: RelayProtocol
    sub: Subscriber
    wake: asyncio.Event  # its writer task's turn
    busy: bool = False  # the writer task is writing (or waiting for the socket): the callback leaves it alone


@dataclass
class _Path:
    room: str
    name: str | None
    show: str | None


def parse_path(path: str) -> _Path | str:
    """`/rooms/NAME?name=SENDER&show=SENDER`, or why not."""
    parts = urlsplit(path)
    segments = parts.path.split("/")
    if len(segments) != 3 or segments[1] != "rooms" or not ROOM_NAME.match(segments[2]):
        return "the relay serves ws://HOST:PORT/rooms/NAME (NAME: lower-case letters, digits, _ . : -)"
    query = parse_qs(parts.query, max_num_fields=4)
    values: dict[str, str | None] = {}
    for key in ("name", "show"):
        given = query.get(key, [])
        if len(given) > 1 or (given and not ROOM_NAME.match(given[0])):
            return f"`{key}` must be one name (lower-case letters, digits, _ . : -)"
        values[key] = given[0] if given else None
    return _Path(segments[2], values["name"], values["show"])


@dataclass
class RelayServer:
    access: Access
    limits: Limits = field(default_factory=Limits)
    bridge: Bridge = field(default_factory=Bridge)
    max_connections: int = 4096
    max_senders_per_room: int = 16
    max_receivers_per_room: int = 256
    max_frame_age_s: float = 0.25  # per receiver: queued frames older than this are stale (latest wins)
    downstream_buffer_bytes: int = DOWNSTREAM_BUFFER_BYTES
    relay_id: str = field(default_factory=lambda: secrets.token_hex(4))
    rooms: dict[str, Room] = field(default_factory=dict)
    stats: RelayStats = field(default_factory=RelayStats)
    _senders: dict[tuple[str, str], Callable[[m.Message], Awaitable[None]]] = field(default_factory=dict)
    _ready_links: dict[_Downlink, None] = field(default_factory=dict)  # receivers to write to (a set, in order)
    _write_scheduled: bool = False
    _ticking: dict[ServerConnection, RelayProtocol] = field(default_factory=dict)  # senders, on `_clock`
    _clock: asyncio.Task[None] | None = None
    _closing: set[asyncio.Task[None]] = field(default_factory=set)
    _connections: int = 0
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> Server:
        return await serve(
            self._handle, host, port, ssl=ssl_context, max_size=self.limits.max_message_bytes + 64,
            ping_interval=None, compression=None, max_queue=4, write_limit=self.downstream_buffer_bytes,
            process_request=self._check_path,
        )

    def _check_path(self, ws: ServerConnection, request: Request) -> Response | None:
        parsed = parse_path(request.path)
        if isinstance(parsed, str):
            return ws.respond(HTTPStatus.NOT_FOUND, parsed + "\n")
        if self.access.tokens(parsed.room) is None:
            return ws.respond(HTTPStatus.NOT_FOUND, f"no room {parsed.room!r} on this relay\n")
        return None

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.max_senders_per_room, self.max_receivers_per_room)
        return room

    def drop_room_if_empty(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None and not room.subscribers and not room.publications and not room.joining:
            del self.rooms[name]

    async def _handle(self, ws: ServerConnection) -> None:
        parsed = parse_path(ws.request.path if ws.request else "")
        tokens = None if isinstance(parsed, str) else self.access.tokens(parsed.room)
        if isinstance(parsed, str) or tokens is None:
            return
        if self._connections >= self.max_connections:
            self.stats.refused += 1
            await ws.close(TRY_AGAIN_LATER, "too many connections")
            return
        self._connections += 1
        protocol = RelayProtocol(tokens, time.monotonic(), limits=self.limits,
                                 capabilities_for=lambda role: self._welcome_codes(parsed.room, role))
        try:
            hello = await self._handshake(ws, protocol)
            if hello is not None:
                await self._admit(ws, protocol, parsed, hello)
        except websockets.exceptions.ConnectionClosed as exc:
            log.info("%s: connection closed (%s)", _peer(ws), exc)
        finally:
            self._connections -= 1
            if protocol.close is not None:
                with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                    await _flush(ws, protocol)
                    await ws.close(protocol.close.code, protocol.close.reason)

    def _welcome_codes(self, room: str, role: str) -> list[str]:
        """A sender negotiates its codes from these; a receiver is told the room's."""
        known = self.rooms.get(room)
        if role == "sender":
            return list(FIELD_CODECS) if known is None else known.accepted_codes()
        return [] if known is None else sorted(known.codes)

    async def _handshake(self, ws: ServerConnection, protocol: RelayProtocol) -> m.Hello | None:
        """Until the hello is taken (its welcome still queued, so a refusal can replace it) or the link fails."""
        while protocol.state is State.AWAIT_HELLO:
            try:
                data: bytes | str | None = await asyncio.wait_for(ws.recv(), POLL_S)
            except TimeoutError:
                data = None
            now = time.monotonic()
            for event in protocol.tick(now) if data is None else protocol.receive(data, now):
                if isinstance(event, HandshakeDone) and isinstance(event.message, m.Hello):
                    return event.message
                if isinstance(event, ConnectionFailed):
                    log.warning("%s: closing (%d) after %s: %s", _peer(ws), event.close.code, event.error.code.value,
                                event.error)
        return None

    async def _admit(self, ws: ServerConnection, protocol: RelayProtocol, path: _Path, hello: m.Hello) -> None:
        if not self.access.enter(hello.token, path.room):
            self._refuse(ws, protocol, ProtocolError(ErrorCode.BUSY, "this token holds its rooms already"))
            return
        try:
            if protocol.role == "sender":
                await self._publish(ws, protocol, path, hello)
            else:
                await self._subscribe(ws, protocol, path, hello)
        finally:
            self.access.leave(hello.token, path.room)
            self.drop_room_if_empty(path.room)

    def _refuse(self, ws: ServerConnection, protocol: RelayProtocol, error: ProtocolError) -> None:
        self.stats.refused += 1
        protocol.refuse(error)
        log.warning("%s: refused: %s", _peer(ws), error)

    # --- a sender publishing ---------------------------------------------------------------------------

    async def _publish(self, ws: ServerConnection, protocol: RelayProtocol, path: _Path, hello: m.Hello) -> None:
        room = self.room(path.room)
        name = path.name or f"s-{secrets.token_hex(3)}"
        try:
            codes = negotiate(hello.capabilities, room.accepted_codes())
            room.publish_start(name, codes, time.monotonic())
        except CodeError as exc:
            self._refuse(ws, protocol, ProtocolError(ErrorCode.UNSUPPORTED_CODE, str(exc), "capabilities"))
            return
        except AdmissionError as exc:
            self._refuse(ws, protocol, ProtocolError(ErrorCode(exc.code), str(exc), exc.field))
            return
        log.info("%s: sender %r publishes in room %r (codes %s)", _peer(ws), name, path.room, codes)
        key = (path.room, name)
        self._senders[key] = lambda message: self._send_upstream(ws, protocol, message)
        await self.bridge.sender_started(path.room, name, codes)
        try:
            await _flush(ws, protocol)
            await self._read_sender(ws, protocol, room, name)
        finally:
            del self._senders[key]
            room.publish_end(name)
            await self.bridge.sender_ended(path.room, name)

    async def _read_sender(self, ws: ServerConnection, protocol: RelayProtocol, room: Room, name: str) -> None:
        """Every message as it comes (no timer per message: thousands a second); the senders' clock
        (`_tick_senders`) sends the acks and pings and notices timeouts."""
        self._ticking[ws] = protocol
        if self._clock is None:
            self._clock = asyncio.create_task(self._tick_senders())
        try:
            async for data in ws:
                now = time.monotonic()
                for event in protocol.receive(data, now):
                    if isinstance(event, ConnectionFailed):
                        log.warning("%s: closing (%d) after %s: %s", _peer(ws), event.close.code, event.error.code.value,
                                    event.error)
                    elif isinstance(event, MessageReceived) and isinstance(data, bytes):
                        self.stats.messages_in += 1
                        message = event.message
                        if isinstance(message, _CARRIED):
                            for request in room.publish(name, message, data, now):
                                await self.deliver(request)
                            self.bridge.sender_message(room.name, name, data, message)
                for out in protocol.data_to_send():  # a pong, an error (no coroutine per message for nothing)
                    await ws.send(out)
                if protocol.state is State.CLOSED:
                    break
        finally:
            self._ticking.pop(ws, None)

    async def _tick_senders(self) -> None:
        """One clock for every sender's connection: each one's acks (every `ack_interval_s`, as the protocol
        wants), pings and timeouts, written in one write per connection. A task per sender waking twenty
        times a second cost a loaded relay as much as a tenth of its time."""
        while self._ticking:
            await asyncio.sleep(self.limits.ack_interval_s)
            now = time.monotonic()
            for ws, protocol in list(self._ticking.items()):
                protocol.tick(now)
                if protocol.state is State.CLOSED:  # a timeout: the error goes, then the close ends its reader
                    del self._ticking[ws]
                    closing = asyncio.create_task(_close(ws, protocol))
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                # (A sender that does not read leaves what its protocol object queued there, as a full socket did.)
                elif ws.protocol.state is WS_OPEN and ws.transport.get_write_buffer_size() < self.downstream_buffer_bytes \
                        and (out := protocol.data_to_send()):
                    try:
                        _write_now(ws, out)
                    except Exception:  # this connection's reader meets it; the clock goes on for the others
                        log.exception("%s: writing failed", _peer(ws))
        self._clock = None

    async def _send_upstream(self, ws: ServerConnection, protocol: RelayProtocol, message: m.Message) -> None:
        if protocol.state is State.OPEN:
            protocol.send(message)
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await _flush(ws, protocol)

    async def deliver(self, request: Upstream, remote: bool = False) -> None:
        """A request for a sender: to its connection here, or through the bridge to its relay. A keyframe
        request from another relay passes the sender's own gate here too (each relay gates its own)."""
        room = self.rooms.get(request.room)
        publication = None if room is None else room.publications.get(request.sender)
        if publication is None:
            return
        send = self._senders.get((request.room, request.sender))
        if send is not None:
            gated = isinstance(request.message, (m.KeyframeRequest, m.IntraRequest))
            if not remote or not gated or publication.want_intra(time.monotonic()):
                await send(request.message)
        elif publication.origin:
            await self.bridge.upstream(request, publication.origin)

    # --- a receiver joining ----------------------------------------------------------------------------

    async def _subscribe(self, ws: ServerConnection, protocol: RelayProtocol, path: _Path, hello: m.Hello) -> None:
        room = self.room(path.room)
        wake = asyncio.Event()
        key = next(self._keys)
        sub = Subscriber(key, list(hello.capabilities), path.show)
        sub.outbox.max_age_s = self.max_frame_age_s
        link = _Downlink(ws, protocol, sub, wake)
        sub.outbox.notify = lambda: self._ready(link)
        # While this receiver joins, the room is neither dropped nor unwatched: watching awaits Redis, and a room
        # dropped meanwhile (it had nobody yet) would leave this receiver in a room no sender ever reaches.
        room.joining += 1
        try:
            if not room.subscribers and room.joining == 1:
                await self.bridge.watch(path.room)  # remote senders become publications before the receiver chooses
            requests = room.join(sub, time.monotonic())
        except AdmissionError as exc:
            self._refuse(ws, protocol, ProtocolError(ErrorCode(exc.code), str(exc), exc.field))
            if not room.subscribers and room.joining == 1:
                await self.bridge.unwatch(path.room)
            return
        finally:
            room.joining -= 1
        log.info("%s: receiver joined room %r (shows %r)", _peer(ws), path.room, sub.shown)
        _limit_send_buffer(ws, self.downstream_buffer_bytes)
        for request in requests:
            await self.deliver(request)
        writer = asyncio.create_task(self._write_receiver(link))
        try:
            await self._read_receiver(ws, protocol, room, key, wake, writer)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.exceptions.ConnectionClosed):
                await writer
            for lost, count in sub.outbox.lost.items():
                self.stats.lost[lost.value] += count
            room.leave(key)
            if not room.subscribers and not room.joining:
                await self.bridge.unwatch(path.room)

    async def _read_receiver(self, ws: ServerConnection, protocol: RelayProtocol, room: Room, key: int,
                             wake: asyncio.Event, writer: asyncio.Task[None]) -> None:
        ticker = asyncio.create_task(_tick(ws, protocol, lambda: POLL_S, wake))
        try:
            async for data in ws:
                now = time.monotonic()
                for event in protocol.receive(data, now):
                    if isinstance(event, ConnectionFailed):
                        log.warning("%s: closing (%d) after %s: %s", _peer(ws), event.close.code,
                                    event.error.code.value, event.error)
                    elif isinstance(event, MessageReceived):
                        for request in room.from_receiver(key, event.message, now):
                            await self.deliver(request)
                wake.set()  # pongs, errors and what the request put in the outbox go out with the writer
                if protocol.state is State.CLOSED or writer.done():
                    break
        finally:
            ticker.cancel()
        if writer.done():
            writer.result()

    def _ready(self, link: _Downlink) -> None:
        """A receiver's outbox has something: written once this event-loop turn's messages are all in."""
        self._ready_links[link] = None
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_ready)

    def _write_ready(self) -> None:
        """Write the outboxes that filled this turn straight to their sockets, all in one callback (a writer
        task woken per receiver and message cost more than the write itself); a receiver whose socket is
        full, or that is closing, is left to its writer task, which waits for it."""
        self._write_scheduled = False
        ready, self._ready_links = self._ready_links, {}
        for link in ready:
            if link.busy or link.ws.protocol.state is not WS_OPEN:
                link.wake.set()
                continue
            try:
                while link.ws.transport.get_write_buffer_size() < self.downstream_buffer_bytes and (out := self._take(link)):
                    _write_now(link.ws, out)
            except Exception:  # this receiver's writer task meets it again and ends its connection; the others go on
                log.exception("%s: writing failed", _peer(link.ws))
            if link.sub.outbox.items:
                link.wake.set()

    def _take(self, link: _Downlink) -> list[bytes]:
        """The next batch for a receiver, as websocket messages: its outbox's items and the protocol's own."""
        batch, now = 0, time.monotonic()
        while batch < WRITE_BATCH and link.protocol.state is State.OPEN and (raw := link.sub.outbox.pop(now)) is not None:
            link.protocol.forward(raw)
            batch += 1
        self.stats.messages_out += batch
        self.stats.held_s.extend(link.sub.outbox.held_s)
        link.sub.outbox.held_s.clear()
        return link.protocol.data_to_send()

    async def _write_receiver(self, link: _Downlink) -> None:
        """What the callback leaves: a receiver whose socket was full (its outbox holds the backlog, where frames
        grow stale), the protocol's pings, and the close of a connection that ends."""
        while link.protocol.state is not State.CLOSED:
            await link.wake.wait()
            link.wake.clear()
            link.busy = True
            try:
                while out := self._take(link):
                    if link.ws.protocol.state is WS_OPEN:
                        _write_now(link.ws, out)
                        await link.ws.drain()  # while the receiver's buffers are full
                    else:
                        for data in out:
                            await link.ws.send(data)  # raises ConnectionClosed
            finally:
                link.busy = False

    async def shutdown(self, server: Server) -> None:
        server.close()
        await server.wait_closed()
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock


_CARRIED = (*m.STATE_MESSAGES, *m.STREAM_MESSAGES)


async def _flush(ws: ServerConnection, protocol: RelayProtocol) -> None:
    for data in protocol.data_to_send():
        await ws.send(data)


async def _tick(ws: ServerConnection, protocol: RelayProtocol, period: Callable[[], float],
                wake: asyncio.Event | None = None) -> None:
    """The protocol's clock for a connection read without timeouts: acks, pings, idle timeout. Writes what it
    queues itself, or wakes the connection's writer (`wake`) when another task writes for it."""
    while protocol.state is not State.CLOSED:
        await asyncio.sleep(period())
        protocol.tick(time.monotonic())
        if wake is not None:
            wake.set()
        else:
            await _flush(ws, protocol)
    await _close(ws, protocol)


async def _close(ws: ServerConnection, protocol: RelayProtocol) -> None:
    """After a timeout: the error goes, then the close ends the connection's reader."""
    if protocol.close is not None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await _flush(ws, protocol)
            await ws.close(protocol.close.code, protocol.close.reason)


def _write_now(ws: ServerConnection, out: list[bytes]) -> None:
    """Messages framed by websockets' own protocol object, written in one write: one trip through the kernel
    for the batch, not one per message (what a per-message `send` did, or TCP_CORK around it: two
    setsockopt calls a batch). The connection must be open."""
    for data in out:
        ws.protocol.send_binary(data)
    ws.transport.write(b"".join(ws.protocol.data_to_send()))


def _limit_send_buffer(ws: ServerConnection, size: int) -> None:
    """A small kernel buffer, so a receiver that reads slowly pushes back on its writer within a few frames
    (loopback would otherwise buffer megabytes: seconds of stale frames)."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
