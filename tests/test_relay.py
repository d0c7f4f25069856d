"""The relay on loopback: rooms, tokens, state for late joiners, slow receivers, codes, limits; and two
relays sharing rooms through a real redis-server (tests/test_relay_redis.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import pytest
import websockets
from websockets.asyncio.client import connect

from facewire.receiver.player import Player
from facewire.receiver.runtime import LiveReceiver
from facewire.receiver.sinks import FramesSink, NullSink, Sink
from facewire.receiver.stats import StatsMeter
from facewire.relay.access import Access, RoomTokens
from facewire.relay.server import Bridge, RelayServer
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.runner import stream_live
from facewire.sender.uplink import Uplink, UplinkStats
from facewire.shared.wire import messages as m
from facewire.shared.wire.protocol import JoinProtocol, Limits, MessageReceived, SenderProtocol
from tests.wire_fixtures import KeyframeRenderer, SyntheticAnalyzer, write_frames

TOKEN = "relay-token"


@asynccontextmanager
async def running_relay(access: Access | None = None, bridge: Bridge | None = None,
                        **settings: int) -> AsyncIterator[tuple[RelayServer, int]]:
    relay = RelayServer(access or Access(shared=TOKEN), bridge=bridge or Bridge(), **settings)  # type: ignore[arg-type]
    listener = await relay.start("127.0.0.1", 0)
    try:
        yield relay, next(iter(listener.sockets)).getsockname()[1]
    finally:
        await relay.shutdown(listener)


@asynccontextmanager
async def joined(url: str, sink: Sink | None = None, token: str = TOKEN, show: str | None = None
                 ) -> AsyncIterator[LiveReceiver]:
    receiver = LiveReceiver(Player(KeyframeRenderer(), sink or NullSink(), StatsMeter()), token, steady_clock=False,
                            join=url, show=show)
    task = asyncio.create_task(receiver.run("", 0))
    try:
        yield receiver
    finally:
        receiver.stop()
        await asyncio.wait_for(task, 10)


def decoded(receiver: LiveReceiver) -> int:
    # The receiver's own count over all its sessions: a session whose decoder is still finishing is neither
    # active nor ended yet, so summing sessions reads 0 in that moment.
    return receiver.player.stats.frames_in


def publisher(url: str, frames_dir: Path, token: str = TOKEN, max_frames: int | None = None,
              loop: bool = False) -> tuple[FrameSource, Uplink]:
    source = FrameSource(str(frames_dir), CaptureOptions(realtime=True, loop=loop, fps=30.0, max_frames=max_frames))
    return source, Uplink(url, token)


async def until(condition: Callable[[], bool], timeout: float = 10.0, why: Callable[[], object] = lambda: "") -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out {why()}")


def test_a_sender_reaches_every_receiver_of_its_room_and_no_other(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 60)

    async def scenario() -> tuple[UplinkStats, list[int], int]:
        async with running_relay() as (relay, port):
            room = f"ws://127.0.0.1:{port}/rooms/call"
            async with joined(room) as first, joined(room) as second, joined(f"ws://127.0.0.1:{port}/rooms/other") as other:
                await until(lambda: len(relay.rooms.get("call", None).subscribers if "call" in relay.rooms else ()) == 2)
                await until(lambda: "other" in relay.rooms)
                source, uplink = publisher(room + "?name=alice", frames)
                stats = await stream_live(source, SyntheticAnalyzer(), uplink)
                await asyncio.sleep(0.5)
                return stats, [decoded(first), decoded(second)], decoded(other)

    stats, got, other = asyncio.run(scenario())
    assert stats.frames_sent >= 10, stats  # the rest the sender's analysis skipped on a loaded machine
    assert all(count >= 0.95 * stats.frames_sent for count in got), (stats.frames_sent, got)
    assert other == 0


# --- two relays sharing rooms through a real redis-server -------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on port {port}")


class RedisServer:
    """A redis-server of its own on a free loopback port, which a test may restart on the same port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
    server = RedisServer(binary, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A redis-server of its own on a free loopback port, stopped afterwards."""
    return redis_server.url


@asynccontextmanager
async def relay_on_redis(url: str) -> AsyncIterator[tuple[RelayServer, int]]:
    from facewire.relay.bridge import RedisBridge

    relay = RelayServer(Access(shared=TOKEN))
    relay.bridge = bridge = await RedisBridge.connect(url, relay)
    try:
        listener = await relay.start("127.0.0.1", 0)
        try:
            yield relay, next(iter(listener.sockets)).getsockname()[1]
        finally:
            await relay.shutdown(listener)
    finally:
        await bridge.close()


def test_two_relays_share_a_room_through_redis(tmp_path: Path, redis_url: str) -> None:
    frames = write_frames(tmp_path / "in", 90)

    async def scenario() -> tuple[UplinkStats, list[int], int]:
        async with relay_on_redis(redis_url) as (a, port_a), relay_on_redis(redis_url) as (b, port_b), \
                joined(f"ws://127.0.0.1:{port_a}/rooms/call") as on_a, \
                joined(f"ws://127.0.0.1:{port_b}/rooms/call") as on_b, \
                joined(f"ws://127.0.0.1:{port_b}/rooms/other") as elsewhere:
            await until(lambda: "call" in a.rooms and "call" in b.rooms and "other" in b.rooms)
            source, uplink = publisher(f"ws://127.0.0.1:{port_a}/rooms/call?name=alice", frames)
            stats = await stream_live(source, SyntheticAnalyzer(), uplink)
            await asyncio.sleep(0.5)
            return stats, [decoded(on_a), decoded(on_b)], decoded(elsewhere)

    stats, got, elsewhere = asyncio.run(scenario())
    assert stats.frames_sent >= 10, stats  # the rest the sender's analysis skipped on a loaded machine
    assert all(count >= 0.95 * stats.frames_sent for count in got), (stats.frames_sent, got)
    assert elsewhere == 0


async def hello_reply(url: str, token: str, capabilities: list[str]) -> m.Message | int:
    """What a relay answers a joining receiver's hello (or the HTTP status it refused the path with)."""
    try:
        async with connect(url, open_timeout=5) as ws:
            protocol = JoinProtocol(token, time.monotonic(), capabilities=capabilities)
            for data in protocol.data_to_send():
                await ws.send(data)
            return m.decode(await asyncio.wait_for(ws.recv(), 5))
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code


def test_a_rooms_token_opens_that_room_only(tmp_path: Path) -> None:
    access = Access(rooms={"standup": RoomTokens("pub-1", "sub-1"), "board": RoomTokens("pub-2", "sub-2")})

    async def scenario() -> list[m.Message | int]:
        async with running_relay(access) as (_, port):
            base = f"ws://127.0.0.1:{port}/rooms"
            return [await hello_reply(f"{base}/standup", "sub-1", ["landmarks"]),
                    await hello_reply(f"{base}/board", "sub-1", ["landmarks"]),
                    await hello_reply(f"{base}/standup", "pub-1", ["landmarks"]),  # a publish token does not subscribe
                    await hello_reply(f"{base}/nowhere", "sub-1", ["landmarks"]),
                    await hello_reply(f"ws://127.0.0.1:{port}/elsewhere", "sub-1", ["landmarks"])]

    welcome, other_room, wrong_role, no_room, no_path = asyncio.run(scenario())
    assert isinstance(welcome, m.Welcome)
    assert isinstance(other_room, m.Error) and other_room.code == "unauthorized"
    assert isinstance(wrong_role, m.Error) and wrong_role.code == "unauthorized"
    assert no_room == 404 and no_path == 404


def test_a_late_joiner_gets_the_state_then_frames_and_draws(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 30)

    async def scenario() -> tuple[LiveReceiver, m.Message | int]:
        async with running_relay() as (relay, port):
            room = f"ws://127.0.0.1:{port}/rooms/call"
            source, uplink = publisher(room + "?name=alice", frames, loop=True, max_frames=150)
            streaming = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            await until(lambda: "call" in relay.rooms and relay.rooms["call"].publications.get("alice") is not None
                        and bool(relay.rooms["call"].publications["alice"].keyframes))
            await asyncio.sleep(1.0)  # mid-stream: its frames are predicted from ones this receiver never saw
            # The room is coded with the sender's codes: a receiver that decodes only alpha is refused, naming them.
            refused = await hello_reply(room, TOKEN, ["alpha"])
            async with joined(room, FramesSink(tmp_path / "out")) as late:
                call = relay.rooms["call"]
                await until(lambda: decoded(late) >= 20, why=lambda: (
                    decoded(late), [(sub.outbox.lost, sub.outbox.waiting_for_intra, len(sub.outbox.items))
                                    for sub in call.subscribers.values()],
                    call.publications["alice"], late.server.active if late.server else None))
            await streaming
            return late, refused

    late, refused = asyncio.run(scenario())
    assert isinstance(refused, m.Error) and refused.code == "unsupported_code" and "expression" in refused.message
    session = late.ended_sessions[-1]
    assert session.frames_decoded >= 20 and session.decode_errors == 0  # it started at an intra frame
    pictures = sorted((tmp_path / "out").glob("*.png"))
    # The player draws the latest job when it is ready (some decoded frames are never drawn on a busy machine).
    assert len(pictures) >= 10 and cv2.imread(str(pictures[-1])).std() > 5  # the keyframe's picture, drawn


def test_a_slow_receiver_loses_only_stale_frames_and_slows_nobody(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 30)

    async def scenario() -> tuple[int, list[m.Message], dict[str, int], int]:
        # The slow receiver answers no ping while it reads nothing: a relay with the default 4 s would
        # (rightly) take its link for dead, so this relay waits longer.
        async with running_relay(downstream_buffer_bytes=1024, limits=Limits(dead_after_s=60.0)) as (relay, port):  # type: ignore[arg-type]
            room = f"ws://127.0.0.1:{port}/rooms/call"
            # The slow receiver's socket buffer is set small before it connects (its window is then small too).
            tiny = socket.socket()
            tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            tiny.connect(("127.0.0.1", port))
            async with joined(room) as quick, connect(room, max_queue=1, sock=tiny) as slow:
                protocol = JoinProtocol(TOKEN, time.monotonic(), capabilities=["landmarks", "alpha"])
                for data in protocol.data_to_send():
                    await slow.send(data)
                assert isinstance(m.decode(await slow.recv()), m.Welcome)
                await until(lambda: "call" in relay.rooms and len(relay.rooms["call"].subscribers) == 2)
                source, uplink = publisher(room + "?name=alice", frames, loop=True, max_frames=360)
                streaming = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
                await asyncio.sleep(6.0)  # the slow one reads nothing meanwhile, then catches up while the stream goes on
                got = []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(4.0):
                        while True:
                            got.append(m.decode(await slow.recv()))
                lost = relay.stats.as_dict(relay.rooms)["lost"]
                stats = await streaming
                return stats.frames_sent, got, lost, decoded(quick)  # type: ignore[return-value]

    sent, got, lost, quick = asyncio.run(scenario())
    assert quick >= 0.95 * sent, (quick, sent)  # the slow receiver held nobody up
    assert lost["stale"] > 0, lost
    kinds = [type(message) for message in got]
    assert kinds[0] is m.Source and m.Keyframe in kinds  # its state, whole
    seqs = [(message.seq, message.intra) for message in got if isinstance(message, m.Frame)]
    assert seqs and seqs[0][1]  # its frames begin at an intra one ...
    resumed = [now for before, now in zip(seqs, seqs[1:], strict=False) if now[0] != before[0] + 1]
    assert resumed and all(intra for _, intra in resumed), (lost, sent, seqs)  # ... and after every gap at an intra one


class _SlowWatch(Bridge):
    """A bridge whose watch takes a while (Redis), during which the bridge's beat tidies empty rooms."""

    relay: RelayServer | None = None

    async def watch(self, room: str) -> None:
        await asyncio.sleep(0.2)
        assert self.relay is not None
        self.relay.drop_room_if_empty(room)


def test_a_room_stays_while_a_receiver_joins_it(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 30)

    async def scenario() -> tuple[int, int]:
        bridge = _SlowWatch()
        async with running_relay(bridge=bridge) as (relay, port):
            bridge.relay = relay
            room = f"ws://127.0.0.1:{port}/rooms/call"
            async with joined(room) as receiver:
                await until(lambda: "call" in relay.rooms and len(relay.rooms["call"].subscribers) == 1)
                source, uplink = publisher(room + "?name=alice", frames, loop=True, max_frames=90)
                stats = await stream_live(source, SyntheticAnalyzer(), uplink)
                await asyncio.sleep(0.5)
                return stats.frames_sent, decoded(receiver)

    sent, got = asyncio.run(scenario())
    assert sent >= 10 and got >= 0.95 * sent, (sent, got)


def test_one_clock_acks_every_sender_and_closes_a_silent_one() -> None:
    async def scenario() -> tuple[set[int], m.Message, int | None]:
        async with running_relay(limits=Limits(dead_after_s=1.0, ping_interval_s=0.2)) as (_, port):  # type: ignore[arg-type]
            url = f"ws://127.0.0.1:{port}/rooms/call?name="
            async with connect(url + "talker") as talking, connect(url + "silent") as silent:
                protocols = [SenderProtocol(TOKEN, time.monotonic(), capabilities=["landmarks"]) for _ in range(2)]
                for ws, protocol in zip((talking, silent), protocols, strict=True):
                    for data in protocol.data_to_send():
                        await ws.send(data)
                    protocol.receive(await ws.recv(), time.monotonic())  # the welcome
                talker = protocols[0]
                acked: set[int] = set()
                for seq in range(40):  # 1.3 s of frames, longer than the silent one may stay
                    talker.send(m.Frame(seq=seq, dt_ms=33, kf=0, face=0, codes=[b"x" * 20], intra=seq == 0))
                    for data in talker.data_to_send():  # its pongs too: it answers the relay's pings
                        await talking.send(data)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1 / 30):
                            while True:
                                for event in talker.receive(await talking.recv(), time.monotonic()):
                                    if isinstance(event, MessageReceived) and isinstance(event.message, m.Ack):
                                        acked.update(seq for seq, _ in event.message.frames)
                last = None
                with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                    async with asyncio.timeout(5.0):
                        while True:
                            last = m.decode(await silent.recv())  # its pings, unanswered, then the error
                return acked, last, silent.close_code  # type: ignore[return-value]

    acked, last, code = asyncio.run(scenario())
    assert len(acked) >= 30, acked  # acked as they came (the last ones may still wait for the clock)
    assert isinstance(last, m.Error) and last.code == "unresponsive" and code == 4010, (last, code)
