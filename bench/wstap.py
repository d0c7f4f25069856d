"""Reads whole websocket messages out of the bytes a client sends, as a proxy in the path sees them.

bench/thinlink.py hands the shaping proxy's uplink to a `WebSocketTap` chunk by chunk as the proxy
delivers it, and learns when the first and the last byte of every message reached the receiver. Client frames
are masked (RFC 6455 §5.3); facewire's peers send one frame per message and no compression, but
fragmented messages are joined anyway. The HTTP upgrade request before the first frame is skipped,
and control frames (ping, pong, close) are not messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_CONTROL = 0x8  # opcodes 0x8-0xF: close, ping, pong


def packed_frame_head(payload: bytes) -> tuple[int, int, int] | None:
    """(seq, dt_ms, kf) of a packed `frame` (protocol.md 2: head byte 0b0110_0ffi, then the three as LEB128
    varints), None for any other message. The benches read the wire without importing facewire."""
    if not payload or payload[0] & 0xF8 != 0x60:
        return None
    values, value, shift = [], 0, 0
    for byte in payload[1:16]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
            if len(values) == 3:
                return values[0], values[1], values[2]
    return None


@dataclass(frozen=True)
class Message:
    payload: bytes
    first_s: float  # when its first byte came (the time given with that chunk)
    last_s: float  # when its last byte came


@dataclass
class WebSocketTap:
    """`feed(chunk, t)` returns the messages whose last byte came in this chunk, at time `t`."""

    _buffer: bytearray = field(default_factory=bytearray)
    _upgraded: bool = False
    _fragments: list[bytes] = field(default_factory=list)
    _since: float = 0.0  # when the first byte still in the buffer (or of the fragments) came

    def feed(self, chunk: bytes, t: float) -> list[Message]:
        if not self._buffer and not self._fragments:
            self._since = t
        self._buffer += chunk
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return []
            del self._buffer[: end + 4]
            self._upgraded = True
            self._since = t
        messages = []
        while (frame := self._next_frame()) is not None:
            opcode, fin, payload = frame
            if not opcode & _CONTROL:
                self._fragments.append(payload)
                if fin:
                    messages.append(Message(b"".join(self._fragments), self._since, t))
                    self._fragments = []
            if not self._fragments:
                self._since = t  # what is left in the buffer came with this chunk
        return messages

    def _next_frame(self) -> tuple[int, bool, bytes] | None:
        """(opcode, fin, unmasked payload) of the frame at the front of the buffer, once all of it is there."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        length, at = buf[1] & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(buf) < at + size:
                return None
            length, at = int.from_bytes(buf[at:at + size], "big"), at + size
        masked = bool(buf[1] & 0x80)
        key = bytes(buf[at:at + 4]) if masked else b""
        at += len(key)
        if len(buf) < at + length:
            return None
        payload = bytes(buf[at:at + length])
        opcode, fin = buf[0] & 0x0F, bool(buf[0] & 0x80)
        del buf[: at + length]
        if masked and length:
            mask = np.resize(np.frombuffer(key, np.uint8), length)
            payload = (np.frombuffer(payload, np.uint8) ^ mask).tobytes()
        return opcode, fin, payload
