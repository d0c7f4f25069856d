"""The receiver's once-a-process costs, paid on a sample face before it listens.

The first picture a process draws costs several times the next ones: the face mesh's triangle lists are
built, OpenCV's remap and NumPy's frame-sized buffers are touched for the first time, the compositor loads
its background (70-110 ms in all, against ~10 ms a frame). A session's first keyframe arrives with the frames
captured while it was built behind it, and all of them wait for that first picture: the receiver's
latest-frame hand-off keeps only the newest, so each 33 ms of it is a frame never shown. The receiver
therefore draws and composites one sample frame (the shipped expression basis's mean face on a plain
picture) before it opens its port.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from facewire.receiver.player import Player
from facewire.shared.codec.expression.basis import shipped_basis
from facewire.shared.face.pose import from_canonical
from facewire.shared.types import FrameState, HeadPose, KeyframeState

log = logging.getLogger(__name__)
WARM_UP_SIZE = (640, 480)  # the compositor is made again for another size; the rest does not depend on it


def sample_keyframe(size: tuple[int, int]) -> KeyframeState:
    """A keyframe of `size`: the basis's mean face, frontal, on a plain grey picture with an oval person."""
    width, height = size
    pose = HeadPose(yaw=0.0, pitch=0.0, roll=0.0, tx=width / 2, ty=height * 0.42, scale=height * 0.12)
    landmarks = from_canonical(shipped_basis().mean_neutral, pose)
    image = np.full((height, width, 3), 128, np.uint8)
    alpha = np.zeros((height, width), np.float32)
    cv2.ellipse(alpha, (width // 2, height // 2), (width // 4, height // 2), 0, 0, 360, 1.0, -1)
    return KeyframeState(kf=0, image=image, alpha=alpha, landmarks=landmarks)


def warm_up(player: Player, size: tuple[int, int] = WARM_UP_SIZE) -> float:
    """Draws and composites a sample frame with `player` (not shown): returns the seconds it took."""
    started = time.perf_counter()
    keyframe = sample_keyframe(size)
    assert keyframe.landmarks is not None
    moved = keyframe.landmarks + np.array([2.0, 1.0, 0.0], np.float32)  # a frame that moved, as a first frame has
    player.rehearse(keyframe, FrameState(seq=1, ts_us=0, face="tracked", landmarks=moved, alpha=None))
    elapsed = time.perf_counter() - started
    log.info("warmed up in %.0f ms", elapsed * 1e3)
    return elapsed
