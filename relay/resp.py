"""The relay's busy Redis traffic on two connections of its own: a pipelined stream of PUBLISH and SET
commands out, and a SUBSCRIBE stream in. Commands are written here in RESP (arrays of bulk strings),
replies parsed by hiredis (the C parser redis-py itself uses).

Why not redis-py for these: it awaits every reply in Python. Measured on this 2-core machine with one
redis-server (scratch relay3/mb/redis_mb2.py, 30 000 messages of ~70 B over 100 channels): a PUBLISH costs
the publishing process 106-145 µs in a pipeline of one command and 38-45 µs in one of four, against 25-30
and 6-9 µs here; a message costs the subscribing process 11-60 µs through `PubSub.get_message` against
5-19 µs here. At a relay's rate (a frame every 30 ms from each of hundreds of senders, so a pipeline
holds one to a few of them) that was most of what a frame cost a relay. Here a batch of commands is
one write whose replies are counted as they come instead of awaited, and a subscriber's messages are
handed over in the read callback, all that one read brought. redis-py keeps the rare commands (GET,
SCAN, DEL) and parses the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0


def command(*args: bytes | str) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@dataclass(frozen=True)
class Endpoint:
    """Where a Redis URL (redis://, rediss://, unix://) points, and how to log in."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        given: dict[str, Any] = dict(parse_url(url))
        connection_class = given.get("connection_class")
        return cls(host=given.get("host") or "127.0.0.1", port=int(given.get("port") or 6379), path=given.get("path"),
                   tls=connection_class is not None and issubclass(connection_class, SSLConnection),
                   username=given.get("username"), password=given.get("password"), db=int(given.get("db") or 0))

    def login(self, select: bool) -> list[bytes]:
        """The commands that open a session: AUTH when there is a password, SELECT for keys in another db."""
        commands = []
        if self.password is not None:
            commands.append(command("AUTH", *([self.username] if self.username else []), self.password))
        if select and self.db:
            commands.append(command("SELECT", str(self.db)))
        return commands


READ_BYTES = 4 * 1024  # at most this much is read and handled at a time (some fifty frames' envelopes)


class _Link(asyncio.BufferedProtocol):
    """One connection to Redis: feeds what arrives to hiredis and each reply to `reply`.

    Reads are READ_BYTES at most (asyncio's own reads take up to 256 KiB): a relay that was off the CPU
    for a moment finds thousands of messages waiting, and handles them a slice at a time, writing each
    slice's frames to their receivers before it reads the next."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self._buffer = bytearray(READ_BYTES)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection to Redis is closed")
        self.transport.write(data)

    async def writable(self) -> None:
        """Until Redis has taken most of what was written (asyncio's write-buffer flow control)."""
        await self._writable.wait()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.feed(self._buffer, 0, nbytes)  # type: ignore[arg-type]  # any buffer (its stub says bytes)
        while (reply := self.reader.gets()) is not False:
            self.reply(reply)

    def reply(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            self.refused(reply)

    def refused(self, error: hiredis.ReplyError) -> None:
        log.warning("redis: %s", error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _open(endpoint: Endpoint, link: _Link, first: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        if endpoint.path is not None:
            await loop.create_unix_connection(lambda: link, endpoint.path)
        else:
            context = ssl.create_default_context() if endpoint.tls else None
            await loop.create_connection(lambda: link, endpoint.host, endpoint.port, ssl=context)
    if first:
        link.write(b"".join(first))


class Publisher(_Link):
    """Writes batches of commands (PUBLISH, SET) without waiting for their replies; counts the refused ones."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0  # commands written whose reply has not come yet
        self.errors = 0

    @classmethod
    async def connect(cls, endpoint: Endpoint) -> Publisher:
        link = cls()
        login = endpoint.login(select=True)
        await _open(endpoint, link, login)
        link.pending += len(login)
        return link

    def send(self, commands: list[bytes]) -> None:
        self.write(b"".join(commands))
        self.pending += len(commands)

    def reply(self, reply: Any) -> None:
        self.pending -= 1
        if isinstance(reply, hiredis.ReplyError):
            self.errors += 1
            self.refused(reply)


class Subscriber(_Link):
    """A connection in subscribe mode: `on_message(channel, data)` for each message, in the read callback."""

    def __init__(self, on_message: Callable[[bytes, bytes], None]) -> None:
        super().__init__()
        self.on_message = on_message
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}

    @classmethod
    async def connect(cls, endpoint: Endpoint, on_message: Callable[[bytes, bytes], None]) -> Subscriber:
        link = cls(on_message)
        await _open(endpoint, link, endpoint.login(select=False))
        return link

    async def subscribe(self, channels: list[str], timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Until Redis confirms every channel: from then on, what is published to them comes here."""
        if not channels:
            return
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            waiter: asyncio.Future[None] = loop.create_future()
            self._confirmations.setdefault(channel.encode(), []).append(waiter)
            waits.append(waiter)
        self.write(command("SUBSCRIBE", *channels))
        async with asyncio.timeout(timeout):
            await asyncio.gather(*waits)  # a connection lost meanwhile fails them (connection_lost)

    def unsubscribe(self, channels: list[str]) -> None:
        if channels:
            self.write(command("UNSUBSCRIBE", *channels))

    def reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self.on_message(reply[1], reply[2])
            elif kind == b"subscribe":
                for waiter in self._confirmations.pop(reply[1], []):
                    if not waiter.done():
                        waiter.set_result(None)
        elif isinstance(reply, hiredis.ReplyError):
            self.refused(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the connection to Redis closed"))
        self._confirmations.clear()
        super().connection_lost(exc)


async def close(link: _Link | None) -> None:
    if link is not None:
        link.close()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(1.0):
                await link.lost
