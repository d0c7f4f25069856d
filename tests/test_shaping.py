"""The shaping proxy (bench/shaping.py): its schedule exactly, with no clock; then real sockets on loopback,
where only what a loaded machine cannot break is asserted (bytes intact and in order, never early, never
faster than the cap, backpressure), never how close to the schedule the timers ran."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bench.shaping import Shape, ShapingProxy

# ------------------------------------------------------------------ the schedule, no clock


def test_packets_back_to_back_leave_at_the_rate() -> None:
    shape = Shape(rate_bps=24_000)
    free, finishes = 0.0, []
    for _ in range(10):
        _, free = shape.schedule(300, ready_s=0.0, free_s=free)
        finishes.append(free)
    assert finishes == pytest.approx([(i + 1) * 300 * 8 / 24_000 for i in range(10)])


def test_a_packet_waits_for_the_line_or_for_itself() -> None:
    shape = Shape(rate_bps=8_000)  # 1 ms a byte
    assert shape.schedule(10, ready_s=1.0, free_s=2.0) == pytest.approx((2.0, 2.01))
    assert shape.schedule(10, ready_s=3.0, free_s=2.0) == pytest.approx((3.0, 3.01))


def test_header_overhead_is_charged_per_packet() -> None:
    assert Shape(rate_bps=8_000, overhead_bytes=52).tx_time(100) == pytest.approx(0.152)
    assert Shape().tx_time(10**6) == 0.0  # no cap


def test_nothing_starts_in_an_outage_and_an_outage_stretches_what_it_interrupts() -> None:
    shape = Shape(rate_bps=8_000, outage_every_s=1.0, outage_s=0.4)
    assert shape.schedule(10, ready_s=1.1, free_s=0.0) == pytest.approx((1.4, 1.41))  # waits it out
    assert shape.schedule(100, ready_s=0.95, free_s=0.0) == pytest.approx((0.95, 1.45))  # 50 ms before, 50 after
    assert shape.schedule(10, ready_s=0.5, free_s=0.0) == pytest.approx((0.5, 0.51))
    assert shape.schedule(10, ready_s=0.1, free_s=0.0)[0] == pytest.approx(0.1)  # no outage at t = 0
    # 2.5 s of bytes from 1.5 s crosses the outages at 2, 3, 4 and 5 s
    assert shape.schedule(2_500, ready_s=1.5, free_s=0.0) == pytest.approx((1.5, 1.5 + 2.5 + 4 * 0.4))


def test_the_queue_limit() -> None:
    assert Shape(rate_bps=24_000, queue_s=1.0).queue_limit() == 3_000
    assert Shape(rate_bps=8_000, queue_s=0.1).queue_limit() == 1_448  # at least one packet
    assert Shape(rate_bps=24_000, queue_bytes=2_000).queue_limit() == 2_000


# ------------------------------------------------------------------ real sockets on loopback


class Sink:
    """A TCP server that records (arrival time, bytes) of what it reads, optionally echoing it."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.arrivals: list[tuple[float, bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Sink:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.arrivals.append((time.monotonic(), data))
            if self.echo:
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def received(self) -> bytes:
        return b"".join(data for _, data in self.arrivals)


async def _wait_for_bytes(sink: Sink, nbytes: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sink.received()) < nbytes and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def test_bytes_cross_both_ways_intact_in_order_and_never_early() -> None:
    up = Shape(rate_bps=64_000, delay_s=0.1)
    down = Shape(rate_bps=32_000, delay_s=0.05)

    async def run() -> tuple[bytes, bytes, list[float], list[float]]:
        sink = await Sink(echo=True).start()
        async with ShapingProxy(("127.0.0.1", 0), ("127.0.0.1", sink.port), up=up, down=down) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            sent, echoed, one_way, round_trip = b"", b"", [], []
            for i in range(6):
                message = bytes([i]) * (40 + 100 * i)
                start, before = time.monotonic(), len(sink.received())
                writer.write(message)
                await writer.drain()
                await _wait_for_bytes(sink, before + len(message))
                one_way.append(sink.arrivals[-1][0] - start)
                echoed += await reader.readexactly(len(message))
                round_trip.append(time.monotonic() - start)
                sent += message
            writer.close()
        await sink.close()
        assert echoed == sent
        return sent, sink.received(), one_way, round_trip

    sent, received, one_way, round_trip = asyncio.run(run())
    assert received == sent
    for i, (ow, rt) in enumerate(zip(one_way, round_trip, strict=True)):
        size = 40 + 100 * i  # loopback reads may split a message: its last byte is what counts
        assert ow >= up.delay_s + up.tx_time(size) - 0.001, (i, ow)
        assert rt >= up.delay_s + down.delay_s + up.tx_time(size) + down.tx_time(size) - 0.001, (i, rt)


def test_a_bulk_transfer_never_beats_the_cap() -> None:
    rate = 64_000

    async def run() -> tuple[float, int]:
        sink = await Sink().start()
        total = 12_000
        async with ShapingProxy(("127.0.0.1", 0), ("127.0.0.1", sink.port), up=Shape(rate_bps=rate)) as proxy:
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            start = time.monotonic()
            writer.write(b"y" * total)
            await writer.drain()
            await _wait_for_bytes(sink, total)
            elapsed = sink.arrivals[-1][0] - start
            writer.close()
        await sink.close()
        return elapsed, len(sink.received())

    elapsed, received = asyncio.run(run())
    assert received == 12_000
    assert elapsed >= 12_000 * 8 / rate - 0.001, elapsed


def test_backpressure_reaches_the_sender() -> None:
    """A stalled bottleneck: the client can write its own kernel buffer, the proxy's small socket buffers and the
    proxy's queue, then no more; the proxy's queue stays within its limit."""

    async def run(queue_bytes: int, client_sndbuf: int) -> tuple[int, int]:
        sink = await Sink().start()
        shape = Shape(rate_bps=100.0, queue_bytes=queue_bytes)  # next to nothing leaves
        async with ShapingProxy(("127.0.0.1", 0), ("127.0.0.1", sink.port), up=shape) as proxy:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, client_sndbuf)
            sock.connect(("127.0.0.1", proxy.port))
            sock.setblocking(False)
            written, refusals = 0, 0
            while refusals < 20 and written < 10**6:  # try for 0.2 s after a refusal; a proxy that never stalls stops at 1 MB
                try:
                    written += sock.send(b"z" * 512)
                    refusals = 0
                except BlockingIOError:
                    refusals += 1
                    await asyncio.sleep(0.01)
            sock.close()
            max_queue = proxy.up_stats.max_queue_bytes
        await sink.close()
        return written, max_queue

    written, max_queue = asyncio.run(run(queue_bytes=2000, client_sndbuf=4096))
    assert max_queue <= 2000
    assert written < 40_000, written  # 4 KiB asked (Linux doubles it) + the proxy's 4 KiB buffers + 2000 B
