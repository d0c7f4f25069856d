"""Decoding off the event loop: one worker per session, in arrival order, bounded, its replies and a fatal
error coming back to the loop; and the renderer's hand-off holding a burst for a recording sink."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from facewire.receiver.decoding import DecodeWorker, Outcome
from facewire.receiver.session import AssetStore, RenderJob, Session
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, ProtocolError


class _Recording(Session):
    """A session that notes what it handled, on which thread, and is slow or hostile on demand."""

    def __init__(self, delay_s: float = 0.0, hostile_at: int | None = None) -> None:
        super().__init__(AssetStore())
        self.handled: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.hostile_at = hostile_at
        self.gate = threading.Event()
        self.gate.set()

    def handle(self, message: m.Message, received_us: int | None = None) -> tuple[list[m.Message], RenderJob | None]:
        assert isinstance(message, m.Stats)
        self.gate.wait(5)
        time.sleep(self.delay_s)
        self.threads.add(threading.current_thread().name)
        if message.frames == self.hostile_at:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "bad bytes", "codes[0]")
        self.handled.append(message.frames)
        replies: list[m.Message] = [m.KeyframeRequest(reason=str(message.frames))] if message.frames % 3 == 0 else []
        return replies, None


def _run(session: _Recording, count: int, depth: int = 4) -> list[Outcome]:
    """Submits `count` messages, closes and waits; returns the outcomes that came back to the loop."""
    outcomes: list[Outcome] = []

    async def scenario() -> None:
        worker = DecodeWorker(session, lambda job: None, outcomes.append, asyncio.get_running_loop(), depth=depth)
        for index in range(count):
            await worker.submit(m.Stats(frames=index))
        worker.close()
        await asyncio.wait_for(worker.finished(), 10)

    asyncio.run(scenario())
    return outcomes


def test_messages_are_decoded_in_order_on_a_thread_of_their_own() -> None:
    session = _Recording(delay_s=0.005)
    outcomes = _run(session, 12)
    assert session.handled == list(range(12))
    assert session.threads == {"decode"} and threading.current_thread().name not in session.threads
    # each reply comes back with the sequence number of the message it answers (numbered from 1)
    assert [(o.seq, [r.reason for r in o.replies]) for o in outcomes] == [
        (i + 1, [str(i)]) for i in range(12) if i % 3 == 0]


def test_a_hostile_message_fails_the_session_and_what_follows_is_skipped() -> None:
    session = _Recording(hostile_at=4)
    outcomes = _run(session, 10)
    assert session.handled == [0, 1, 2, 3]
    errors = [o for o in outcomes if o.error is not None]
    assert len(errors) == 1 and errors[0].seq == 5 and errors[0].error is not None
    assert errors[0].error.field == "codes[0]"


def test_closing_without_draining_discards_what_is_queued() -> None:
    session = _Recording()
    session.gate.clear()

    async def scenario() -> None:
        worker = DecodeWorker(session, lambda job: None, lambda o: None, asyncio.get_running_loop(), depth=8)
        for index in range(5):
            await worker.submit(m.Stats(frames=index))
        worker.close(drain=False)
        session.gate.set()
        await asyncio.wait_for(worker.finished(), 5)

    asyncio.run(scenario())
    assert len(session.handled) <= 1  # at most the one already being decoded


def test_submit_waits_while_the_worker_is_depth_messages_behind() -> None:
    session = _Recording()
    session.gate.clear()

    async def scenario() -> tuple[int, int]:
        worker = DecodeWorker(session, lambda job: None, lambda o: None, asyncio.get_running_loop(), depth=3)
        for index in range(3):
            await worker.submit(m.Stats(frames=index))
        blocked = asyncio.create_task(worker.submit(m.Stats(frames=3)))
        await asyncio.sleep(0.05)
        waiting = int(not blocked.done())
        session.gate.set()
        seq = await asyncio.wait_for(blocked, 5)
        worker.close()
        await worker.finished()
        return waiting, seq

    waiting, seq = asyncio.run(scenario())
    assert waiting == 1 and seq == 4


def test_a_deeper_slot_keeps_a_burst_in_order_and_drops_the_oldest_beyond_it() -> None:
    async def scenario() -> tuple[list[int | None], int, list[int | None], int]:
        loop = asyncio.get_running_loop()
        deep: LatestSlot[int] = LatestSlot(loop, depth=4)
        for item in range(6):
            deep.put(item)
        deep.close()
        got = [await deep.get() for _ in range(5)]
        latest: LatestSlot[int] = LatestSlot(loop)
        for item in range(6):
            latest.put(item)
        latest.close()
        return got, deep.dropped, [await latest.get(), await latest.get()], latest.dropped

    got, dropped, newest, skipped = asyncio.run(scenario())
    assert got == [2, 3, 4, 5, None] and dropped == 2
    assert newest == [5, None] and skipped == 5
    with pytest.raises(ValueError):
        LatestSlot(asyncio.new_event_loop(), depth=0)
