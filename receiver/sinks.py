"""Where composited frames go: PNG folder, video file, virtual camera, window, null, http preview."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from facewire.shared.types import Image

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink that cannot open; the message says what to do about it."""


class Sink(Protocol):
    def write(self, image: Image, ts_us: int) -> None: ...

    def update_stats(self, stats: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _NoStats:
    def update_stats(self, stats: dict[str, float]) -> None:
        return None


class NullSink(_NoStats):
    def __init__(self) -> None:
        self.frames = 0

    def write(self, image: Image, ts_us: int) -> None:
        self.frames += 1

    def close(self) -> None:
        return None


class FramesSink(_NoStats):
    """Lossless PNG per frame: DIR/000000.png, 000001.png, ..."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, image: Image, ts_us: int) -> None:
        path = self.directory / f"{self.frames:06d}.png"
        if not cv2.imwrite(str(path), image):
            raise SinkError(f"cannot write {path}")
        self.frames += 1

    def close(self) -> None:
        return None


class FileSink(_NoStats):
    """A video at the stream's fps: H.264 at CRF 10 (visually lossless), yuv444p so colour edges survive."""

    def __init__(self, path: str | Path, fps: float, crf: int = 10) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self.frames = 0

    def _open(self, width: int, height: int) -> av.video.stream.VideoStream:
        self._container = av.open(str(self.path), mode="w")
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = stream
        return stream

    def write(self, image: Image, ts_us: int) -> None:
        stream = self._stream or self._open(image.shape[1], image.shape[0])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames
        for packet in stream.encode(frame):
            self._container.mux(packet)  # type: ignore[union-attr]
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None and self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._stream = None


class BackgroundWriter:
    """Writes to a slow sink (PNG files, a video encoder) on its own thread, so writing costs the render
    loop nothing: pictures wait in a short FIFO and none is dropped (a full FIFO makes the caller wait
    rather than lose a picture). A failure on the writing thread is raised by the next write or close."""

    def __init__(self, sink: Sink, depth: int = 8) -> None:
        self.sink = sink
        self._queue: queue.Queue[tuple[Image, int] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"sink-{type(sink).__name__}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.sink.write(*item)
                except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, image: Image, ts_us: int) -> None:
        self._raise_error()
        self._queue.put((image, ts_us))

    def update_stats(self, stats: dict[str, float]) -> None:
        self.sink.update_stats(stats)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.sink.close()
        self._raise_error()


class VirtualCameraSink(_NoStats):
    """Publishes to a virtual camera through pyvirtualcam, paced at the stream's fps."""

    def __init__(self, fps: float, device: str | None = None, backend: str | None = None,
                 pixel_format: str = "bgr") -> None:
        self.fps, self.device, self.backend = fps, device, backend
        self.pixel_format = pixel_format
        self._camera: object | None = None
        self.frames = 0

    def _open(self, width: int, height: int) -> object:
        import pyvirtualcam

        fmt = pyvirtualcam.PixelFormat.BGR if self.pixel_format == "bgr" else pyvirtualcam.PixelFormat.RGB
        try:
            camera = pyvirtualcam.Camera(width=width, height=height, fps=self.fps, fmt=fmt,
                                         device=self.device, backend=self.backend)
        except RuntimeError as exc:
            raise SinkError(f"no virtual camera: {exc}\n{virtual_camera_help()}") from None
        log.info("virtual camera %s (%s) %dx%d @ %g fps", camera.device, camera.backend, width, height, self.fps)
        self._camera = camera
        return camera

    def write(self, image: Image, ts_us: int) -> None:
        camera = self._camera or self._open(image.shape[1], image.shape[0])
        frame = image if self.pixel_format == "bgr" else image[:, :, ::-1]
        camera.send(np.ascontiguousarray(frame))  # type: ignore[attr-defined]
        camera.sleep_until_next_frame()  # type: ignore[attr-defined]
        self.frames += 1

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()  # type: ignore[attr-defined]
            self._camera = None


def virtual_camera_help() -> str:
    if sys.platform.startswith("linux"):
        return ("On Linux create a loopback device: sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=facewire")
    if sys.platform == "darwin":
        return "On macOS install OBS Studio and start its Virtual Camera once (Tools > Start Virtual Camera)."
    return "On Windows install OBS Studio (its virtual camera) or Unity Capture."


class WindowSink(_NoStats):
    def __init__(self, title: str = "facewire") -> None:
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise SinkError("--sink window needs a display (DISPLAY is not set); use --sink virtualcam or http:PORT")
        self.title = title

    def write(self, image: Image, ts_us: int) -> None:
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
