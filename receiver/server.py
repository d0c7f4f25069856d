"""The receiver's websocket server: a thin asyncio shell around `shared.protocol.ReceiverProtocol`.

One sender is shown at a time; a second authenticated sender gets `busy`, unless the session being
shown is half-open: a hello from the same sender process (`hello.instance`), or any token holder's
while the shown link has been silent for two ping intervals, replaces it. Every connection has its
own protocol object, so a hostile client is closed with an error and a close code while the session
being shown carries on untouched. A link that goes silent is dropped after `Limits.dead_after_s`.
Connections that have not authenticated share a small pool with a cap per address, and a wrong token
slows its address's next guesses (receiver/admission.py): a crowd of silent or guessing clients can
neither keep the owner out nor guess the token online.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from facewire.receiver.admission import Admission
from facewire.receiver.decoding import DecodeWorker, Outcome
from facewire.receiver.session import AssetStore, RenderJob, Session, now_us
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import CloseCode, ErrorCode, ProtocolError
from facewire.shared.wire.protocol import ConnectionFailed, HandshakeDone, Limits, MessageReceived, ReceiverProtocol, State
from facewire.shared.wire.transport import HearingServerConnection, abort, last_heard

log = logging.getLogger(__name__)
POLL_S = 0.25
TRY_AGAIN_LATER = 1013
PRE_AUTH_BUFFER = 64 * 1024
# Closed without a closing handshake: the peer is gone (dead) or must not hold the slot a moment longer (replaced).
_ABORTED = {int(CloseCode.UNRESPONSIVE), int(CloseCode.REPLACED)}
# What the session's decoder takes, in order; the rest is the protocol's own (pings, acks) or the shell's (bye).
SESSION_MESSAGES = (m.Frame, m.Keyframe, m.KeyframePart, m.Setup, m.Identity, m.IdentityPart, m.IdentitySwitch, m.Stats)


@dataclass
class _Link:
    peer: str
    address: str  # the peer's host, without the port: what admission counts and penalises
    protocol: ReceiverProtocol
    ws: ServerConnection
    session: Session | None = None
    decoder: DecodeWorker | None = None  # the session's decoding thread
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the decoder queued a reply or failed the link


@dataclass
class ReceiverServer:
    token: str
    on_job: Callable[[RenderJob], None]
    limits: Limits = field(default_factory=Limits)
    renderers: list[str] = field(default_factory=lambda: ["mesh"])
    assets: AssetStore = field(default_factory=AssetStore)
    admission: Admission = field(default_factory=Admission)
    on_bytes: Callable[[int], None] | None = None
    on_session_end: Callable[[Session], None] | None = None
    on_session_start: Callable[[Session], None] | None = None
    active: Session | None = None
    _links: dict[ServerConnection, _Link] = field(default_factory=dict)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)
    _decoders: set[DecodeWorker] = field(default_factory=set)  # running, or draining after their session ended

    @property
    def rtt_ms(self) -> float | None:
        """The round trip to the sender being shown, from the last ping it answered."""
        link = self._shown()
        return None if link is None else link.protocol.rtt_ms

    @property
    def clock_offset_us(self) -> int | None:
        """The shown sender's wall clock minus ours, from the heartbeat (None until known)."""
        link = self._shown()
        return None if link is None else link.protocol.clock_offset_us

    def _shown(self) -> _Link | None:
        return next((link for link in self._links.values() if link.session is not None and link.session is self.active), None)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> Server:
        # Before the hello websockets buffers at most PRE_AUTH_BUFFER (4 MiB otherwise); the protocol refuses
        # anything over the hello limit with an `error`, websockets what it would not buffer, with 1009 alone.
        return await serve(
            self._handle, host, port, ssl=ssl_context, max_size=PRE_AUTH_BUFFER,
            ping_interval=None, compression=None, max_queue=4, write_limit=256 * 1024,
            create_connection=HearingServerConnection, close_timeout=2, open_timeout=self.limits.handshake_timeout_s,
        )

    async def _handle(self, ws: ServerConnection) -> None:
        peer, address = _peer(ws)
        for victim in self.admission.arrive(ws, address):
            self._evict(victim)
        protocol = ReceiverProtocol(self.token, time.monotonic(), limits=self.limits,
                                    capabilities=list(FIELD_CODECS), renderers=self.renderers,
                                    assets=self.assets.ids(), wall_base_us=wall_base_us())
        link = self._links[ws] = _Link(peer, address, protocol, ws)
        try:
            await self._serve(ws, protocol, link)
        except websockets.exceptions.ConnectionClosed as exc:
            log.info("%s: connection closed (%s)", peer, exc)
        finally:
            del self._links[ws]
            self.admission.left(ws)
            self._end(link)

    def _evict(self, victim: object) -> None:
        """An unauthenticated connection gives its place to a newer one (its own loop then ends)."""
        link = self._links.get(victim) if isinstance(victim, ServerConnection) else None
        if link is None:
            return
        log.info("%s: evicted before authenticating (%d waiting)", link.peer, self.admission.unauthenticated)
        task = asyncio.create_task(link.ws.close(TRY_AGAIN_LATER, "too many unauthenticated connections"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _hello_turn(self, link: _Link, protocol: ReceiverProtocol, now: float) -> float:
        """Waits until this address may have its hello examined (after failed tokens); returns the time then."""
        slot = self.admission.hello_slot(link.address, now)
        deadline = protocol.last_activity + self.limits.handshake_timeout_s  # no hello yet: the connection's start
        if slot <= now:
            return now
        await asyncio.sleep(max(0.0, min(slot, deadline + 0.01) - now))
        return time.monotonic()

    def _end(self, link: _Link, drain: bool = True) -> None:
        """The link's session is over (closed, died or replaced); once only. Its decoder finishes what it
        holds (`drain`: a sender that said bye has its last frames shown) and then it counts as ended."""
        session, decoder, link.decoder = link.session, link.decoder, None
        shown = session is not None and self.active is session
        if shown:
            self.active = None  # at once: a reconnecting sender must not find this session shown
        if decoder is None:
            return

        def ended() -> None:
            self._decoders.discard(decoder)
            if shown and session is not None and self.on_session_end is not None:
                self.on_session_end(session)

        decoder.close(drain, then=ended)

    async def drained(self) -> None:
        """Waits until every session's decoder has finished (call after `shutdown`)."""
        for decoder in list(self._decoders):
            await decoder.finished()

    async def _serve(self, ws: ServerConnection, protocol: ReceiverProtocol, link: _Link) -> None:
        receiving: asyncio.Task[bytes | str] | None = None
        try:
            while protocol.state is not State.CLOSED:
                if receiving is None:
                    receiving = asyncio.ensure_future(ws.recv())
                data = await next_message(receiving, link.wake, protocol.next_tick_s or POLL_S)
                if receiving.done():
                    receiving = None
                now = time.monotonic()
                protocol.heard(last_heard(ws))
                if data is not None and protocol.state is State.AWAIT_HELLO:
                    now = await self._hello_turn(link, protocol, now)
                    events = protocol.check_timeouts(now) or protocol.receive(data, now)
                else:
                    events = protocol.tick(now) if data is None else protocol.receive(data, now)
                if data is not None and self.on_bytes is not None and link.session is not None:
                    self.on_bytes(len(data))
                arrived_us = now_us()
                for event in events:
                    self._admit(event, link, now)
                    self._on_event(event, protocol, link)
                    if isinstance(event, HandshakeDone) and link.session is not None:
                        ws.protocol.max_message_size = self.limits.max_message_bytes + 64
                    if isinstance(event, MessageReceived) and link.decoder is not None \
                            and isinstance(event.message, SESSION_MESSAGES):
                        await link.decoder.submit(event.message, arrived_us)  # waits while the decoder is behind
                if data is not None:
                    protocol.tick(now)  # a busy link still pings: its round trip is measured all along
                for out in protocol.data_to_send():
                    await ws.send(out)
        finally:
            if receiving is not None:
                receiving.cancel()
            self._end(link)  # before closing: a reconnecting sender must not find this session shown
            if protocol.close is not None and protocol.close.code in _ABORTED:
                abort(ws)
            elif protocol.close is not None:
                await ws.close(protocol.close.code, protocol.close.reason)

    def _admit(self, event: object, link: _Link, now: float) -> None:
        if isinstance(event, HandshakeDone):
            self.admission.authenticated(link.ws, link.address)
        elif isinstance(event, ConnectionFailed) and event.error.code is ErrorCode.UNAUTHORIZED:
            delay = self.admission.failed(link.address, now)
            log.warning("%s: wrong token; its address waits %.1f s before its next hello is examined", link.peer, delay)

    def _on_event(self, event: object, protocol: ReceiverProtocol, link: _Link) -> None:
        peer = link.peer
        if isinstance(event, ConnectionFailed):
            log.warning("%s: closing (%d) after %s: %s", peer, event.close.code, event.error.code.value, event.error)
        elif isinstance(event, HandshakeDone):
            if self.active is not None and not self._replace_half_open(protocol, peer):
                protocol.refuse(ProtocolError(ErrorCode.BUSY, "this receiver is showing another sender"))
                log.warning("%s: refused, busy", peer)
                return
            try:
                codes = negotiate(protocol.peer_capabilities, list(FIELD_CODECS))
            except CodeError as exc:
                protocol.refuse(ProtocolError(ErrorCode.UNSUPPORTED_CODE, str(exc), "capabilities"))
                log.warning("%s: refused: %s", peer, exc)
                return
            session = link.session = Session(self.assets, FrameDecoder(codes))
            link.decoder = DecodeWorker(session, self.on_job, lambda outcome: self._decoded(link, outcome),
                                        asyncio.get_running_loop(), name=f"decode-{peer}")
            self._decoders.add(link.decoder)
            self.active = session
            log.info("%s: sender accepted (session %s)", peer, protocol.session_id)
            if self.on_session_start is not None:
                self.on_session_start(session)
        elif isinstance(event, MessageReceived) and isinstance(event.message, m.Bye) and link.session is not None:
            log.info("%s: sender said bye (%s)", peer, event.message.reason)

    def _decoded(self, link: _Link, outcome: Outcome) -> None:
        """The decoder's replies to a message, or its verdict that the message was hostile (on the loop)."""
        protocol = link.protocol
        if outcome.error is not None:
            if protocol.state is not State.CLOSED:
                failed = protocol.fail(outcome.error)
                log.warning("%s: closing (%d) after %s: %s", link.peer, failed.close.code, outcome.error.code.value,
                            outcome.error)
        elif protocol.state is State.OPEN:
            for reply in outcome.replies:
                protocol.send(reply)
        link.wake.set()

    def _replace_half_open(self, protocol: ReceiverProtocol, peer: str) -> bool:
        """Whether the shown session gave way to this newly authenticated one (and was ended)."""
        shown = next((link for link in self._links.values() if link.session is not None and link.session is self.active), None)
        if shown is None:
            return True
        now = time.monotonic()
        shown.protocol.heard(last_heard(shown.ws))
        same_sender = protocol.peer_instance != "" and protocol.peer_instance == shown.protocol.peer_instance
        silent = shown.protocol.silent_for(now) > 2 * self.limits.ping_interval_s
        if not (same_sender or silent):
            return False
        log.warning("%s: replaces %s's session (%s)", peer, shown.peer,
                    "same sender" if same_sender else f"silent for {shown.protocol.silent_for(now):.1f} s")
        shown.protocol.fail(ProtocolError(ErrorCode.REPLACED, "a new session replaced this one"))
        self._end(shown, drain=False)
        abort(shown.ws)
        return True

    async def shutdown(self, server: Server) -> None:
        """Tell every peer we are going away, then stop listening."""
        for ws, link in list(self._links.items()):
            link.protocol.fail(ProtocolError(ErrorCode.SHUTDOWN, "receiver shutting down"))
            try:
                for out in link.protocol.data_to_send():
                    await ws.send(out)
                assert link.protocol.close is not None
                await ws.close(link.protocol.close.code, link.protocol.close.reason)
            except websockets.exceptions.ConnectionClosed:
                pass
        server.close()
        await server.wait_closed()


async def next_message(receiving: asyncio.Task[bytes | str], wake: asyncio.Event, timeout_s: float) -> bytes | str | None:
    """The next message if it comes within `timeout_s` and before `wake` is set (then None; `wake` is cleared).
    The read is not cancelled by a timeout or a wake: it goes on for the next call."""
    waking = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({receiving, waking}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waking.cancel()
    wake.clear()
    return receiving.result() if receiving.done() else None


def wall_base_us() -> int:
    """The wall clock minus the monotonic one (µs), for a protocol object to stamp its pings by the wall clock."""
    return time.time_ns() // 1000 - round(time.monotonic() * 1e6)


def _peer(ws: ServerConnection) -> tuple[str, str]:
    """(host:port for the logs, host for admission)."""
    address = ws.remote_address
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}", str(address[0])
    return str(address), str(address)
