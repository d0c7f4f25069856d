"""An avatar's mouth: closed when the sender's is whatever the avatar's picture shows, teeth bared by a smile
drawn as teeth, and nothing of the sender's own mouth interior inside the avatar's."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.render.retarget import align_sender, lip_retraction, plan_retarget, retarget
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
    assert lip_retraction(plan, align_sender(plan, open_mouth(sender, 12.0))) < 0.15
    assert lip_retraction(plan, align_sender(plan, _bare(sender, 12.0))) > 0.85


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


def _drop_jaw(landmarks: Landmarks, amount: float) -> Landmarks:
    """A dropped jaw: the whole lower lip (both contours and the rings between) and everything below it move
    down `amount` pixels together; the upper lip stays."""
    out = landmarks.copy()
    ring = topo.inner_lip_ring()
    upper = landmarks[ring[: len(ring) // 2 + 1], :2]
    order = np.argsort(upper[:, 0])
    xs, ys = upper[order, 0], upper[order, 1]
    line = np.interp(landmarks[:468, 0], xs, ys)  # the upper inner lip, level with its corners beyond them
    out[:468, 1] += np.where(landmarks[:468, 1] > line + 0.15, amount, 0.0).astype(np.float32)
    return out


def _wide_mouthed(landmarks: Landmarks, scale: float) -> Landmarks:
    """The same face with its lips (and the ring round them) `scale` times as large about the mouth's centre."""
    out = landmarks.copy()
    ids = list(topo.lip_points(1))
    centre = landmarks[ids, :2].mean(axis=0)
    out[ids, :2] = centre + scale * (landmarks[ids, :2] - centre)
    return out


def _lower_lip(landmarks: Landmarks) -> float:
    """The lower lip's thickness at the middle: outer contour below the inner one."""
    return float(landmarks[17, 1] - landmarks[topo.LOWER_LIP_INNER_MID, 1])


def test_a_dropped_jaw_moves_a_larger_mouths_lower_lip_whole() -> None:
    """An avatar whose mouth is larger than the sender's: the jaw's drop scales to it, the lip band moves as one.
    Graded from the outer lip only, the inner lip took less of the scale than the outer, and the lower lip
    stretched into a thick band (a tongue, on a small tile) as the jaw dropped."""
    # The astronaut smiles (her mouth is 0.71 of her eyes' outer-corner span): narrowed to 0.41 of it, at rest, so
    # the avatar's 1.4x mouth (0.58) is a larger mouth, not a grin (retarget._mouth_size takes at most 0.6 for size).
    sender = _wide_mouthed(_closed(astronaut_landmarks()), 0.58)
    avatar = _wide_mouthed(sender, 1.4)
    dropped = _drop_jaw(sender, 12.0)
    assert abs(_lower_lip(dropped) - _lower_lip(sender)) < 1e-3
    still, moved = retarget(sender, sender, avatar), retarget(dropped, sender, avatar)
    assert abs(_lower_lip(moved) - _lower_lip(still)) < 1.0, (_lower_lip(still), _lower_lip(moved))
    assert 1.25 < _gap(moved) / _gap(dropped) < 1.55


def _folded(before: Landmarks, after: Landmarks, ids: tuple[int, ...]) -> int:
    """Triangles among `ids` whose orientation flips from `before` to `after`."""
    keep = set(ids)
    tris = np.array([t for t in topo.face_triangles() if all(int(v) in keep for v in t)])

    def area(p: Landmarks) -> np.ndarray:
        a, b, c = p[tris[:, 0], :2], p[tris[:, 1], :2], p[tris[:, 2], :2]
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    return int((np.sign(area(before)) != np.sign(area(after))).sum())


def test_closing_a_pictures_open_mouth_folds_no_lip() -> None:
    """The avatar's picture with its jaw dropped is closed before the sender's expression goes on: its whole
    lower lip rises, not only the two contours (the rings between left behind fold the lip's triangles over
    each other: a ragged band under the mouth)."""
    sender = _closed(astronaut_landmarks())
    avatar = _drop_jaw(sender, 10.0)
    assert _gap(avatar) > 9.0
    out = retarget(sender, sender, avatar)
    assert abs(_gap(out)) < 1.5
    outline = avatar[topo.outer_lip_ring(), :2].astype(np.float32)
    on_lips = tuple(i for i in range(468) if cv2.pointPolygonTest(outline, (float(avatar[i, 0]), float(avatar[i, 1])), True) >= -0.5)
    assert len(on_lips) > 60
    assert _folded(avatar, out, on_lips) == 0


def _teeth_ab(panel: np.ndarray) -> np.ndarray:
    """CIE a*, b* of a cavity panel's lit teeth (its brightest pixels)."""
    lab = cv2.cvtColor(panel, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    lit = lab[lab[:, 0] >= np.percentile(lab[:, 0], 93)]
    return np.asarray(np.median(lit, axis=0)[1:] - 128.0)


def test_an_avatars_teeth_stay_near_white_under_any_cast_and_lips() -> None:
    """The skin's cast (mostly how two skins differ, not the light) and red lips made amber or blue teeth."""
    luma = np.array([0.114, 0.587, 0.299])
    colours = []
    for lips in (np.array([60, 50, 200], np.float32), np.array([150, 90, 150], np.float32)):
        for gains in ((0.8, 0.97, 1.25), (1.25, 1.0, 0.8)):
            cast = np.array(gains) / float(np.array(gains) @ luma)
            palette = em.avatar_palette(lips, (float(cast[0]), float(cast[1]), float(cast[2])), wide=False)
            upper, _ = em.synthetic_panels(1.1, palette)
            colours.append(_teeth_ab(upper))
    ab = np.array(colours)
    assert np.hypot(ab[:, 0], ab[:, 1]).max() < 22.0, ab
    assert np.ptp(ab[:, 1]) < 22.0, ab


def _lip_line(landmarks: Landmarks, contour: np.ndarray) -> np.ndarray:
    """The height of a lip contour above each landmark (level with its ends beyond them)."""
    pts = landmarks[contour, :2]
    order = np.argsort(pts[:, 0])
    return np.interp(landmarks[:468, 0], pts[order, 0], pts[order, 1])


def _under_lip(landmarks: Landmarks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The skin between the lower lip's outer edge and the chin: which landmarks, their depth below the lip,
    and the lip-to-chin span above each."""
    ring = topo.outer_lip_ring()
    lower = ring[len(ring) // 2 :]
    x, y = landmarks[:468, 0], landmarks[:468, 1]
    lip = _lip_line(landmarks, lower)
    span = float(landmarks[topo.CHIN, 1]) - lip
    inside = (x > landmarks[lower, 0].min()) & (x < landmarks[lower, 0].max())
    ids = np.flatnonzero((y > lip + 0.15) & (y < landmarks[topo.CHIN, 1]) & inside)
    return ids, y[ids] - lip[ids], span[ids]


def _thin_strip_under_lip(landmarks: Landmarks) -> Landmarks:
    """A thick lower lip over a small chin: the skin under the lip squeezed towards it (the ring below the lip
    within a pixel of its edge), the chin where it was."""
    out = landmarks.copy()
    ids, depth, span = _under_lip(landmarks)
    out[ids, 1] -= (depth - span * (depth / span) ** 2).astype(np.float32)
    return out


def _triangle_areas(points: Landmarks, tris: np.ndarray) -> np.ndarray:
    a, b, c = points[tris[:, 0], :2], points[tris[:, 1], :2], points[tris[:, 2], :2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _squeezing_smile(landmarks: Landmarks, amount: float) -> Landmarks:
    """The lower lip drawn down `amount` pixels, squeezing the skin under it against the chin, which stays."""
    out = landmarks.copy()
    inner, outer = topo.inner_lip_ring(), topo.outer_lip_ring()
    y = landmarks[:468, 1]
    top, bottom = _lip_line(landmarks, inner[: len(inner) // 2 + 1]), _lip_line(landmarks, outer[len(outer) // 2 :])
    # Between the corners only: outside them the two contours meet and the cheek stays.
    x, (left, right) = landmarks[:468, 0], landmarks[list(topo.MOUTH_OUTER_CORNERS), 0]
    inside = (x > left) & (x < right)
    lip = np.flatnonzero((y > top + 0.15) & (y <= bottom + 0.15) & inside)
    ids, depth, span = _under_lip(landmarks)
    taper = np.clip(1.0 - np.abs(x - landmarks[topo.CHIN, 0]) / (0.5 * (right - left)), 0.0, 1.0)  # most in the middle
    out[lip, 1] += (amount * taper[lip]).astype(np.float32)
    out[ids, 1] += (amount * taper[ids] * (1.0 - depth / span) ** 3).astype(np.float32)
    return out


def test_a_smile_squeezing_a_thin_strip_under_the_lip_folds_no_skin() -> None:
    """The skin under the avatar's lower lip squeezes as a share of its own span, as the sender's does: added
    in pixels, the sender's squeeze of a 20-px strip put an avatar's 1-px strip's rings above its lip edge, and
    the triangles between folded (a jagged dark edge under the lip)."""
    sender = _closed(astronaut_landmarks())
    avatar = _thin_strip_under_lip(sender)
    ids = _under_lip(sender)[0]
    assert (avatar[ids, 1] - _lip_line(avatar, topo.outer_lip_ring()[10:])[ids]).min() < 1.0  # a thin strip
    keep = set(ids.tolist()) | set(int(v) for v in topo.outer_lip_ring())
    tris = np.array([t for t in topo.face_triangles() if all(int(v) in keep for v in t)])
    smile = _squeezing_smile(sender, 6.0)
    assert (np.sign(_triangle_areas(sender, tris)) == np.sign(_triangle_areas(avatar, tris))).all()
    assert (np.sign(_triangle_areas(sender, tris)) == np.sign(_triangle_areas(smile, tris))).all()  # the sender folds nowhere
    before, after = _triangle_areas(avatar, tris), _triangle_areas(retarget(smile, sender, avatar), tris)
    folded = np.sign(before) != np.sign(after)
    # Slivers under a square pixel in the picture (a lip point a fraction of a pixel above a skin edge) may tip
    # over; they draw nothing. Main folded 20 triangles here, 73 px2 of them.
    assert not (folded & (np.abs(before) > 1.0)).any(), np.abs(before)[folded]
    assert np.abs(after)[folded].sum() < 0.5


def _drawn_teeth_and_skin(scene_gains: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """CIE L*a*b* of an avatar's drawn teeth (the brightest of its opened mouth) and of its cheeks, the avatar (the
    astronaut, mirrored) driven by a keyframe of the astronaut whose picture is scaled by `scene_gains` (BGR): her
    skin in another light."""
    lm = astronaut_landmarks()
    scene = np.clip(astronaut().astype(np.float32) * np.array(scene_gains, np.float32), 0, 255).astype(np.uint8)
    keyframe = KeyframeState(kf=0, image=scene, alpha=None, landmarks=lm)
    avatar_image = np.ascontiguousarray(astronaut()[:, ::-1])
    avatar_lm = astronaut_landmarks()[topo.symmetry()].copy()
    avatar_lm[:, 0] = avatar_image.shape[1] - 1 - avatar_lm[:, 0]
    avatar = IdentityAsset(asset_id="mirrored", image=avatar_image, landmarks=avatar_lm)
    wide = open_mouth(lm, 14.0)
    out = draw(MeshRenderer(), avatar, keyframe, FrameState(seq=1, ts_us=0, face="tracked", landmarks=wide, alpha=None)).image
    lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(wide[topo.inner_lip_ring(), :2]).astype(np.int32)], 255)
    inside = lab[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0]
    teeth = np.median(inside[inside[:, 0] >= np.percentile(inside[:, 0], 90)], axis=0)
    cheeks = np.round(wide[[50, 280, 101, 330], :2]).astype(int)
    skin = np.median(np.array([lab[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0) for x, y in cheeks]), axis=0)
    return teeth, skin


def test_drawn_teeth_sit_in_the_scenes_light() -> None:
    """Teeth are near-neutral, so they take the light's colour, which the skin shows: in a dim warm room (the keyframe's
    picture darkened and warmed) a blue-white, skin-bright ivory looked lit by another lamp. Real teeth there measure
    darker than the cheeks and warm (clip d3: L*30 b*+17 under cheeks L*42 b*+30); in a bright neutral light they are
    near white and a little brighter than the cheeks."""
    teeth, skin = _drawn_teeth_and_skin((0.35, 0.55, 0.8))
    assert teeth[0] < skin[0], (teeth, skin)
    assert teeth[2] > 0.4 * skin[2], (teeth, skin)  # warm like the skin, only less so
    assert teeth[2] < skin[2], (teeth, skin)
    bright, bright_skin = _drawn_teeth_and_skin((1.05, 1.05, 1.05))
    assert bright[0] > bright_skin[0], (bright, bright_skin)
    assert abs(bright[2]) < abs(bright_skin[2]), (bright, bright_skin)
