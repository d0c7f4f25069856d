"""The relay's own Redis connections (relay/resp.py) and the bridge over them, against a real redis-server:
commands in RESP, replies counted, subscriptions confirmed, state for a relay that starts watching later,
and rooms shared again after Redis restarts."""

from __future__ import annotations

import asyncio
import time

from facewire.relay.access import Access
from facewire.relay.bridge import RedisBridge
from facewire.relay.resp import Endpoint, Publisher, Subscriber, command
from facewire.relay.rooms import Subscriber as Viewer
from facewire.relay.server import RelayServer
from facewire.shared.wire import messages as m
from tests.test_relay import RedisServer, redis_server, until  # noqa: F401 - redis_server is a fixture

TOKEN = "resp-token"


def test_commands_are_arrays_of_bulk_strings_and_a_url_says_how_to_log_in() -> None:
    assert command("SET", "k", b"\r\n") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\r\n\r\n"
    endpoint = Endpoint.from_url("redis://user:secret@10.0.0.2:6380/3")
    assert (endpoint.host, endpoint.port, endpoint.db, endpoint.tls) == ("10.0.0.2", 6380, 3, False)
    assert endpoint.login(select=True) == [command("AUTH", "user", "secret"), command("SELECT", "3")]
    assert endpoint.login(select=False) == [command("AUTH", "user", "secret")]  # pub/sub knows no databases
    assert Endpoint.from_url("rediss://host:6379/0").tls
    assert Endpoint.from_url("redis://host:6379/0").login(select=True) == []


def test_a_publisher_and_a_subscriber_on_redis(redis_server: RedisServer) -> None:  # noqa: F811
    async def scenario() -> tuple[list[tuple[bytes, bytes]], int, int]:
        endpoint = Endpoint.from_url(redis_server.url)
        got: list[tuple[bytes, bytes]] = []
        subscriber = await Subscriber.connect(endpoint, lambda channel, data: got.append((channel, data)))
        publisher = await Publisher.connect(endpoint)
        try:
            await subscriber.subscribe(["fw:one", "fw:two"])  # confirmed: what is published now arrives
            publisher.send([command("PUBLISH", "fw:one", b"a"), command("PUBLISH", "fw:three", b"b"),
                            command("NO-SUCH-COMMAND"), command("PUBLISH", "fw:two", b"c" * 100_000)])
            await until(lambda: publisher.pending == 0 and len(got) == 2, timeout=5.0)
            return got, publisher.errors, publisher.pending
        finally:
            publisher.close()
            subscriber.close()

    got, errors, pending = asyncio.run(scenario())
    assert got == [(b"fw:one", b"a"), (b"fw:two", b"c" * 100_000)]
    assert (errors, pending) == (1, 0)  # the refused command is counted, its reply taken like the others


def _frame(seq: int) -> tuple[m.Frame, bytes]:
    message = m.Frame(seq=seq, dt_ms=0, kf=0, face=0, codes=[b"x" * 30], intra=True)
    return message, m.encode(message)


def _frames(viewer: Viewer) -> list[int]:
    seqs = []
    while (raw := viewer.outbox.pop()) is not None:
        message = m.decode(raw)
        if isinstance(message, m.Frame):
            seqs.append(message.seq)
    return seqs


def test_relays_share_state_and_rooms_again_after_redis_restarts(redis_server: RedisServer) -> None:  # noqa: F811
    async def scenario() -> tuple[list[m.Message], list[int], list[int]]:
        a, b, c = (RelayServer(Access(shared=TOKEN)) for _ in range(3))
        for relay in (a, b):
            relay.bridge = await RedisBridge.connect(redis_server.url, relay)
        try:
            viewer = Viewer(1, ["landmarks"])
            await b.bridge.watch("call")
            b.room("call").join(viewer, time.monotonic())
            a.room("call").publish_start("alice", ["landmarks"], time.monotonic())
            await a.bridge.sender_started("call", "alice", ["landmarks"])
            setup = m.Setup(code="landmarks", payload=b"neutral")
            a.room("call").publish("alice", setup, m.encode(setup), time.monotonic())
            a.bridge.sender_message("call", "alice", m.encode(setup), setup)
            message, raw = _frame(0)
            a.bridge.sender_message("call", "alice", raw, message)
            before: list[int] = []
            await until(lambda: bool(before.extend(_frames(viewer)) or before), timeout=5.0)

            # A relay that starts watching the room later takes alice's state from Redis.
            c.bridge = await RedisBridge.connect(redis_server.url, c)
            late = Viewer(2, ["landmarks"])
            c.room("call").join(late, time.monotonic())
            await c.bridge.watch("call")
            state = []
            while (raw := late.outbox.pop()) is not None:
                state.append(m.decode(raw))

            redis_server.stop()
            redis_server.start()
            after: list[int] = []
            for seq in range(1, 200):  # the first ones may go while the relays connect again: lost, counted
                message, raw = _frame(seq)
                a.bridge.sender_message("call", "alice", raw, message)
                await asyncio.sleep(0.05)
                after.extend(_frames(viewer))
                if after:
                    break
            return state, before, after
        finally:
            for relay in (a, b, c):
                await relay.bridge.close()

    state, before, after = asyncio.run(scenario())
    assert before == [0]
    assert [type(message) for message in state] == [m.Source, m.Setup] and state[0].name == "alice"  # type: ignore[union-attr]
    assert after, "no frame reached the other relay after Redis restarted"


def test_frames_redis_cannot_take_are_dropped_and_their_senders_go_on_from_an_intra_frame() -> None:
    from facewire.relay.bridge import MAX_QUEUED_FRAMES

    relay = RelayServer(Access(shared=TOKEN))
    # No writing task: Redis takes nothing, as when its socket stays full.
    bridge = RedisBridge(client=None, endpoint=Endpoint.from_url("redis://127.0.0.1:1/0"), server=relay)  # type: ignore[arg-type]

    def send(sender: str, seq: int, intra: bool = False) -> None:
        message = m.Frame(seq=seq, dt_ms=0, kf=0, face=0, codes=[b"x" * 30], intra=intra)
        bridge.sender_message("call", sender, m.encode(message), message)

    def queued_frames() -> list[tuple[str, int]]:
        return [(env[2], m.decode(env[3]).seq) for _, env in bridge._outgoing if env[1] in ("f", "i")]  # type: ignore[union-attr]

    setup = m.Setup(code="landmarks", payload=b"neutral")
    bridge.sender_message("call", "alice", m.encode(setup), setup)
    for seq in range(MAX_QUEUED_FRAMES + 1):
        send("alice" if seq % 2 else "bob", seq)
    assert queued_frames() == [] and bridge.frames_lost == MAX_QUEUED_FRAMES + 1
    assert [env[1] for _, env in bridge._outgoing] == ["m"]  # state is kept
    asked = [bridge._requests.get_nowait()[0] for _ in range(2)]
    assert {(up.sender, type(up.message)) for up in asked} == {("alice", m.IntraRequest), ("bob", m.IntraRequest)}
    send("alice", 5000)  # a delta after the gap would be decoded against a frame the other relays never got
    send("bob", 5001, intra=True)
    send("bob", 5002)
    send("alice", 5003, intra=True)
    send("alice", 5004)
    assert queued_frames() == [("bob", 5001), ("bob", 5002), ("alice", 5003), ("alice", 5004)]
    assert bridge._requests.empty()
