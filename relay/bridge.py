"""Relays sharing rooms through Redis (facewire-relay --redis URL): pub/sub carries what senders publish,
and Redis keys keep each sender's state, with an expiry, for relays that start watching a room later.

- Channel `fw:room:NAME`: what the senders connected to any relay publish in room NAME, as msgpack lists
  of envelopes [origin relay, kind, sender, data, codes] (kind `a` a sender announces itself and its codes,
  again every ANNOUNCE_S; `m` one of its messages, the bytes that arrived; `f` and `i` one of its frames,
  delta and intra: the relays trust each other, so the one the sender is connected to validates a frame
  and the others pass its bytes on without decoding them; `b` it left). A relay subscribes while it has
  receivers in the room, and skips its own envelopes.
- Channel `fw:relay:ID`: requests (`u`: keyframe and asset requests) for the senders connected to relay ID.
- Key `fw:state:ROOM:SENDER`: msgpack [origin, codes, [state messages]] (relay/rooms.py Publication's
  snapshot), written when the state changes and refreshed every ANNOUNCE_S, expiring after STATE_TTL_S.

A relay that dies stops announcing: other relays drop its senders after REMOTE_TIMEOUT_S and their state
expires from Redis; nothing else is lost. Envelopes queued in one event-loop turn go out in one write,
one PUBLISH per room, and the subscription's messages are taken in its read callback, on connections of
the bridge's own (relay/resp.py: redis-py's per-reply awaits cost more than the rest of a frame's trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import msgspec
import redis.asyncio as redis

from facewire.relay.resp import Endpoint, Publisher, Subscriber, command
from facewire.relay.resp import close as close_link
from facewire.relay.rooms import Upstream
from facewire.relay.server import Bridge
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import MessageValidationError

if TYPE_CHECKING:
    from facewire.relay.server import RelayServer

log = logging.getLogger(__name__)
ANNOUNCE_S = 2.0
REMOTE_TIMEOUT_S = 10.0
STATE_TTL_S = 30
RECONNECT_S = 0.5
# Frames waiting for Redis (a write of the last batch not done yet) beyond this many mean Redis is not keeping
# up: they are dropped rather than queued without bound (~1/3 s of 200 streams at 30 fps, ~1 MB at 16 kbps frames).
MAX_QUEUED_FRAMES = 2048

Envelope = tuple[str, str, str, bytes, list[str]]
_encoder = msgspec.msgpack.Encoder()
_envelopes = msgspec.msgpack.Decoder(list[tuple[str, str, str, bytes, list[str]]])
_state = msgspec.msgpack.Decoder(tuple[str, list[str], list[bytes]])


def room_channel(room: str) -> str:
    return f"fw:room:{room}"


def relay_channel(relay_id: str) -> str:
    return f"fw:relay:{relay_id}"


def state_key(room: str, sender: str) -> str:
    return f"fw:state:{room}:{sender}"


class RedisBridge(Bridge):
    def __init__(self, client: redis.Redis, endpoint: Endpoint, server: RelayServer) -> None:
        self.client = client  # the rare commands: state reads, scans, deletes
        self.endpoint = endpoint
        self.server = server
        self._out: Publisher | None = None  # PUBLISH and SET, pipelined (relay/resp.py)
        self._in: Subscriber | None = None
        self._channels = {relay_channel(server.relay_id)}  # what this relay subscribes to (again after a reconnect)
        self._outgoing: list[tuple[str, Envelope]] = []
        self._queued_frames = 0  # frame envelopes among `_outgoing`
        # Senders whose frames were lost on the way to Redis: the other relays' receivers would decode the next
        # delta frame against one they never got, so their frames go again from an intra frame on (asked for).
        self._gaps: set[tuple[str, str]] = set()
        self.frames_lost = 0
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        # Requests for senders that the subscriber's read callback found, delivered by a task (delivering awaits).
        self._requests: asyncio.Queue[tuple[Upstream, bool]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    @classmethod
    async def connect(cls, url: str, server: RelayServer) -> RedisBridge:
        # A bounded pool that waits for a free connection: a hundred receivers joining at once must not open a
        # hundred connections to Redis (redis-py's default pool refuses the one over its limit instead).
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=10))
        await client.ping()
        bridge = cls(client, Endpoint.from_url(url), server)
        bridge._out = await Publisher.connect(bridge.endpoint)
        bridge._in = await Subscriber.connect(bridge.endpoint, bridge._message)
        await bridge._in.subscribe(sorted(bridge._channels))
        bridge._tasks = [asyncio.create_task(task) for task in (bridge._write(), bridge._keep_subscribed(),
                                                                 bridge._beat(), bridge._deliver())]
        return bridge

    # --- what this relay's senders do --------------------------------------------------------------

    async def sender_started(self, room: str, sender: str, codes: list[str]) -> None:
        self._queue(room_channel(room), (self.server.relay_id, "a", sender, b"", codes))
        self._dirty.add((room, sender))

    def sender_message(self, room: str, sender: str, raw: bytes, message: m.Message) -> None:
        if isinstance(message, m.Frame):  # validated here: the other relays take it on its kind, undecoded
            if (room, sender) in self._gaps:
                if not message.intra:
                    self.frames_lost += 1
                    return
                self._gaps.discard((room, sender))
            self._queue(room_channel(room), (self.server.relay_id, "i" if message.intra else "f", sender, raw, []))
            self._queued_frames += 1
            if self._queued_frames > MAX_QUEUED_FRAMES:
                frames = [item for item in self._outgoing if item[1][1] in ("f", "i")]
                self._outgoing = [item for item in self._outgoing if item[1][1] not in ("f", "i")]
                self._queued_frames = 0
                self._lost(frames, "Redis is not keeping up")
            return
        self._queue(room_channel(room), (self.server.relay_id, "m", sender, raw, []))
        if isinstance(message, m.STATE_MESSAGES):
            self._dirty.add((room, sender))

    async def sender_ended(self, room: str, sender: str) -> None:
        self._queue(room_channel(room), (self.server.relay_id, "b", sender, b"", []))
        self._dirty.discard((room, sender))
        with contextlib.suppress(redis.RedisError):
            await self.client.delete(state_key(room, sender))

    async def upstream(self, request: Upstream, origin: str) -> None:
        self._queue(relay_channel(origin), (self.server.relay_id, "u", f"{request.room}/{request.sender}",
                                            m.encode(request.message), []))

    def _queue(self, channel: str, envelope: Envelope) -> None:
        self._outgoing.append((channel, envelope))
        self._wake.set()

    def _lost(self, outgoing: list[tuple[str, Envelope]], why: str) -> None:
        """Envelopes that will not reach Redis: each sender whose frames are among them is sent on from an intra frame."""
        gaps = {(channel.removeprefix("fw:room:"), envelope[2]) for channel, envelope in outgoing if envelope[1] in ("f", "i")}
        self.frames_lost += sum(1 for _, envelope in outgoing if envelope[1] in ("f", "i"))
        for room, sender in gaps - self._gaps:
            self._requests.put_nowait((Upstream(room, sender, m.IntraRequest(reason=f"relay: frames lost, {why}")), True))
        self._gaps |= gaps
        if gaps:
            log.warning("redis: %s: frames of %d sender(s) dropped; they go on from an intra frame", why, len(gaps))

    async def _write(self) -> None:
        """What this relay's senders did in one event-loop turn: one write of SETs and PUBLISHes, one PUBLISH
        per channel, their replies not waited for (only Redis's pace is: asyncio's write-buffer limits)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            outgoing, self._outgoing = self._outgoing, []
            self._queued_frames = 0
            dirty, self._dirty = self._dirty, set()
            by_channel: dict[str, list[Envelope]] = {}
            for channel, envelope in outgoing:
                by_channel.setdefault(channel, []).append(envelope)
            commands = [value for room, sender in dirty if (value := self._state_command(room, sender)) is not None]
            commands += [command("PUBLISH", channel, _encoder.encode(envelopes)) for channel, envelopes in by_channel.items()]
            try:
                link = await self._publisher()
                link.send(commands)
                await link.writable()
            except (OSError, TimeoutError) as exc:
                self.errors += 1
                self._out = None
                log.warning("redis: %s (%d envelopes lost)", exc or type(exc).__name__, len(outgoing))
                self._lost(outgoing, "Redis is unreachable")
                await asyncio.sleep(RECONNECT_S)

    async def _publisher(self) -> Publisher:
        if self._out is None or not self._out.open:
            self._out = await Publisher.connect(self.endpoint)
        return self._out

    def _state_command(self, room_name: str, sender: str) -> bytes | None:
        room = self.server.rooms.get(room_name)
        publication = None if room is None else room.publications.get(sender)
        if publication is None or publication.origin:
            return None
        value = _encoder.encode((self.server.relay_id, publication.codes, publication.snapshot()))
        return command("SET", state_key(room_name, sender), value, "EX", str(STATE_TTL_S))

    async def _beat(self) -> None:
        """Announce this relay's senders (and refresh their state's expiry); forget remote senders gone quiet."""
        while True:
            await asyncio.sleep(ANNOUNCE_S)
            now = time.monotonic()
            for room in list(self.server.rooms.values()):
                for publication in list(room.publications.values()):
                    if not publication.origin:
                        self._queue(room_channel(room.name), (self.server.relay_id, "a", publication.name, b"",
                                                              publication.codes))
                        self._dirty.add((room.name, publication.name))
                    elif now - publication.last_seen > REMOTE_TIMEOUT_S:
                        log.info("room %r: sender %r on relay %s went quiet", room.name, publication.name,
                                 publication.origin)
                        room.publish_end(publication.name)
                self.server.drop_room_if_empty(room.name)

    # --- other relays' senders ---------------------------------------------------------------------

    async def watch(self, room: str) -> None:
        """Subscribe to the room, then take the state of its senders on other relays from Redis. Without Redis
        the room still works locally; a remote sender appears with its next announcement, and a receiver that
        lacks its keyframe asks for one."""
        self._channels.add(room_channel(room))
        try:
            if self._in is not None:
                await self._in.subscribe([room_channel(room)])
            await self._load_state(room)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.errors += 1
            log.warning("redis: cannot watch room %r yet: %s", room, exc or type(exc).__name__)

    async def _load_state(self, room: str) -> None:
        now = time.monotonic()
        async for key in self.client.scan_iter(match=state_key(room, "*"), count=256):
            value = await self.client.get(key)
            if not isinstance(value, bytes):
                continue
            try:
                origin, codes, snapshot = _state.decode(value)
            except msgspec.DecodeError:
                continue
            if origin == self.server.relay_id:
                continue
            sender = key.decode().rsplit(":", 1)[1]
            self._remote_message(room, origin, "a", sender, b"", codes, now)
            for raw in snapshot:
                self._remote_message(room, origin, "m", sender, raw, [], now)

    async def unwatch(self, room: str) -> None:
        self._channels.discard(room_channel(room))
        if self._in is not None:
            try:
                self._in.unsubscribe([room_channel(room)])
            except OSError as exc:
                self.errors += 1
                log.warning("redis: %s", exc)
        known = self.server.rooms.get(room)
        if known is not None:
            for name, publication in list(known.publications.items()):
                if publication.origin:
                    known.publish_end(name)

    async def _keep_subscribed(self) -> None:
        """A subscription lost (Redis restarted, the link broke) is opened again, with every channel this
        relay watches and the state of their senders; what was published meanwhile is lost."""
        while True:
            if self._in is not None:
                await self._in.lost
                log.warning("redis: the subscription closed; subscribing again")
                self._in = None
            await asyncio.sleep(RECONNECT_S)
            try:
                link = await Subscriber.connect(self.endpoint, self._message)
                subscribed: set[str] = set()
                while missing := self._channels - subscribed:  # rooms watched while this awaited too
                    await link.subscribe(sorted(missing))
                    subscribed |= missing
                link.unsubscribe(sorted(subscribed - self._channels))  # and rooms unwatched meanwhile
                self._in = link
                for channel in sorted(self._channels):
                    if channel.startswith("fw:room:"):
                        await self._load_state(channel.removeprefix("fw:room:"))
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.errors += 1
                log.warning("redis: cannot subscribe yet: %s", exc or type(exc).__name__)

    def _message(self, channel_bytes: bytes, data: bytes) -> None:
        """A message on a subscribed channel, in the subscriber's read callback (no await here: requests for
        senders go to the delivering task)."""
        channel = channel_bytes.decode()
        try:
            envelopes = _envelopes.decode(data)
        except msgspec.DecodeError:
            log.warning("redis: an envelope that does not decode on %s", channel)
            return
        now = time.monotonic()
        room = channel.removeprefix("fw:room:") if channel.startswith("fw:room:") else None
        for origin, kind, sender, payload, codes in envelopes:
            if origin == self.server.relay_id:
                continue
            if kind == "u":
                self._request(sender, payload)
            elif room is not None:
                for request in self._remote_message(room, origin, kind, sender, payload, codes, now):
                    self._requests.put_nowait((request, False))

    async def _deliver(self) -> None:
        while True:
            request, remote = await self._requests.get()
            await self.server.deliver(request, remote=remote)

    def _remote_message(self, room_name: str, origin: str, kind: str, sender: str, data: bytes, codes: list[str],
                        now: float) -> list[Upstream]:
        room = self.server.rooms.get(room_name)
        if room is None:
            return []
        if kind == "a":
            with contextlib.suppress(ValueError):
                room.publish_start(sender, codes, now, origin=origin)
            return []
        if kind == "b":
            publication = room.publications.get(sender)
            if publication is not None and publication.origin == origin:
                room.publish_end(sender)
            return []
        publication = room.publications.get(sender)
        if publication is None or publication.origin != origin:
            return []
        if kind in ("f", "i"):  # a frame relay `origin` validated
            return room.publish_frame(sender, data, kind == "i", now)
        if kind != "m":
            return []
        try:
            message = m.decode(data, self.server.limits.max_message_bytes)
        except MessageValidationError as exc:
            log.warning("redis: relay %s passed on a bad message: %s", origin, exc)
            return []
        return room.publish(sender, message, data, now)

    def _request(self, target: str, data: bytes) -> None:
        room, _, sender = target.partition("/")
        try:
            message = m.decode(data)
        except MessageValidationError:
            return
        if isinstance(message, (m.KeyframeRequest, m.IntraRequest, m.AssetRequest)):
            self._requests.put_nowait((Upstream(room, sender, message), True))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close_link(self._out)
        await close_link(self._in)
        with contextlib.suppress(redis.RedisError):
            await self.client.aclose()
