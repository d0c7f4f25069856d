"""The residual layer's face box of a frame, as both sides place it (facewire.shared.codec.layer), and how far
its fusion reads the prediction: used by the layer's hold (replica.py) and by a renderer that draws only
what is shown (mesh.py), which replica.py itself loads, hence a module of its own."""

from __future__ import annotations

import math

import numpy as np

from facewire.shared.codec.layer import Affine, BoxGeometry, box_scale, face_box_transform
from facewire.shared.face.pose import head_pose
from facewire.shared.types import Landmarks

# The receiver's fusion: half of the warp's own detail kept, the codec's blocks softened (helper R2:
# detail 0.5 looked best at equal face SSIM; R6's integer fusion matches it within +-0.004).
LAYER_DETAIL = 0.5
LAYER_BLUR = 0.8
LAYER_GEOMETRY = BoxGeometry()
PYRAMID_SHRINK = 0.6  # layer._SHRINK_K: to_box halves the picture until its warp shrinks by no more than this


def layer_transform(landmarks: Landmarks | None, geometry: BoxGeometry = LAYER_GEOMETRY) -> Affine | None:
    """The frame-to-box similarity for these decoded landmarks, or None when they place no box."""
    if landmarks is None or not np.isfinite(landmarks).all():
        return None
    try:
        return face_box_transform(head_pose(landmarks.astype(np.float64)), geometry)
    except ValueError:  # a degenerate face (zero scale)
        return None


def layer_reach(landmarks: Landmarks | None, geometry: BoxGeometry = LAYER_GEOMETRY) -> int:
    """How far (frame pixels) from a pixel `apply_residual` with this frame's box reads the prediction: the fused
    pixel takes the prediction's low band (`to_box`: pyrDown to pyramid level L, then a bilinear warp into the
    box) at the box pixels around it (the two-stage bilinear `_up`). Up to 1.5 box pixels (1 / k frame pixels
    each) to the box pixels read, then 4 level-L pixels (the warp's two reads and pyrDown's 5-tap kernel at
    every level); 0: no box is placed, so nothing is read. A renderer that leaves parts of the frame undrawn
    draws this much around what it shows (MeshRenderer's `_reach`)."""
    transform = layer_transform(landmarks, geometry)
    if transform is None:
        return 0
    k = box_scale(transform)
    levels, shrink = 0, k
    while shrink < PYRAMID_SHRINK and levels < 6:  # layer._pyramid_levels
        shrink, levels = 2.0 * shrink, levels + 1
    return int(math.ceil(1.5 / k + 4 * 2**levels)) + 4
