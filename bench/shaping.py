"""A shaping TCP proxy: a thin, delayed, occasionally dead link between two local processes.

    .venv/bin/python bench/shaping.py --listen 127.0.0.1:9000 --upstream 127.0.0.1:8765 --rate-kbps 24 --delay-ms 150
                      [--down-rate-kbps R] [--queue-ms 1000] [--outage-every S --outage-ms D]
                      [--overhead-bytes 0] [--stats-json FILE]

Each direction of each connection is a bottleneck as TCP sees one:

    socket -> bounded queue (a router's buffer) -> serialiser at the rate -> one-way delay -> socket

* Bytes leave the serialiser at the rate, a packet (at most `packet_bytes`, as read) at a time, so a
  bulk transfer runs at the cap and a small message queued behind a big one waits for it.
* The queue is bounded (`queue_s` of the rate, or `queue_bytes`). TCP must not lose bytes, so when
  it is full the proxy stops reading: the backpressure reaches the sender's kernel send buffer, as a
  full router queue does through TCP's congestion control.
* The proxy reads with `sock_recv` into nothing but its own queue and sets small SO_RCVBUF/SO_SNDBUF
  on its sockets, so it hides little buffering of its own (a client with a 4 KiB send buffer can
  write ~14 KB into a stalled link; with 64 KiB, ~104 KB: Linux doubles the requested size).
* Optional outages: every `outage_every_s` nothing is serialised for `outage_s`.
* `overhead_bytes` is charged per packet read, to model TCP/IP headers a real link also carries
  (0 by default: loopback figures then compare with the app's byte counts).

As a library: `async with ShapingProxy(listen, upstream, up=Shape(...), down=Shape(...)) as proxy:`
then connect to `proxy.port`; `proxy.stats()` gives per-direction counters, and `tap` sees every
chunk of the uplink as it is delivered (bench/thinlink.py reads the messages from it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("shaping")
MAX_LAG_S = 0.05


@dataclass(frozen=True)
class Shape:
    """One direction of the link. `rate_bps=None`: no rate cap (delay and outages still apply)."""

    rate_bps: float | None = None
    delay_s: float = 0.0
    queue_s: float = 1.0
    queue_bytes: int | None = None
    packet_bytes: int = 1448
    overhead_bytes: int = 0
    outage_every_s: float | None = None
    outage_s: float = 0.0

    def queue_limit(self) -> int:
        """The router buffer in bytes: `queue_bytes`, else `queue_s` of the rate (at least one packet)."""
        if self.queue_bytes is not None:
            return max(1, self.queue_bytes)
        if self.rate_bps is None:
            return 64 * 1024
        return max(self.packet_bytes, int(self.rate_bps / 8 * self.queue_s))

    def tx_time(self, nbytes: int) -> float:
        return 0.0 if self.rate_bps is None else (nbytes + self.overhead_bytes) * 8 / self.rate_bps

    def schedule(self, nbytes: int, ready_s: float, free_s: float) -> tuple[float, float]:
        """When a packet of `nbytes`, ready at `ready_s`, starts and finishes serialising behind the one
        that frees the line at `free_s` (seconds since the link came up): not in an outage, and an
        outage that falls inside its transmission stretches it."""
        start = self.outage_end(max(ready_s, free_s))
        return start, self.stretch(start, start + self.tx_time(nbytes))

    def outage_end(self, t: float) -> float:
        """If `t` (seconds since the proxy started) falls in an outage, when it ends; else `t`."""
        if not self.outage_every_s or self.outage_s <= 0:
            return t
        k = math.floor(t / self.outage_every_s)
        start = k * self.outage_every_s
        return start + self.outage_s if k >= 1 and t < start + self.outage_s else t

    def stretch(self, start: float, finish: float) -> float:
        """A packet whose serialisation an outage interrupts finishes that much later."""
        if not self.outage_every_s or self.outage_s <= 0:
            return finish
        k = math.floor(start / self.outage_every_s) + 1
        while k * self.outage_every_s < finish:
            finish += self.outage_s
            k += 1
        return finish


@dataclass
class DirectionStats:
    bytes: int = 0
    packets: int = 0
    max_queue_bytes: int = 0
    queue_wait_max_s: float = 0.0
    queue_wait_sum_s: float = 0.0
    stalled_reads: int = 0  # times the reader waited for queue space (backpressure applied)

    def snapshot(self) -> dict[str, float]:
        out = asdict(self)
        out["queue_wait_mean_s"] = self.queue_wait_sum_s / self.packets if self.packets else 0.0
        return out


@dataclass
class _Pipe:
    """One direction of one connection: reader -> queue -> serialiser -> delay line -> writer."""

    shape: Shape
    src: socket.socket
    dst: socket.socket
    epoch: float
    stats: DirectionStats
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    queued: int = 0
    eof: bool = False
    space: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    line: asyncio.Queue[tuple[float, bytes | None]] = field(default_factory=asyncio.Queue)
    tap: Callable[[bytes], None] | None = None  # sees each chunk as it is delivered

    async def run(self) -> None:
        tasks = [asyncio.create_task(c) for c in (self._read(), self._serialise(), self._deliver())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.shape.queue_limit()
        while True:
            while self.queued >= limit:
                self.stats.stalled_reads += 1
                self.space.clear()
                await self.space.wait()
            data = await loop.sock_recv(self.src, min(self.shape.packet_bytes, limit - self.queued))
            if not data:
                self.eof = True
                self.ready.set()
                return
            self.queue.append((loop.time(), data))
            self.queued += len(data)
            self.stats.max_queue_bytes = max(self.stats.max_queue_bytes, self.queued)
            self.ready.set()

    async def _serialise(self) -> None:
        loop = asyncio.get_running_loop()
        free_at = self.epoch  # when the serialiser finishes the packet in hand (loop clock)
        while True:
            while not self.queue:
                if self.eof:
                    await self.line.put((0.0, None))
                    return
                self.ready.clear()
                await self.ready.wait()
            queued_at, data = self.queue[0]
            # Virtual time: a packet that waited starts when the previous one finished, not when this
            # task woke up (wake-ups run late by ~1 ms, which would shave the rate); a long stall of
            # the event loop is not made up for by a burst.
            ready = max(queued_at, loop.time() - MAX_LAG_S) - self.epoch
            start, finish = (t + self.epoch for t in self.shape.schedule(len(data), ready, free_at - self.epoch))
            # Sleeping to absolute deadlines keeps the rate exact however late each wake-up is.
            await _sleep_until(finish)
            free_at = finish
            self.queue.popleft()
            self.queued -= len(data)
            self.space.set()
            wait = start - queued_at
            self.stats.packets += 1
            self.stats.bytes += len(data)
            self.stats.queue_wait_sum_s += wait
            self.stats.queue_wait_max_s = max(self.stats.queue_wait_max_s, wait)
            await self.line.put((finish + self.shape.delay_s, data))

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            release, data = await self.line.get()
            if data is None:
                with contextlib.suppress(OSError):
                    self.dst.shutdown(socket.SHUT_WR)
                return
            await _sleep_until(release)
            await loop.sock_sendall(self.dst, data)
            if self.tap is not None:
                self.tap(data)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def _small_buffers(sock: socket.socket, nbytes: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


@dataclass
class ShapingProxy:
    """Accepts on `listen`, connects each client to `upstream`, shapes both directions."""

    listen: tuple[str, int]
    upstream: tuple[str, int]
    up: Shape = field(default_factory=Shape)  # client -> upstream
    down: Shape = field(default_factory=Shape)  # upstream -> client
    tap: Callable[[bytes], None] | None = None  # sees each chunk of the uplink as it is delivered
    socket_buffer_bytes: int = 4096
    port: int = 0
    connections: int = 0
    refused: int = 0  # clients whose upstream connection failed
    connected_at: list[float] = field(default_factory=list)  # wall-clock time of each upstream connect
    up_stats: DirectionStats = field(default_factory=DirectionStats)
    down_stats: DirectionStats = field(default_factory=DirectionStats)
    _listener: socket.socket | None = None
    _accept_task: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _epoch: float = 0.0

    async def start(self) -> ShapingProxy:
        loop = asyncio.get_running_loop()
        self._epoch = loop.time()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _small_buffers(sock, self.socket_buffer_bytes)  # accepted sockets inherit these
        sock.bind(self.listen)
        sock.listen(16)
        sock.setblocking(False)
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._accept_task = asyncio.create_task(self._accept())
        return self

    async def close(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        pending = [*self._tasks, *([self._accept_task] if self._accept_task else [])]
        await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()

    async def __aenter__(self) -> ShapingProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, object]:
        return {"connections": self.connections, "refused": self.refused, "connected_at": self.connected_at[-8:],
                "up": self.up_stats.snapshot(), "down": self.down_stats.snapshot()}

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            client, _ = await loop.sock_accept(self._listener)
            task = asyncio.create_task(self._serve(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        client.setblocking(False)
        _small_buffers(client, self.socket_buffer_bytes)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _small_buffers(server, self.socket_buffer_bytes)
        server.setblocking(False)
        try:
            await loop.sock_connect(server, self.upstream)
        except OSError as exc:
            log.warning("upstream %s:%d refused: %s", *self.upstream, exc)
            self.refused += 1
            client.close()
            server.close()
            return
        self.connections += 1
        self.connected_at.append(time.time())
        pipes = [_Pipe(self.up, client, server, self._epoch, self.up_stats, tap=self.tap),
                 _Pipe(self.down, server, client, self._epoch, self.down_stats)]
        tasks = [asyncio.create_task(p.run()) for p in pipes]
        try:
            # A reset or error on either side ends both; a clean EOF lets the other side finish.
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    log.info("connection ended: %s", task.exception())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            client.close()
            server.close()


def build_shapes(args: argparse.Namespace) -> tuple[Shape, Shape]:
    outage = {"outage_every_s": args.outage_every, "outage_s": args.outage_ms / 1000}
    common = {"queue_s": args.queue_ms / 1000, "queue_bytes": args.queue_bytes, "packet_bytes": args.packet_bytes,
              "overhead_bytes": args.overhead_bytes, **outage}
    up = Shape(rate_bps=args.rate_kbps * 1000 if args.rate_kbps else None, delay_s=args.delay_ms / 1000, **common)
    down_delay = args.down_delay_ms if args.down_delay_ms is not None else args.delay_ms
    down = Shape(rate_bps=args.down_rate_kbps * 1000 if args.down_rate_kbps else None, delay_s=down_delay / 1000,
                 **common)
    return up, down


async def serve(args: argparse.Namespace) -> None:
    up, down = build_shapes(args)
    proxy = ShapingProxy(parse_hostport(args.listen), parse_hostport(args.upstream), up, down,
                         socket_buffer_bytes=args.socket_buffer_bytes)
    async with proxy:
        log.info("shaping %s -> %s:%d up %s down %s", f"{proxy.listen[0]}:{proxy.port}", *proxy.upstream, up, down)
        print(f"listening on {proxy.listen[0]}:{proxy.port}", flush=True)
        while True:
            await asyncio.sleep(1.0)
            if args.stats_json:
                with Path(args.stats_json).open("a") as out:
                    out.write(json.dumps({"t": round(time.time(), 3), **proxy.stats()}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    parser.add_argument("--rate-kbps", type=float, help="client -> upstream rate cap (default none)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, both directions")
    parser.add_argument("--down-rate-kbps", type=float, help="upstream -> client rate cap (default none)")
    parser.add_argument("--down-delay-ms", type=float, help="upstream -> client delay (default --delay-ms)")
    parser.add_argument("--queue-ms", type=float, default=1000.0, help="router buffer, in ms of the rate")
    parser.add_argument("--queue-bytes", type=int, help="router buffer in bytes (overrides --queue-ms)")
    parser.add_argument("--packet-bytes", type=int, default=1448, help="largest packet serialised at once")
    parser.add_argument("--overhead-bytes", type=int, default=0, help="per-packet header bytes charged")
    parser.add_argument("--outage-every", type=float, metavar="S", help="an outage every S seconds")
    parser.add_argument("--outage-ms", type=float, default=0.0, metavar="D", help="outage length")
    parser.add_argument("--socket-buffer-bytes", type=int, default=4096, help="SO_RCVBUF/SO_SNDBUF of the proxy")
    parser.add_argument("--stats-json", type=Path, help="append one JSON line of counters a second")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
