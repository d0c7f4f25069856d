"""A TCP proxy that breaks the link on command: the faults a sender and receiver must survive.

    async with FaultProxy(("127.0.0.1", receiver_port)) as proxy:   # then connect to proxy.port
        proxy.mode = "blackhole"   # every byte either way silently dropped, new connections too
        proxy.mode = "stall"       # bytes held (not lost) until the mode changes: a long outage TCP rides out
        proxy.mode = "refuse"      # new connections closed at once (the receiver's port is down)
        proxy.mode = "pass"
        proxy.cut()                # every open connection reset (RST), as a dropped link or a NAT reboot
        proxy.up_rate_bps = 32_000 # the uplink (client to upstream) throttled; None: as fast as it goes

`tap(conn_id, chunk, t)` sees every chunk of the uplink as it is written upstream (wall-clock t), and
`ended` records each connection's (id, opened, closed) times.

A connection that lost a byte to a blackhole stays a blackhole after it ends (a TCP stream cannot
resume past a hole); both ends must notice and reconnect. bench/faults.py drives it; so do the
liveness tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "blackhole", "stall", "refuse"]


@dataclass(eq=False)
class _Conn:
    id: int
    client: asyncio.StreamWriter
    opened: float
    upstream: asyncio.StreamWriter | None = None
    poisoned: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0,
                 tap: Callable[[int, bytes, float], None] | None = None) -> None:
        self.upstream = upstream
        self.tap = tap
        self.up_rate_bps: float | None = None
        self.ended: list[tuple[int, float, float]] = []  # (connection id, opened, closed), wall clock
        self.opened: list[float] = []  # when each accepted connection came, wall clock
        self._ids = itertools.count(1)
        self.host, self.port = host, port
        self._mode: Mode = "pass"
        self.connections = 0  # accepted so far
        self.refused = 0
        self.dropped_bytes = 0
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._reset(conn)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "stall":
            self._resumed.clear()
        else:
            self._resumed.set()

    def cut(self) -> int:
        """Reset every open connection; returns how many."""
        conns = list(self._conns)
        for conn in conns:
            self._reset(conn)
        return len(conns)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _reset(self, conn: _Conn) -> None:
        for writer in (conn.client, conn.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                if sock is not None:  # SO_LINGER 0: close sends RST, as a link that died under the connection
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in conn.tasks:
            task.cancel()
        if conn in self._conns:
            self._conns.discard(conn)
            self.ended.append((conn.id, conn.opened, time.time()))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            self.refused += 1
            writer.transport.abort()
            return
        self.connections += 1
        self.opened.append(time.time())
        conn = _Conn(next(self._ids), writer, time.time(), poisoned=self.mode == "blackhole")
        self._conns.add(conn)
        try:
            if conn.poisoned:
                await self._drain_into_nothing(reader, conn)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self._reset(conn)
                return
            conn.upstream = up_writer
            conn.tasks = [asyncio.create_task(self._pump(reader, up_writer, conn, uplink=True)),
                          asyncio.create_task(self._pump(up_reader, writer, conn, uplink=False))]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._reset(conn)

    async def _drain_into_nothing(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        while data := await reader.read(65536):
            self.dropped_bytes += len(data)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn, uplink: bool) -> None:
        try:
            while data := await reader.read(4096 if uplink and self.up_rate_bps else 65536):
                if self.mode == "stall":
                    await self._resumed.wait()
                if self.mode == "blackhole" or conn.poisoned:
                    conn.poisoned = True
                    self.dropped_bytes += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                if uplink and self.tap is not None:
                    self.tap(conn.id, data, time.time())
                if uplink and self.up_rate_bps:
                    await asyncio.sleep(len(data) * 8 / self.up_rate_bps)
        except (ConnectionError, OSError):
            pass
        finally:
            self._reset(conn)
