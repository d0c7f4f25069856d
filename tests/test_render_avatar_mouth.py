"""An avatar's mouth: closed when the sender's is whatever the avatar's picture shows, teeth bared by a smile
drawn as teeth, and nothing of the sender's own mouth interior inside the avatar's."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.render.retarget import lip_retraction, plan_retarget, retarget
from facewire.shared.types import FrameState, IdentityAsset, KeyframeState, Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks, draw, open_mouth

cv2.setNumThreads(1)


def _closed(landmarks: Landmarks) -> Landmarks:
    """The lips pressed together: each lower inner-lip point just under the upper one facing it."""
    out = landmarks.copy()
    ring = topo.inner_lip_ring()
    half = len(ring) // 2
    out[ring[half + 1 :], 1] = out[ring[1:half][::-1], 1] + 0.3
    return out


def _gap(landmarks: Landmarks) -> float:
    return float(landmarks[topo.LOWER_LIP_INNER_MID, 1] - landmarks[topo.UPPER_LIP_INNER_MID, 1])


def _bare(landmarks: Landmarks, amount: float) -> Landmarks:
    """A smile's opening: the inner lips drawn apart by `amount` pixels, the chin (the jaw) where it was."""
    out = landmarks.copy()
    ring = topo.inner_lip_ring()
    half = len(ring) // 2
    out[ring[1:half], 1] -= 0.5 * amount
    out[ring[half + 1 :], 1] += 0.5 * amount
    return out


def test_an_avatar_photographed_with_an_open_mouth_closes_it_with_the_sender() -> None:
    """The avatar's picture is its neutral face: an open smile there must not keep its mouth open, nor add
    the sender's opening to its own."""
    sender = _closed(astronaut_landmarks())
    avatar = open_mouth(sender, 12.0)
    assert _gap(avatar) > 11.0
    assert abs(_gap(retarget(sender, sender, avatar))) < 1.5
    talking = open_mouth(sender, 8.0)
    assert abs(_gap(retarget(talking, sender, avatar)) - _gap(talking)) < 2.5


def test_the_chin_tells_a_dropped_jaw_from_lips_drawn_back() -> None:
    sender = _closed(astronaut_landmarks())
    plan = plan_retarget(sender, sender)
    assert lip_retraction(plan, open_mouth(sender, 12.0)) < 0.15
    assert lip_retraction(plan, _bare(sender, 12.0)) > 0.85


def test_teeth_bared_by_a_smile_fill_the_opening_a_dropped_jaw_leaves_dark() -> None:
    lm = _bare(_closed(astronaut_landmarks()), 20.0)
    assert em.MouthFrame.of(lm).ratio > 0.3
    panels = em.synthetic_panels(1.0)
    middle = np.round(lm[[topo.UPPER_LIP_INNER_MID, topo.LOWER_LIP_INNER_MID], :2].mean(axis=0)).astype(int)
    spot = (slice(middle[1] - 1, middle[1] + 2), slice(middle[0] - 4, middle[0] + 5))

    def drawn(bared: float) -> float:
        canvas = np.full((*astronaut().shape[:2], 3), 128, np.uint8)
        em.composite_cavity(canvas, lm, panels, 0.0, bared)
        return float(cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY)[spot].mean())

    dropped, bared = drawn(0.0), drawn(1.0)
    assert dropped < 70 and bared > 140, (dropped, bared)


def test_the_senders_mouth_interior_never_shows_inside_an_avatars() -> None:
    """A keyframe caught with the lips apart: its interior (painted green here, as a lipstick or the sender's own
    teeth would be foreign) is not copied into the avatar's opened mouth."""
    lm = open_mouth(astronaut_landmarks(), 8.0)
    image = astronaut().copy()
    cv2.fillPoly(image, [np.round(lm[topo.inner_lip_ring(), :2]).astype(np.int32)], (0, 255, 0))
    keyframe = KeyframeState(kf=0, image=image, alpha=None, landmarks=lm)
    avatar_image = np.ascontiguousarray(astronaut()[:, ::-1])
    avatar_lm = astronaut_landmarks()[topo.symmetry()].copy()
    avatar_lm[:, 0] = avatar_image.shape[1] - 1 - avatar_lm[:, 0]
    avatar = IdentityAsset(asset_id="mirrored", image=avatar_image, landmarks=avatar_lm)
    wide = open_mouth(astronaut_landmarks(), 20.0)
    out = draw(MeshRenderer(), avatar, keyframe, FrameState(seq=1, ts_us=0, face="tracked", landmarks=wide, alpha=None)).image
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(wide[topo.inner_lip_ring(), :2]).astype(np.int32)], 255)
    inside = out[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0].astype(np.float32)
    green = inside[:, 1] - np.maximum(inside[:, 0], inside[:, 2])
    assert float(np.percentile(green, 95)) < 20.0
