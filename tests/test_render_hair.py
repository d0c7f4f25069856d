"""Hair over an avatar's face: strands hanging in at the sides are cover, the cheek's shading is not."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.frontal import fill_cover
from facewire.shared.render.occlusion import avatar_cover
from facewire.shared.types import Landmarks
from tests.render_fixtures import big_astronaut


def _luma(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _cheek(image: npt.NDArray[np.uint8], lm: Landmarks) -> npt.NDArray[np.float64]:
    """The mean colour of a 7-px patch on the right cheek."""
    x, y = int(lm[50, 0]), int(lm[50, 1])
    return image[y - 3 : y + 4, x - 3 : x + 4].reshape(-1, 3).mean(axis=0)


def _sides() -> tuple[npt.NDArray[np.uint8], Landmarks, npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Even skin; a brown strand hanging in along one side from the eyes to the nose, the other side shaded smoothly."""
    image, lm = big_astronaut()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = _face((h, w), lm)
    cheek = _cheek(image, lm)
    rng = np.random.default_rng(0)
    eyes = np.zeros((h, w), np.uint8)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring(), topo.outer_lip_ring()):
        cv2.fillPoly(eyes, [np.round(lm[ring, :2]).astype(np.int32)], 255)
    eyes = cv2.dilate(eyes, np.ones((15, 15), np.uint8))
    bare = (face > 0) & (eyes == 0)
    image[bare] = np.clip(cheek + rng.normal(0, 3, (int(bare.sum()), 3)), 0, 255).astype(np.uint8)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    top = float(lm[[33, 133, 263, 362], 1].mean())
    bottom = float(lm[2, 1])
    # The outline's distance from the face's centre line, row by row (the outline is convex).
    centre = float(lm[4, 0])
    right_edge = np.zeros(h, np.float32)
    left_edge = np.zeros(h, np.float32)
    for y in range(h):
        xs = np.nonzero(face[y])[0]
        if len(xs):
            left_edge[y], right_edge[y] = xs.min(), xs.max()
    in_rows = (rows > top + 4) & (rows < bottom - 4)
    strand = (face > 0) & in_rows & (cols > right_edge[:, None] - 0.07 * width)
    image[strand] = (40, 60, 95)
    # The other cheek darkens smoothly towards the outline, to 0.7 of the skin at its edge: shading, not hair.
    depth = np.clip((left_edge[:, None] + 0.15 * width - cols) / (0.15 * width), 0.0, 1.0)
    shaded = (face > 0) & in_rows & (cols < centre) & (depth > 0)
    image[shaded] = np.clip(image[shaded] * (1.0 - 0.3 * depth[shaded])[:, None], 0, 255).astype(np.uint8)
    return image, lm, strand, shaded, bare


def test_a_strand_hanging_in_beside_the_cheek_is_cover_the_shaded_cheek_is_not() -> None:
    image, lm, strand, shaded, _ = _sides()
    cover = avatar_cover(image, lm)
    assert cover[strand].mean() > 0.8, cover[strand].mean()
    assert cover[shaded].mean() < 0.05, cover[shaded].mean()


def test_a_side_strand_is_painted_over_with_skin() -> None:
    image, lm, strand, _, bare = _sides()
    skin = float(np.median(_luma(image)[bare & ~strand]))
    out = fill_cover(image, lm)
    assert float(np.median(_luma(out)[strand])) > 0.9 * skin > float(np.median(_luma(image)[strand]))


def test_a_stubbled_cheek_is_not_a_strand() -> None:
    """Dark specks scattered over a cheek (stubble) are each too small to be a strand's core."""
    image, lm, strand, _, bare = _sides()
    image[strand] = image[bare & ~strand][: int(strand.sum())]
    rng = np.random.default_rng(1)
    specks = strand & (rng.random(strand.shape) < 0.25)
    image[specks] = (40, 50, 70)
    assert avatar_cover(image, lm)[strand].mean() < 0.1


def test_a_strand_is_filled_with_the_skin_beside_it_at_its_height() -> None:
    """A blush across the cheeks (redder skin over the upper 0.6 from the eyes to the nose, plain skin below):
    a strand hanging over the side from the eyes to the mouth is filled, row by row, with the colour of the
    skin beside it at that height, not a colour fitted to the whole face (which smears the blush up and down
    and runs off at the side)."""
    image, lm, strand, shaded, bare = _sides()
    h, w = image.shape[:2]
    rows = np.mgrid[0:h, 0:w][0]
    eyes, nose = float(lm[[33, 263], 1].mean()), float(lm[2, 1])
    blush_top, blush_bottom = eyes + 8, eyes + 0.6 * (nose - eyes)
    margin = 0.04 * float(np.ptp(lm[:468, 0]))
    blush = bare & (rows > blush_top) & (rows < blush_bottom)
    image[blush] = np.clip(image[blush].astype(np.float32) * np.float32([0.8, 0.85, 1.1]), 0, 255).astype(np.uint8)
    assert avatar_cover(image, lm)[strand].mean() > 0.8
    out = fill_cover(image, lm)
    ycc_in = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    ycc_out = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    beside = bare & ~strand & ~shaded & ~cv2.dilate(strand.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    for band in ((rows > blush_top + margin) & (rows < blush_bottom - margin), rows > blush_bottom + margin):
        want = ycc_in[beside & band].mean(axis=0)
        got = ycc_out[strand & band].mean(axis=0)
        assert np.abs(got - want).max() < 4.0, (got, want)


def _hair_beside_an_eye(patch_colour: npt.NDArray[np.float32] | None) -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.bool_], npt.NDArray[np.bool_], float, float
]:
    """Even skin; dark hair hanging over the temple and cheek beside one eye's outer corner. The part of the
    eye's berth beside it (past the corner, clear of the lash line) is `patch_colour`, or the hair's shade
    (0.45 of the skin, its hue) when None. Returns the picture, fill_cover's result, the hair, the patch, the
    skin's luma and the face's width."""
    from facewire.shared.render.delight import feature_mask

    image, lm, _, _, bare = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    face = np.zeros((h, w), np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    skin_bgr = np.median(image[bare], axis=0).astype(np.float32)
    rings = (topo.right_eye_ring(), topo.left_eye_ring())
    ring = max(rings, key=lambda r: float(lm[r, 0].mean()))  # the eye on the image's right, the strand's side
    corner = float(lm[ring, 0].max())
    top, bottom = float(lm[ring, 1].min()), float(lm[ring, 1].max())
    features = feature_mask((h, w), lm, width) > 0
    opening = np.zeros((h, w), np.uint8)
    cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
    lashes = int(round(0.015 * width))
    opening = cv2.dilate(opening, np.ones((2 * lashes + 1, 2 * lashes + 1), np.uint8)) > 0
    hair = (face > 0) & ~features & (cols > corner + 0.06 * width) & (rows > top - 0.15 * width) & (rows < bottom + 0.05 * width)
    patch = features & ~opening & (cols > corner - 0.005 * width) & (rows > top - 0.02 * width) & (rows < bottom + 0.02 * width)
    image[hair] = (40, 60, 95)
    colour = skin_bgr * np.float32(0.45) if patch_colour is None else patch_colour
    image[patch] = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    assert avatar_cover(image, lm)[hair].mean() > 0.7
    skin = float(skin_bgr @ np.float32([0.114, 0.587, 0.299]))
    return image, fill_cover(image, lm), hair, patch, skin, width


def test_the_shade_of_hair_in_an_eyes_berth_takes_the_fill_its_make_up_does_not() -> None:
    """The cover stops at the features' berths; the shade hair casts past an eye's outer corner was left
    there as a dark wedge against the fill. Beside hair it takes the fill; a make-up of its own hue stays."""
    image, out, _, patch, skin, _ = _hair_beside_an_eye(None)
    assert patch.sum() > 20
    assert float(np.median(_luma(image)[patch])) < 0.5 * skin
    assert float(np.median(_luma(out)[patch])) > 0.75 * skin, (float(np.median(_luma(out)[patch])), skin)
    red = np.float32([60, 50, 170])
    image, out, _, patch, _, _ = _hair_beside_an_eye(red)
    plain, _, _, _, _, _ = _hair_beside_an_eye(None)
    # The make-up's redness over the shaded skin's, before and after; the cover's growth over the hair's
    # soft edge takes a rim of it whatever it is, the berth's shade must not take the rest.
    cr = [float(cv2.cvtColor(x, cv2.COLOR_BGR2YCrCb)[..., 1][patch].mean()) for x in (image, out, plain)]
    assert cr[1] - cr[2] > 0.6 * (cr[0] - cr[2]), cr


def _eye_rings(lm: Landmarks) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """The eye on the image's right (the strand's side) first."""
    rings = (topo.right_eye_ring(), topo.left_eye_ring())
    return tuple(sorted(rings, key=lambda r: -float(lm[r, 0].mean())))  # type: ignore[return-value]


def _opening(shape: tuple[int, int], lm: Landmarks, ring: npt.NDArray[np.int32], grow: int = 0) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(lm[ring, :2]).astype(np.int32)], 255)
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask > 0


def test_a_fringe_down_to_the_lashes_leaves_the_lash_line() -> None:
    """Hair over the forehead down to just above the eyes: the cover's growth and soft edge took the upper
    lash line with it (the eye read as a lashless grey smear); the lash line stays as it was."""
    image, lm, _, _, _ = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = np.zeros((h, w), np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    rows = np.mgrid[0:h, 0:w][0]
    lash = int(round(0.012 * width))
    lines = np.zeros((h, w), np.bool_)
    for ring in _eye_rings(lm):
        lines |= _opening((h, w), lm, ring, lash) & ~_opening((h, w), lm, ring)
    eye_top = float(min(lm[r, 1].min() for r in _eye_rings(lm)))
    near_lines = cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    fringe = (face > 0) & (rows < eye_top - lash - 0.015 * width) & ~near_lines
    image[fringe] = (40, 60, 95)
    image[lines] = (35, 40, 55)  # lashes and liner
    assert avatar_cover(image, lm)[fringe].mean() > 0.7
    out = fill_cover(image, lm)
    kept = np.abs(_luma(out)[lines] - _luma(image)[lines])
    assert float(np.mean(kept)) < 3.0, float(np.mean(kept))


def test_an_eye_under_a_fringe_is_drawn_from_the_other_eye() -> None:
    """A fringe falling over one eye (hair all round it, the eye seen darkened through it): the eye was left
    a dark hollow in skin; it is drawn from the mirror image of the other eye."""
    from facewire.shared.render.frontal import hidden_eye

    image, lm, _, _, _ = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = np.zeros((h, w), np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    under, clear = _eye_rings(lm)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    eye = _opening((h, w), lm, under)
    # Hair from the outline over the eye's surroundings, down past it to the cheek.
    fringe = (face > 0) & (cols > float(lm[under, 0].min()) - 0.06 * width) & (rows < float(lm[under, 1].max()) + 0.12 * width) & ~eye
    image[fringe] = (40, 60, 95)
    image[eye] = (image[eye] * np.float32(0.45)).astype(np.uint8)
    shares = avatar_cover(image, lm)
    assert hidden_eye(shares, lm, width) is not None
    out = fill_cover(image, lm)
    other = _luma(image)[_opening((h, w), lm, clear)]
    got = _luma(out)[eye]
    assert float(np.median(_luma(image)[eye])) < 0.6 * float(np.median(other))
    assert abs(float(np.median(got)) - float(np.median(other))) < 0.15 * float(np.median(other)), (np.median(got), np.median(other))


def test_no_eye_is_hidden_on_a_clear_face() -> None:
    from facewire.shared.render.frontal import hidden_eye

    image, lm, _, _, _ = _sides()
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    assert hidden_eye(avatar_cover(image, lm), lm, width) is None


def _brow(shape: tuple[int, int], lm: Landmarks, side: int) -> npt.NDArray[np.bool_]:
    """A brow's hull (`side` 0: the one on the image's right, the strand's side)."""
    brows = sorted(topo.brows(), key=lambda b: -float(lm[b, 0].mean()))
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm[brows[side], :2]).astype(np.int32)), 255)
    return mask > 0


def _face(shape: tuple[int, int], lm: Landmarks) -> npt.NDArray[np.bool_]:
    face = np.zeros(shape, np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    return face > 0


def test_the_lit_strands_of_a_fringe_are_cover_with_the_shaded_ones() -> None:
    """A fringe over the forehead down to the brows, strands alternately shaded (dark brown) and lit (the
    skin's colour, a little darker): only the shaded ones were cover, and the lit ones were left as
    pale stripes over the forehead; the whole fringe is cover and painted with skin."""
    image, lm, _, _, bare = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    brow_top = float(lm[list(topo.BROW_TOPS), 1].min())
    skin_bgr = np.median(image[bare], axis=0).astype(np.float32)
    fringe = _face((h, w), lm) & (rows < brow_top - 0.02 * width)
    period = 0.09 * width
    lit = fringe & ((cols % period) < 0.45 * period)
    image[fringe & ~lit] = (40, 60, 95)
    image[lit] = np.clip(skin_bgr * np.float32(0.9) + 0.5, 0, 255).astype(np.uint8)
    cover = avatar_cover(image, lm)
    assert cover[fringe & ~lit].mean() > 0.8
    assert cover[lit].mean() > 0.8, cover[lit].mean()
    out = fill_cover(image, lm)
    stripes = np.abs(_luma(out)[lit].mean() - _luma(out)[fringe & ~lit].mean())
    assert stripes < 4.0, stripes


def test_a_brow_redrawn_under_a_fringe_takes_the_other_brows_colour() -> None:
    """A fringe over one brow only, the other brow an auburn one: the brow drawn again under the fringe was
    a grey mix of the hair's and the skin's shades; it has the colour of the brow that shows."""
    image, lm, _, _, _ = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    auburn = np.float32([45, 75, 150])
    under, shown = _brow((h, w), lm, 0), _brow((h, w), lm, 1)
    image[under | shown] = auburn.astype(np.uint8)
    eye = _opening((h, w), lm, _eye_rings(lm)[0], int(round(0.015 * width)))
    middle = float(lm[4, 0])
    fringe = _face((h, w), lm) & (cols > middle + 0.05 * width) & (rows < float(lm[_eye_rings(lm)[0], 1].min()) - 0.02 * width) & ~eye
    image[fringe] = (140, 150, 160)  # a grey fringe: its colour is not the brow's
    out = fill_cover(image, lm)
    assert avatar_cover(image, lm)[under].mean() > 0.5

    def hue(bgr: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.log(bgr[[0, 2]] + 8.0) - np.log(bgr[1] + 8.0)

    luma = _luma(out)
    drawn = under & (luma < np.percentile(luma[under], 10))
    got = hue(out[drawn].astype(np.float32).mean(axis=0))
    want = hue(auburn)
    # Through the stroke's soft edge and opacity some skin shows; the grey mix was 0.35 and more off.
    assert float(np.abs(got - want).max()) < 0.25, (got, want)


def _fringe_with_a_lit_run(run: float) -> tuple[npt.NDArray[np.uint8], Landmarks, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The face under a fringe down to the brows: shaded strands, lit by the hairline (its top 0.05 face
    widths) and over a run `run` face widths across in the middle, the lit strands near the skin's colour."""
    image, lm, _, _, bare = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    face = _face((h, w), lm)
    brow_top = float(lm[list(topo.BROW_TOPS), 1].min())
    fringe = face & (rows < brow_top - 0.02 * width)
    top = float(np.flatnonzero(face.any(axis=1))[0])
    middle = float(lm[topo.face_oval_ring(), 0].mean())
    lit = fringe & ((rows < top + 0.05 * width) | (np.abs(cols - middle) < 0.5 * run * width))
    skin_bgr = np.median(image[bare], axis=0).astype(np.float32)
    image[fringe & ~lit] = (40, 60, 95)
    image[lit] = np.clip(skin_bgr * np.float32(0.9) + 0.5, 0, 255).astype(np.uint8)
    return image, lm, fringe, lit


def test_a_fringes_wide_lit_run_is_cover_as_deep_as_the_strands_beside_it() -> None:
    """A fringe whose strands are lit across a run wider than the gaps _fringe_gaps closes (and by the
    hairline): the run was left in the texture as a wedge of hair, which the render stretched into a dark
    triangle on the forehead (full_body_1). The fringe hangs from the hairline: the run is cover too."""
    image, lm, fringe, lit = _fringe_with_a_lit_run(0.18)
    cover = avatar_cover(image, lm)
    assert cover[fringe & ~lit].mean() > 0.8
    assert cover[lit].mean() > 0.8, cover[lit].mean()


def test_a_forehead_below_a_hairline_is_not_taken_for_a_fringe() -> None:
    """Hair only along the top of the forehead (a hairline, no fringe): the bare forehead below it stays skin."""
    image, lm, _, _, _ = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows = np.mgrid[0:h, 0:w][0].astype(np.float32)
    face = _face((h, w), lm)
    top = float(np.flatnonzero(face.any(axis=1))[0])
    brow_top = float(lm[list(topo.BROW_TOPS), 1].min())
    hair = face & (rows < top + 0.05 * width)
    image[hair] = (40, 60, 95)
    bare = face & (rows > top + 0.12 * width) & (rows < brow_top - 0.03 * width)
    cover = avatar_cover(image, lm)
    assert cover[hair].mean() > 0.5
    assert cover[bare].mean() < 0.05, cover[bare].mean()


def test_a_fringe_hanging_just_short_of_the_brows_is_cover_down_to_them() -> None:
    """A fringe whose (lit) strand ends stop a little above the brows: the skin-coloured band between its
    shaded part and a brow's zone is the fringe's too. Left, it stayed in the texture as a pale notch above the
    brow, which the render stretched into a wedge with the strands' dark ends (full_body_1)."""
    from facewire.shared.render.occlusion import brow_hulls

    image, lm = big_astronaut()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = _face((h, w), lm)
    rows = np.arange(h)[:, None]
    zones = np.zeros((h, w), np.bool_)
    for hull in brow_hulls((h, w), lm, 0.025):
        zones |= hull > 0
    zone_top = np.where(zones.any(axis=0), zones.argmax(axis=0), h)
    cheek = _cheek(image, lm)
    rng = np.random.default_rng(0)
    forehead = (face > 0) & ~zones & (rows < zone_top.min() + 0.02 * width)
    image[forehead] = np.clip(cheek + rng.normal(0, 3, (int(forehead.sum()), 3)), 0, 255).astype(np.uint8)
    cut = int(zone_top.min() - 0.02 * width)
    image[(face > 0) & (rows < cut)] = (30, 50, 90)
    # The band between the fringe and the brows' zones where it is narrow (over each brow's arch).
    band = (face > 0) & ~zones & (rows >= cut) & (rows < zone_top[None, :]) & (zone_top[None, :] - cut <= 0.025 * width)
    assert band.any()
    assert avatar_cover(image, lm)[band].mean() > 0.8


def test_a_cover_reaching_into_a_brows_or_an_eyes_zone_paints_it_whole_or_not_at_all() -> None:
    """The fill's soft cover, where it reaches into a brow's or an eye's zone, is made all or nothing there: half
    painted, a brow's tail under temple hair stayed as dark flecks and the shadow past an eye's corner as a grey
    smudge, which the render moved with the brow and the lids as smoky sockets (happy, sad)."""
    from facewire.shared.render.delight import eye_openings
    from facewire.shared.render.frontal import _ZONE_FEATHER, _ZONE_GROW, _ZONE_TAKEN, _whole_in_zones
    from facewire.shared.render.occlusion import brow_hulls

    image, lm = big_astronaut()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    # A soft cover ramping in from the image's right across the whole face.
    cols = np.arange(w, dtype=np.float32)[None, :]
    soft = np.broadcast_to(np.clip((cols - float(lm[:468, 0].mean())) / (0.3 * width), 0.0, 1.0), (h, w)).astype(np.float32)
    out = _whole_in_zones(soft, lm, width)
    feather = int(np.ceil(5 * max(0.5, _ZONE_FEATHER * width)))  # past the feather's Gaussian
    zones = eye_openings((h, w), lm, max(1, int(round(_ZONE_GROW * width))))
    for hull in brow_hulls((h, w), lm, _ZONE_GROW):
        zones |= hull
    inner = cv2.erode(zones, np.ones((2 * feather + 1, 2 * feather + 1), np.uint8)) > 0
    # Away from where the cover crosses the threshold, inside the zones: 0 or 1.
    edge = np.abs(soft - _ZONE_TAKEN) < 0.05
    kept = inner & ~cv2.dilate(edge.astype(np.uint8), np.ones((2 * feather + 1, 2 * feather + 1), np.uint8)).astype(bool)
    assert kept.any()
    half = (out[kept] > 0.05) & (out[kept] < 0.95)
    assert half.mean() < 0.01, half.mean()
    outside = zones == 0
    far = cv2.dilate(zones, np.ones((2 * feather + 1, 2 * feather + 1), np.uint8)) == 0
    assert np.allclose(out[far & outside], soft[far & outside])


def _helmet_over_the_brows(shadowed: bool) -> tuple[npt.NDArray[np.uint8], Landmarks, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Even skin, two brown brows, a yellow helmet over the forehead down to the brows' zones, reaching into the
    image-left brow's zone beside its tail; `shadowed`: the image-right brow and its zone's upper half black (the
    shadow under the brim). Returns the picture, landmarks, and the image-right and image-left brows' hulls."""
    from facewire.shared.render.occlusion import brow_hulls

    image, lm, _, _, bare = _sides()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = _face((h, w), lm)
    skin = np.median(image[bare], axis=0)
    image[face] = skin.astype(np.uint8)
    rows, cols = np.mgrid[0:h, 0:w]
    right, left = _brow((h, w), lm, 0), _brow((h, w), lm, 1)
    # topo.brows() and brow_hulls in the same order; the image-left brow is the one further left.
    on_left = 0 if float(lm[topo.brows()[0], 0].mean()) < float(lm[topo.brows()[1], 0].mean()) else 1
    zone_left, zone_right = (brow_hulls((h, w), lm, 0.025)[k] > 0 for k in (on_left, 1 - on_left))
    image[right | left] = (50, 60, 75)
    zones = zone_right | zone_left
    zones_top = np.where(zones.any(axis=0), zones.argmax(axis=0), int(np.flatnonzero(zones.any(axis=1))[0]))
    yellow = np.array([60, 200, 245], np.uint8)
    image[face & (rows < zones_top[None, :])] = yellow
    # Beside the image-left brow's tail, the helmet's side comes down into the zone.
    tail_x = float(lm[topo.brows()[on_left], 0].min())
    image[face & zone_left & ~left & (cols < tail_x + 0.03 * width)] = yellow
    if shadowed:
        brow_rows = np.flatnonzero(right.any(axis=1))
        upper = face & (zone_right | right) & (rows < 0.5 * (brow_rows[0] + brow_rows[-1]))
        image[upper | right] = (8, 8, 10)
    return image, lm, right, left


def test_a_brow_in_the_shadow_of_a_brim_is_drawn_again_in_the_other_brows_colour() -> None:
    """A brow under a helmet's brim, black in its shadow, beside a lit brown one: kept whole in its zone it stayed
    as a black bar on the lit forehead the fill paints (art_9). It is painted and drawn again as the other."""
    image, lm, right, left = _helmet_over_the_brows(shadowed=True)
    out = fill_cover(image, lm)
    luma = _luma(out)
    darkest = float(np.percentile(luma[right], 2))
    skin = float(np.median(luma[_face(luma.shape, lm)]))
    shown = float(np.percentile(luma[left], 2))
    # Not black (the shadow: 8), but a brow: as dark as the shown one within the redrawn stroke's opacity.
    assert shown - 5.0 < darkest < shown + 0.35 * (skin - shown), (darkest, shown, skin)


def test_a_helmets_colour_in_a_brows_zone_beside_it_is_painted() -> None:
    """A yellow helmet coming down beside a brow's tail into the brow's zone: the zone keeps its picture, so the
    helmet stayed there as a yellow wedge beside the brow (art_9). What is neither the brow nor skin-coloured,
    joined to the cover, is painted; the brow stays."""
    image, lm, right, left = _helmet_over_the_brows(shadowed=False)
    out = fill_cover(image, lm).astype(np.float32)
    h, w = image.shape[:2]
    yellow = (image[..., 0] == 60) & (image[..., 1] == 200) & (image[..., 2] == 245)
    from facewire.shared.render.occlusion import brow_hulls

    zones = np.zeros((h, w), np.bool_)
    for hull in brow_hulls((h, w), lm, 0.025):
        zones |= hull > 0
    wedge = yellow & zones & ~left
    assert wedge.any()
    # Red over blue: the helmet's 3.8, the skin's 1.3.
    ratio = (out[wedge][:, 2] + 8.0) / (out[wedge][:, 0] + 8.0)
    assert float(np.percentile(ratio, 90)) < 2.0, float(np.percentile(ratio, 90))
    # The brow itself kept (but for the edge of its tail that the helmet's grown cover takes, as ever).
    kept = np.abs(out[left] - image[left].astype(np.float32)).max(axis=1) < 15.0
    assert float(kept.mean()) > 0.8, float(kept.mean())
