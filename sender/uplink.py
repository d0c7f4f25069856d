"""The sender's websocket client: handshake, identity, rate-controlled latest-frame-wins streaming, reconnects.

A thin asyncio shell around `facewire.shared.wire.protocol.SenderProtocol`. Coded frames arrive in
a `LatestSlot`; what goes out for each is planned by sender/sending.py under a rate controller
(sender/congestion) fed with the receiver's acks: a frame goes only when the bytes in flight leave
room for it, so a slow link skips stale frames (counted) instead of queueing them in the kernel,
while identities, setups and keyframes always go, in order, keyframes in parts between frames.
The kernel's send buffer is kept small so the controller, not the socket, holds the queue.

Liveness: a watchdog ticks the protocol even while a send is blocked on a full socket; when nothing
has been heard from the receiver for `Limits.dead_after_s` (its pings and acks stopped: a silent
loss), the connection is dropped and the uplink reconnects. Each reconnect attempt is spaced from
the start of the last by the backoff, so an attempt that timed out is retried at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from facewire.sender.coding import LIVE_FIRST_KEYFRAME_SECONDS, FrameCoder, Outgoing
from facewire.sender.congestion import RateController
from facewire.sender.identity import in_parts
from facewire.sender.sending import FRAMING_BYTES, link_bytes, parts, plan
from facewire.sender.stream import FeatureStream
from facewire.sender.timing import StageMeter
from facewire.shared.codec.fields import negotiate
from facewire.shared.codec.predictive import CodeError
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import CloseCode, ErrorCode
from facewire.shared.wire.protocol import ConnectionFailed, HandshakeDone, Limits, MessageReceived, SenderProtocol, State
from facewire.shared.wire.transport import HearingClientConnection, abort, last_heard

log = logging.getLogger(__name__)
FATAL_CODES = {ErrorCode.UNAUTHORIZED, ErrorCode.UNSUPPORTED_VERSION}


class UplinkError(RuntimeError):
    """The receiver refused us for good (wrong token, no common version)."""


class LinkDead(ConnectionError):
    """Nothing heard from the receiver for the protocol's `dead_after_s`."""


@dataclass
class Backoff:
    first_s: float = 0.25
    max_s: float = 3.0
    _next: float = 0.0

    def reset(self) -> None:
        self._next = 0.0

    def delay(self) -> float:
        self._next = self.first_s if self._next == 0 else min(self.max_s, self._next * 2)
        return self._next * random.uniform(0.8, 1.2)


@dataclass
class UplinkStats:
    frames_sent: int = 0
    keyframes_sent: int = 0
    bytes_sent: int = 0
    dropped: int = 0
    connects: int = 0
    keyframe_requests: int = 0
    rtt_ms: float | None = None
    target_kbps: float = 0.0
    skipped: int = 0  # frames the rate control kept off the link (their features would have queued)


@dataclass
class IdentityBook:
    """The identities this sender can appear as, which one is active, and which the receiver holds.

    An identity crosses the link with its image only when the receiver does not hold it
    (its sha256 is not in `welcome.assets` and it was not sent in this session).
    """

    identities: list[m.Identity]
    active: int = 0
    _held: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.identities:
            raise ValueError("an identity book needs at least one identity")

    def session_started(self, held_assets: list[str]) -> list[m.Message]:
        self._held = set(held_assets)
        return [self._offer(self.identities[self.active], activate=True)]

    def switch(self, index: int) -> list[m.Message]:
        self.active = index % len(self.identities)
        identity = self.identities[self.active]
        if identity.asset == "self" or identity.asset in self._held:
            return [m.IdentitySwitch(asset=identity.asset)]
        return [self._offer(identity, activate=True)]

    def requested(self, asset: str) -> list[m.Message]:
        """The receiver asked for an asset's image (it lost or never had it)."""
        self._held.discard(asset)
        wanted = [i for i in self.identities if i.asset == asset]
        return [self._offer(wanted[0], activate=asset == self.identities[self.active].asset)] if wanted else []

    def _offer(self, identity: m.Identity, activate: bool) -> m.Identity:
        if identity.asset == "self":
            return identity
        if identity.asset in self._held:
            return m.Identity(asset=identity.asset, embedding=identity.embedding, activate=activate)
        self._held.add(identity.asset)
        return msgspec.structs.replace(identity, activate=activate)


@dataclass
class Uplink:
    url: str
    token: str
    coder: FrameCoder = field(default_factory=FrameCoder)  # the analysing thread's: its budget and policy
    identities: IdentityBook | None = None
    ssl_context: ssl.SSLContext | None = None
    stats: UplinkStats = field(default_factory=UplinkStats)
    backoff: Backoff = field(default_factory=Backoff)
    on_stats: Callable[[UplinkStats], None] | None = None
    # A few KiB: enough for a keyframe part, never seconds of a thin link (Linux doubles what is asked).
    send_buffer_bytes: int = 8 * 1024
    fps: float = 30.0  # the source's, for the budget's estimate of what the frames cost
    stream: FeatureStream = field(default_factory=FeatureStream)
    limits: Limits = field(default_factory=Limits)
    connect_timeout_s: float = 3.0  # the websocket's opening handshake, then again the welcome
    # Names this process to the receiver: its reconnect replaces its own half-open session there.
    instance: str = field(default_factory=lambda: secrets.token_hex(8))
    protocol: SenderProtocol | None = None  # the current connection's, while connected
    controller: RateController | None = None  # the current connection's
    # Set while a receiver is connected: the analysing thread analyses nothing without one.
    receiving: threading.Event = field(default_factory=threading.Event)
    stages: StageMeter = field(default_factory=StageMeter)
    _priority: deque[m.Message] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, slot: LatestSlot[Outgoing]) -> UplinkStats:
        """Streams until the source ends; reconnects with backoff whenever the link drops."""
        while True:
            started = time.monotonic()
            try:
                finished = await self._connect_once(slot)
            except UplinkError:
                raise
            except ssl.SSLCertVerificationError as exc:  # permanent: retrying would never succeed
                raise UplinkError(f"the receiver's TLS certificate is not trusted ({exc.verify_message}); "
                                  "pass its CA with --cafile") from None
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                log.warning("link down (%s); reconnecting", exc or type(exc).__name__)
                finished = False
            self.stats.dropped = slot.dropped
            if finished:
                return self.stats
            if slot.closed:
                log.warning("input ended while the link was down; giving up")
                return self.stats
            await asyncio.sleep(max(0.0, self.backoff.delay() - (time.monotonic() - started)))

    async def _connect_once(self, slot: LatestSlot[Outgoing]) -> bool:
        async with connect(self.url, ssl=self.ssl_context, max_size=m.MAX_MESSAGE_BYTES, open_timeout=self.connect_timeout_s,
                           ping_interval=None, write_limit=self.send_buffer_bytes, compression=None, close_timeout=2,
                           create_connection=HearingClientConnection) as ws:
            _limit_send_buffer(ws, self.send_buffer_bytes)
            offered = list(self.coder.codes)
            # pings stamped by the wall clock: the receiver measures our clock against its own from them
            protocol = SenderProtocol(self.token, time.monotonic(), agent="facewire-send", capabilities=offered,
                                      limits=self.limits, instance=self.instance,
                                      wall_base_us=time.time_ns() // 1000 - round(time.monotonic() * 1e6))
            await self._flush(ws, protocol)
            welcome = await self._await_welcome(ws, protocol)
            self.stats.connects += 1
            self.backoff.reset()
            try:
                codes = negotiate(offered, welcome.capabilities)
            except CodeError as exc:
                raise UplinkError(f"the receiver cannot decode this sender's frames: {exc}") from None
            log.info("connected to %s (session %s, codes %s, renderers %s)", self.url, welcome.session, codes,
                     welcome.renderers)
            self.stream.restart(codes, packed=protocol.packed_frames, keyframe_av1=protocol.keyframe_av1)
            self.coder.budget.keyframe_av1 = protocol.keyframe_av1  # keyframes are sized as they will travel
            self.controller = RateController(self.coder.budget.ceiling_bps)
            # The first keyframe is sized to what the controller starts from, not to the ceiling: at a
            # 256 kbps ceiling it was 48 KB, seconds of a thin link before the first picture.
            self.coder.budget.target_bps = self.controller.target_bps
            self.coder.budget.first_keyframe_s = LIVE_FIRST_KEYFRAME_SECONDS
            self.coder.restart()  # the receiver holds nothing: setups and a keyframe first
            self._priority.clear()
            if self.identities is not None:
                self._queue(self.identities.session_started(welcome.assets))
            self.protocol = protocol
            reader = asyncio.create_task(self._read(ws, protocol))
            self.receiving.set()
            watchdog = asyncio.create_task(self._watch(ws, protocol))
            try:
                finished = await self._write(ws, protocol, slot, reader)
            finally:
                self.receiving.clear()
                reader.cancel()
                watchdog.cancel()
            if not finished and _dead(protocol):
                abort(ws)  # a closing handshake over a dead link would only wait out its timeout
                assert protocol.close is not None
                raise LinkDead(protocol.close.reason)
            if finished:
                protocol.close_with_bye("end of input")
                await self._flush(ws, protocol)
                assert protocol.close is not None
                await ws.close(protocol.close.code, protocol.close.reason)
            return finished

    def switch_identity(self, index: int) -> None:
        """Show another identity from the book; goes out before the next frame."""
        if self.identities is not None:
            self._queue(self.identities.switch(index))
            self._wake.set()

    def _queue(self, messages: list[m.Message]) -> None:
        """Before the next frame; an identity's image in pieces (in_parts): the receiver shows nobody until it is
        whole, so it goes first at what the link takes, and the pings and acks go between its pieces."""
        for message in messages:
            self._priority.extend(in_parts(message) if isinstance(message, m.Identity) else [message])

    async def _flush(self, ws: ClientConnection, protocol: SenderProtocol) -> None:
        for data in protocol.data_to_send():
            await ws.send(data)
            self.stats.bytes_sent += len(data)

    async def _await_welcome(self, ws: ClientConnection, protocol: SenderProtocol) -> m.Welcome:
        return await asyncio.wait_for(self._welcome(ws, protocol), self.connect_timeout_s)

    async def _watch(self, ws: ClientConnection, protocol: SenderProtocol) -> None:
        """Notices a dead link even while the writer is blocked in a send (a silent loss fills the socket)."""
        period = min(0.25, protocol.limits.dead_after_s / 8)
        while protocol.state is not State.CLOSED:
            await asyncio.sleep(period)
            protocol.heard(last_heard(ws))
            for event in protocol.check_timeouts(time.monotonic()):
                if isinstance(event, ConnectionFailed):
                    log.warning("link dead: %s", event.error)
        if _dead(protocol):
            abort(ws)  # unblocks a writer stuck in a send to a socket that will never drain

    async def _welcome(self, ws: ClientConnection, protocol: SenderProtocol) -> m.Welcome:
        while True:
            for event in protocol.receive(await ws.recv(), time.monotonic()):
                if isinstance(event, HandshakeDone) and isinstance(event.message, m.Welcome):
                    return event.message
                if isinstance(event, ConnectionFailed):
                    if event.error.code in FATAL_CODES:
                        raise UplinkError(str(event.error))
                    raise websockets.exceptions.InvalidMessage(str(event.error))

    async def _read(self, ws: ClientConnection, protocol: SenderProtocol) -> None:
        async for data in ws:
            for event in protocol.receive(data, time.monotonic()):
                if isinstance(event, ConnectionFailed):
                    log.warning("receiver sent a bad message: %s", event.error)
                if isinstance(event, MessageReceived):
                    self._handle(event.message)
            await self._flush(ws, protocol)
            if protocol.close is not None:  # a violation, or the receiver said bye
                await ws.close(protocol.close.code, protocol.close.reason)
                return

    def _handle(self, message: m.Message) -> None:
        if isinstance(message, m.Ack):
            if self.controller is not None:
                self.controller.on_acks(message.frames, time.monotonic())
        elif isinstance(message, m.KeyframeRequest):
            self.stats.keyframe_requests += 1
            self.stream.force_intra()
            self.coder.resync()
        elif isinstance(message, m.IntraRequest):  # the asker holds the keyframe, only the prediction chain broke
            self.stream.force_intra()
        elif isinstance(message, m.AssetRequest) and self.identities is not None:
            self._queue(self.identities.requested(message.asset))
            self._wake.set()
        elif isinstance(message, m.Error):
            log.warning("receiver error %s: %s", message.code, message.message)
        elif isinstance(message, m.Bye):
            log.info("receiver said bye: %s", message.reason)

    async def _write(self, ws: ClientConnection, protocol: SenderProtocol, slot: LatestSlot[Outgoing],
                     reader: asyncio.Task[None]) -> bool:
        controller = self.controller
        assert controller is not None
        last_stats = time.monotonic()
        while True:
            while self._priority:
                message = self._priority.popleft()
                # an identity's pieces go at the pace the socket drains (its send buffer is a few KiB): charged to
                # the rate control's buckets, bytes that have crossed already would hold the frames after them
                await self._send(ws, protocol, message, None if isinstance(message, m.IdentityPart) else controller)
            getter = asyncio.ensure_future(slot.get())
            self._wake.clear()
            waker = asyncio.ensure_future(self._wake.wait())
            done, _ = await asyncio.wait({getter, reader, waker}, timeout=self._wait_s(protocol, controller),
                                         return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            now = time.monotonic()
            controller.tick(now)
            protocol.heard(last_heard(ws))
            protocol.tick(now)
            if protocol.state is State.CLOSED:  # the link died (the watchdog aborts the socket)
                getter.cancel()
                return False
            await self._flush(ws, protocol)
            if reader in done:
                getter.cancel()
                reader.result()
                raise websockets.exceptions.ConnectionClosedOK(None, None)
            if getter in done:
                item = getter.result()
                if item is None:
                    for message in await self._finish(controller, now):
                        await self._send(ws, protocol, message)
                    return True
                messages = plan(self.stream, item, controller, now)
                self.stats.skipped += self.stream.backlog_dropped
                self.stream.backlog_dropped = 0
                if not any(isinstance(message, m.Frame) for message in messages) and self.stream.current is not None:
                    self.stats.skipped += 1
                elif item.times is not None:
                    self.stages.sent(item.times)
            else:
                getter.cancel()
                messages = parts(self.stream, controller, now)
            for message in messages:
                await self._send(ws, protocol, message)
            self._steer(controller)
            if now - last_stats >= 1.0:
                last_stats = now
                self.stats.dropped = slot.dropped
                self.stats.rtt_ms = protocol.rtt_ms
                await self._send(ws, protocol, m.Stats(frames=self.stats.frames_sent, dropped=slot.dropped,
                                                               stages_ms=self.stages.take()), controller)
                if self.on_stats is not None:
                    self.on_stats(self.stats)
                _trace(controller, now, self.stats)

    async def _finish(self, controller: RateController, now: float) -> list[m.Message]:
        """The input ended while frames still wait for the session's first keyframe: it is finished (the
        analysing thread is done, so the coder is ours now) and goes with them."""
        last = self.stream.take_last_waiting()
        if last is None:
            return []
        keyframe = await asyncio.to_thread(self.coder.finish)
        if keyframe is None:
            return []
        return plan(self.stream, dataclasses.replace(last, keyframe=keyframe), controller, now)

    def _wait_s(self, protocol: SenderProtocol, controller: RateController) -> float:
        """Until the next ping, or sooner when a keyframe part is waiting for the pacer."""
        part = self.stream.next_part()
        if part is None:
            return protocol.heartbeat.interval_s
        now = time.monotonic()
        return min(protocol.heartbeat.interval_s, max(0.005, controller.next_send_time(link_bytes(part), now) - now))

    def _steer(self, controller: RateController) -> None:
        """Tell the analysing thread what the link allows now (it sizes keyframes and layers by it)."""
        self.coder.budget.target_bps = controller.target_bps
        self.coder.budget.layer_max_bps = controller.layer_key_bytes() / self.stream.layer.key_bytes_per_kbps() * 1000
        self.coder.budget.observe_frame(self.stream.last_features_bytes, self.fps)
        self.coder.held = self.stream.held
        self.stats.target_kbps = controller.target_bps / 1000

    async def _send(self, ws: ClientConnection, protocol: SenderProtocol, message: m.Message,
                    charge: RateController | None = None) -> None:
        """Send one message; `charge`: a message outside the sending plan, whose bytes the controller must learn of."""
        data = protocol.send(message)
        await self._flush(ws, protocol)
        if charge is not None:
            charge.on_send_uncontrolled(len(data) + FRAMING_BYTES, time.monotonic())
        if isinstance(message, m.Frame):
            self.stats.frames_sent += 1
        elif isinstance(message, m.Keyframe):
            self.stats.keyframes_sent += 1


def _trace(controller: RateController, now: float, stats: UplinkStats) -> None:
    """One JSON line a second of what the rate control decided from, to the file named by
    FACEWIRE_RATE_TRACE (for bench/thinlink.py's post-mortems; nothing is written without it)."""
    path = os.environ.get("FACEWIRE_RATE_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"t": round(now, 3), "frames_sent": stats.frames_sent, "skipped": stats.skipped,
                                **controller.snapshot()}) + "\n")


def _dead(protocol: SenderProtocol) -> bool:
    return protocol.close is not None and protocol.close.code == CloseCode.UNRESPONSIVE


def _limit_send_buffer(ws: ClientConnection, size: int) -> None:
    """Cap the kernel's send buffer: an autotuned one holds seconds of frames, and latest-frame-wins needs
    the link's backpressure to reach us while the frames in flight are still fresh."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
