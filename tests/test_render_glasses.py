"""Glasses an avatar wears: found on its picture, kept out of its skin, drawn as one rigid piece."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewire.shared.face import topology as topo
from facewire.shared.render.glasses import ANCHORS, draw_glasses, lift_glasses
from facewire.shared.render.mesh import MeshOptions, MeshRenderer
from facewire.shared.render.occlusion import OcclusionOptions, avatar_spectacles, occluder_mask
from facewire.shared.render.retarget import align_sender, apply_retarget
from facewire.shared.types import FrameState, IdentityAsset, Image, KeyframeState, Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks, big_astronaut, close_eyes, draw, open_mouth, transform

FRAME = (25, 25, 30)  # BGR: black plastic or dark metal


def _with_glasses(image: Image, lm: Landmarks, thickness: int) -> tuple[Image, np.ndarray]:
    """Rectangular lenses round both eyes (rims `thickness` px), a bridge and the arms to the face's outline."""
    out = image.copy()
    mask = np.zeros(image.shape[:2], np.uint8)
    tops, inner_ends = [], []
    for outer, inner in (topo.RIGHT_EYE_CORNERS, topo.LEFT_EYE_CORNERS):
        o, i = lm[outer, :2].astype(np.float64), lm[inner, :2].astype(np.float64)
        width = float(np.linalg.norm(o - i))
        centre = (o + i) / 2 + np.array([0.1 * (o - i)[0], 0.15 * width])
        half = np.array([0.85 * width, 0.55 * width])
        box = cv2.ellipse2Poly((0, 0), (100, 100), 0, 0, 360, 6).astype(np.float64) / 100.0
        # A rounded rectangle: a superellipse of exponent 4.
        shape = np.sign(box) * np.abs(box) ** 0.5
        poly = np.round(centre + shape * half).astype(np.int32)
        cv2.polylines(out, [poly], True, FRAME, thickness, cv2.LINE_AA)
        cv2.polylines(mask, [poly], True, 255, thickness, cv2.LINE_8)
        tops.append(centre[1] - 0.6 * half[1])
        inner_ends.append(centre[0] - np.sign((o - i)[0]) * half[0])
        outer_end = centre[0] + np.sign((o - i)[0]) * half[0]
        edge = float(lm[topo.face_oval_ring(), 0].min() if (o - i)[0] < 0 else lm[topo.face_oval_ring(), 0].max())
        arm = (int(round(outer_end)), int(round(centre[1] - 0.6 * half[1]))), (int(round(edge)), int(round(centre[1] - 0.8 * half[1])))
        cv2.line(out, *arm, FRAME, max(2, thickness // 2), cv2.LINE_AA)
        cv2.line(mask, *arm, 255, max(2, thickness // 2), cv2.LINE_8)
    bridge = (int(round(inner_ends[0])), int(round(tops[0]))), (int(round(inner_ends[1])), int(round(tops[1])))
    cv2.line(out, *bridge, FRAME, thickness, cv2.LINE_AA)
    cv2.line(mask, *bridge, 255, thickness, cv2.LINE_8)
    return out, mask > 0


def _inside_face(lm: Landmarks, shape: tuple[int, ...]) -> np.ndarray:
    face = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    return face > 0


@pytest.mark.parametrize("thickness", [3, 12])
def test_thin_and_thick_frames_are_found_whole_and_nothing_else(thickness: int) -> None:
    image, lm = big_astronaut()
    glasses, drawn = _with_glasses(image, lm, thickness)
    found = avatar_spectacles(glasses, lm)
    assert found is not None
    inside = _inside_face(lm, image.shape)
    taken = float((found[drawn & inside] > 0.5).mean())
    assert taken > 0.85, taken
    near = cv2.dilate(drawn.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    stray = float(((found > 0.5) & ~near).sum()) / float((found > 0.5).sum())
    assert stray < 0.1, stray


def test_a_bare_face_wears_no_glasses() -> None:
    image, lm = big_astronaut()
    assert avatar_spectacles(image, lm) is None


def test_the_frames_are_painted_over_with_the_skin_round_them() -> None:
    image, lm = big_astronaut()
    glasses, drawn = _with_glasses(image, lm, 12)
    lifted, frames = lift_glasses(glasses, lm)
    assert frames is not None
    rim = drawn & _inside_face(lm, image.shape)
    before = np.abs(glasses[rim].astype(np.float32) - image[rim]).mean()
    after = np.abs(lifted[rim].astype(np.float32) - image[rim]).mean()
    assert before > 60.0 and after < 0.3 * before, (before, after)


def head_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 affine (least squares) taking the anchor points `source` to `target`: the head's motion, as the tests
    expect the frames to follow it."""
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.asarray(solution.T, np.float64)


def test_the_head_affine_is_exact_for_an_affine_motion() -> None:
    rng = np.random.default_rng(3)
    source = rng.uniform(0, 300, (15, 2))
    motion = np.array([[0.9, -0.2, 14.0], [0.25, 1.1, -6.0]])
    target = source @ motion[:, :2].T + motion[:, 2]
    assert np.allclose(head_affine(source, target), motion)


def _avatar(thickness: int = 12) -> IdentityAsset:
    image, lm = big_astronaut()
    glasses, _ = _with_glasses(image, lm, thickness)
    return IdentityAsset(asset_id=f"glasses-{thickness}", image=glasses, landmarks=lm)


def _dark(image: Image) -> np.ndarray:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) < 70)


MOTIONS = {
    "still": lambda lm: lm,
    "blink": close_eyes,
    "open mouth": lambda lm: open_mouth(lm, 14.0),
    "head rolled": lambda lm: transform(lm, 8.0, (5.0, 3.0), (float(lm[topo.NOSE_BRIDGE, 0]), float(lm[topo.NOSE_BRIDGE, 1]))),
}


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_the_frames_are_drawn_whole_where_the_head_puts_them(motion: str) -> None:
    """The frames as the avatar wears them, moved with the head as one piece: dark on the rims the picture's frames give
    under the head's motion (the retargeted mesh's anchors), whatever the lids and the mouth do. Warped as skin, they
    were faded, lost their top bar and, round a blink, followed the lids: 0.41-0.60 of those pixels dark."""
    lm = astronaut_landmarks().astype(np.float32)
    keyframe = KeyframeState(kf=0, image=astronaut(), alpha=None, landmarks=lm)
    moved = MOTIONS[motion](lm).astype(np.float32)
    renderer = MeshRenderer()
    out = draw(renderer, _avatar(), keyframe, FrameState(1, 0, "tracked", moved, None)).image
    assert renderer._keyframe is not None and renderer._texture_now is not None
    plan = renderer._retarget_plan(renderer._keyframe, renderer._texture_now)
    target = apply_retarget(plan, align_sender(plan, moved))
    picture, picture_lm = big_astronaut()
    _, drawn = _with_glasses(picture, picture_lm, 12)
    motion_of_head = head_affine(picture_lm[list(ANCHORS), :2].astype(np.float64), target[list(ANCHORS), :2].astype(np.float64))
    want = cv2.warpAffine(drawn.astype(np.uint8) * 255, motion_of_head, (out.shape[1], out.shape[0])) > 127
    # Inside the face's feathered edge, off the eyes' openings (a closed lid's lashes are dark anyway).
    face = cv2.erode(_inside_face(target, out.shape).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    eyes = np.zeros(out.shape[:2], np.uint8)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        cv2.fillPoly(eyes, [np.round(target[ring, :2]).astype(np.int32)], 255)
    zone = want & face & ~(cv2.dilate(eyes, np.ones((9, 9), np.uint8)) > 0)
    assert zone.sum() > 300
    dark = float(_dark(out)[zone].mean())
    assert dark > 0.7, dark


def test_a_drawn_layer_lands_on_the_frames_of_the_texture_it_came_from() -> None:
    renderer = MeshRenderer()
    texture = renderer._texture(_avatar())
    assert texture is not None and texture.glasses is not None
    canvas = np.full_like(texture.image, 255)
    draw_glasses(canvas, texture.landmarks, texture.glasses)
    drawn = _dark(canvas)
    assert drawn.sum() > 300
    # The layer's box and anchors are the texture's own: drawn at its landmarks it is the identity.
    ys, xs = np.nonzero(drawn)
    ox, oy = texture.glasses.origin
    assert xs.min() >= ox - 2 and ys.min() >= oy - 2


@pytest.mark.parametrize("thickness", [4, 12])
def test_the_senders_glasses_are_not_kept_in_front_of_an_avatar(thickness: int) -> None:
    """The avatar is who the user chose to appear as: the sender's glasses, thin or thick, are not drawn over it,
    not even the arms the colour path takes for something coming in at the outline (on main they were kept)."""
    image, lm = big_astronaut()
    sender, drawn = _with_glasses(image, lm, thickness)
    rim = drawn & _inside_face(lm, image.shape)
    assert float((occluder_mask(sender, lm, OcclusionOptions(glasses=True))[rim] > 0.3).mean()) > 0.3  # found when asked
    assert float((occluder_mask(sender, lm)[rim] > 0.3).mean()) < 0.03


def test_hair_over_the_senders_glasses_is_still_kept() -> None:
    """The glasses are cut out of what is kept, the fringe above them is not."""
    image, lm = big_astronaut()
    sender, drawn = _with_glasses(image, lm, 12)
    oval = lm[topo.face_oval_ring(), :2]
    brows = float(lm[[70, 300], 1].mean())
    fringe = np.zeros(image.shape[:2], np.uint8)
    top = float(oval[:, 1].min())
    x0, x1 = np.percentile(oval[:, 0], [15, 85])
    poly = np.array([[x0, top - 20], [x1, top - 20], [x1, brows - 0.5 * (brows - top)], [x0, brows - 0.35 * (brows - top)]])
    cv2.fillPoly(fringe, [np.round(poly).astype(np.int32)], 255)
    sender[fringe > 0] = (20, 40, 70)  # dark brown
    mask = occluder_mask(sender, lm)
    hair = (fringe > 0) & _inside_face(lm, image.shape) & ~drawn
    assert float((mask[hair] > 0.5).mean()) > 0.8
    edge = int(0.04 * np.ptp(oval[:, 0]))  # the kept hair's soft edge
    away = cv2.dilate(fringe, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8)) == 0
    assert float((mask[drawn & _inside_face(lm, image.shape) & away] > 0.3).mean()) < 0.03  # kept: 0.84


def test_the_occluder_cache_keys_on_whether_the_avatar_wears_glasses() -> None:
    image, lm = big_astronaut()
    sender, _ = _with_glasses(image, lm, 4)
    renderer = MeshRenderer(MeshOptions())
    small = cv2.resize(sender, None, fx=1 / 3, fy=1 / 3, interpolation=cv2.INTER_AREA)
    slm = astronaut_landmarks().astype(np.float32)
    keyframe = KeyframeState(kf=0, image=small, alpha=None, landmarks=slm)
    draw(renderer, _avatar(), keyframe, FrameState(1, 0, "tracked", slm, None))
    cached = renderer._occluder
    assert cached is not None and cached[1] is True
    bare = IdentityAsset(asset_id="bare", image=image, landmarks=lm)
    draw(renderer, bare, keyframe, FrameState(2, 0, "tracked", slm, None))
    cached = renderer._occluder
    assert cached is not None and cached[1] is False


def test_the_avatar_check_says_the_avatar_wears_glasses() -> None:
    from facewire.sender.avatar_check import avatar_warnings

    image, lm = big_astronaut()
    glasses, _ = _with_glasses(image, lm, 12)
    assert any("glasses" in w for w in avatar_warnings(glasses, lm))
    assert not any("glasses" in w for w in avatar_warnings(image, lm))


def test_glasses_in_a_turned_picture_stay_in_the_skin_and_the_check_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turned enough to need the mirror fill, a picture's far lens is foreshortened: drawn rigid from the frontalised
    texture it sits stretched out past the eye, so such glasses are warped with the face as before."""
    import facewire.sender.avatar_check as check
    import facewire.shared.render.frontal as frontal

    image, lm = big_astronaut()
    glasses, _ = _with_glasses(image, lm, 12)
    assert frontal.prepare_texture(glasses, lm).glasses is not None
    monkeypatch.setattr(frontal, "picture_yaw", lambda _: 24.0)
    monkeypatch.setattr(check, "picture_yaw", lambda _: 24.0)
    assert frontal.prepare_texture(glasses, lm).glasses is None
    assert any("glasses in a turned picture" in w for w in check.avatar_warnings(glasses, lm))
