"""Bounded decoding (issue 13, deliverable 3): every payload a peer's bytes reach is checked before
anything is allocated, and every failure is a protocol error naming the field, never an escape.

Real payloads: a zstd frame that declares 1 GiB, PNGs that claim 70000x70000 and 2^31 pixels, a TIFF
sent as `webp`; each through the codec, the receiver's session and a live receiver, with the peak RSS
measured. Round-trip and hostile-input property tests for each payload codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import websockets
import zstandard
from hypothesis import given, settings
from PIL import Image as PILImage
from websockets.asyncio.client import connect

from bench.bombs import GIB, landmark_code, png_claiming, tiff
from bench.bombs import zstd_bomb as make_zstd_bomb
from facewire.receiver.session import AssetStore, Session
from facewire.receiver.sinks import NullSink
from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder
from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.codec.images import decode_image, sniff
from facewire.shared.codec.keyframe import decode_keyframe_alpha, encode_keyframe_alpha
from facewire.shared.codec.landmarks import STEPS, LandmarkDecoder, LandmarkEncoder
from facewire.shared.codec.predictive import CodeError, PayloadError, decompress_exactly
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, ProtocolError
from facewire.shared.wire.streamfile import StreamHeader, StreamWriter
from tests.test_link import TOKEN, received_frames, running_receiver, sender
from tests.wire_fixtures import SyntheticAnalyzer, write_frames

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- payloads
@pytest.fixture(scope="module")
def zstd_bomb() -> bytes:
    """One zstd frame that declares and holds 1 GiB of zeros, in ~32 KiB."""
    body = make_zstd_bomb(GIB)
    assert zstandard.frame_content_size(body) == GIB and len(body) < m.MAX_FRAME_FIELD_BYTES
    return body


landmark_bomb = landmark_code


def image_bytes(fmt: str, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    PILImage.fromarray(rng.integers(0, 255, shape, np.uint8), mode).save(buf, format=fmt.upper())
    return buf.getvalue()


def peak_rss_growth(action: Callable[[], object]) -> int:
    """Bytes by which the process's peak RSS rose above its RSS before `action` (Linux: the peak is reset first)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs is Linux-only)")
    before = _status_kib("VmRSS")
    action()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _raises_payload_error(action: Callable[[], object]) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        action()
    return caught.value


# ------------------------------------------------------------------------------------------------ zstd
def test_zstd_bomb_is_refused_from_its_header_alone(zstd_bomb: bytes) -> None:
    growth = peak_rss_growth(lambda: _raises_payload_error(lambda: LandmarkDecoder().decode(landmark_bomb(zstd_bomb))))
    assert growth < 16 << 20
    error = _raises_payload_error(lambda: decompress_exactly(zstd_bomb, GIB - 1, "x"))
    assert "declares 1073741824 bytes" in str(error)


def test_zstd_frames_without_a_declared_size_or_with_trailing_data_are_refused() -> None:
    raw = bytes(478 * 3 * 2)
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    good = zstandard.ZstdCompressor(write_content_size=True).compress(raw)
    assert decompress_exactly(good, len(raw), "x") == raw
    for body in (streamed, good + b"\x00", good + good, good[:-2], b"", b"\x28\xb5\x2f"):
        _raises_payload_error(lambda body=body: decompress_exactly(body, len(raw), "x"))  # type: ignore[misc]


def test_only_the_checked_decompressor_touches_zstd() -> None:
    """Every zstd use goes through predictive.decompress_exactly; a new codec must not decompress on its own."""
    offenders = [str(path.relative_to(REPO)) for folder in ("shared", "receiver", "sender")
                 for path in (REPO / folder).rglob("*.py")
                 if path.name != "predictive.py" and ("ZstdDecompressor" in path.read_text() or
                                                      "zstandard.decompress" in path.read_text())]
    assert offenders == []


def test_no_receiver_module_calls_opencv_image_decoders() -> None:
    """cv2.imdecode decodes whatever format the bytes are (TIFF, JPEG 2000, OpenEXR...): never on a peer's bytes."""
    offenders = [str(path.relative_to(REPO)) for folder in ("receiver", "shared/codec", "shared/wire")
                 for path in (REPO / folder).rglob("*.py") if "imdecode" in path.read_text()]
    assert offenders == []


# ---------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("claim", [(70000, 70000), (46341, 46341), (2049, 2048), (1 << 31 - 1, 1)])
def test_png_claiming_a_huge_size_is_refused_before_decoding(claim: tuple[int, int]) -> None:
    data = png_claiming(*claim)
    assert sniff(data) == "png" and len(data) < 200
    growth = peak_rss_growth(lambda: _raises_payload_error(
        lambda: decode_image(data, "png", "image", max_pixels=2048 * 2048)))
    assert growth < 16 << 20


@pytest.mark.parametrize(("data", "declared"), [
    (tiff(), "webp"),
    (b"RIFF\x00\x00\x00\x00WEBP" + tiff(), "webp"),
    (image_bytes("png"), "jpeg"),
    (image_bytes("jpeg"), "png"),
    (image_bytes("webp"), "avif"),
    (b"II*\x00" + bytes(64), "png"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64), "jpeg"),  # JPEG 2000
    (image_bytes("png"), "tiff"),
])
def test_an_image_is_decoded_only_by_the_plugin_of_its_declared_format(data: bytes, declared: str) -> None:
    error = _raises_payload_error(lambda: decode_image(data, declared, "image"))
    assert error.field == "image"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "avif"])
def test_every_protocol_image_format_decodes(fmt: str) -> None:
    data = image_bytes(fmt)
    assert sniff(data) == fmt
    pixels = decode_image(data, fmt, "image", size=(48, 40))
    assert pixels.shape == (40, 48, 3) and pixels.dtype == np.uint8
    _raises_payload_error(lambda: decode_image(data, fmt, "image", size=(40, 48)))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["png", "jpeg", "webp", "avif"]), st.integers(0, 400), st.binary(min_size=1, max_size=64))
def test_damaged_images_raise_payload_errors_only(fmt: str, cut: int, junk: bytes) -> None:
    data = image_bytes(fmt)
    for damaged in (data[:cut] + junk, data[:cut] + junk + data[cut + len(junk):], data[: max(1, cut)]):
        with contextlib.suppress(PayloadError):
            decode_image(damaged, fmt, "image")


# ------------------------------------------------------------------------------------ payload codecs
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 1024), st.integers(0, 2**32 - 1), st.booleans())
def test_landmark_code_round_trip(count: int, seed: int, wide_moves: bool) -> None:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-100, 2000, (count, 3)).astype(np.float32)
    encoder, decoder = LandmarkEncoder(), LandmarkDecoder()
    first = decoder.decode(encoder.encode(points, intra=True))
    assert np.abs(first - points).max() <= 0.5 / STEPS.min() + 1e-3
    moved = points + rng.normal(0, 100 if wide_moves else 3, points.shape).astype(np.float32)
    second = decoder.decode(encoder.encode(moved))
    assert np.abs(second - moved).max() <= 1.5 / STEPS.min() + 1.0 + 1e-3  # rounding plus the dead zone


@settings(max_examples=40, deadline=None)
@given(st.integers(16, 300), st.integers(16, 300), st.integers(0, 2**32 - 1))
def test_alpha_code_round_trip(width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0, 1, (height, width)).astype(np.float32)
    encoder, decoder = AlphaEncoder(), AlphaDecoder()
    small = decoder.decode(encoder.encode(alpha, intra=True))
    assert small.shape == (-(-height // 8), -(-width // 8))
    later = decoder.decode(encoder.encode(np.clip(alpha + 0.05, 0, 1)))
    assert later.shape == small.shape and float(later.min()) >= 0.0 and float(later.max()) <= 1.0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_never_escape_the_payload_decoders(data: bytes) -> None:
    decoders: list[Callable[[bytes], object]] = [
        LandmarkDecoder().decode, AlphaDecoder().decode,
        lambda b: decode_keyframe_alpha(b, (0, 0, 32, 32), (64, 64)),
    ]
    for decode in decoders:
        with contextlib.suppress(CodeError):
            decode(data)
        for head in (b"\x01\x01\xde\x01", b"\x01\x01\x20\x00\x20\x00\x10", b"\x01\x02"):  # plausible headers
            with contextlib.suppress(CodeError):
                decode(head + data)


def test_keyframe_alpha_round_trip_and_bombs() -> None:
    alpha = np.zeros((64, 80), np.float32)
    alpha[10:50, 20:60] = 1.0
    code = encode_keyframe_alpha(alpha, (16, 8, 48, 48))
    decoded = decode_keyframe_alpha(code, (16, 8, 48, 48), (80, 64))
    assert decoded.shape == (64, 80) and abs(float(decoded[30, 40]) - 1.0) < 0.05 and decoded[0, 0] == 0.0
    bomb = code[:2] + png_claiming(70000, 70000)
    assert _raises_payload_error(lambda: decode_keyframe_alpha(bomb, (16, 8, 48, 48), (80, 64))).field == "alpha"


# ------------------------------------------------------------------------------------ receiver session
def keyframe_message(kf: int = 1, landmarks: bytes | None = None, image: bytes | None = None,
                     image_format: str = "avif") -> m.Keyframe:
    picture = image if image is not None else image_bytes("avif", (64, 48))
    return m.Keyframe(kf=kf, ts_us=0, width=64, height=48, image=picture, image_format=image_format,  # type: ignore[arg-type]
                      box=[0, 0, 64, 48], landmarks=landmarks)


def identity_message(data: bytes, fmt: str) -> m.Identity:
    import hashlib
    return m.Identity(asset=hashlib.sha256(data).hexdigest(), image=data, image_format=fmt)  # type: ignore[arg-type]


def _protocol_error(session: Session, message: m.Message) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        session.handle(message)
    return caught.value


def test_session_closes_on_bombs_and_names_the_field(zstd_bomb: bytes) -> None:
    session = Session(AssetStore(), FrameDecoder(["landmarks", "alpha"]))
    assert session.handle(keyframe_message()) == ([], None)
    frame = m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[landmark_bomb(zstd_bomb), None])
    cases: list[tuple[m.Message, ErrorCode, str]] = [
        (frame, ErrorCode.BAD_MESSAGE, "codes[0]"),
        (m.Frame(seq=2, dt_ms=0, kf=1, face=0, codes=[None, b"\x01\x01\x00\x02\x00\x02\x10" + zstd_bomb]),
         ErrorCode.BAD_MESSAGE, "codes[1]"),
        (keyframe_message(2, landmarks=landmark_bomb(zstd_bomb)), ErrorCode.BAD_MESSAGE, "landmarks"),
        (keyframe_message(3, image=png_claiming(70000, 70000), image_format="png"), ErrorCode.BAD_MESSAGE, "image_format"),
        (keyframe_message(4, image=png_claiming(64, 48)), ErrorCode.BAD_MESSAGE, "image"),
        (identity_message(png_claiming(70000, 70000), "png"), ErrorCode.BAD_ASSET, "image"),
        (identity_message(png_claiming(46341, 46341), "png"), ErrorCode.BAD_ASSET, "image"),
        (identity_message(tiff(), "webp"), ErrorCode.BAD_ASSET, "image"),
    ]
    for message, code, field in cases:
        error = _protocol_error(session, message)
        assert (error.code, error.field) == (code, field), (type(message).__name__, error)
        assert f"(field {field})" in str(error)
    assert session.decoder.keyframe is None or session.decoder.keyframe.kf == 1  # nothing hostile was kept


def test_asset_store_is_bounded_in_bytes_and_count() -> None:
    store = AssetStore(capacity=3)
    for index in range(5):
        store.add(identity_message(image_bytes("png", (300 + index, 300)), "png"))
    assert len(store.ids()) == 3
    small = AssetStore(capacity=64, max_bytes=2 * 305 * 300 * 3)
    for index in range(5):
        small.add(identity_message(image_bytes("png", (300 + index, 300)), "png"))
    assert len(small.ids()) == 2 and small.nbytes <= small.max_bytes


# ----------------------------------------------------------------------------------------------- live
async def _token_holder_sends(port: int, messages: list[m.Message]) -> tuple[int | None, list[m.Error]]:
    async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        await ws.send(m.encode(m.Hello(versions=[2], token=TOKEN, capabilities=["landmarks", "alpha"])))
        assert isinstance(m.decode(await ws.recv()), m.Welcome)  # type: ignore[arg-type]
        for message in messages:
            await ws.send(m.encode(message))
        errors: list[m.Error] = []
        try:
            while True:
                reply = m.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
                if isinstance(reply, m.Error):
                    errors.append(reply)
        except websockets.exceptions.ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), errors


def test_live_receiver_refuses_bombs_and_carries_on(tmp_path: Path, zstd_bomb: bytes) -> None:
    frames = write_frames(tmp_path / "in", 20)
    from facewire.sender.runner import stream_live

    bombs: list[list[m.Message]] = [
        [keyframe_message(), m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[landmark_bomb(zstd_bomb), None])],
        [identity_message(png_claiming(46341, 46341), "png")],
        [identity_message(tiff(), "webp")],
    ]

    async def scenario() -> tuple[list[tuple[int | None, list[m.Error]]], int, int]:
        async with running_receiver(NullSink()) as (receiver, port):
            results = [await _token_holder_sends(port, messages) for messages in bombs]
            source, uplink = sender(port, frames)
            stats = await stream_live(source, SyntheticAnalyzer(), uplink)
            await asyncio.sleep(0.3)
            return results, stats.frames_sent, received_frames(receiver)

    outcome: list[tuple[list[tuple[int | None, list[m.Error]]], int, int]] = []
    growth = peak_rss_growth(lambda: outcome.append(asyncio.run(scenario())))
    results, sent, received = outcome[0]
    assert [code for code, _ in results] == [4002, 4002, 4002]
    fields = [errors[-1].message for _, errors in results]
    assert all(errors[-1].fatal for _, errors in results)
    assert "(field codes[0])" in fields[0] and "(field image)" in fields[1] and "(field image)" in fields[2]
    assert sent > 0 and received == sent, "the good sender after the bombs lost frames"
    assert growth < 100 << 20, f"peak RSS grew by {growth >> 20} MiB"


# -------------------------------------------------------------------------------------- stream files
def test_play_stream_names_the_bad_record_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.fws"
    with StreamWriter(path, StreamHeader(protocol=2, width=64, height=48, fps=25.0, created_us=0)) as writer:
        for message in (m.Identity(asset="self"), keyframe_message(),
                        m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[landmark_bomb(zstandard.compress(bytes(10))), None])):
            writer.write(m.encode(message))
    run = subprocess.run([sys.executable, "-m", "facewire.receiver.cli", "--play-stream", str(path),
                          "--sink", f"frames:{tmp_path / 'out'}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "record #2" in run.stderr and "(field codes[0])" in run.stderr
    assert "Traceback" not in run.stderr
