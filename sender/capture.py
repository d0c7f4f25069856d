"""Frame sources: a camera index, a video file or an image folder, each frame timestamped at capture."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facewire.shared.types import CapturedFrame, Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class CaptureError(RuntimeError):
    """An input that cannot be opened or read; the message names it and the likely cause."""


def now_us() -> int:
    return time.time_ns() // 1000


class _Reader(Protocol):
    fps: float
    length: int | None  # the frames it holds, when known (a camera: never)
    size: tuple[int, int]  # (width, height) of the frames it reads

    def read(self) -> Image | None: ...

    def rewind(self) -> bool: ...

    def close(self) -> None: ...


def _capture_size(capture: cv2.VideoCapture) -> tuple[int, int]:
    return round(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), round(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))


class _VideoReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise CaptureError(f"cannot open video file {path}")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))  # the container's count; 0 or less: not known
        self.length: int | None = count if count > 0 else None
        self.size = _capture_size(self._capture)

    def read(self) -> Image | None:
        ok, image = self._capture.read()
        return image if ok else None

    def rewind(self) -> bool:
        self._capture.release()
        self._capture = cv2.VideoCapture(str(self.path))
        return self._capture.isOpened()

    def close(self) -> None:
        self._capture.release()


class _FolderReader:
    def __init__(self, path: Path, fps: float) -> None:
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise CaptureError(f"image folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.fps = fps
        self.length: int | None = len(self.files)
        self._next = 0
        first = self._read(self.files[0])
        self.size = (first.shape[1], first.shape[0])

    def read(self) -> Image | None:
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        return self._read(path)

    @staticmethod
    def _read(path: Path) -> Image:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CaptureError(f"cannot read image {path}")
        return image

    def rewind(self) -> bool:
        self._next = 0
        return True

    def close(self) -> None:
        return None


class _CameraReader:
    def __init__(self, index: int, size: tuple[int, int] | None, fps: float | None) -> None:
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise CaptureError(f"camera {index} is missing or busy (another program may be using it)")
        # MJPG first: most USB cameras only reach 30 fps at 720p compressed.
        self._capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        if size is not None:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps is not None:
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        ok, _ = self._capture.read()
        if not ok:
            self._capture.release()
            raise CaptureError(f"camera {index} opened but delivers no frames (busy or unplugged?)")
        got = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = got if 1.0 <= got <= 240.0 else 30.0
        self.length: int | None = None
        self.size = _capture_size(self._capture)

    def read(self) -> Image | None:
        ok, image = self._capture.read()
        if not ok:
            raise CaptureError("camera stopped delivering frames")
        return image

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        self._capture.release()


@dataclass
class CaptureOptions:
    loop: bool = False
    realtime: bool = False
    size: tuple[int, int] | None = None
    max_frames: int | None = None
    fps: float | None = None
    # Stamp a file's frames on its own timeline (the first at the start time, then index / fps) instead of
    # the wall clock: a recording then does not depend on how fast analysis ran (the tracker's smoothing
    # reads the timestamps). A camera is always stamped by the wall clock.
    media_clock: bool = False


class FrameSource:
    """Iterates CapturedFrames from `spec` with looping, pacing, scaling and a frame limit."""

    def __init__(self, spec: str, options: CaptureOptions | None = None) -> None:
        self.spec = spec
        self.options = options or CaptureOptions()
        self._reader = self._open(spec)
        self.fps = self.options.fps or self._reader.fps
        self.is_camera = isinstance(self._reader, _CameraReader)

    def _open(self, spec: str) -> _Reader:
        if spec.isdigit():
            return _CameraReader(int(spec), self.options.size, self.options.fps)
        path = Path(spec)
        if path.is_dir():
            return _FolderReader(path, self.options.fps or 30.0)
        if path.is_file():
            return _VideoReader(path)
        raise CaptureError(f"input {spec!r} is not a camera index, a video file or an image folder")

    def __iter__(self) -> Iterator[CapturedFrame]:
        start, start_us = time.monotonic(), now_us()
        media_clock = self.options.media_clock and not self.is_camera
        index = 0
        limit = self.options.max_frames
        while limit is None or index < limit:
            image = self._reader.read()
            if image is None:
                if not (self.options.loop and index > 0 and self._reader.rewind()):
                    return
                image = self._reader.read()
                if image is None:
                    return
            if self.options.realtime and not self.is_camera:
                delay = start + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            ts_us = start_us + round(index * 1e6 / self.fps) if media_clock else now_us()
            yield CapturedFrame(index=index, ts_us=ts_us, image=self._scaled(image))
            index += 1

    @property
    def length(self) -> int | None:
        """How many frames the iteration gives, when known before it: a file's (a video's by its container's
        count, which may be off by a frame or two) up to `max_frames`; a camera or a loop ends only there."""
        limit = self.options.max_frames
        known = self._reader.length
        if self.is_camera or self.options.loop or known is None:
            return limit if self.is_camera or self.options.loop else None
        return known if limit is None else min(known, limit)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames the iteration gives."""
        return self.options.size or self._reader.size

    @property
    def paced(self) -> bool:
        """Frames come on a clock (a camera, or a file with `realtime`), not as fast as they are read."""
        return self.is_camera or self.options.realtime

    def _scaled(self, image: Image) -> Image:
        size = self.options.size
        if size is None or image.shape[1::-1] == size:
            return np.ascontiguousarray(image)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        self._reader.close()

