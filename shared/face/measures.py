"""Openness of eyes and mouth measured on face-mesh landmarks, comparable across faces and sizes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo

Vec = npt.NDArray[np.float64]

# Lid opening over eye width: open eyes measure 0.25-0.45 in MediaPipe's mesh, shut ones under 0.1.
EYE_SHUT_BELOW = 0.2
TYPICAL_OPEN_EYE = 0.32
_LID_PAIRS = {"right": topo.RIGHT_LID_PAIRS, "left": topo.LEFT_LID_PAIRS}
_EYE_CORNERS = {"right": topo.RIGHT_EYE_CORNERS, "left": topo.LEFT_EYE_CORNERS}


def _distance(points: Vec, pair: tuple[int, int]) -> float:
    return float(np.linalg.norm(points[pair[0], :2] - points[pair[1], :2]))


def eye_width(points: Vec, side: str) -> float:
    return _distance(points, _EYE_CORNERS[side])


def eye_opening(points: Vec, side: str) -> float:
    """The mean gap between facing upper and lower lid points, in the landmarks' units."""
    return float(np.mean([_distance(points, pair) for pair in _LID_PAIRS[side]]))


def mouth_opening(points: Vec) -> float:
    return _distance(points, (topo.UPPER_LIP_INNER_MID, topo.LOWER_LIP_INNER_MID))


def eye_open_ratio(points: Vec, side: str) -> float:
    """The lids' opening over the eye's width."""
    return eye_opening(points, side) / max(eye_width(points, side), 1e-6)


def mouth_width(points: Vec) -> float:
    return _distance(points, topo.MOUTH_OUTER_CORNERS)


def mouth_ratio(points: Vec) -> float:
    """The inner lips' gap over the mouth's width."""
    return mouth_opening(points) / max(mouth_width(points), 1e-6)


def eyes_shut(points: Vec) -> bool:
    return min(eye_open_ratio(points, "right"), eye_open_ratio(points, "left")) < EYE_SHUT_BELOW
