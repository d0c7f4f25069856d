"""Stream files: exactly the messages that cross the wire, stored for replay (protocol.md, "Stream file").

Layout (all integers little-endian):

    magic     4 bytes  b"FWS\\x00"
    version   u16      stream-file version (1)
    hlen      u32      length of the header
    header    msgpack map (StreamHeader)
    records   repeated: u32 length, then one protocol message of that length

The header replaces the handshake (a stream file never stores a token); every record is
a message the sender would have sent after `welcome`, byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import msgspec

from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import MessageValidationError, StreamFileError

MAGIC = b"FWS\x00"
FILE_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
_PREFIX = struct.Struct("<4sHI")
_LENGTH = struct.Struct("<I")


class StreamHeader(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    protocol: int
    width: int
    height: int
    fps: float
    created_us: int
    agent: str = ""
    # The frame codes the stream uses (facewire.shared.codec.fields); files written before codes were
    # negotiated used these two.
    codes: list[str] = msgspec.field(default_factory=lambda: ["landmarks", "alpha"])


class StreamWriter:
    """Appends encoded messages to a stream file; use as a context manager."""

    def __init__(self, path: str | Path, header: StreamHeader) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        head = msgspec.msgpack.encode(header)
        self._file.write(_PREFIX.pack(MAGIC, FILE_VERSION, len(head)) + head)
        self.messages = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        """Write one message exactly as it would be sent on the wire."""
        self._file.write(_LENGTH.pack(len(data)) + data)
        self.messages += 1
        self.bytes += len(data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamReader:
    """Reads a stream file's header, then yields its messages, validated, in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> StreamHeader:
        prefix = self._file.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            raise StreamFileError(f"{self.path}: too short to be a facewire stream file")
        magic, version, head_len = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise StreamFileError(f"{self.path}: not a facewire stream file (magic {magic!r} at offset 0)")
        if version != FILE_VERSION:
            raise StreamFileError(f"{self.path}: stream file version {version} is not supported (this reads {FILE_VERSION})")
        if head_len > MAX_HEADER_BYTES:
            raise StreamFileError(f"{self.path}: header length {head_len} at offset 6 exceeds {MAX_HEADER_BYTES}")
        head = self._file.read(head_len)
        try:
            header = msgspec.msgpack.decode(head, type=StreamHeader)
        except msgspec.MsgspecError as exc:
            raise StreamFileError(f"{self.path}: bad header at offset {_PREFIX.size}: {exc}") from None
        if header.protocol not in m.SUPPORTED_VERSIONS:
            raise StreamFileError(f"{self.path}: recorded with protocol {header.protocol}; this reads {list(m.SUPPORTED_VERSIONS)}")
        if not (m.MIN_SIDE <= header.width <= m.MAX_SIDE and m.MIN_SIDE <= header.height <= m.MAX_SIDE
                and 0 < header.fps <= 240):
            raise StreamFileError(f"{self.path}: header says {header.width}x{header.height} at {header.fps} fps, out of range")
        return header

    def raw(self) -> Iterator[bytes]:
        """The records' bytes, unvalidated."""
        while True:
            offset = self._file.tell()
            prefix = self._file.read(_LENGTH.size)
            if not prefix:
                return
            if len(prefix) < _LENGTH.size:
                raise StreamFileError(f"{self.path}: truncated record length at offset {offset}")
            (length,) = _LENGTH.unpack(prefix)
            if length > m.MAX_MESSAGE_BYTES:
                raise StreamFileError(f"{self.path}: record at offset {offset} claims {length} bytes (limit {m.MAX_MESSAGE_BYTES})")
            data = self._file.read(length)
            if len(data) < length:
                raise StreamFileError(f"{self.path}: truncated record at offset {offset}: {len(data)} of {length} bytes")
            yield data

    def __iter__(self) -> Iterator[m.Message]:
        for index, data in enumerate(self.raw()):
            try:
                yield m.decode(data)
            except MessageValidationError as exc:
                raise StreamFileError(f"{self.path}: invalid message #{index}: {exc}") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
