"""A receiver that joins a relay's room (facewire-receive --join ws://HOST:PORT/rooms/NAME): it dials, says
hello as a receiver (the codes it decodes) and then decodes what the relay passes on exactly as it would
a sender's own messages; each `source` from the relay starts a new session (another sender, or the same
one again after it reconnected). Reconnects with backoff while the receiver runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from facewire.receiver.decoding import DecodeWorker, Outcome
from facewire.receiver.server import SESSION_MESSAGES, next_message
from facewire.receiver.session import AssetStore, RenderJob, Session, now_us
from facewire.shared.codec.fields import FIELD_CODECS
from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode
from facewire.shared.wire.protocol import ConnectionFailed, HandshakeDone, JoinProtocol, Limits, MessageReceived, State

log = logging.getLogger(__name__)
POLL_S = 0.5
FATAL = {ErrorCode.UNAUTHORIZED, ErrorCode.UNSUPPORTED_VERSION, ErrorCode.UNSUPPORTED_CODE}


class JoinError(RuntimeError):
    """The relay refused this receiver for good (wrong token, a room coded with codes it does not decode)."""


def join_url(url: str, show: str | None) -> str:
    """The room's address with `?show=NAME` when the receiver asks for one sender."""
    if show is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"show": show})) if q)
    return urlunsplit(parts._replace(query=query))


@dataclass
class RelayJoin:
    url: str
    token: str
    on_job: Callable[[RenderJob], None]
    show: str | None = None
    ssl_context: ssl.SSLContext | None = None
    limits: Limits = field(default_factory=Limits)
    assets: AssetStore = field(default_factory=AssetStore)
    on_bytes: Callable[[int], None] | None = None
    on_session_end: Callable[[Session], None] | None = None
    active: Session | None = None
    source: str = ""  # the sender shown now ("" while the room has none)
    senders: list[str] = field(default_factory=list)
    protocol: JoinProtocol | None = None
    decoder: DecodeWorker | None = None  # the shown sender's decoding thread
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # the decoder queued a reply
    _decoders: set[DecodeWorker] = field(default_factory=set)  # running, or draining after their session ended

    @property
    def rtt_ms(self) -> float | None:
        return None if self.protocol is None else self.protocol.rtt_ms

    @property
    def clock_offset_us(self) -> int | None:
        return None  # the relay's clock is not the sender's: frames joined through a relay are timed by ours

    async def run(self, stop: asyncio.Event) -> None:
        """Joins, and joins again after the link drops, until `stop` is set."""
        delay = 0.0
        while not stop.is_set():
            try:
                await self._join_once(stop)
                delay = 0.0
            except JoinError:
                raise
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                log.warning("relay link down (%s); joining again", exc)
            self._end_session()
            delay = min(5.0, max(0.25, delay * 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.8, 1.2))

    async def _join_once(self, stop: asyncio.Event) -> None:
        async with connect(join_url(self.url, self.show), ssl=self.ssl_context, max_size=self.limits.max_message_bytes + 64,
                           open_timeout=5, ping_interval=None, compression=None) as ws:
            protocol = self.protocol = JoinProtocol(self.token, time.monotonic(), agent="facewire-receive",
                                                    capabilities=list(FIELD_CODECS), limits=self.limits)
            await _flush(ws, protocol)
            receiving: asyncio.Task[bytes | str] | None = None
            try:
                while protocol.state is not State.CLOSED and not stop.is_set():
                    if receiving is None:
                        receiving = asyncio.ensure_future(ws.recv())
                    data = await next_message(receiving, self._wake, POLL_S)
                    if receiving.done():
                        receiving = None
                    now = time.monotonic()
                    arrived_us = now_us()
                    for event in protocol.tick(now) if data is None else protocol.receive(data, now):
                        self._on_event(event)
                        if isinstance(event, MessageReceived) and self.decoder is not None \
                                and isinstance(event.message, SESSION_MESSAGES):
                            await self.decoder.submit(event.message, arrived_us)  # waits while the decoder is behind
                    if data is not None and self.on_bytes is not None:
                        self.on_bytes(len(data))
                    await _flush(ws, protocol)
            finally:
                if receiving is not None:
                    receiving.cancel()
            if protocol.close is None:
                protocol.close_with_bye("receiver stopping")
                await _flush(ws, protocol)
            assert protocol.close is not None
            await ws.close(protocol.close.code, protocol.close.reason)

    def _on_event(self, event: object) -> None:
        assert self.protocol is not None
        if isinstance(event, ConnectionFailed):
            log.warning("relay link closing (%d) after %s: %s", event.close.code, event.error.code.value, event.error)
            if event.error.code in FATAL:
                raise JoinError(str(event.error))
        elif isinstance(event, HandshakeDone):
            log.info("joined %s", self.url)
        elif isinstance(event, MessageReceived):
            message = event.message
            if isinstance(message, m.Source):
                self._start(message)
            elif isinstance(message, m.Error):
                log.warning("relay error %s: %s", message.code, message.message)

    def _decoded(self, outcome: Outcome) -> None:
        """The decoder's replies (on the loop). The relay validated what it passed on, so a message the decoder
        calls hostile is the relay's bug: the link is dropped and joined again."""
        protocol = self.protocol
        if protocol is None or protocol.state is not State.OPEN:
            return
        if outcome.error is not None:
            log.warning("relay passed on a message this receiver refuses: %s", outcome.error)
            protocol.fail(outcome.error)
        else:
            for reply in outcome.replies:
                protocol.send(reply)
        self._wake.set()

    def _start(self, source: m.Source) -> None:
        """A new sender's run: a new session, as when a sender connects to a listening receiver."""
        self.senders = list(source.senders)
        unknown = [code for code in source.codes if code not in FIELD_CODECS]
        if unknown:  # the relay admits only receivers that decode the room's codes: this is its bug, not ours
            raise JoinError(f"the relay sends frames coded with {unknown}, which this receiver does not decode")
        self._end_session()
        self.source = source.name
        if source.name:
            self.active = Session(self.assets, FrameDecoder(source.codes))
            self.decoder = DecodeWorker(self.active, self.on_job, self._decoded, asyncio.get_running_loop(),
                                        name=f"decode-{source.name}")
            self._decoders.add(self.decoder)
            log.info("showing sender %r (codes %s; the room has %s)", source.name, source.codes, source.senders)
        else:
            log.info("nobody publishes in the room yet")

    def _end_session(self) -> None:
        """The shown sender's run is over: its decoder finishes what it holds, then the session counts as ended."""
        session, self.active = self.active, None
        decoder, self.decoder = self.decoder, None
        if decoder is None:
            return

        def ended() -> None:
            self._decoders.discard(decoder)
            if session is not None and self.on_session_end is not None:
                self.on_session_end(session)

        decoder.close(then=ended)

    async def drained(self) -> None:
        """Waits until every session's decoder has finished (call once `run` returned)."""
        for decoder in list(self._decoders):
            await decoder.finished()


async def _flush(ws: ClientConnection, protocol: JoinProtocol) -> None:
    for data in protocol.data_to_send():
        await ws.send(data)
