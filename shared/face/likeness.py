"""How well a keyframe's face predicts another face through the mesh warp, from landmarks alone.

The warp draws a frame from a keyframe; the further the frame's expression and pose are from the
keyframe's, the more the warp must invent (a mouth opened from a closed one, a cheek turned into
view). `warp_cost` estimates the face-region SSIM lost, as a linear model of the mean canonical
landmark displacement (expression) and the pose differences. Its weights were fitted on the
project's clips with a per-clip offset (self mode, a random keyframe drawing a random frame of the
same clip; 1,900 pairs over 8 clips; bench/likeness.py) and checked leave-one-clip-out: choosing, for each frame, the
keyframe with the lowest cost gave +0.012..+0.047 face SSIM over an average keyframe on every held-out
clip (the ranking generalises; the absolute level varies by clip, so thresholds are on differences).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facewire.shared.face.pose import head_pose, to_canonical
from facewire.shared.types import HeadPose, Landmarks

# SSIM lost per unit: mean canonical displacement (canonical units: the eye-corner distance), yaw,
# pitch and roll differences (degrees), |log| scale ratio.
EXPRESSION_WEIGHT = 0.83
YAW_WEIGHT = 0.005
PITCH_WEIGHT = 0.0033
ROLL_WEIGHT = 0.0033
SCALE_WEIGHT = 0.02


@dataclass(frozen=True)
class FaceLikeness:
    """What the cost compares of one face: its canonical shape and its pose."""

    canonical: npt.NDArray[np.float32]  # (478, 2): x, y in the head frame
    pose: HeadPose

    @classmethod
    def of(cls, landmarks: Landmarks) -> FaceLikeness:
        pose = head_pose(landmarks.astype(np.float64))
        return cls(to_canonical(landmarks, pose)[:, :2], pose)


def warp_cost(keyframe: FaceLikeness, frame: FaceLikeness) -> float:
    """The face SSIM the warp of `keyframe` is expected to lose drawing `frame` (0 for the same face)."""
    expression = float(np.mean(np.linalg.norm(keyframe.canonical - frame.canonical, axis=1)))
    a, b = keyframe.pose, frame.pose
    return (EXPRESSION_WEIGHT * expression + YAW_WEIGHT * abs(a.yaw - b.yaw) + PITCH_WEIGHT * abs(a.pitch - b.pitch)
            + ROLL_WEIGHT * abs(a.roll - b.roll) + SCALE_WEIGHT * abs(float(np.log(a.scale / b.scale))))
