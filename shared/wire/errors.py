"""Typed protocol errors: every rejection names an error code, a close code and the field."""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    """Error codes carried in the `error` message (protocol.md, "Errors")."""

    BAD_MESSAGE = "bad_message"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_VERSION = "unsupported_version"
    BUSY = "busy"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    IDLE_TIMEOUT = "idle_timeout"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    UNEXPECTED = "unexpected"
    TEXT_FRAME = "text_frame"
    UNKNOWN_ASSET = "unknown_asset"
    BAD_ASSET = "bad_asset"
    INTERNAL = "internal"
    SHUTDOWN = "shutdown"
    UNSUPPORTED_CODE = "unsupported_code"
    UNRESPONSIVE = "unresponsive"
    REPLACED = "replaced"


class CloseCode(enum.IntEnum):
    """Websocket close codes used by facewire (RFC 6455 plus the 4000-4999 private range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    TOO_BIG = 1009
    INTERNAL = 1011
    UNAUTHORIZED = 4001
    BAD_MESSAGE = 4002
    UNSUPPORTED_VERSION = 4003
    BUSY = 4004
    RATE_LIMITED = 4005
    IDLE_TIMEOUT = 4006
    HANDSHAKE_TIMEOUT = 4007
    UNEXPECTED = 4008
    UNSUPPORTED_CODE = 4009
    UNRESPONSIVE = 4010
    REPLACED = 4011


CLOSE_CODE_FOR: dict[ErrorCode, CloseCode] = {
    ErrorCode.BAD_MESSAGE: CloseCode.BAD_MESSAGE,
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.UNSUPPORTED_VERSION: CloseCode.UNSUPPORTED_VERSION,
    ErrorCode.BUSY: CloseCode.BUSY,
    ErrorCode.TOO_LARGE: CloseCode.TOO_BIG,
    ErrorCode.RATE_LIMITED: CloseCode.RATE_LIMITED,
    ErrorCode.IDLE_TIMEOUT: CloseCode.IDLE_TIMEOUT,
    ErrorCode.HANDSHAKE_TIMEOUT: CloseCode.HANDSHAKE_TIMEOUT,
    ErrorCode.UNEXPECTED: CloseCode.UNEXPECTED,
    ErrorCode.TEXT_FRAME: CloseCode.UNSUPPORTED_DATA,
    ErrorCode.UNKNOWN_ASSET: CloseCode.BAD_MESSAGE,
    ErrorCode.BAD_ASSET: CloseCode.BAD_MESSAGE,
    ErrorCode.INTERNAL: CloseCode.INTERNAL,
    ErrorCode.SHUTDOWN: CloseCode.GOING_AWAY,
    ErrorCode.UNSUPPORTED_CODE: CloseCode.UNSUPPORTED_CODE,
    ErrorCode.UNRESPONSIVE: CloseCode.UNRESPONSIVE,
    ErrorCode.REPLACED: CloseCode.REPLACED,
}


class ProtocolError(Exception):
    """A peer broke the protocol; the connection is closed with `close_code`."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{message} (field {field})")
        self.code = code
        self.field = field
        self.detail = message

    @property
    def close_code(self) -> CloseCode:
        return CLOSE_CODE_FOR[self.code]


class MessageValidationError(ProtocolError):
    """A message that does not match the schema in protocol.md."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(ErrorCode.BAD_MESSAGE, message, field)


class StreamFileError(ValueError):
    """A stream file that is not a facewire stream or is damaged; names the byte offset."""
