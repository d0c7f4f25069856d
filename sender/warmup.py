"""The sender's once-a-process costs, paid on a sample picture before the first camera frame is analysed.

A process's first frame costs far more than the next ones: MediaPipe builds its graphs for the frame size
and their first inference packs the models' weights (~100-200 ms for the mesh and the segmentation), the
first keyframe's despill and AVIF encode touch code and buffers nothing has touched yet. Live, frames
captured meanwhile are never shown (the analysis skips them as stale, or they wait behind the first keyframe
and the receiver draws only the newest): at 30 fps each 100 ms of it is 3 frames. The analysing thread
therefore warms up on a sample face (scikit-image's astronaut, which ships in its wheel) while the uplink
connects, and the capture starts after it.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import cv2
import numpy as np

from facewire.sender.analysis import SenderAnalyzer
from facewire.shared.codec.frames import build_keyframe
from facewire.shared.codec.keyframe import MAX_KEYFRAME_BYTES
from facewire.shared.types import CapturedFrame, Image

log = logging.getLogger(__name__)


def sample_face(size: tuple[int, int]) -> Image:
    """A portrait (BGR) fitted into a frame of `size` (width, height), on black."""
    import skimage.data

    portrait = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    width, height = size
    side = min(width, height)
    frame = np.zeros((height, width, 3), np.uint8)
    x, y = (width - side) // 2, (height - side) // 2
    frame[y:y + side, x:x + side] = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def warm_up(analyzer: SenderAnalyzer, size: tuple[int, int]) -> float:
    """Analyses a sample face at the capture's `size` and builds a keyframe of it (thrown away), then an empty
    frame, so the tracker's graph holds no face to track from, and resets the analyzer's state: the first real
    frame starts as fresh as before, with the models and encoders warm. Returns the seconds it took."""
    started = time.perf_counter()
    sample = CapturedFrame(index=0, ts_us=0, image=sample_face(size))
    analysis = analyzer.analyze(sample)
    if analysis.alpha is not None and float(analysis.alpha.max()) > 0.5:
        analysis = dataclasses.replace(analysis, foreground=analyzer.foreground())
        build_keyframe(analysis, 0, None, None, MAX_KEYFRAME_BYTES)
    analyzer.analyze(CapturedFrame(index=1, ts_us=1, image=np.zeros_like(sample.image)))
    analyzer.reset()
    elapsed = time.perf_counter() - started
    log.info("warmed up in %.0f ms (models at %dx%d, keyframe encoder)", elapsed * 1e3, *size)
    return elapsed
