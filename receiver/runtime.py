"""Running a receiver: live (server + render clock) or offline (a stream file, one output per frame)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from facewire.receiver.join import RelayJoin
from facewire.receiver.player import Player
from facewire.receiver.server import ReceiverServer
from facewire.receiver.session import AssetStore, RenderJob, Session
from facewire.receiver.warmup import warm_up
from facewire.shared.codec.fields import FIELD_CODECS
from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.process.heap import reuse_heap_memory
from facewire.shared.types import FrameState, Image
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ProtocolError, StreamFileError
from facewire.shared.wire.protocol import Limits
from facewire.shared.wire.streamfile import StreamReader

log = logging.getLogger(__name__)
T = TypeVar("T", bound=np.generic)


# A frame the sender skipped is drawn between its neighbours when they are at most this far apart: a thin
# budget sends every 2nd-4th frame evenly (sender/coding.py FramePacer), and a face held still for each gap
# loses the mouth and eyes the input moved (d6 at every 3rd frame: mouth correlation 0.89 held, 0.93 drawn
# between); a longer gap is an outage or a keyframe's debt, where a slow morph would show what never was.
MAX_INTERPOLATED_S = 0.3


def between(a: FrameState, b: FrameState, w: float) -> FrameState:
    """The frame a share `w` of the way from `a` to `b` (drawn from the same keyframe): landmarks and the
    body's motion interpolated linearly, the rest as in `a` (the layer's last correction holds)."""
    def lerp(x: npt.NDArray[T] | None, y: npt.NDArray[T] | None) -> npt.NDArray[T] | None:
        if x is None or y is None:
            return x
        mixed: npt.NDArray[np.float64] = x.astype(np.float64) * (1.0 - w) + y.astype(np.float64) * w
        return mixed.astype(x.dtype)

    return dataclasses.replace(a, ts_us=round(a.ts_us + (b.ts_us - a.ts_us) * w), landmarks=lerp(a.landmarks, b.landmarks),
                               alpha=lerp(a.alpha, b.alpha), body=lerp(a.body, b.body), layer=None)


def play_stream(path: str | Path, player: Player) -> int:
    """Decodes a stream file in order and writes one picture per frame period of the input, by capture
    time, so the output lines up with the input frame for frame: a frame the sender skipped (its link or
    budget had no room) is drawn between the frames around it when they are close in time and drawn from
    the same keyframe (a player has the next frame; a live receiver, which would have to wait for it,
    repeats the picture), else the picture before it is repeated. Returns the number of pictures written."""
    reuse_heap_memory()  # render and compose allocate frame-sized arrays every frame
    pictures = 0
    with StreamReader(path) as reader:
        unknown = [code for code in reader.header.codes if code not in FIELD_CODECS]
        if unknown:
            raise StreamFileError(f"{path}: the stream uses frame codes {unknown} this receiver cannot decode "
                                  f"(it decodes {list(FIELD_CODECS)})")
        session = Session(AssetStore(), FrameDecoder(reader.header.codes))
        dt_s = 1.0 / reader.header.fps
        origin_us: int | None = None
        last: tuple[RenderJob, int] | None = None  # the last frame shown, and its picture's index
        for index, raw in enumerate(reader.raw()):
            try:
                message = m.decode(raw)
                replies, job = session.handle(message)
            except ProtocolError as exc:  # a live receiver would have closed the connection here
                raise StreamFileError(f"{path}: record #{index}: {exc.code.value}: {exc}") from None
            player.stats.received(len(raw))
            for reply in replies:
                log.warning("stream file: the receiver would have replied %s", reply)
            if not isinstance(message, m.Frame):
                continue
            if job is not None:
                origin_us = job.frame.ts_us if origin_us is None else origin_us
                slot = round((job.frame.ts_us - origin_us) / (dt_s * 1e6))
                close = last is not None and last[0].keyframe is job.keyframe and last[0].identity is job.identity \
                    and job.frame.ts_us - last[0].frame.ts_us <= MAX_INTERPOLATED_S * 1e6
                while pictures < slot:
                    if close and last is not None:
                        w = (pictures - last[1]) / (slot - last[1])
                        player.show(dataclasses.replace(job, frame=between(last[0].frame, job.frame, w)), dt_s)
                    elif player.hold() is None:
                        break
                    pictures += 1
                player.stats.decoded()
                player.show(job, dt_s)
                last = (job, pictures)
                pictures += 1
            elif player.repeat(dt_s) is None:
                log.warning("frame %d has nothing to show (no keyframe before it)", message.seq)
            else:
                pictures += 1
            player.stats.dropped = session.sender_dropped
            player.stats.tick()
    player.stats.tick(force=True)
    player.sink.close()
    return pictures


@dataclass(frozen=True)
class SessionSummary:
    frames_decoded: int
    decode_errors: int
    sender_dropped: int

    @classmethod
    def of(cls, session: Session) -> SessionSummary:
        return cls(session.frames_decoded, session.decode_errors, session.sender_dropped)


@dataclass
class LiveReceiver:
    """Serves senders, or joins a relay's room (`join`: its ws:// address), and renders on its own clock:
    repeats (and fades) the last picture when frames are late."""

    player: Player
    token: str
    fps: float = 30.0
    steady_clock: bool = True
    once: bool = False
    limits: Limits = field(default_factory=Limits)
    renderers: list[str] = field(default_factory=lambda: ["mesh"])
    server: ReceiverServer | RelayJoin | None = None
    join: str | None = None  # a relay room's address: dial it instead of listening
    show: str | None = None  # in a relay's room: the sender to show (None: the relay's rule)
    # Decoded frames that may wait for the renderer: 1 for a live sink (the newest wins: latency first), more
    # for a sink that records every frame (a burst, the backlog behind a session's first keyframe, is drawn).
    backlog: int = 1
    # What ended sessions did, the last few only: a session itself holds its keyframe and identities.
    ended_sessions: deque[SessionSummary] = field(default_factory=lambda: deque(maxlen=16))
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                  ready: asyncio.Future[int] | None = None) -> None:
        reuse_heap_memory()  # render and compose allocate frame-sized arrays every frame
        warm_up(self.player)  # before the port opens: a session's first picture then costs what the next ones do
        loop = asyncio.get_running_loop()
        slot: LatestSlot[RenderJob] = LatestSlot(loop, depth=self.backlog)
        if self.join is not None:
            await self._run_joined(slot, ssl_context, ready)
            return
        self.server = ReceiverServer(
            token=self.token, on_job=lambda job: self._received(job, slot), limits=self.limits, renderers=self.renderers,
            on_bytes=self.player.stats.received, on_session_end=self._session_ended,
        )
        listener = await self.server.start(host, port, ssl_context)
        bound = next(iter(listener.sockets)).getsockname()[1]
        log.info("listening on %s:%d (%s)", host, bound, "wss" if ssl_context else "ws")
        if ready is not None:
            ready.set_result(bound)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        renderer_task = asyncio.create_task(self._render(slot))
        try:
            await self._stop.wait()
        finally:
            await self.server.shutdown(listener)
            await self.server.drained()  # the frames the senders' last messages carried reach the slot first
            slot.close()
            await renderer_task
            self.player.stats.tick(force=True)
            self.player.sink.close()

    async def _run_joined(self, slot: LatestSlot[RenderJob], ssl_context: ssl.SSLContext | None,
                          ready: asyncio.Future[int] | None) -> None:
        assert self.join is not None
        link = self.server = RelayJoin(self.join, self.token, lambda job: self._received(job, slot), show=self.show,
                                       ssl_context=ssl_context, limits=self.limits, on_bytes=self.player.stats.received,
                                       on_session_end=self._session_ended)
        log.info("joining %s", self.join)
        if ready is not None:
            ready.set_result(0)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        renderer_task = asyncio.create_task(self._render(slot))
        try:
            await link.run(self._stop)
        finally:
            self._stop.set()
            await link.drained()
            slot.close()
            await renderer_task
            self.player.stats.tick(force=True)
            self.player.sink.close()

    def _received(self, job: RenderJob, slot: LatestSlot[RenderJob]) -> None:
        self.player.stats.decoded()
        slot.put(job)

    def stop(self) -> None:
        self._stop.set()

    def _session_ended(self, session: Session) -> None:
        self.ended_sessions.append(SessionSummary.of(session))
        log.info("session ended (%d decode errors, %d dropped by the sender)", session.decode_errors,
                 session.sender_dropped)
        if self.once:
            self._stop.set()

    async def _render(self, slot: LatestSlot[RenderJob]) -> None:
        """Draws each job, and composites it on another thread while the next one is drawn (Player.draw and emit):
        one picture composited at a time, in order. At 1280x720, drawing and compositing one after the other took
        32-40 ms a frame, more than a frame's time at 30 fps."""
        period = 1.0 / self.fps
        last = time.monotonic()
        composing: asyncio.Future[Image] | None = None  # the last drawn frame's compositing
        try:
            while True:
                try:
                    job = await asyncio.wait_for(slot.get(), period * 1.5 if self.steady_clock else 0.5)
                except TimeoutError:
                    job = None
                    if self._stop.is_set():
                        return
                now = time.monotonic()
                dt_s, last = now - last, now
                if job is not None:
                    drawn = await asyncio.to_thread(self.player.draw, job, dt_s)
                    if composing is not None:
                        await composing
                    composing = asyncio.ensure_future(asyncio.to_thread(self.player.emit, drawn))
                elif slot.closed:
                    return
                elif self.steady_clock:
                    if composing is not None:
                        await composing
                        composing = None
                    await asyncio.to_thread(self.player.repeat, dt_s)
                self.player.stats.dropped = slot.dropped + self._sender_dropped()
                self.player.stats.sender_stages_ms = self._sender_stages()
                self.player.stats.rtt_ms = self.server.rtt_ms if self.server else None
                self.player.stats.clock_offset_us = self.server.clock_offset_us if self.server else None
                self.player.stats.tick()
        finally:
            if composing is not None:
                await composing

    def _sender_dropped(self) -> int:
        # Read through a method, not a local of _render's loop: a local would keep an ended session (and its
        # keyframe) alive while the loop waits for the next job.
        active = self.server.active if self.server else None
        return active.sender_dropped if active else 0

    def _sender_stages(self) -> tuple[float, ...]:
        active = self.server.active if self.server else None
        return active.sender_stages_ms if active else ()
