"""Liveness (issue 13, deliverable 1): both sides ping, a silent link is declared dead within
`dead_after_s`, the sender reconnects, and a new session replaces its own half-open one.

The live test runs the real receiver and sender through a proxy that silently drops every byte for a
while (bench/faultproxy.py): without liveness the sender blocks in `send` until TCP gives up (~15 min).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from bench.faultproxy import FaultProxy
from facewire.receiver.sinks import NullSink
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.runner import stream_live
from facewire.sender.uplink import Uplink
from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p
from facewire.shared.wire.errors import ErrorCode
from tests.test_link import TOKEN, running_receiver
from tests.wire_fixtures import SyntheticAnalyzer, write_frames

HELLO = m.Hello(versions=[2], token=TOKEN, capabilities=["landmarks", "alpha"])


def opened(now: float = 0.0, limits: p.Limits | None = None) -> tuple[p.SenderProtocol, p.ReceiverProtocol]:
    snd = p.SenderProtocol(TOKEN, now, limits=limits)
    rcv = p.ReceiverProtocol(TOKEN, now, limits=limits)
    for data in snd.data_to_send():
        rcv.receive(data, now)
    for data in rcv.data_to_send():
        snd.receive(data, now)
    return snd, rcv


# ------------------------------------------------------------------------------------------- sans-I/O
def test_both_sides_ping_every_interval() -> None:
    snd, rcv = opened()
    for side in (snd, rcv):
        side.data_to_send()
        pings = []
        for step in range(1, 41):
            side.heard(step * 0.1)
            side.tick(step * 0.1)
            pings += [data for data in side.data_to_send() if isinstance(m.decode(data), m.Ping)]
        assert len(pings) == 4  # at 1, 2, 3 and 4 s


def test_silence_is_a_dead_link_bytes_are_not() -> None:
    limits = p.Limits()
    snd, rcv = opened(limits=limits)
    for side in (snd, rcv):
        assert side.check_timeouts(limits.dead_after_s - 0.01) == []
        side.heard(3.0)  # a byte of a long message: alive, though no whole message came
        assert side.check_timeouts(3.0 + limits.dead_after_s - 0.01) == []
        (failed,) = side.check_timeouts(3.0 + limits.dead_after_s + 0.01)
        assert isinstance(failed, p.ConnectionFailed) and failed.error.code is ErrorCode.UNRESPONSIVE
        assert failed.close.code == 4010 and side.state is p.State.CLOSED
    assert limits.dead_after_s + 2 * 0.25 <= 5.0  # noticed within 5 s even with the shells' poll period


def test_a_pong_keeps_the_link_alive() -> None:
    snd, rcv = opened()
    now = 0.0
    for _ in range(30):  # 30 s of pings answered, no frames
        now += 1.0
        for side, peer in ((snd, rcv), (rcv, snd)):
            side.tick(now)
            for data in side.data_to_send():
                peer.receive(data, now + 0.02)
            for data in peer.data_to_send():
                side.receive(data, now + 0.04)
    assert snd.state is p.State.OPEN and rcv.state is p.State.OPEN and snd.rtt_ms == pytest.approx(40.0)


def test_messages_before_the_hello_are_limited_to_4_kib() -> None:
    rcv = p.ReceiverProtocol(TOKEN, 0.0)
    big = m.encode(m.Hello(versions=[2], token="€" * 512, agent="é" * 256, capabilities=["a" * 64] * 32))
    assert 4096 < len(big) < m.MAX_MESSAGE_BYTES  # a valid hello, only with every field near its maximum
    (failed,) = rcv.receive(big, 0.0)
    assert isinstance(failed, p.ConnectionFailed) and failed.error.code is ErrorCode.TOO_LARGE
    small = p.ReceiverProtocol(TOKEN, 0.0)
    assert isinstance(small.receive(m.encode(HELLO), 0.0)[0], p.HandshakeDone)
    setup = m.encode(m.Setup(code="landmarks", payload=bytes(64 * 1024)))  # after the hello the large limit applies
    assert small.receive(setup, 0.0) == [p.MessageReceived(m.decode(setup))]


# ----------------------------------------------------------------------------------------------- live
def _looping_sender(port: int, frames: Path) -> tuple[FrameSource, Uplink]:
    source = FrameSource(str(frames), CaptureOptions(realtime=True, loop=True, fps=30.0))
    return source, Uplink(f"ws://127.0.0.1:{port}", TOKEN)


async def _until(condition: object, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `condition()` held, None if it did not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        await asyncio.sleep(step)
    return None


def test_blackholed_link_is_noticed_and_streaming_resumes(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 30)
    blackhole_s = 5.0

    async def scenario() -> tuple[float | None, float | None, float | None, int]:
        async with running_receiver(NullSink()) as (receiver, port), FaultProxy(("127.0.0.1", port)) as proxy:
            source, uplink = _looping_sender(proxy.port, frames)
            streaming = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            server = receiver.server
            assert server is not None
            assert await _until(lambda: server.active is not None and server.active.frames_decoded > 10, 10) is not None
            first = server.active
            proxy.mode = "blackhole"
            receiver_noticed = await _until(lambda: server.active is not first, blackhole_s)
            sender_noticed = await _until(lambda: uplink.protocol is None or uplink.protocol.state is p.State.CLOSED,
                                          blackhole_s)
            await asyncio.sleep(max(0.0, blackhole_s - (receiver_noticed or blackhole_s)))
            proxy.mode = "pass"
            flowing = await _until(lambda: server.active is not None and server.active is not first
                                   and server.active.frames_decoded > 0, 10)
            source.close()
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            return receiver_noticed, sender_noticed, flowing, uplink.stats.connects

    receiver_noticed, sender_noticed, flowing, connects = asyncio.run(scenario())
    assert receiver_noticed is not None and receiver_noticed <= 5.0, "the receiver did not notice the silent loss"
    assert sender_noticed is not None, "the sender did not notice the silent loss"
    assert flowing is not None and flowing <= 5.0, f"frames flowed again {flowing} s after the link returned"
    assert connects >= 2


async def _hello(port: int, instance: str = "") -> websockets.asyncio.client.ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}", max_size=None)
    hello = m.Hello(versions=[2], token=TOKEN, capabilities=["landmarks", "alpha"], instance=instance)
    await ws.send(m.encode(hello))
    return ws


async def _first_reply(ws: websockets.asyncio.client.ClientConnection) -> m.Message:
    return m.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]


def test_a_new_session_replaces_a_half_open_one_instead_of_busy() -> None:
    async def scenario() -> list[str]:
        outcomes: list[str] = []
        async with running_receiver(NullSink()) as (receiver, port):
            server = receiver.server
            assert server is not None
            shown = await _hello(port, "a" * 16)
            assert isinstance(await _first_reply(shown), m.Welcome)
            # another sender while the shown one answers its pings: busy
            other = await _hello(port, "b" * 16)
            reply = await _first_reply(other)
            outcomes.append(reply.code if isinstance(reply, m.Error) else type(reply).__name__)
            # the same sender again (its old link half-open): replaces it at once
            again = await _hello(port, "a" * 16)
            outcomes.append(type(await _first_reply(again)).__name__)
            try:
                while True:
                    await asyncio.wait_for(shown.recv(), 2)
            except websockets.exceptions.ConnectionClosed:
                outcomes.append("old closed")
            # a third sender while the shown link is silent (nobody reads `again`'s pings): replaces it
            await asyncio.sleep(2.5 * p.Limits().ping_interval_s)
            third = await _hello(port, "c" * 16)
            outcomes.append(type(await _first_reply(third)).__name__)
            for ws in (other, again, third):
                await ws.close()
        return outcomes

    assert asyncio.run(scenario()) == ["busy", "Welcome", "old closed", "Welcome"]


def test_dead_after_is_a_flag_of_both_tools() -> None:
    from facewire.receiver.cli import build_parser as receiver_parser
    from facewire.sender.cli import build_parser as sender_parser

    for parser in (receiver_parser(), sender_parser()):
        base = ["--listen", "127.0.0.1:1"] if parser.prog.endswith("receive") else ["--connect", "ws://h:1"]
        assert parser.parse_args(base).dead_after == p.Limits().dead_after_s
        assert parser.parse_args([*base, "--dead-after", "9"]).dead_after == 9.0
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--dead-after", "0.5"])
