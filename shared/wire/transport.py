"""What the websocket shells tell the sans-I/O protocol about the transport beneath the messages.

websockets hands the shells whole messages only; on a thin link one large message (a session's first
keyframe) can take longer to cross than the protocol's `dead_after_s`, though bytes arrive all along.
These connection classes stamp the time of every read from the socket, which the shells pass to
`protocol.heard()`: the link is dead only when not even a byte arrives.
"""

from __future__ import annotations

import time

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection


class _Hearing:
    last_heard: float = 0.0

    def _stamp(self) -> None:
        self.last_heard = time.monotonic()


class HearingServerConnection(ServerConnection, _Hearing):
    def data_received(self, data: bytes) -> None:
        self._stamp()
        super().data_received(data)


class HearingClientConnection(ClientConnection, _Hearing):
    def data_received(self, data: bytes) -> None:
        self._stamp()
        super().data_received(data)


def last_heard(ws: object) -> float:
    """When `ws` last read bytes from its socket (0.0 for a connection of another class)."""
    return float(getattr(ws, "last_heard", 0.0))


def abort(ws: ServerConnection | ClientConnection) -> None:
    """Drop the connection without a closing handshake: over a dead link one would only wait out its timeout."""
    ws.transport.abort()
