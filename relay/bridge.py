"""Relays sharing rooms through Redis (facewire-relay --redis URL): pub/sub carries what senders publish,
and Redis keys keep each sender's state, with an expiry, for relays that start watching a room later.

- Channel `fw:room:NAME`: what the senders connected to any relay publish in room NAME, as msgpack lists
  of envelopes [origin relay, kind, sender, data, codes] (kind `a` a sender announces itself and its codes,
  again every ANNOUNCE_S; `m` one of its messages, the bytes that arrived; `b` it left). A relay subscribes
  while it has receivers in the room, and skips its own envelopes.
- Channel `fw:relay:ID`: requests (`u`: keyframe and asset requests) for the senders connected to relay ID.
- Key `fw:state:ROOM:SENDER`: msgpack [origin, codes, [state messages]] (relay/rooms.py Publication's
  snapshot), written when the state changes and refreshed every ANNOUNCE_S, expiring after STATE_TTL_S.

A relay that dies stops announcing: other relays drop its senders after REMOTE_TIMEOUT_S and their state
expires from Redis; nothing else is lost. Envelopes queued in one event-loop turn go out in one pipeline,
one PUBLISH per room, so a busy relay makes few round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
import redis.asyncio as redis

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
    def __init__(self, client: redis.Redis, server: RelayServer) -> None:
        self.client = client
        self.server = server
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._outgoing: list[tuple[str, Envelope]] = []
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    @classmethod
    async def connect(cls, url: str, server: RelayServer) -> RedisBridge:
        # A bounded pool that waits for a free connection: a hundred receivers joining at once must not open a
        # hundred connections to Redis (redis-py's default pool refuses the one over its limit instead).
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=10))
        await client.ping()
        bridge = cls(client, server)
        await bridge.pubsub.subscribe(relay_channel(server.relay_id))
        bridge._tasks = [asyncio.create_task(bridge._write()), asyncio.create_task(bridge._read()),
                         asyncio.create_task(bridge._beat())]
        return bridge

    # --- what this relay's senders do --------------------------------------------------------------

    async def sender_started(self, room: str, sender: str, codes: list[str]) -> None:
        self._queue(room_channel(room), (self.server.relay_id, "a", sender, b"", codes))
        self._dirty.add((room, sender))

    def sender_message(self, room: str, sender: str, raw: bytes, state: bool) -> None:
        self._queue(room_channel(room), (self.server.relay_id, "m", sender, raw, []))
        if state:
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

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            outgoing, self._outgoing = self._outgoing, []
            dirty, self._dirty = self._dirty, set()
            by_channel: dict[str, list[Envelope]] = {}
            for channel, envelope in outgoing:
                by_channel.setdefault(channel, []).append(envelope)
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for room, sender in dirty:
                        self._store_state(pipe, room, sender)
                    for channel, envelopes in by_channel.items():
                        pipe.publish(channel, _encoder.encode(envelopes))
                    await pipe.execute()
            except redis.RedisError as exc:
                self.errors += 1
                log.warning("redis: %s (%d envelopes lost)", exc, len(outgoing))
                await asyncio.sleep(0.5)

    def _store_state(self, pipe: Any, room_name: str, sender: str) -> None:
        room = self.server.rooms.get(room_name)
        publication = None if room is None else room.publications.get(sender)
        if publication is not None and not publication.origin:
            value = _encoder.encode((self.server.relay_id, publication.codes, publication.snapshot()))
            pipe.set(state_key(room_name, sender), value, ex=STATE_TTL_S)

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
        try:
            await self._watch(room)
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("redis: cannot watch room %r yet: %s", room, exc)

    async def _watch(self, room: str) -> None:
        await self.pubsub.subscribe(room_channel(room))
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
        try:
            await self.pubsub.unsubscribe(room_channel(room))
        except redis.RedisError as exc:
            self.errors += 1
            log.warning("redis: %s", exc)
        known = self.server.rooms.get(room)
        if known is not None:
            for name, publication in list(known.publications.items()):
                if publication.origin:
                    known.publish_end(name)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except redis.RedisError as exc:
                self.errors += 1
                log.warning("redis: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            try:
                envelopes = _envelopes.decode(message["data"])
            except msgspec.DecodeError:
                log.warning("redis: an envelope that does not decode on %s", channel)
                continue
            now = time.monotonic()
            for origin, kind, sender, data, codes in envelopes:
                if origin == self.server.relay_id:
                    continue
                if kind == "u":
                    await self._request(sender, data)
                elif channel.startswith("fw:room:"):
                    for request in self._remote_message(channel.removeprefix("fw:room:"), origin, kind, sender, data,
                                                        codes, now):
                        await self.server.deliver(request)
            # get_message returns without suspending while Redis's socket holds data: without this yield the loop
            # would drain a burst of every room's frames before any receiver's writer ran.
            await asyncio.sleep(0)

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
        if kind != "m" or publication is None or publication.origin != origin:
            return []
        try:
            message = m.decode(data, self.server.limits.max_message_bytes)
        except MessageValidationError as exc:
            log.warning("redis: relay %s passed on a bad message: %s", origin, exc)
            return []
        return room.publish(sender, message, data, now)

    async def _request(self, target: str, data: bytes) -> None:
        room, _, sender = target.partition("/")
        try:
            message = m.decode(data)
        except MessageValidationError:
            return
        if isinstance(message, (m.KeyframeRequest, m.IntraRequest, m.AssetRequest)):
            await self.server.deliver(Upstream(room, sender, message), remote=True)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(redis.RedisError):
            await self.pubsub.aclose()
            await self.client.aclose()
