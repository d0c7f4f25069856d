"""Stream files: exact round trip of wire messages, and damaged files rejected with the offset named."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import StreamFileError
from facewire.shared.wire.streamfile import FILE_VERSION, MAGIC, MAX_HEADER_BYTES, StreamHeader, StreamReader, StreamWriter

HEADER = StreamHeader(protocol=2, width=640, height=480, fps=30.0, created_us=1_700_000_000_000_000, agent="test")
MESSAGES: list[m.Message] = [
    m.Identity(asset="ab" * 32, image=b"\x89PNG fake", image_format="png", landmarks=b"lm"),
    m.Keyframe(kf=1, ts_us=10, width=640, height=480, image=b"webp", image_format="webp", alpha=b"a"),
    m.Frame(seq=2, dt_ms=0, kf=1, face=0, codes=[b"lm", b"\x01"]),
    m.Frame(seq=3, dt_ms=33, kf=1, face=1, codes=[b"lm", b"\x02"]),
    m.Frame(seq=4, dt_ms=66, kf=1, face=2, codes=[None, None]),
    m.Stats(fps=30.0, kbps=12.5, frames=3, dropped=0),
    m.Bye(reason="end of input"),
]


def write(path: Path, messages: list[m.Message] = MESSAGES) -> list[bytes]:
    data = [m.encode(message) for message in messages]
    with StreamWriter(path, HEADER) as writer:
        for item in data:
            writer.write(item)
    assert writer.messages == len(data) and writer.bytes == sum(map(len, data))
    return data


def read_all(path: Path) -> list[m.Message]:
    with StreamReader(path) as reader:
        return list(reader)


def error_of(path: Path) -> str:
    with pytest.raises(StreamFileError) as info:
        read_all(path)
    return str(info.value)


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of each record's length prefix, computed independently of the reader."""
    blob = path.read_bytes()
    (head_len,) = struct.unpack_from("<I", blob, 6)
    offsets, offset = [], 10 + head_len
    while offset < len(blob):
        offsets.append(offset)
        offset += 4 + struct.unpack_from("<I", blob, offset)[0]
    return offsets


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    data = write(path)
    with StreamReader(path) as reader:
        assert reader.header == HEADER
        assert list(reader) == MESSAGES
    with StreamReader(path) as reader:
        assert list(reader.raw()) == data  # byte for byte what crossed the wire


def test_layout(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    data = write(path, MESSAGES[:2])
    blob = path.read_bytes()
    assert blob[:4] == b"FWS\x00" == MAGIC
    assert struct.unpack_from("<H", blob, 4)[0] == FILE_VERSION == 1
    (head_len,) = struct.unpack_from("<I", blob, 6)
    assert msgspec.msgpack.decode(blob[10:10 + head_len]) == msgspec.structs.asdict(HEADER)
    offset = 10 + head_len
    for item in data:
        assert struct.unpack_from("<I", blob, offset)[0] == len(item)
        assert blob[offset + 4:offset + 4 + len(item)] == item
        offset += 4 + len(item)
    assert offset == len(blob)


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path, [])
    assert read_all(path) == []


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path)
    blob = bytearray(path.read_bytes())
    blob[:4] = b"RIFF"
    path.write_bytes(bytes(blob))
    text = error_of(path)
    assert "not a facewire stream" in text and "offset 0" in text


def test_wrong_version(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<H", blob, 4, 2)
    path.write_bytes(bytes(blob))
    assert "version 2" in error_of(path)


@pytest.mark.parametrize("size", [0, 3, 9])
def test_too_short(tmp_path: Path, size: int) -> None:
    path = tmp_path / "s.fws"
    write(path)
    path.write_bytes(path.read_bytes()[:size])
    assert "too short" in error_of(path)


def test_oversize_header_length(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    path.write_bytes(MAGIC + struct.pack("<HI", FILE_VERSION, MAX_HEADER_BYTES + 1))
    assert "offset 6" in error_of(path)


@pytest.mark.parametrize("head", [b"\xc1", msgspec.msgpack.encode({"protocol": 1}),
                                  msgspec.msgpack.encode({**msgspec.structs.asdict(HEADER), "token": "x"})],
                         ids=["garbage", "missing fields", "unknown field"])
def test_bad_header(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "s.fws"
    path.write_bytes(MAGIC + struct.pack("<HI", FILE_VERSION, len(head)) + head)
    assert "bad header at offset 10" in error_of(path)


def test_header_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path, [])
    path.write_bytes(path.read_bytes()[:-2])
    assert "offset 10" in error_of(path)


def test_truncated_record_names_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path)
    offsets = record_offsets(path)
    path.write_bytes(path.read_bytes()[:offsets[3] + 4 + 5])  # record 3 keeps only 5 of its bytes
    with StreamReader(path) as reader:
        got = []
        with pytest.raises(StreamFileError) as info:
            for message in reader:
                got.append(message)
    assert got == MESSAGES[:3]  # everything before the damage is still delivered
    assert f"truncated record at offset {offsets[3]}" in str(info.value)


def test_truncated_length_prefix_names_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path)
    last = record_offsets(path)[-1]
    path.write_bytes(path.read_bytes()[:last + 2])
    assert f"truncated record length at offset {last}" in error_of(path)


def test_oversize_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path, MESSAGES[:2])
    end = path.stat().st_size
    with path.open("ab") as file:
        file.write(struct.pack("<I", m.MAX_MESSAGE_BYTES + 1) + b"\x00" * 16)
    text = error_of(path)
    assert f"offset {end}" in text and str(m.MAX_MESSAGE_BYTES + 1) in text


def test_invalid_record_named_by_index(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    write(path, MESSAGES[:2])
    bad = msgspec.msgpack.encode({"t": "keyframe", "kf": -1})
    with path.open("ab") as file:
        file.write(struct.pack("<I", len(bad)) + bad)
    text = error_of(path)
    assert "invalid message #2" in text and "kf" in text


def test_oversize_frame_record_rejected_like_the_wire(tmp_path: Path) -> None:
    path = tmp_path / "s.fws"
    frame = m.Frame(seq=1, dt_ms=0, kf=0, face=0, codes=[b"\x00" * m.MAX_FRAME_FIELD_BYTES] * 2)
    write(path, [frame])
    assert "invalid message #0" in error_of(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StreamReader(tmp_path / "absent.fws")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=300))
def test_property_damaged_records_only_raise_stream_file_error(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "fuzz.fws"
    write(path, MESSAGES[:1])
    with path.open("ab") as file:
        file.write(tail)
    try:
        messages = read_all(path)
    except StreamFileError:
        return
    assert messages[0] == MESSAGES[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200), keep_magic=st.booleans())
def test_property_arbitrary_files_only_raise_stream_file_error(tmp_path: Path, blob: bytes, keep_magic: bool) -> None:
    path = tmp_path / "fuzz.fws"
    path.write_bytes((MAGIC + struct.pack("<H", FILE_VERSION) if keep_magic else b"") + blob)
    with contextlib.suppress(StreamFileError):
        read_all(path)


def test_header_out_of_range_is_refused(tmp_path: Path) -> None:
    for header, reason in (
        (StreamHeader(protocol=9, width=64, height=64, fps=30.0, created_us=0), "protocol 9"),
        (StreamHeader(protocol=2, width=0, height=64, fps=30.0, created_us=0), "out of range"),
        (StreamHeader(protocol=2, width=64, height=64, fps=0.0, created_us=0), "out of range"),
    ):
        path = tmp_path / "h.fws"
        StreamWriter(path, header).close()
        with pytest.raises(StreamFileError, match=reason):
            StreamReader(path)
