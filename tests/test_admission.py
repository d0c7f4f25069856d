"""Fair admission (issue 13, deliverable 2): unauthenticated connections in a small pool with a cap per
address, oldest evicted first; wrong tokens slow their address down; the owner always gets in."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from facewire.receiver.admission import Admission
from facewire.receiver.sinks import NullSink
from facewire.sender.runner import stream_live
from facewire.shared.wire import messages as m
from tests.test_link import running_receiver, sender
from tests.wire_fixtures import SyntheticAnalyzer, write_frames


# ---------------------------------------------------------------------------------------------- policy
def test_pool_and_per_address_cap_evict_the_oldest() -> None:
    admission = Admission(pool=4, per_address=2)
    assert admission.arrive("a1", "A") == [] and admission.arrive("a2", "A") == []
    assert admission.arrive("a3", "A") == ["a1"]  # the address is full: its oldest goes
    assert admission.arrive("b1", "B") == [] and admission.arrive("c1", "C") == []
    assert admission.arrive("d1", "D") == ["a2"]  # the pool is full: the oldest anywhere goes
    admission.authenticated("d1", "D")  # an authenticated connection no longer counts
    assert admission.unauthenticated == 3 and admission.arrive("e1", "E") == []
    admission.left("a3")
    assert admission.unauthenticated == 3


def test_wrong_tokens_cost_a_growing_delay_and_parallel_guesses_queue() -> None:
    admission = Admission(first_delay_s=0.5, max_delay_s=8.0)
    assert admission.hello_slot("A", 0.0) == 0.0
    assert [admission.failed("A", 0.0 + i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    now = 5.0  # the sixth failure at t=5: the next hello waits until 13
    slots = [admission.hello_slot("A", now) for _ in range(3)]  # three guesses in parallel
    assert slots == [13.0, 21.0, 29.0]
    assert admission.hello_slot("B", now) == now  # other addresses are not slowed
    admission.authenticated("k", "A")  # the right token clears the address
    assert admission.hello_slot("A", 30.0) == 30.0


def test_failures_are_forgotten_and_records_bounded() -> None:
    admission = Admission(forget_after_s=100.0, max_addresses=10)
    admission.failed("A", 0.0)
    assert admission.hello_slot("A", 50.0) > 50.0 - 1e-9
    assert admission.hello_slot("A", 201.0) == 201.0
    for i in range(50):
        admission.failed(f"10.0.0.{i}", 300.0)
    assert len(admission._records) == 10


# ------------------------------------------------------------------------------------------------ live
def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _silent(port: int) -> ClientConnection | None:
    """A client that upgrades to a websocket and then says nothing."""
    try:
        return await connect(f"ws://127.0.0.1:{port}", open_timeout=10, close_timeout=0.1)
    except (OSError, websockets.exceptions.WebSocketException, TimeoutError):
        return None


def test_owner_is_shown_within_2_s_of_500_silent_connections(tmp_path: Path) -> None:
    _raise_fd_limit(1400)
    frames = write_frames(tmp_path / "in", 60)

    async def scenario() -> tuple[int, float | None, int]:
        async with running_receiver(NullSink()) as (receiver, port):
            server = receiver.server
            assert server is not None
            crowd: list[ClientConnection | None] = []
            for _ in range(10):
                crowd += await asyncio.gather(*(_silent(port) for _ in range(50)))
            opened = sum(ws is not None for ws in crowd)
            waiting = server.admission.unauthenticated
            source, uplink = sender(port, frames)
            start = time.monotonic()
            streaming = asyncio.create_task(stream_live(source, SyntheticAnalyzer(), uplink))
            shown = None
            while time.monotonic() - start < 5:
                if server.active is not None and server.active.frames_decoded > 0:
                    shown = time.monotonic() - start
                    break
                await asyncio.sleep(0.02)
            source.close()
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            for ws in crowd:
                if ws is not None:
                    ws.transport.abort()
            return opened, shown, waiting

    opened, shown, waiting = asyncio.run(scenario())
    assert opened == 500, "the crowd's connections should all open (and then be evicted, oldest first)"
    assert waiting <= Admission().pool
    assert shown is not None and shown <= 2.0, f"the owner was shown after {shown} s"


async def _hello_reply(port: int, token: str) -> tuple[str, float]:
    start = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.send(m.encode(m.Hello(versions=[2], token=token, capabilities=["landmarks"])))
        reply = m.decode(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
    name = reply.code if isinstance(reply, m.Error) else type(reply).__name__
    return name, time.monotonic() - start


def test_wrong_tokens_are_answered_ever_later() -> None:
    async def scenario() -> list[tuple[str, float]]:
        async with running_receiver(NullSink()) as (_, port):
            first = [await _hello_reply(port, "guess-1")]
            rest = await asyncio.gather(_hello_reply(port, "guess-2"), _hello_reply(port, "guess-3"))
            return first + sorted(rest, key=lambda item: item[1])

    replies = asyncio.run(scenario())
    assert [name for name, _ in replies] == ["unauthorized"] * 3
    # failure 1 -> the next hello waits 0.5 s; two in parallel are examined one delay apart (at 0.5 and 1.0)
    assert replies[0][1] < 0.5 and replies[1][1] >= 0.45 and replies[2][1] >= 0.95
