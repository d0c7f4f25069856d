"""Sinks: PNG frames, video file, and the virtual camera through a recording pyvirtualcam backend."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import pyvirtualcam
import skimage.data

from facewire.receiver.sink_spec import open_sink
from facewire.receiver.sinks import FileSink, FramesSink, SinkError, VirtualCameraSink


def _pictures(count: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    width, height = size
    noise = [rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8) for _ in range(count)]
    return [cv2.resize(n, size, interpolation=cv2.INTER_CUBIC) for n in noise]


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent, in place of a loopback device."""

    instances: list[RecordingBackend] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **_: Any) -> None:
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames: list[np.ndarray] = []
        self.sent_at: list[float] = []
        self.closed = False
        RecordingBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.reshape(self.height, self.width, 3).copy())
        self.sent_at.append(time.monotonic())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "recording:0"

    def native_fourcc(self) -> int | None:
        return None


@pytest.mark.parametrize("pixel_format", ["bgr", "rgb"])
def test_virtual_camera_sink_sends_paced_frames(pixel_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered through the public call; monkeypatch takes it out again so later tests see the real backends.
    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, "recording", RecordingBackend)
    pyvirtualcam.register_backend("recording", RecordingBackend)
    RecordingBackend.instances.clear()
    sink = VirtualCameraSink(fps=20.0, backend="recording", pixel_format=pixel_format)
    pictures = _pictures(6)
    for index, picture in enumerate(pictures):
        sink.write(picture, index)
    sink.close()
    (camera,) = RecordingBackend.instances
    assert camera.closed and (camera.width, camera.height) == (96, 64)
    expected = pictures if pixel_format == "bgr" else [p[:, :, ::-1] for p in pictures]
    assert all(np.array_equal(a, b) for a, b in zip(camera.frames, expected, strict=True))
    # sleep_until_next_frame paces sends at the camera's rate: 5 gaps of 1/20 s.
    assert camera.sent_at[-1] - camera.sent_at[0] >= 5 / 20 * 0.8


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the v4l2loopback backend exists on Linux only")
def test_virtual_camera_missing_device_says_how_to_create_one() -> None:
    sink = VirtualCameraSink(fps=30.0, device="/dev/video-that-does-not-exist", backend="v4l2loopback")
    with pytest.raises(SinkError, match="virtual camera"):
        sink.write(_pictures(1)[0], 0)


def test_frames_sink_is_lossless(tmp_path: Path) -> None:
    sink = FramesSink(tmp_path / "frames")
    pictures = _pictures(3)
    for index, picture in enumerate(pictures):
        sink.write(picture, index)
    written = sorted((tmp_path / "frames").iterdir())
    assert [p.name for p in written] == ["000000.png", "000001.png", "000002.png"]
    assert all(np.array_equal(cv2.imread(str(p)), q) for p, q in zip(written, pictures, strict=True))


def test_file_sink_writes_video_at_stream_fps(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    sink = FileSink(path, fps=25.0)
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    pictures = [np.roll(cv2.resize(face, (192, 128)), 2 * i, axis=1) for i in range(10)]
    for index, picture in enumerate(pictures):
        sink.write(picture, index)
    sink.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(25.0)
    assert len(decoded) == 10 and decoded[0].shape == (128, 192, 3)
    psnr = np.mean([cv2.PSNR(a, b) for a, b in zip(decoded, pictures, strict=True)])
    assert psnr > 40.0, f"the file sink should be visually lossless, PSNR {psnr:.1f} dB"


def test_unknown_sink_is_a_clear_error() -> None:
    with pytest.raises(SinkError, match="unknown sink"):
        open_sink("carrier-pigeon", 30.0)
