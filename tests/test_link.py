"""The live link over loopback websockets: sessions, auth, hostile peers, reconnects, backpressure."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
import websockets
from websockets.asyncio.client import connect

from facewire.receiver.player import Player
from facewire.receiver.runtime import LiveReceiver
from facewire.receiver.sinks import FramesSink, NullSink, Sink
from facewire.receiver.stats import StatsMeter
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.runner import stream_live
from facewire.sender.uplink import Uplink
from facewire.shared.types import CapturedFrame, FrameAnalysis
from facewire.shared.wire import messages as m
from tests.wire_fixtures import KeyframeRenderer, SyntheticAnalyzer, write_frames

TOKEN = "s3cret-token"


@asynccontextmanager
async def running_receiver(sink: Sink, port: int = 0, token: str = TOKEN) -> AsyncIterator[tuple[LiveReceiver, int]]:
    receiver = LiveReceiver(Player(KeyframeRenderer(), sink, StatsMeter()), token, steady_clock=False)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(receiver.run("127.0.0.1", port, ready=ready))
    bound = await asyncio.wait_for(ready, 5)
    try:
        yield receiver, bound
    finally:
        receiver.stop()
        await asyncio.wait_for(task, 10)


def sender(port: int, frames_dir: Path, realtime: bool = True, loop: bool = False, fps: float = 30.0,
           max_frames: int | None = None, token: str = TOKEN) -> tuple[FrameSource, Uplink]:
    source = FrameSource(str(frames_dir), CaptureOptions(realtime=realtime, loop=loop, fps=fps, max_frames=max_frames))
    return source, Uplink(f"ws://127.0.0.1:{port}", token)


def received_frames(receiver: LiveReceiver) -> int:
    return sum(s.frames_decoded for s in receiver.ended_sessions)


def test_loopback_session_into_frames_sink(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 24)

    async def scenario() -> tuple[int, int, int, bool]:
        async with running_receiver(FramesSink(tmp_path / "out")) as (receiver, port):
            source, uplink = sender(port, frames)
            streaming = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            while receiver.server is None or receiver.server.active is None:
                await asyncio.sleep(0.01)
            session = weakref.ref(receiver.server.active)
            stats = await streaming
            for _ in range(500):  # the session ends once the receiver has closed the connection
                if receiver.ended_sessions:
                    break
                await asyncio.sleep(0.01)
            gc.collect()
            # An ended session (with its keyframe image) is not kept while the receiver runs: only its figures.
            session_kept = session() is not None
        return stats.frames_sent, stats.dropped + stats.skipped, received_frames(receiver), session_kept

    sent, dropped, received, session_kept = asyncio.run(scenario())
    assert sent + dropped == 24
    assert received == sent
    assert not session_kept
    written = sorted((tmp_path / "out").glob("*.png"))
    assert written and written[0].name == "000000.png"
    assert cv2.imread(str(written[0])).shape == (120, 160, 3)


def test_a_paced_file_starts_once_the_sender_has_warmed_up(tmp_path: Path) -> None:
    """The warm-up takes nine frame periods: a file paced at 30 fps that started meanwhile would have its first
    frames skipped as stale. It starts after, with its first frame analysed first."""
    frames = write_frames(tmp_path / "in", 6)
    warmed_us: list[int] = []
    analysed: list[CapturedFrame] = []

    def slow_warm_up() -> None:
        time.sleep(0.3)
        warmed_us.append(time.time_ns() // 1000)

    class Recording(SyntheticAnalyzer):
        def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
            analysed.append(frame)
            return super().analyze(frame)

    async def scenario() -> None:
        async with running_receiver(NullSink()) as (_, port):
            source, uplink = sender(port, frames)
            await stream_live(source, Recording(), uplink, warm_up=slow_warm_up)

    asyncio.run(scenario())
    assert warmed_us and analysed
    assert analysed[0].index == 0
    assert analysed[0].ts_us >= warmed_us[0], "the file was read while the sender warmed up"


async def _hostile_reply(port: int, payload: bytes | str, token: str | None = None) -> tuple[int | None, str | None]:
    """Sends `payload` (after a hello when `token` is given); returns the close code and the error code received."""
    async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        if token is not None:
            await ws.send(m.encode(m.Hello(versions=[2], token=token, capabilities=["landmarks", "alpha"])))
            assert isinstance(m.decode(await ws.recv()), m.Welcome)
        await ws.send(payload)
        error_code = None
        try:
            while True:
                message = m.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
                if isinstance(message, m.Error):
                    error_code = message.code
        except websockets.exceptions.ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), error_code


def test_wrong_token_refused(tmp_path: Path) -> None:
    async def scenario() -> tuple[int | None, str | None]:
        async with running_receiver(NullSink()) as (_, port):
            return await _hostile_reply(port, m.encode(m.Hello(versions=[2], token="wrong")))

    assert asyncio.run(scenario()) == (4001, "unauthorized")


def test_hostile_clients_closed_while_good_sender_loses_nothing(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 45)
    hostile: list[tuple[bytes | str, str | None, int]] = [
        (b"\x00\xff garbage", None, 4002),
        ("a text frame", None, 1003),
        (msgspec.msgpack.encode({"t": "frame", "seq": -5}), None, 4002),
        (msgspec.msgpack.encode({"t": "no_such_type"}), None, 4002),
        (m.encode(m.Hello(versions=[2], token=TOKEN))[:-3], None, 4002),
        (b"\x92" * 40000, None, 1009),  # over the 4 KiB allowed before the hello
        (m.encode(m.Hello(versions=[9], token=TOKEN)), None, 4003),
        (m.encode(m.Hello(versions=[2], token=TOKEN)), None, 4004),  # a second sender: busy
        # last: a wrong token delays its address's next hellos (receiver/admission.py)
        (m.encode(m.Hello(versions=[2], token="guess")), None, 4001),
    ]

    async def scenario() -> tuple[list[tuple[int | None, str | None]], int, int, int]:
        async with running_receiver(NullSink()) as (receiver, port):
            source, uplink = sender(port, frames)
            good = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            await asyncio.sleep(0.4)
            results = [await _hostile_reply(port, payload, token) for payload, token, _ in hostile]
            stats = await good
            await asyncio.sleep(0.3)
        return results, stats.frames_sent, stats.dropped + stats.skipped, received_frames(receiver)

    results, sent, dropped, received = asyncio.run(scenario())
    assert [code for code, _ in results] == [code for _, _, code in hostile]
    assert all(error is not None for _, error in results)
    assert sent + dropped == 45
    assert received == sent, "the good sender lost frames to the hostile ones"


@pytest.mark.parametrize(("payload", "close_code"), [
    (msgspec.msgpack.encode({"t": "frame", "seq": 1, "ts_us": 0, "kf": 0, "face": "sideways"}), 4002),
    (m.encode(m.Welcome(version=2, session="abcdef0123")), 4008),
    (m.encode(m.Hello(versions=[2], token=TOKEN)), 4008),
])
def test_authenticated_sender_closed_on_bad_message(payload: bytes, close_code: int) -> None:
    async def scenario() -> tuple[int | None, str | None]:
        async with running_receiver(NullSink()) as (_, port):
            return await _hostile_reply(port, payload, TOKEN)

    code, error = asyncio.run(scenario())
    assert code == close_code and error is not None


def test_sender_reconnects_after_receiver_restart(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 10)

    async def scenario() -> tuple[int, int, int]:
        async with running_receiver(NullSink()) as (first, port):
            source, uplink = sender(port, frames, loop=True, max_frames=120)
            task = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            for _ in range(100):  # until the first receiver has drawn a few (however loaded the machine)
                await asyncio.sleep(0.1)
                active = first.server.active if first.server else None
                if active is not None and active.frames_decoded > 10:
                    break
        await asyncio.sleep(0.3)
        async with running_receiver(NullSink(), port=port) as (second, _):
            stats = await asyncio.wait_for(task, 20)
            await asyncio.sleep(0.3)
        return stats.connects, received_frames(first), received_frames(second)

    connects, before, after = asyncio.run(scenario())
    assert connects == 2
    assert before > 10 and after > 10


class NoisyAnalyzer(SyntheticAnalyzer):
    """A random matte every frame: about 19 KB of alpha code per 1280x960 frame."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(1)

    def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
        analysis = super().analyze(frame)
        alpha = self._rng.random(frame.image.shape[:2], dtype=np.float32)
        return FrameAnalysis(frame=analysis.frame, face=analysis.face, alpha=alpha)


def test_slow_receiver_keeps_sender_memory_flat_and_drops_counted(tmp_path: Path) -> None:
    """A receiver that reads one message every 100 ms: the sender must skip frames, not queue them."""
    frames = write_frames(tmp_path / "in", 4, size=(1280, 960))
    total = 240
    seen: list[int] = []

    async def slow_server(ws: websockets.asyncio.server.ServerConnection) -> None:
        hello = m.decode(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(hello, m.Hello)
        # the codes, not packed frames: the window below was sized for frames of the msgpack form
        codes = [name for name in hello.capabilities if name not in m.WIRE_CAPABILITIES]
        await ws.send(m.encode(m.Welcome(version=2, session="0123456789abcdef", capabilities=codes)))

        async def heartbeat() -> None:  # a receiver pings (protocol.md 3.5): slow to read, not dead
            for nonce in range(1, 10**6):
                await asyncio.sleep(1.0)
                await ws.send(m.encode(m.Ping(nonce=nonce, ts_us=0)))

        beating = asyncio.create_task(heartbeat())
        try:
            async for data in ws:
                message = m.decode(data)  # type: ignore[arg-type]
                if isinstance(message, m.Frame):
                    seen.append(message.seq)
                await asyncio.sleep(0.1)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            beating.cancel()

    async def scenario() -> tuple[int, int, list[int]]:
        listener = socket.socket()
        # A small receive window makes the link itself slow, not just the reading loop.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        listener.bind(("127.0.0.1", 0))
        server = await websockets.asyncio.server.serve(slow_server, sock=listener, max_queue=1,
                                                       max_size=m.MAX_MESSAGE_BYTES)
        port = listener.getsockname()[1]
        source, uplink = sender(port, frames, realtime=False, loop=True, max_frames=total)
        gc.collect()
        tracemalloc.start()
        samples: list[int] = []

        async def sample() -> None:
            while True:
                samples.append(tracemalloc.get_traced_memory()[0])
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        stats = await stream_live(source, NoisyAnalyzer(), uplink)
        sampler.cancel()
        tracemalloc.stop()
        server.close()
        await server.wait_closed()
        return stats.frames_sent, stats.dropped + stats.skipped, samples

    sent, dropped, samples = asyncio.run(scenario())
    assert sent + dropped == total
    assert dropped > total // 4, "a receiver this slow must make the sender skip frames"
    # Queued frames would make the memory in use climb through the run; medians ignore a keyframe's transients.
    third = max(1, len(samples) // 3)
    growth = float(np.median(samples[-third:]) - np.median(samples[:third]))
    assert growth < 30 * 1024 * 1024, f"sender memory grew by {growth / 1e6:.0f} MB: frames are being queued"
    assert len(seen) <= sent
    assert np.all(np.diff(seen) > 0)
