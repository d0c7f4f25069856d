"""Shared media for the rendering tests: skimage's astronaut and synthetic edits of her landmarks."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
from skimage import data

from facewire.shared.face import topology as topo
from facewire.shared.face.identity import detect_faces
from facewire.shared.types import FrameState, IdentityAsset, Image, KeyframeState, Landmarks, RenderedPerson, Renderer


@cache
def astronaut() -> Image:
    return np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))


@cache
def astronaut_landmarks() -> Landmarks:
    faces = detect_faces(astronaut())
    assert len(faces) == 1
    return faces[0].landmarks


def big_astronaut() -> tuple[Image, Landmarks]:
    """The astronaut three times larger: her face is ~270 px wide, like an avatar portrait's."""
    image = cv2.resize(astronaut(), None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)
    lm = astronaut_landmarks().astype(np.float32).copy()
    lm[:, :2] = (lm[:, :2] + 0.5) * 3.0 - 0.5
    lm[:, 2] *= 3.0
    return np.ascontiguousarray(image), lm


def open_mouth(landmarks: Landmarks, amount: float) -> Landmarks:
    """Landmarks with the jaw dropped by `amount` pixels: lower lip and chin move, upper lip stays."""
    out = landmarks.copy()
    upper = set(int(i) for i in topo.inner_lip_ring()[:11]) | set(int(i) for i in topo.outer_lip_ring()[:11])
    lower = (set(int(i) for i in topo.inner_lip_ring()[11:]) | set(int(i) for i in topo.outer_lip_ring()[11:])) - upper
    lip_y = float(landmarks[[topo.UPPER_LIP_INNER_MID, topo.LOWER_LIP_INNER_MID], 1].mean())
    chin_y = float(landmarks[topo.CHIN, 1])
    for i in range(468):
        y = float(landmarks[i, 1])
        if i in lower:
            out[i, 1] += amount
        elif i not in upper and y > lip_y:
            # The jaw below the mouth drops with the lower lip; the cheeks beside it follow less.
            out[i, 1] += amount * min(1.0, (y - lip_y) / max(0.25 * (chin_y - lip_y), 1.0))
    return out


def close_eyes(landmarks: Landmarks) -> Landmarks:
    """Upper eyelids lowered onto the lower eyelids (a blink)."""
    out = landmarks.copy()
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        half = len(ring) // 2
        upper = ring[1:half]
        lower = ring[half + 1 :][::-1]
        out[upper, 1] = landmarks[lower, 1] - 0.5
    return out


def transform(landmarks: Landmarks, angle_deg: float, shift: tuple[float, float], centre: tuple[float, float]) -> Landmarks:
    m = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    out = landmarks.copy()
    out[:, :2] = landmarks[:, :2] @ m[:, :2].T + m[:, 2] + np.array(shift)
    return out


def draw(renderer: Renderer, identity: IdentityAsset | None, keyframe: KeyframeState, frame: FrameState) -> RenderedPerson:
    """Tell the renderer the identity and the keyframe, as the receiver's player does, then render one frame."""
    renderer.prepare_identity(identity)
    renderer.prepare_keyframe(keyframe)
    return renderer.render(frame)
