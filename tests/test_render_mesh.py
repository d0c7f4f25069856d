from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from facewire.shared.face import topology as topo
from facewire.shared.face.identity import IdentityAsset, detect_faces
from facewire.shared.render import make_renderer
from facewire.shared.render.mesh import MeshOptions, MeshRenderer
from facewire.shared.render.occlusion import OcclusionOptions, occluder_mask
from facewire.shared.render.retarget import align_sender, retarget
from facewire.shared.render.warp import Region, affine_coefficients, fill_polygon, remap, warp_maps
from facewire.shared.types import FrameState, KeyframeState
from tests.render_fixtures import astronaut, astronaut_landmarks, big_astronaut, close_eyes, draw, open_mouth, transform

cv2.setNumThreads(1)


def _frame(landmarks: np.ndarray | None, face: str = "tracked", alpha: np.ndarray | None = None) -> FrameState:
    return FrameState(seq=1, ts_us=0, face=face, landmarks=landmarks, alpha=alpha)  # type: ignore[arg-type]


def _keyframe() -> KeyframeState:
    return KeyframeState(kf=0, image=astronaut(), alpha=None, landmarks=astronaut_landmarks())


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _poly_mean(image: np.ndarray, points: np.ndarray) -> float:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2]).astype(np.int32)], 255)
    return float(_luma(image)[mask > 0].mean())


def test_mesh_topology() -> None:
    tris = topo.face_triangles()
    assert tris.shape == (852, 3)
    edges = {tuple(sorted(e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    # A disk with three holes (two eyes, mouth): V - E + F = 1 - 3.
    assert 468 - len(edges) + len(tris) == -2
    sym = topo.symmetry()
    assert np.array_equal(sym[sym], np.arange(478))
    assert list(sym[topo.right_eye_ring()]) == list(topo.left_eye_ring())


def test_affine_coefficients_recover_a_known_affine() -> None:
    rng = np.random.default_rng(1)
    dst = rng.uniform(0, 100, (20, 3, 2)).astype(np.float32)
    m = np.array([[0.9, 0.2, 5.0], [-0.1, 1.1, -3.0]])
    src = (dst @ m[:, :2].T + m[:, 2]).astype(np.float32)
    coef = affine_coefficients(dst, src)
    assert np.allclose(coef, np.tile(m.reshape(6), (20, 1)), atol=1e-4)


def test_warp_moves_a_dot_where_asked() -> None:
    src_img = np.zeros((64, 64), np.uint8)
    cv2.circle(src_img, (20, 20), 3, 255, -1)
    corners = np.array([[0, 0], [63, 0], [63, 63], [0, 63]], np.float32)
    moved = corners.copy()
    centre_src, centre_dst = np.array([20.0, 20.0]), np.array([40.0, 36.0])
    verts_src = np.vstack([corners, centre_src]).astype(np.float32)
    verts_dst = np.vstack([moved, centre_dst]).astype(np.float32)
    tris = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    for step in (1, 2):
        map_x, map_y, covered = warp_maps(verts_dst[tris], verts_src[tris], Region(0, 0, 64, 64), step)
        out = remap(src_img, map_x, map_y)
        # The dot sits on the shared vertex, so its centre lands exactly there; the old spot is empty.
        assert out[36, 40] > 200 and out[20, 20] < 30
        assert covered[10:54, 10:54].min() == 255


def test_self_mode_puts_the_face_where_the_landmarks_say() -> None:
    lm = astronaut_landmarks()
    target = transform(lm, angle_deg=8.0, shift=(14.0, -9.0), centre=(220.0, 120.0))
    out = draw(MeshRenderer(), None, _keyframe(), _frame(target))
    assert out.image.shape == astronaut().shape and out.alpha.shape == astronaut().shape[:2]
    found = detect_faces(out.image)
    assert len(found) == 1
    err = np.linalg.norm(found[0].landmarks[:468, :2] - target[:468, :2], axis=1)
    assert float(np.median(err)) < 2.5
    # The untouched keyframe would be off by the full motion.
    assert float(np.median(np.linalg.norm(lm[:468, :2] - target[:468, :2], axis=1))) > 8


def test_opening_the_mouth_shows_a_dark_cavity_not_stretched_lips() -> None:
    lm = astronaut_landmarks()
    opened = open_mouth(lm, 14.0)
    renderer = MeshRenderer()
    out = draw(renderer, None, _keyframe(), _frame(opened)).image
    inner = opened[topo.inner_lip_ring()]
    before = _poly_mean(astronaut(), inner)
    after = _poly_mean(out, inner)
    assert after < before - 40, (before, after)
    # The lips themselves stay lip-coloured (not smeared into the hole): red dominates there.
    lower_lip = np.vstack([opened[topo.outer_lip_ring()[10:]], opened[topo.inner_lip_ring()[10:]][::-1]])
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lower_lip[:, :2]).astype(np.int32)], 255)
    b, g, r = out[mask > 0].astype(np.float32).mean(axis=0)
    assert r > g + 20


def test_closing_the_eyes_covers_the_irises_without_tearing() -> None:
    lm = astronaut_landmarks()
    closed = close_eyes(lm)
    out = draw(MeshRenderer(), None, _keyframe(), _frame(closed)).image
    for centre in (468, 473):
        x, y = lm[centre, :2]
        r = 4
        patch_before = _luma(astronaut())[int(y) - r : int(y) + r, int(x) - r : int(x) + r]
        patch_after = _luma(out)[int(y) - r : int(y) + r, int(x) - r : int(x) + r]
        # The dark iris is gone: skin (the lid) now covers it, and nothing torn (no holes, no black).
        assert patch_after.mean() > patch_before.mean() + 25
        assert patch_after.min() > 40


def test_irises_follow_the_gaze() -> None:
    lm = astronaut_landmarks()
    look = lm.copy()
    look[468:478, 0] += 3.0  # both irises 3 px to the right
    out = _luma(draw(MeshRenderer(), None, _keyframe(), _frame(look)).image)
    src = _luma(astronaut())
    for centre in (468, 473):
        x, y = np.round(lm[centre, :2]).astype(int)
        iris = src[y - 2 : y + 3, x - 2 : x + 3]
        moved = np.abs(out[y - 2 : y + 3, x + 1 : x + 6] - iris).mean()
        stayed = np.abs(out[y - 2 : y + 3, x - 2 : x + 3] - iris).mean()
        # The iris (with its catchlight) is found 3 px right of where it was, not where it was.
        assert moved < 0.5 * stayed, (moved, stayed)


def test_lost_face_shows_the_keyframe_and_frame_alpha_wins() -> None:
    alpha = np.full(astronaut().shape[:2], 0.25, np.float32)
    out = draw(MeshRenderer(), None, _keyframe(), _frame(None, face="lost", alpha=alpha))
    assert np.array_equal(out.image, astronaut())
    assert np.allclose(out.alpha, 0.25)
    out = draw(MeshRenderer(), None, _keyframe(), _frame(astronaut_landmarks(), alpha=alpha))
    assert np.allclose(out.alpha, 0.25)
    out = draw(MeshRenderer(), None, _keyframe(), _frame(astronaut_landmarks()))
    assert np.allclose(out.alpha, 1.0)


def _avatar() -> IdentityAsset:
    """A different-looking 'person': the astronaut mirrored with her colours turned blue-green."""
    image = np.ascontiguousarray(astronaut()[:, ::-1][:, :, [2, 1, 0]])
    lm = astronaut_landmarks()[topo.symmetry()].copy()
    lm[:, 0] = image.shape[1] - 1 - lm[:, 0]
    return IdentityAsset(asset_id="test-avatar", image=image, landmarks=lm)


def test_avatar_mode_renders_the_avatar_face_at_the_sender_pose() -> None:
    lm = astronaut_landmarks()
    target = transform(lm, angle_deg=-6.0, shift=(6.0, 4.0), centre=(220.0, 120.0))
    renderer = make_renderer("mesh")
    assert renderer.name == "mesh"
    self_out = draw(renderer, None, _keyframe(), _frame(target)).image
    avatar_out = draw(renderer, _avatar(), _keyframe(), _frame(target)).image
    cheek = np.round(target[[50, 280], :2]).astype(int)
    diff = [np.abs(avatar_out[y - 3 : y + 3, x - 3 : x + 3].astype(int) - self_out[y - 3 : y + 3, x - 3 : x + 3]).mean()
            for x, y in cheek]  # fmt: skip
    assert max(diff) > 3  # the face changed
    far = np.abs(avatar_out[400:, :100].astype(int) - self_out[400:, :100]).mean()
    assert far < 1.0  # the rest of the picture did not
    found = detect_faces(avatar_out)
    assert len(found) == 1
    assert float(np.median(np.linalg.norm(found[0].landmarks[:468, :2] - target[:468, :2], axis=1))) < 5.0


def test_avatar_mouth_follows_the_sender() -> None:
    lm = astronaut_landmarks()
    opened = open_mouth(lm, 14.0)
    renderer = MeshRenderer()
    closed_out = draw(renderer, _avatar(), _keyframe(), _frame(lm)).image
    open_out = draw(renderer, _avatar(), _keyframe(), _frame(opened)).image
    inner = opened[topo.inner_lip_ring()]
    assert _poly_mean(open_out, inner) < _poly_mean(closed_out, inner) - 30


def test_retarget_without_expression_keeps_the_avatar_shape_at_the_sender_pose() -> None:
    lm = astronaut_landmarks()
    moved = transform(lm, angle_deg=10.0, shift=(20.0, 0.0), centre=(220.0, 120.0))
    out = retarget(moved, lm, lm)
    assert np.median(np.linalg.norm(out[:, :2] - moved[:, :2], axis=1)) < 0.5
    opened = open_mouth(lm, 10.0)
    out = retarget(opened, lm, lm)
    gap = out[topo.LOWER_LIP_INNER_MID, 1] - out[topo.UPPER_LIP_INNER_MID, 1]
    assert gap > lm[topo.LOWER_LIP_INNER_MID, 1] - lm[topo.UPPER_LIP_INNER_MID, 1] + 6


def test_unknown_renderer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="mesh"):
        make_renderer("nope")


def _with_blue_bar() -> tuple[np.ndarray, tuple[slice, slice]]:
    """The astronaut with a blue 'gloved finger' across her right cheek, and where it is."""
    lm = astronaut_landmarks()
    image = astronaut().copy()
    x, y = np.round(lm[50, :2]).astype(int)
    box = (slice(y - 4, y + 4), slice(x - 8, x + 14))
    image[box] = (200, 80, 30)
    return image, box


def test_occluder_mask_finds_a_hand_not_the_face() -> None:
    image, box = _with_blue_bar()
    lm = astronaut_landmarks()
    mask = occluder_mask(image, lm)
    assert mask[box].mean() > 0.8
    clean = occluder_mask(astronaut(), lm)
    for i in (468, 473, 13, 4, 280):  # eyes, mouth, nose, other cheek: the face's own, never occluders
        x, y = np.round(lm[i, :2]).astype(int)
        assert clean[y - 2 : y + 3, x - 2 : x + 3].max() < 0.2


def test_occluders_stay_in_front_of_the_avatar() -> None:
    image, box = _with_blue_bar()
    keyframe = KeyframeState(kf=0, image=image, alpha=None, landmarks=astronaut_landmarks())
    out = draw(MeshRenderer(), _avatar(), keyframe, _frame(astronaut_landmarks())).image
    assert np.abs(out[box].astype(int) - image[box]).mean() < 20
    no_keep = draw(MeshRenderer(MeshOptions(keep_occluders=False)), _avatar(), keyframe, _frame(astronaut_landmarks()))
    assert np.abs(no_keep.image[box].astype(int) - image[box]).mean() > 40


@pytest.mark.parametrize("kind", ["nan", "collapsed", "far_away"])
def test_unusable_landmarks_show_the_keyframe_instead_of_failing(kind: str) -> None:
    lm = astronaut_landmarks()
    bad = {
        "nan": np.full_like(lm, np.nan),
        "collapsed": np.zeros_like(lm),
        "far_away": lm + np.array([5000.0, 5000.0, 0.0], np.float32),
    }[kind]
    for identity in (None, _avatar()):
        out = draw(MeshRenderer(), identity, _keyframe(), _frame(bad))
        assert np.array_equal(out.image, astronaut())


def test_avatar_mouth_is_measured_from_closed_lips() -> None:
    """A keyframe caught mid-word (lips apart): closing the mouth closes the avatar's, no inverted lips
    or cavity; the neutral's own opening opens the avatar's mouth as much."""
    lm = astronaut_landmarks()
    talking = open_mouth(lm, 8.0)
    closed = lm.copy()
    ring = topo.inner_lip_ring()
    lower = ring[len(ring) // 2 + 1 :]
    upper = ring[1 : len(ring) // 2][::-1]
    closed[lower, 1] = closed[upper, 1] + 0.5  # lips together
    shut = retarget(closed, talking, closed)  # an avatar with closed lips
    assert shut[topo.LOWER_LIP_INNER_MID, 1] >= shut[topo.UPPER_LIP_INNER_MID, 1] - 0.5
    assert shut[topo.LOWER_LIP_INNER_MID, 1] - shut[topo.UPPER_LIP_INNER_MID, 1] < 3.0
    same = retarget(talking, talking, closed)
    gap = same[topo.LOWER_LIP_INNER_MID, 1] - same[topo.UPPER_LIP_INNER_MID, 1]
    assert gap > talking[topo.LOWER_LIP_INNER_MID, 1] - talking[topo.UPPER_LIP_INNER_MID, 1] - 3.0


def test_opened_mouth_keeps_the_reference_teeth_under_the_upper_lip() -> None:
    lm = astronaut_landmarks()  # she smiles with her teeth showing: the reference
    opened = open_mouth(lm, 14.0)
    out = _luma(draw(MeshRenderer(), None, _keyframe(), _frame(opened)).image)
    up = np.round(opened[topo.UPPER_LIP_INNER_MID, :2]).astype(int)
    low = np.round(opened[topo.LOWER_LIP_INNER_MID, :2]).astype(int)
    teeth = out[up[1] + 1 : up[1] + 4, up[0] - 3 : up[0] + 4].mean()
    middle = (up + low) // 2
    cavity = out[middle[1] - 1 : middle[1] + 2, middle[0] - 3 : middle[0] + 4].mean()
    assert teeth > 140 and cavity < 80, (teeth, cavity)


def test_no_swap_where_the_matte_is_unsure() -> None:
    lm = astronaut_landmarks()
    unsure = np.full(astronaut().shape[:2], 0.25, np.float32)
    sure = np.ones(astronaut().shape[:2], np.float32)
    renderer = MeshRenderer()
    self_out = draw(renderer, None, _keyframe(), _frame(lm, alpha=unsure)).image
    avatar_unsure = draw(renderer, _avatar(), _keyframe(), _frame(lm, alpha=unsure)).image
    avatar_sure = draw(renderer, _avatar(), _keyframe(), _frame(lm, alpha=sure)).image
    x, y = np.round(lm[50, :2]).astype(int)
    cheek = (slice(y - 3, y + 4), slice(x - 3, x + 4))
    assert np.abs(avatar_unsure[cheek].astype(int) - self_out[cheek]).mean() < 2
    assert np.abs(avatar_sure[cheek].astype(int) - self_out[cheek]).mean() > 5


def test_an_avatar_without_a_face_falls_back_to_the_sender() -> None:
    blank = IdentityAsset(asset_id="no-face", image=np.full((200, 200, 3), 128, np.uint8), landmarks=None)
    renderer = MeshRenderer()
    target = transform(astronaut_landmarks(), angle_deg=4.0, shift=(3.0, 0.0), centre=(220.0, 120.0))
    out = draw(renderer, blank, _keyframe(), _frame(target)).image
    self_out = draw(renderer, None, _keyframe(), _frame(target)).image
    assert np.array_equal(out, self_out)


def _inner_lip_gaps(landmarks: np.ndarray) -> np.ndarray:
    """Gap between facing inner-lip points, corner to middle to corner."""
    ring = topo.inner_lip_ring()
    half = len(ring) // 2
    upper, lower = ring[1:half], ring[half + 1 :][::-1]
    return np.asarray(landmarks[lower, 1] - landmarks[upper, 1], np.float64)


def test_parted_lips_in_the_keyframe_open_the_avatar_in_a_lens_not_a_band() -> None:
    """A keyframe caught smiling with the lips apart (the astronaut, opened further): the avatar's
    opening follows the sender's shape (wider in the middle than towards the corners), not a band
    of even height, and its lower lip keeps its thickness instead of being stretched thin."""
    lm = astronaut_landmarks()
    talking = open_mouth(lm, 6.0)
    closed = lm.copy()
    ring = topo.inner_lip_ring()
    closed[ring[len(ring) // 2 + 1 :], 1] = closed[ring[1 : len(ring) // 2][::-1], 1] + 0.3
    out = retarget(talking, talking, closed)
    gaps, sender = _inner_lip_gaps(out), _inner_lip_gaps(talking)
    mid = len(gaps) // 2
    assert gaps[mid] > 4.0
    for end in (0, -1):
        assert gaps[mid] - gaps[end] > 0.6 * (sender[mid] - sender[end]) > 1.0, (gaps, sender)
    outer = topo.outer_lip_ring()
    thickness = out[outer[15], 1] - out[topo.LOWER_LIP_INNER_MID, 1]
    own = closed[outer[15], 1] - closed[topo.LOWER_LIP_INNER_MID, 1]
    assert thickness > 0.7 * own, (thickness, own)


def test_shading_keeps_a_crease_the_colour_of_the_skin_around_it() -> None:
    """Relighting and colour matching change a crease in proportion to the skin around it: a darker
    line of the same colour as the skin stays the same colour (it does not turn into a red crack)."""
    from facewire.shared.render.blend import BlendOptions, match_shading

    skin = np.array([110, 150, 215], np.float32)  # BGR, a warm skin
    albedo = np.tile(skin, (96, 96, 1))
    albedo[:, 47:49] *= 0.6  # a crease: darker, same chromaticity
    face = np.clip(albedo + 0.5, 0, 255).astype(np.uint8)
    scene = np.full((96, 96, 3), (170, 175, 200), np.uint8)  # brighter, paler
    out = match_shading(face, scene, np.ones((96, 96), np.float32), 80.0, BlendOptions()).astype(np.float64)
    crease, around = out[20:76, 47:49].reshape(-1, 3).mean(0), out[20:76, 30:40].reshape(-1, 3).mean(0)
    luma = lambda c: float(np.asarray(c, np.float64) @ [0.114, 0.587, 0.299])  # noqa: E731
    # Relit: part of the way to the scene's brightness (the rest of the difference is skin tone).
    assert luma(around) > luma(skin) + 0.3 * (luma(scene[0, 0]) - luma(skin)), around
    assert np.allclose(crease / crease.sum(), around / around.sum(), atol=0.01), (crease, around)


def test_faint_fine_colour_detail_is_softened_strong_detail_kept() -> None:
    from facewire.shared.render.frontal import soften_fine_chroma

    image = np.full((64, 64, 3), (120, 150, 200), np.uint8)
    image[:, 20] = (110, 140, 215)  # a faint reddish line
    image[30:36, 44:50] = (200, 120, 60)  # a blue iris: strong
    out = soften_fine_chroma(image, 3.0, 0.3)
    cr = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2YCrCb)[..., 1].astype(float)  # noqa: E731
    assert abs(cr(out)[32, 20] - cr(out)[32, 10]) < 0.5 * abs(cr(image)[32, 20] - cr(image)[32, 10])
    cb = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2YCrCb)[..., 2].astype(float)  # noqa: E731
    assert cb(out)[33, 47] - cb(out)[33, 30] > 0.7 * (cb(image)[33, 47] - cb(image)[33, 30])


def test_faint_grain_is_smoothed_and_strong_edges_kept() -> None:
    from facewire.shared.render.frontal import smooth_fine_texture

    rng = np.random.default_rng(3)
    skin = np.full((64, 64, 3), (140, 160, 200), np.float32)
    grain = np.where(rng.random((64, 64)) < 0.15, -4.0, 0.0).astype(np.float32)  # a painting's dark speckle
    image = np.clip(skin + grain[..., None], 0, 255).astype(np.uint8)
    image[:, 40:43] = (40, 50, 70)  # a dark line: a lid or a brow
    out = smooth_fine_texture(image, 1.5, 12.0)
    patch = (slice(4, 60), slice(4, 34), 1)
    assert out[patch].astype(float).std() < 0.5 * image[patch].astype(float).std()
    assert int(out[32, 10, 1]) - int(out[32, 41, 1]) > 0.9 * (int(image[32, 10, 1]) - int(image[32, 41, 1]))
    assert np.array_equal(smooth_fine_texture(image, 1.5, 0.0), image)


def test_a_small_patch_inside_the_face_is_not_an_occluder_but_one_from_the_edge_is() -> None:
    lm = astronaut_landmarks()
    image = astronaut().copy()
    x, y = np.round(lm[9, :2]).astype(int)  # between the brows, skin all round
    image[y - 4 : y + 4, x - 5 : x + 6] = (90, 90, 200)  # a flush
    assert occluder_mask(image, lm)[y - 4 : y + 4, x - 5 : x + 6].max() < 0.2
    image, box = _with_blue_bar()  # a finger reaching in over the cheek
    assert occluder_mask(image, lm)[box].mean() > 0.8


def test_a_smaller_face_samples_a_smaller_avatar_level() -> None:
    from facewire.shared.render.frontal import prepare_texture

    avatar = _avatar()
    assert avatar.image is not None and avatar.landmarks is not None
    texture = prepare_texture(avatar.image, avatar.landmarks)
    width = float(np.ptp(texture.landmarks[:468, 0]))
    full, to_full = texture.level_for(width)
    assert full.shape == texture.image.shape and np.allclose(to_full, [[1, 0, 0], [0, 1, 0]])
    half, to_half = texture.level_for(0.45 * width)
    assert 0.4 < half.shape[1] / full.shape[1] <= 0.72
    # The same point of the face in both levels: a landmark maps to where the level shows it.
    p = texture.landmarks[4, :2]
    q = to_half[:, :2] @ p + to_half[:, 2]
    patch_full = cv2.getRectSubPix(full, (1, 1), (float(p[0]), float(p[1]))).astype(float)
    patch_half = cv2.getRectSubPix(half, (1, 1), (float(q[0]), float(q[1]))).astype(float)
    assert np.abs(patch_full - patch_half).mean() < 25


def _chroma(bgr: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return bgr / bgr.sum(axis=-1, keepdims=True)


def test_a_mid_tone_painted_face_in_a_bright_room_is_not_bleached() -> None:
    """A tan face under a pale, bright sender takes the sender's skin tone (the neck beside it shows it) but is
    not bleached: brightened through the roll-off, no channel clips, and it keeps some colour."""
    from facewire.shared.render.blend import BlendOptions, match_shading

    face = np.full((96, 96, 3), (95, 140, 190), np.uint8)
    scene = np.full((96, 96, 3), (228, 230, 245), np.uint8)
    out = match_shading(face, scene, np.ones((96, 96), np.float32), 80.0, BlendOptions()).astype(np.float64)
    mean = out[20:76, 20:76].reshape(-1, 3).mean(0)
    saturation = lambda c: (c.max() - c.min()) / c.max()  # noqa: E731
    assert mean.max() < 250, mean
    # The scene's skin: saturation 0.07; a clipped face would be white (0).
    assert saturation(mean) > 0.6 * saturation(scene[0, 0].astype(np.float64)), mean


def test_the_avatars_own_coloured_light_does_not_stay_as_coloured_cheeks() -> None:
    """An avatar lit warm from one side and cool from the other (a cartoon's key and fill) under an
    evenly lit sender: both cheeks come out close in colour, not one red and one blue."""
    from facewire.shared.render.blend import BlendOptions, match_shading

    side = np.tanh(np.linspace(-2.0, 2.0, 96))[None, :, None]
    warm, cool = np.array([110, 140, 215], np.float64), np.array([150, 150, 170], np.float64)
    face = np.clip(np.broadcast_to((warm + cool) / 2 + side * (warm - cool) / 2, (96, 96, 3)), 0, 255).astype(np.uint8)
    scene = np.full((96, 96, 3), (160, 175, 205), np.uint8)
    out = match_shading(face, scene, np.ones((96, 96), np.float32), 80.0, BlendOptions()).astype(np.float64)
    before = np.abs(_chroma(face[48, 85].astype(np.float64)) - _chroma(face[48, 10].astype(np.float64))).sum()
    after = np.abs(_chroma(out[48, 85]) - _chroma(out[48, 10])).sum()
    assert after < 0.4 * before, (before, after)


def test_the_face_meets_the_scene_at_the_mask_edge_and_keeps_its_colour_inside() -> None:
    """A forehead lit brighter than the rest (a step the smooth light fields cannot follow): with the
    seam correction the face's edge there takes most of the scene's brightness; its centre does not move."""
    from dataclasses import replace

    from facewire.shared.render.blend import BlendOptions, match_shading

    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    inside = (np.hypot(xx - 48, yy - 48) < 36).astype(np.float32)
    weight = cv2.GaussianBlur(inside, (0, 0), 3.0)
    face = np.full((96, 96, 3), (100, 140, 190), np.uint8)
    scene = np.full((96, 96, 3), (110, 150, 200), np.uint8)
    scene[:20] = (160, 200, 245)  # the forehead's band
    options = BlendOptions()
    plain = match_shading(face, scene, weight, 72.0, replace(options, seam_reach=0.0)).astype(np.float64)
    seamless = match_shading(face, scene, weight, 72.0, options).astype(np.float64)
    edge = (slice(13, 16), slice(44, 52))  # the top of the mask, where its weight is about a half
    assert 0.3 < weight[edge].mean() < 0.7
    gap_plain = np.abs(plain[edge] - scene[edge]).mean()
    gap_seamless = np.abs(seamless[edge] - scene[edge]).mean()
    assert gap_seamless < 0.5 * gap_plain, (gap_plain, gap_seamless)
    centre = (slice(44, 52), slice(44, 52))
    assert np.abs(seamless[centre] - plain[centre]).mean() < 2.0


def test_background_under_the_avatars_mask_is_not_taken_for_shadow() -> None:
    """Where the avatar's face is wider than the sender's, its mask covers the wall beside the
    sender's cheek: the dark wall does not darken that side of the face."""
    from facewire.shared.render.blend import BlendOptions, match_shading

    face = np.full((96, 96, 3), (110, 150, 200), np.uint8)
    scene = np.full((96, 96, 3), (120, 160, 210), np.uint8)
    scene[:, 70:] = (60, 65, 60)  # a dark grey-green wall past the sender's cheek
    out = match_shading(face, scene, np.ones((96, 96), np.float32), 80.0, BlendOptions()).astype(np.float64)
    left, right = out[20:76, 10:30].mean(), out[20:76, 66:86].mean()
    assert right > 0.9 * left, (left, right)


def test_occluders_are_found_once_a_keyframe_and_only_under_an_avatar(monkeypatch: pytest.MonkeyPatch) -> None:
    import facewire.shared.render.mesh as mesh

    calls: list[int] = []
    real = mesh.occluder_mask

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mesh, "occluder_mask", counting)
    lm = astronaut_landmarks()
    renderer = MeshRenderer()
    renderer.prepare_identity(None)
    renderer.prepare_keyframe(_keyframe())
    for shift in (0.0, 3.0):
        renderer.render(_frame(transform(lm, angle_deg=0.0, shift=(shift, 0.0), centre=(220.0, 120.0))))
    assert calls == []
    renderer.prepare_identity(_avatar())
    for shift in (0.0, 3.0):
        renderer.render(_frame(transform(lm, angle_deg=0.0, shift=(shift, 0.0), centre=(220.0, 120.0))))
    assert len(calls) == 1
    renderer.prepare_keyframe(KeyframeState(kf=1, image=_keyframe().image.copy(), alpha=None, landmarks=lm))
    renderer.render(_frame(lm))
    assert len(calls) == 2


def _hair_at_the_cheek(image: np.ndarray, lm: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Dark hair over the outline at the lower cheek: a tuft, with a strand `reach` face widths long (0: none).

    Returns the picture, the tuft's mask and a point near the strand's inner tip.
    """
    oval = lm[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    edge = lm[132, :2]
    inward = (oval.mean(axis=0) - edge) / np.linalg.norm(oval.mean(axis=0) - edge)
    out = image.copy()
    tuft = np.zeros(image.shape[:2], np.uint8)
    at, radius = tuple(int(v) for v in np.round(edge)), int(0.12 * width)
    cv2.circle(out, at, radius, (30, 40, 60), -1)
    cv2.circle(tuft, at, radius, 255, -1)
    tip = edge + reach * width * inward
    if reach > 0:
        cv2.line(out, at, tuple(int(v) for v in np.round(tip)), (30, 40, 60), int(0.08 * width))
    inside = edge + (reach - 0.03) * width * inward
    return out, tuft > 0, (int(round(inside[0])), int(round(inside[1])))


def test_hair_tips_cut_off_by_the_outline_band_are_not_occluders_a_long_strand_is() -> None:
    image, lm = big_astronaut()
    # A tuft mostly in the outline band (left to the face mask's feather): what reaches past the band
    # alone would be drawn in front of an avatar as a dark spot on its cheek.
    tuft, where, _ = _hair_at_the_cheek(image, lm, 0.0)
    assert occluder_mask(tuft, lm)[where].max() < 0.2
    assert occluder_mask(tuft, lm, OcclusionOptions(inside_area=0.0))[where].max() > 0.5  # judged before the cut: a spot
    # A strand falling well into the face is hair in front of it.
    strand, _, (x, y) = _hair_at_the_cheek(image, lm, 0.3)
    assert occluder_mask(strand, lm)[y - 4 : y + 5, x - 4 : x + 5].mean() > 0.5


def test_a_strand_kept_in_front_is_drawn_on_through_the_outline_band_to_its_hair() -> None:
    """Cut at the band, a kept strand floats on the avatar's forehead or cheek with the avatar's skin between it
    and the hair it hangs from (a fringe on the stand-in sender of `facewire-avatar check`)."""
    image, lm = big_astronaut()
    strand, tuft, _ = _hair_at_the_cheek(image, lm, 0.3)
    face = np.zeros(image.shape[:2], np.uint8)
    fill_polygon(face, lm[topo.face_oval_ring(), :2])
    assert occluder_mask(strand, lm)[tuft & (face > 0)].mean() > 0.9  # the band cut alone keeps ~0.4 of it


def test_under_an_avatar_a_turned_outline_does_not_squeeze_the_keyframes_jaw_band_into_a_line() -> None:
    """The outline's far side running out to the hair ring (a turned head) squeezes the keyframe's band of
    jaw, shadow and hair edge: drawn as a thin dark jagged line beside an avatar's jaw. Under an avatar
    the ring keeps half its band's width, with the ring on the head's similarity alone (band_follow 0) too;
    following the outline (the default, self mode too), the ring keeps the band whatever the outline does."""
    image, lm = big_astronaut()
    h, w = image.shape[:2]
    renderers = {follow: MeshRenderer(MeshOptions(band_follow=follow)) for follow in (0.0, 1.0)}
    for renderer in renderers.values():
        renderer.prepare_keyframe(KeyframeState(0, image, None, lm))
    model = renderers[0.0]._keyframe
    assert model is not None
    oval = list(topo.face_oval_ring())
    centre = lm[oval, :2].mean(axis=0)
    radius = float(np.linalg.norm(lm[oval, :2] - centre, axis=1).mean())
    dst = lm.copy()
    far_side = [i for i in oval if lm[i, 0] > centre[0] + 0.3 * radius]
    rays = dst[far_side, :2] - centre
    dst[far_side, :2] += 0.4 * rays  # the far cheek swung out to (and past) the hair ring

    def squeeze(keep: bool, follow: float = 0.0) -> float:
        renderer = renderers[follow]
        assert renderer._keyframe is not None
        maps = renderer._keyframe_map(renderer._keyframe, dst, (w, h), coarse_face=True, keep_bands=keep).full()
        jx, jy = np.gradient(maps[..., 0]), np.gradient(maps[..., 1])
        det = jx[1] * jy[0] - jx[0] * jy[1]  # source area read per output pixel
        outline = np.zeros((h, w), np.uint8)
        cv2.fillPoly(outline, [np.round(dst[oval, :2]).astype(np.int32)], 255)
        band = (cv2.dilate(outline, np.ones((9, 9), np.uint8)) > 0) & (outline == 0)
        band[:, : int(centre[0] + 0.3 * radius)] = False
        return float(np.percentile(np.abs(det[band]), 95))

    assert squeeze(False) > 6.0  # the premise: the band is squeezed (or folded) several times over
    assert squeeze(True) < 0.6 * squeeze(False)
    assert squeeze(False, 1.0) < 2.0 and squeeze(True, 1.0) < 2.0


def _turned(lm: npt.NDArray[np.float32], degrees: float) -> npt.NDArray[np.float32]:
    """The landmarks of the face turned `degrees` about the vertical axis through its middle (seen orthographically)."""
    out = lm.astype(np.float64).copy()
    centre = out[:468].mean(axis=0)
    t = np.radians(degrees)
    x, z = out[:, 0] - centre[0], out[:, 2] - centre[2]
    out[:, 0] = centre[0] + x * np.cos(t) + z * np.sin(t)
    out[:, 2] = centre[2] - x * np.sin(t) + z * np.cos(t)
    return out.astype(np.float32)


@pytest.mark.parametrize("under_avatar", [True, False])
@pytest.mark.parametrize("degrees", [25.0, -25.0])
def test_a_turned_head_keeps_the_band_beyond_its_jaw_as_wide_as_the_keyframe(degrees: float, under_avatar: bool) -> None:
    """On a turned head the face's front slides sideways further than its sides, so the hair ring, placed by the
    similarity fitted to the whole face, ran in over the near jaw and away from the far cheek: the keyframe's band
    beyond the near jaw (its edge, the shadow under it, the hair's edge) was squeezed to half its width, a dark line
    along every avatar's jaw, and the far side's ear and hair were pulled out to twice theirs. The ring follows the
    outline (MeshOptions.band_follow): about as much keyframe is read per pixel there as in the keyframe. Self mode
    (no _keep_band) squeezed it further, to a tenth on w1's turn."""
    image, lm = big_astronaut()
    h, w = image.shape[:2]
    renderer = MeshRenderer(MeshOptions())
    renderer.prepare_keyframe(KeyframeState(0, image, None, lm))
    model = renderer._keyframe
    assert model is not None
    dst = _turned(lm, degrees)
    maps = renderer._keyframe_map(model, dst, (w, h), coarse_face=True, keep_bands=under_avatar).full()
    jx, jy = np.gradient(maps[..., 0]), np.gradient(maps[..., 1])
    read = np.abs(jx[1] * jy[0] - jx[0] * jy[1])  # keyframe area read per frame pixel
    oval = dst[list(topo.face_oval_ring()), :2]
    outline = np.zeros((h, w), np.uint8)
    fill_polygon(outline, oval)
    band = (cv2.dilate(outline, np.ones((31, 31), np.uint8)) > 0) & (outline == 0)  # 15 px beyond the outline
    middle, half = float(oval[:, 0].mean()), float(np.ptp(oval[:, 0])) / 2
    right, left = band.copy(), band.copy()
    right[:, : int(middle + 0.3 * half)] = False
    left[:, int(middle - 0.3 * half) :] = False
    near, far = (right, left) if dst[topo.NOSE_TIP, 0] < middle else (left, right)
    # On the similarity alone: near 1.7-1.8 (squeezed), far 0.83-0.86 (stretched). Following the outline, the near
    # side shows a little more of the head's side and the far side a little less, as a turning head does.
    assert float(np.median(read[near])) < 1.2
    assert float(np.median(read[far])) > 1.0


def _narrow_avatar(squeeze: float) -> IdentityAsset:
    """The astronaut with her face narrowed to `squeeze` of its width about its middle (a narrower-faced person)."""
    image, lm = astronaut(), astronaut_landmarks().copy()
    cx = float(lm[topo.face_oval_ring(), 0].mean())
    m = np.array([[squeeze, 0.0, cx * (1.0 - squeeze)], [0.0, 1.0, 0.0]], np.float32)
    narrow = cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lm[:, 0] = cx + squeeze * (lm[:, 0] - cx)
    return IdentityAsset(asset_id="narrow-avatar", image=np.ascontiguousarray(narrow), landmarks=lm)


@pytest.mark.parametrize("share", [1.0, 0.0])
def test_round_a_narrower_avatar_the_senders_cheeks_do_not_show(share: float) -> None:
    """The keyframe round the avatar is warped to the avatar's outline (MeshOptions.avatar_silhouette): the sender's
    wider cheeks and jaw no longer frame the avatar's face as a flat mask. The sender's face is painted green in the
    keyframe, so whatever green is drawn outside the avatar's outline is the sender's face showing."""
    lm = astronaut_landmarks()
    image = astronaut().copy()
    green = np.zeros(image.shape[:2], np.uint8)
    fill_polygon(green, lm[topo.face_oval_ring(), :2].astype(np.float32))
    image[green > 0] = (0, 255, 0)
    renderer = MeshRenderer(MeshOptions(avatar_silhouette=share))
    renderer.prepare_identity(_narrow_avatar(0.8))
    renderer.prepare_keyframe(KeyframeState(0, image, None, lm))
    out = renderer.render(_frame(lm)).image
    texture, model = renderer._texture_now, renderer._keyframe
    assert texture is not None and model is not None
    target = renderer._avatar_target(model, texture, align_sender(renderer._retarget_plan(model, texture), lm))
    inside = np.zeros(image.shape[:2], np.uint8)
    fill_polygon(inside, target[topo.face_oval_ring(), :2].astype(np.float32))
    beyond = cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0
    shown = (out[..., 1].astype(int) - np.maximum(out[..., 0], out[..., 2]) > 120) & beyond
    if share:
        assert shown.sum() < 20
    else:
        assert shown.sum() > 200  # the premise: the sender's face reaches past the narrower avatar's
