"""Reading evaluation clips for the benches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt


def read_frames(path: Path, limit: int) -> tuple[list[npt.NDArray[np.uint8]], float]:
    """Up to `limit` BGR frames of a video and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames: list[npt.NDArray[np.uint8]] = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps
