"""The head-canonical frame (the frame HeadPose refers to; protocol.md 6.4) and the pose of a face in it.

Landmarks are MediaPipe face-mesh points in frame pixels: x right, y down, z away from the
camera (negative is nearer), z in the same pixel units as x. The head frame is defined from
rigid mesh points only, so the mouth and eyelids do not move it:

* origin O: the mean of the four eye corners 33, 133 (subject's right eye) and 362, 263
  (subject's left eye) -- the point between the eyes; (tx, ty) is its image position;
* X axis: from the right-eye corner pair to the left-eye corner pair (the subject's left, which
  is image right for a frontal face);
* Y axis (up): the direction from the nose points (1, 2, 4, 5) to the forehead midline points
  (8, 9, 10), made perpendicular to X and then tilted forward by NOSE_FOREHEAD_TILT_DEG
  (17.3 degrees, the slope of that line in MediaPipe's canonical face model) so that a face
  looking straight into the camera reads pitch 0;
* Z axis = X x Y: out of the face, towards the camera for a frontal face;
* one canonical unit = the 3-D distance between the two eye-corner midpoints (about 6.3 cm on
  an adult); `scale` is that distance in pixels, so it grows as the face nears the camera.

Angles, in degrees, are taken in the viewer's frame (x right, y up, z towards the viewer), where
the head rotation is Q = Ry(yaw) @ Rx(-pitch) @ Rz(roll):

* yaw > 0: the nose turns to the image right (the subject turns to their left);
* pitch > 0: the nose turns up;
* roll > 0: the head tilts counter-clockwise in the picture.

A frontal, upright face looking into the camera has yaw = pitch = roll = 0 (on the project's
clips, people looking at the camera read pitch -5 +- 4 degrees: MediaPipe's depth is only
roughly to scale, so treat a few degrees of pitch as the person's neutral, not as noise). `pose_rotation`,
`to_canonical` and `from_canonical` turn a HeadPose back into the transform, so the encoder can
express landmarks in the head frame and the receiver can place them again.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.types import HeadPose

NOSE_FOREHEAD_TILT_DEG = 17.3

# Viewer frame (x right, y up, z towards the viewer) expressed in image axes (x right, y down,
# z away from the camera): the same matrix maps both ways.
_VIEWER = np.diag([1.0, -1.0, -1.0])


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise ValueError("degenerate landmarks: cannot define a head axis")
    return v / n


def _cross(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # np.cross's generality costs ~40 us a call; this runs several times per frame
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def head_frame(landmarks: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """(R, origin, scale) of the head-canonical frame: R's columns are the X, Y, Z head axes in
    image axes, origin the 3-D point between the eyes in pixels, scale pixels per canonical unit."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 3 or lm.shape[0] < 468:
        raise ValueError(f"expected (478, 3) face-mesh landmarks, got shape {lm.shape}")
    right = lm[list(topo.RIGHT_EYE_CORNERS)].mean(axis=0)
    left = lm[list(topo.LEFT_EYE_CORNERS)].mean(axis=0)
    origin = (right + left) / 2.0
    scale = float(np.linalg.norm(left - right))
    ex = _unit(left - right)
    v = lm[list(topo.FOREHEAD_MIDLINE)].mean(axis=0) - lm[list(topo.NOSE_POINTS)].mean(axis=0)
    v_perp = _unit(v - float(v @ ex) * ex)
    w = _cross(ex, v_perp)
    t = math.radians(NOSE_FOREHEAD_TILT_DEG)
    ey = math.cos(t) * v_perp + math.sin(t) * w
    ez = _cross(ex, ey)
    return np.stack([ex, ey, ez], axis=1), origin, scale


def _angles_from_rotation(r_img: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    q = _VIEWER @ r_img
    b = math.asin(max(-1.0, min(1.0, -float(q[1, 2]))))
    yaw = math.atan2(float(q[0, 2]), float(q[2, 2]))
    roll = math.atan2(float(q[1, 0]), float(q[1, 1]))
    return math.degrees(yaw), -math.degrees(b), math.degrees(roll)


def head_pose(landmarks: npt.ArrayLike) -> HeadPose:
    """The HeadPose of a (478, 3) landmark array (see the module docstring for the frame)."""
    r_img, origin, scale = head_frame(landmarks)
    yaw, pitch, roll = _angles_from_rotation(r_img)
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll, tx=float(origin[0]), ty=float(origin[1]), scale=scale)


def pose_rotation(pose: HeadPose) -> npt.NDArray[np.float64]:
    """The head axes (columns X, Y, Z) in image axes for a HeadPose; inverse of `head_pose`'s angles."""
    a, b, c = math.radians(pose.yaw), math.radians(-pose.pitch), math.radians(pose.roll)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return _VIEWER @ (ry @ rx @ rz)


def to_canonical(landmarks: npt.ArrayLike, pose: HeadPose) -> npt.NDArray[np.float32]:
    """Landmarks (pixels) in the head-canonical frame (canonical units). The origin's depth, which
    HeadPose does not carry, is taken from the landmarks' own eye corners."""
    lm = np.asarray(landmarks, dtype=np.float64)
    oz = float(lm[list(topo.RIGHT_EYE_CORNERS + topo.LEFT_EYE_CORNERS), 2].mean())
    origin = np.array([pose.tx, pose.ty, oz])
    return (((lm - origin) @ pose_rotation(pose)) / pose.scale).astype(np.float32)


def from_canonical(points: npt.ArrayLike, pose: HeadPose) -> npt.NDArray[np.float32]:
    """Canonical-frame points back to pixels; z is relative to the origin's depth (0 there)."""
    p = np.asarray(points, dtype=np.float64)
    out = (p * pose.scale) @ pose_rotation(pose).T + np.array([pose.tx, pose.ty, 0.0])
    return out.astype(np.float32)
