"""Light stand-ins for the heavy stages, so the wire tests exercise only the plumbing.

`SyntheticAnalyzer` gives every frame a fixed mesh-shaped point set and a disc matte;
`KeyframeRenderer` shows the keyframe picture under the frame's matte. Neither claims to
analyse or render a face: the analysis and rendering tests cover those.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facewire.shared.types import (
    MESH_POINTS,
    CapturedFrame,
    FaceObservation,
    FrameAnalysis,
    FrameState,
    HeadPose,
    IdentityAsset,
    KeyframeState,
    RenderedPerson,
)


def write_frames(directory: Path, count: int, size: tuple[int, int] = (160, 120)) -> Path:
    """A folder of `count` PNG frames with a moving bright disc, so frames differ."""
    directory.mkdir(parents=True, exist_ok=True)
    width, height = size
    for index in range(count):
        image = np.full((height, width, 3), (40, 90, 30), np.uint8)
        centre = (width // 2 + int(10 * np.sin(index / 5)), height // 2)
        cv2.circle(image, centre, height // 3, (200, 180, 170), -1)
        cv2.imwrite(str(directory / f"{index:04d}.png"), image)
    return directory


class SyntheticAnalyzer:
    def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
        width, height = frame.size
        rng = np.random.default_rng(0)
        points = rng.uniform(0.3, 0.7, (MESH_POINTS, 3)).astype(np.float32) * np.float32([width, height, 10])
        points[:, 0] += frame.index % 7
        alpha = np.zeros((height, width), np.float32)
        cv2.circle(alpha, (width // 2, height // 2), height // 3, 1.0, -1)
        face = FaceObservation(points, HeadPose(0.0, 0.0, 0.0, width / 2, height / 2, 50.0), 0.9)
        return FrameAnalysis(frame=frame, face=face, alpha=alpha)

    def foreground(self) -> None:
        return None

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None


class KeyframeRenderer:
    """Shows the keyframe as it is, under the frame's alpha."""

    name = "keyframe"

    def __init__(self) -> None:
        self.keyframe: KeyframeState | None = None
        self.identity: IdentityAsset | None = None

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        self.identity = identity

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        self.keyframe = keyframe

    def render(self, frame: FrameState) -> RenderedPerson:
        assert self.keyframe is not None, "render before prepare_keyframe"
        image = self.keyframe.image
        alpha = frame.alpha if frame.alpha is not None else np.ones(image.shape[:2], np.float32)
        return RenderedPerson(image, alpha)
