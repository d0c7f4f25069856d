"""One session's decoding on its own thread, so the event loop keeps parsing messages and answering pings.

A keyframe's AVIF decode (~10 ms), an identity's image and the frames' full-size alpha cost the loop
nothing: the shell validates each message with its protocol object on the loop (sans-I/O, as before)
and hands it here. The decoder is stateful (a frame is predicted from the one before it and drawn from
a keyframe sent earlier), so one worker per session takes the messages in arrival order through a
bounded FIFO: when it falls `depth` messages behind, the shell waits for room before reading the next
message off the socket, and the link's backpressure reaches the sender's rate control instead of a
queue growing here. Decoded frames go on to the renderer's hand-off (`on_job`, from this thread); the
session's replies (a keyframe request, an asset request) and a fatal error come back to the loop
through `on_outcome`, in order, each with the sequence number of the message it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from facewire.receiver.session import RenderJob, Session, now_us
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)
DEPTH = 8  # messages: a keyframe's parts and a few frames behind them


@dataclass(frozen=True)
class Outcome:
    """What decoding message number `seq` asks of the connection: replies to send, or a fatal error."""

    seq: int
    replies: list[m.Message]
    error: ProtocolError | None = None


class DecodeWorker:
    """Decodes one session's messages in order on a thread of its own (see the module's docstring).

    Loop side: `await submit(message)`, then `close()` once: with `drain` the messages already
    submitted are still decoded (a sender that said bye has its last frames shown), without it they
    are discarded (a replaced or failed session). `then` runs on the loop once the thread is done;
    `finished()` waits for that. After a fatal error the rest of the session's messages are skipped.
    """

    def __init__(self, session: Session, on_job: Callable[[RenderJob], None], on_outcome: Callable[[Outcome], None],
                 loop: asyncio.AbstractEventLoop, depth: int = DEPTH, name: str = "decode") -> None:
        self._session: Session | None = session
        self._on_job = on_job
        self._on_outcome = on_outcome
        self._loop = loop
        self._room = asyncio.Semaphore(depth)
        self._queue: queue.SimpleQueue[tuple[int, m.Message, int] | None] = queue.SimpleQueue()
        self._discard = threading.Event()  # set: skip what is queued (failed, replaced)
        self._done = asyncio.Event()
        self._then: Callable[[], None] | None = None
        self._closed = False
        self.submitted = 0  # the sequence number of the last message handed over
        self.decoded = 0  # ... and of the last one whose outcome came back to the loop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def submit(self, message: m.Message, received_us: int | None = None) -> int:
        """Queue `message` (arrived at `received_us`, wall clock) behind the ones before it; waits while
        `depth` are not decoded yet. Returns its sequence number."""
        if self._closed:
            raise RuntimeError("submit after close")
        stamp = now_us() if received_us is None else received_us
        await self._room.acquire()
        self.submitted += 1
        self._queue.put((self.submitted, message, stamp))
        return self.submitted

    def close(self, drain: bool = True, then: Callable[[], None] | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._then = then
        if not drain:
            self._discard.set()
        self._queue.put(None)

    @property
    def closed(self) -> bool:
        return self._closed

    async def finished(self) -> None:
        await self._done.wait()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            seq, message, received_us = item
            outcome = Outcome(seq, [])
            if not self._discard.is_set():
                outcome = self._decode(seq, message, received_us)
            self._post(self._returned, outcome)
        self._session = None  # an ended session (its keyframes) is not kept alive by this object
        self._post(self._ended)

    def _decode(self, seq: int, message: m.Message, received_us: int) -> Outcome:
        session = self._session
        assert session is not None
        try:
            replies, job = session.handle(message, received_us)
        except ProtocolError as exc:
            self._discard.set()
            return Outcome(seq, [], exc)
        except Exception as exc:  # a decoder bug must end this connection, not the receiver
            log.exception("decoding `%s` failed", type(message).__name__.lower())
            self._discard.set()
            return Outcome(seq, [], ProtocolError(ErrorCode.INTERNAL,
                                                  f"the receiver failed on this message: {type(exc).__name__}"))
        if job is not None:
            self._on_job(job)
        return Outcome(seq, replies)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the receiver is exiting
            self._loop.call_soon_threadsafe(callback, *args)

    def _returned(self, outcome: Outcome) -> None:
        self._room.release()
        self.decoded = outcome.seq
        if outcome.replies or outcome.error is not None:
            self._on_outcome(outcome)

    def _ended(self) -> None:
        self._done.set()
        if self._then is not None:
            self._then()
