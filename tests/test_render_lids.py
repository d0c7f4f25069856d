"""Closing lids: stretched lid streaks smoothed into skin, a lash line where the lids meet, open eyes untouched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewire.shared.face import topology as topo
from facewire.shared.render.eyes_mouth import RIGHT_LID_ABOVE, lid_closing
from facewire.shared.render.lids import close_lids
from tests.render_fixtures import astronaut_landmarks, close_eyes, draw

SKIN = np.array([120, 150, 200], np.float64)


def _streaked(shape: tuple[int, int]) -> np.ndarray:
    """Skin with vertical streaks: what a thin lid band stretched over the eyeball looks like."""
    image = np.tile(SKIN, (shape[0], shape[1], 1))
    image[:, ::3] *= 0.55
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _lid_box(lm: np.ndarray) -> tuple[slice, slice]:
    ring = topo.right_eye_ring()
    pts = np.concatenate([lm[list(RIGHT_LID_ABOVE), :2], lm[ring, :2]])
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    w = x1 - x0
    # The middle of the eye, between the crease and the lids: clear of the soft edge.
    return slice(int(y0 + 0.2 * (y1 - y0)), int(y1 - 0.2 * (y1 - y0))), slice(int(x0 + 0.3 * w), int(x1 - 0.3 * w))


def test_a_closed_lid_loses_its_streaks_and_gets_a_lash_line() -> None:
    neutral = astronaut_landmarks() * np.float32(3.0)
    closed = close_eyes(neutral)
    assert lid_closing(closed, neutral, topo.right_eye_ring()) > 0.85
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    image = _streaked(size)
    out = image.copy()
    close_lids(out, closed, neutral)
    box = _lid_box(closed)
    ripple_before = image[box].astype(np.float64).std(axis=1).mean()
    ripple_after = out[box].astype(np.float64).std(axis=1).mean()
    assert ripple_after < 0.25 * ripple_before, (ripple_before, ripple_after)
    ring = topo.right_eye_ring()
    x, y = np.round(closed[ring[4], :2]).astype(int)  # the middle of the closed upper lid
    above = out[y - 8 : y - 5, x - 2 : x + 3].astype(np.float64).mean()
    assert out[y, x - 2 : x + 3].astype(np.float64).mean() < 0.8 * above


def test_an_open_or_half_open_eye_is_left_alone() -> None:
    neutral = astronaut_landmarks() * np.float32(3.0)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    image = _streaked(size)
    for landmarks in (neutral, 0.75 * neutral + 0.25 * close_eyes(neutral)):
        out = image.copy()
        close_lids(out, landmarks.astype(np.float32), neutral)
        assert np.array_equal(out, image)


def test_the_renderer_smooths_a_blink_in_the_eyes_only() -> None:
    """Self mode: the sender's own open eyes stretched over a blink streak the same way; the renderer
    smooths them there and nowhere else."""
    from facewire.shared.render.mesh import MeshOptions, MeshRenderer
    from facewire.shared.types import FrameState, KeyframeState
    from tests.render_fixtures import astronaut

    lm = astronaut_landmarks()
    keyframe = KeyframeState(0, astronaut(), None, lm)
    blink = FrameState(1, 33_333, "tracked", close_eyes(lm), None)
    smoothed = draw(MeshRenderer(), None, keyframe, blink).image
    raw = draw(MeshRenderer(MeshOptions(smooth_lids=False)), None, keyframe, blink).image
    changed = cv2.absdiff(smoothed, raw).max(axis=2) > 2
    assert changed.sum() > 30
    eyes = np.zeros(changed.shape, np.uint8)
    for ring, crease in (
        (topo.right_eye_ring(), list(RIGHT_LID_ABOVE)),
        (topo.left_eye_ring(), list(topo.symmetry()[list(RIGHT_LID_ABOVE)])),
    ):
        cv2.fillConvexPoly(eyes, cv2.convexHull(np.round(np.concatenate([lm[crease, :2], lm[ring, :2]])).astype(np.int32)), 1)
    eyes = cv2.dilate(eyes, np.ones((15, 15), np.uint8)) > 0
    assert not changed[~eyes].any()


def test_an_avatars_closed_lid_is_redrawn_from_the_skin_round_the_eye_and_a_lowered_brow_is_kept() -> None:
    """Avatar path (REDRAWN): the stretched lid band (lashes as streaks) becomes the skin round the eye, not its
    smoothed average (a grey band); a brow lowered onto the crease (a frown) keeps its darkness."""
    from facewire.shared.render.lids import REDRAWN

    neutral = astronaut_landmarks() * np.float32(3.0)
    closed = close_eyes(neutral)
    ring, crease = topo.right_eye_ring(), list(RIGHT_LID_ABOVE)
    brow = list(topo.brows()[0])
    frown = closed.copy()
    # The brow brought down so its lower edge sits on the crease.
    drop = float(closed[crease, 1].min() - closed[brow[5:], 1].max())
    frown[brow, 1] += np.float32(drop)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    image = np.tile(SKIN, (*size, 1))
    band = np.zeros(size, np.uint8)
    cv2.fillPoly(band, [np.round(np.concatenate([frown[crease, :2], frown[ring[8:0:-1], :2]])).astype(np.int32)], 1)
    streaks = (band > 0) & (np.arange(size[1])[None, :] % 3 == 0)
    image[streaks] *= 0.3
    brow_mask = np.zeros(size, np.uint8)
    cv2.fillPoly(brow_mask, [np.round(frown[brow, :2]).astype(np.int32)], 1)
    image[brow_mask > 0] *= 0.35
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    smoothed, redrawn = image.copy(), image.copy()
    close_lids(smoothed, frown, neutral)
    close_lids(redrawn, frown, neutral, REDRAWN)
    box = _lid_box(frown)
    lid_s, lid_r = smoothed[box].astype(np.float64).mean(), redrawn[box].astype(np.float64).mean()
    assert lid_s < 0.9 * SKIN.mean()  # smoothing keeps the streaks' darkness as a band
    assert lid_r > 0.95 * SKIN.mean(), (lid_s, lid_r)
    core = cv2.erode(brow_mask, np.ones((3, 3), np.uint8)) > 0
    assert core.sum() > 20
    before = image[core].astype(np.float64).mean()
    assert abs(redrawn[core].astype(np.float64).mean() - before) < 0.1 * before


def test_an_avatars_lid_lowered_by_a_glance_down_is_its_own_not_redrawn() -> None:
    """Avatar path (REDRAWN): lids lowered to 0.4 of the eye's opening (a glance down) are an open eye; the
    avatar's own lid band (crease shadow, lashes) stays, where a squeeze or blink redraws it from the skin."""
    from facewire.shared.render.eyes_mouth import lid_closing
    from facewire.shared.render.lids import REDRAWN

    neutral = astronaut_landmarks() * np.float32(3.0)
    shut = close_eyes(neutral)
    ring, crease = topo.right_eye_ring(), list(RIGHT_LID_ABOVE)

    def lowered(fraction: float) -> np.ndarray:
        out = neutral.copy()
        out[:, 1] += np.float32(fraction) * (shut[:, 1] - neutral[:, 1])
        return out

    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)

    def lid_change(target: np.ndarray) -> float:
        image = np.tile(SKIN, (*size, 1))
        band = np.zeros(size, np.uint8)
        cv2.fillPoly(band, [np.round(np.concatenate([target[crease, :2], target[ring[8:0:-1], :2]])).astype(np.int32)], 1)
        image[band > 0] *= 0.6  # the lid's own shading: darker than the skin round the eye
        image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        drawn = image.copy()
        close_lids(drawn, target, neutral, REDRAWN)
        box = _lid_box(target)
        return float(drawn[box].astype(np.float64).mean() / image[box].astype(np.float64).mean())

    glance, squeeze = lowered(0.4), lowered(0.75)
    assert 0.3 < lid_closing(glance, neutral, ring) < 0.5
    assert lid_closing(squeeze, neutral, ring) > 0.7
    assert abs(lid_change(glance) - 1.0) < 0.05  # its own lid, as it was
    assert lid_change(squeeze) > 1.2  # redrawn lighter, from the skin round the eye


def _closed_across(neutral: np.ndarray, ring: np.ndarray, ratio: float) -> np.ndarray:
    """The eye's lids brought towards the line through its corners to `ratio` of their offset from it, as
    retarget's `_set_eye_opening` closes an avatar's eye: across the eye only."""
    out = neutral.copy()
    c0, c1 = neutral[ring[0], :2].astype(np.float64), neutral[ring[len(ring) // 2], :2].astype(np.float64)
    axis = (c1 - c0) / np.linalg.norm(c1 - c0)
    normal = np.array([-axis[1], axis[0]])
    offsets = (neutral[ring, :2] - c0) @ normal
    out[ring, :2] = (neutral[ring, :2] - (offsets * (1.0 - ratio))[:, None] * normal).astype(np.float32)
    return out


def test_an_eye_closed_across_reads_closed_though_its_facing_lid_points_are_not_above_one_another() -> None:
    """An avatar's upper lid points sit along the eye from the lower ones they face (a drawn eye, a frontalised
    one); its retargeted blink closes across the eye and must read as the blink it is, not as ~0.7."""
    neutral = astronaut_landmarks() * np.float32(3.0)
    ring = topo.right_eye_ring()
    half = len(ring) // 2
    upper = ring[1:half]
    opening = float(np.ptp(neutral[ring, 1]))
    avatar = neutral.copy()
    avatar[upper, 0] += np.float32(0.35 * opening)  # the upper lid's points a third of the opening outwards
    blink = _closed_across(avatar, ring, 0.1)
    assert lid_closing(blink, avatar, ring) > 0.85
    glance = _closed_across(avatar, ring, 0.6)
    assert 0.3 < lid_closing(glance, avatar, ring) < 0.5


def test_an_avatars_closed_lid_under_a_dark_socket_is_skin_not_a_dark_smear() -> None:
    """Avatar path (REDRAWN): a shadowed socket or dark eye make-up above the crease is not the colour of a
    closed lid; the lid comes from the skin round the eye, and the lid band is no darker than the skin."""
    from facewire.shared.render.lids import REDRAWN

    neutral = astronaut_landmarks() * np.float32(3.0)
    ring, crease = topo.right_eye_ring(), list(RIGHT_LID_ABOVE)
    closed = close_eyes(neutral)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    image = np.tile(SKIN, (*size, 1))
    # The socket: everything above the crease's lowest point, up to the brow's height, across the eye and beyond.
    eye_width = float(np.ptp(neutral[ring, 0]))
    x0, x1 = int(neutral[ring, 0].min() - 0.3 * eye_width), int(neutral[ring, 0].max() + 0.3 * eye_width)
    y1 = int(closed[crease, 1].max()) + 1
    y0 = int(y1 - 0.45 * eye_width)
    image[y0:y1, x0:x1] *= 0.35
    band = np.zeros(size, np.uint8)
    cv2.fillPoly(band, [np.round(np.concatenate([closed[crease, :2], closed[ring[8:0:-1], :2]])).astype(np.int32)], 1)
    image[(band > 0) & (np.arange(size[1])[None, :] % 3 == 0)] *= 0.3  # the stretched lashes
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    out = image.copy()
    close_lids(out, closed, neutral, REDRAWN)
    # The lid band below the crease, clear of the lash line at the margin.
    lid = (band > 0) & (np.arange(size[0])[:, None] < closed[ring[4], 1] - 0.06 * eye_width)
    lid &= np.arange(size[0])[:, None] > closed[crease, 1].max() + 0.03 * eye_width
    assert lid.sum() > 20
    assert out[lid].astype(np.float64).mean() > 0.85 * SKIN.mean(), out[lid].astype(np.float64).mean()


def _eye_with_iris(target: np.ndarray, ring: np.ndarray, size: tuple[int, int], iris: tuple[int, int, int]) -> np.ndarray:
    """Skin, the opening inside `ring` white, and a disc of `iris` colour at the opening's middle."""
    image = np.tile(SKIN, (*size, 1))
    opening = np.zeros(size, np.uint8)
    cv2.fillPoly(opening, [np.round(target[ring, :2]).astype(np.int32)], 1)
    eye = np.full((*size, 3), 230.0)
    centre = target[ring, :2].mean(axis=0)
    cv2.circle(eye, (int(round(centre[0])), int(round(centre[1]))), int(0.2 * np.ptp(target[ring, 0])), iris, -1)
    image[opening > 0] = eye[opening > 0]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def test_an_avatars_lowered_eye_keeps_its_iris_and_a_shut_one_is_covered() -> None:
    """Avatar path (REDRAWN): lids lowered to ~0.27 of the opening (a glance down: the tracker reads w0's and d3's
    at 0.5-0.79) leave the drawn iris in the slit, neither smeared along the eye nor covered with lid, which made a
    lowered eye read as shut; a wink or blink (0.86 and up) has what is left of its opening covered with the lid."""
    from dataclasses import replace

    from facewire.shared.render.lids import REDRAWN

    neutral = astronaut_landmarks() * np.float32(3.0)
    ring = topo.right_eye_ring()
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    lowered = _closed_across(neutral, ring, 0.27)
    assert 0.7 < lid_closing(lowered, neutral, ring) < 0.79
    image = _eye_with_iris(lowered, ring, size, (40, 40, 40))
    out = image.copy()
    close_lids(out, lowered, neutral, REDRAWN)
    slit = np.zeros(size, np.uint8)
    cv2.fillPoly(slit, [np.round(lowered[ring, :2]).astype(np.int32)], 1)
    centre = lowered[ring, :2].mean(axis=0)
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
    core = (cv2.erode(slit, np.ones((3, 3), np.uint8)) > 0) & (np.abs(xs - centre[0]) < 0.1 * np.ptp(lowered[ring, 0]))
    assert core.sum() > 10
    assert out[core].astype(np.float64).mean() < image[core].astype(np.float64).mean() + 15, out[core].mean()
    # Shut, the opening is the lid's colour (the lash line left out: it darkens the margin whatever is under it).
    shut = _closed_across(neutral, ring, 0.12)
    assert lid_closing(shut, neutral, ring) > 0.86
    image = _eye_with_iris(shut, ring, size, (40, 40, 40))
    out = image.copy()
    close_lids(out, shut, neutral, replace(REDRAWN, lash_darkness=0.0))
    opening = np.zeros(size, np.uint8)
    cv2.fillPoly(opening, [np.round(shut[ring, :2]).astype(np.int32)], 1)
    inside = (opening > 0) & (np.abs(xs - centre[0]) < 0.1 * np.ptp(shut[ring, 0]))
    assert np.abs(out[inside].astype(np.float64).mean(axis=0) - SKIN).max() < 25, out[inside].mean(axis=0)


def test_an_avatars_closed_lid_keeps_its_own_fold_above_the_lashes_ring() -> None:
    """Avatar path (REDRAWN): a closed lid is redrawn from the margin up to the lashes' ring, where the picture has
    only lashes and the eye; above it, up to the crease, the picture's own fold (a crease's shadow, make-up) stays.
    Redrawn up to the crease, a shut avatar eye was a bare dark line on blank skin."""
    from facewire.shared.render.eyes_mouth import RIGHT_LID_LASHES
    from facewire.shared.render.lids import REDRAWN

    neutral = astronaut_landmarks() * np.float32(3.0)
    ring, crease, lashes = topo.right_eye_ring(), list(RIGHT_LID_ABOVE), list(RIGHT_LID_LASHES)
    closed = close_eyes(neutral)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    image = np.tile(SKIN, (*size, 1))

    def band(top: list[int], bottom: np.ndarray) -> np.ndarray:
        mask = np.zeros(size, np.uint8)
        cv2.fillPoly(mask, [np.round(np.concatenate([closed[top, :2], closed[bottom[::-1], :2]])).astype(np.int32)], 1)
        return mask

    fold = band(crease, np.array(lashes))
    below = band(lashes, ring[1:8])
    image[fold > 0] *= 0.6  # the picture's fold
    image[(below > 0) & (np.arange(size[1])[None, :] % 3 == 0)] *= 0.3  # stretched lash tips
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    out = image.copy()
    close_lids(out, closed, neutral, REDRAWN)
    eye_width = float(np.ptp(neutral[ring, 0]))
    centre = np.abs(np.arange(size[1])[None, :] - closed[ring, 0].mean()) < 0.2 * eye_width
    inner_fold = (cv2.erode(fold, np.ones((3, 3), np.uint8)) > 0) & centre
    assert inner_fold.sum() > 10
    assert out[inner_fold].astype(np.float64).mean() < 0.75 * SKIN.mean(), out[inner_fold].mean()
    # Below the lashes' ring (clear of the lash line at the margin) the lid is skin, not the fold nor the streaks.
    lid = (below > 0) & centre & (np.arange(size[0])[:, None] < closed[ring[4], 1] - 0.08 * eye_width)
    lid &= np.arange(size[0])[:, None] > closed[lashes, 1].max() + 0.08 * eye_width
    assert lid.sum() > 10
    assert out[lid].astype(np.float64).mean() > 0.85 * SKIN.mean(), out[lid].astype(np.float64).mean()


def _lash_picture(neutral: np.ndarray, size: tuple[int, int], lash: tuple[int, int, int]) -> np.ndarray:
    """Skin with the open right eye's band from its upper margin to its lashes' ring in `lash` colour."""
    from facewire.shared.render.eyes_mouth import RIGHT_LID_LASHES

    ring = topo.right_eye_ring()
    image = np.tile(SKIN, (*size, 1))
    band = np.zeros(size, np.uint8)
    cv2.fillPoly(band, [np.round(np.concatenate([neutral[list(RIGHT_LID_LASHES), :2], neutral[ring[7:0:-1], :2]])).astype(np.int32)], 1)
    image[band > 0] = lash
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def test_an_avatars_closed_lid_has_its_own_lashes_not_a_uniform_bar() -> None:
    """Avatar path (REDRAWN, own_lashes): the closed margin is darkened as much as the picture's own open-eye lash
    band is darker than its lid, in the lid's hue; a uniform darkening drew the same bar on every avatar, which read
    as a stranger's lashes (w0's blinks, dlib distance 0.60-0.65)."""
    from facewire.shared.render.lids import REDRAWN, LashSource

    neutral = astronaut_landmarks() * np.float32(3.0)
    ring = topo.right_eye_ring()
    closed = close_eyes(neutral)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    eye_width = float(np.ptp(closed[ring, 0]))
    xs = np.arange(int(closed[ring, 0].min() + 0.3 * eye_width), int(closed[ring, 0].max() - 0.3 * eye_width))
    margin = closed[ring[:9], :2][np.argsort(closed[ring[:9], 0])]
    ys = np.round(np.interp(xs, margin[:, 0], margin[:, 1]) + 0.04 * eye_width).astype(int)
    lines = {}
    for name, lash in (("dark", (90, 20, 40)), ("faint", tuple(int(v) for v in 0.85 * SKIN)), ("none", None)):
        own = None if lash is None else LashSource.of(_lash_picture(neutral, size, lash), neutral[:, :2])
        out = np.clip(np.tile(SKIN, (*size, 1)) + 0.5, 0, 255).astype(np.uint8)
        close_lids(out, closed, neutral, REDRAWN, (0.95, 0.95), own)
        lines[name] = out[ys, xs].astype(np.float64)
    assert lines["dark"].mean() < 0.4 * SKIN.mean(), lines["dark"].mean()
    assert lines["faint"].mean() > 0.8 * SKIN.mean(), lines["faint"].mean()
    # The lid's hue (blue over red 0.6), not the violet lash band's (2.25): a painted eye's iris or make-up.
    ratio = lines["dark"][:, 0] / np.maximum(lines["dark"][:, 2], 1.0)
    assert np.all(np.abs(ratio - 0.6) < 0.08), ratio
    # Without the picture's lashes (self mode's line), one bar whatever the picture.
    assert 0.3 * SKIN.mean() < lines["none"].mean() < 0.9 * SKIN.mean(), lines["none"].mean()


def _nearest_on_polyline(line: np.ndarray, x: float, y: float) -> tuple[float, float, float]:
    """One pixel's nearest point on `line`, segment by segment in Python floats (the first of equal distances):
    its arc-length fraction and the pixel's offset from it."""
    best, found = np.inf, (0.0, 0.0, 0.0)
    starts = [0.0]
    for (ax, ay), (bx, by) in zip(line[:-1].tolist(), line[1:].tolist(), strict=True):
        dx, dy = bx - ax, by - ay
        length = max(dx * dx + dy * dy, 1e-12)
        t = min(max(((x - ax) * dx + (y - ay) * dy) / length, 0.0), 1.0)
        ex, ey = x - (ax + t * dx), y - (ay + t * dy)
        if ex * ex + ey * ey < best:
            best, found = ex * ex + ey * ey, (starts[-1] + t * float(np.sqrt(length)), ex, ey)
        starts.append(starts[-1] + float(np.sqrt(length)))
    return found[0] / starts[-1], found[1], found[2]


def test_polyline_coordinates_are_each_pixels_nearest_point_on_the_line() -> None:
    """The own lash line's per-pixel coordinates (arc-length fraction along the margin, offset from it) are every
    pixel's nearest point, to the bit, whichever way the line turns (arches, zigzags, a repeated point)."""
    from facewire.shared.render.lids import _polyline_coordinates

    rng = np.random.default_rng(7)
    for case in range(12):
        line = np.cumsum(rng.normal(0.0, 4.0, (int(rng.integers(2, 10)), 2)), axis=0) + 20.0
        if case == 0:
            line[2] = line[1]  # a segment of length 0
        ys, xs = slice(int(rng.integers(0, 10)), 30), slice(int(rng.integers(0, 10)), 34)
        along, offset = _polyline_coordinates(line, ys, xs)
        assert along.shape == offset.shape[:2] == (ys.stop - ys.start, xs.stop - xs.start)
        for i, y in enumerate(range(ys.start, ys.stop)):
            for j, x in enumerate(range(xs.start, xs.stop)):
                assert (along[i, j], *offset[i, j]) == _nearest_on_polyline(line, float(x), float(y)), (case, x, y)


def test_a_lash_strip_sampled_once_is_the_picture_sampled_at_each_point() -> None:
    """LashSource samples each open eye's lash band once (LashStrip); looked up at (along, depth) it is the picture
    sampled there directly, as the line did at every drawn pixel of every frame: to within a few grey levels at the
    hard edges of a painted lash band under heavy grain, a quarter of one on average."""
    from facewire.shared.render.colour import LUMA_BGR
    from facewire.shared.render.eyes_mouth import RIGHT_LID_LASHES
    from facewire.shared.render.lids import _LASH_ROOTS, _LASH_TIPS, LashSource, _polyline_at

    neutral = astronaut_landmarks() * np.float32(3.0)
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20)
    picture = _lash_picture(neutral, size, (30, 20, 40))  # hard edges: the band is 160 grey levels darker than the skin
    rng = np.random.default_rng(3)
    picture = np.clip(picture + rng.normal(0.0, 12.0, picture.shape), 0, 255).astype(np.uint8)  # and grain
    strip = LashSource.of(picture, neutral[:, :2]).strips[0].luma
    ring, points = topo.right_eye_ring(), neutral[:, :2].astype(np.float64)
    margin = points[ring[:9]]
    tips_line = np.concatenate([points[ring[:1]], points[list(RIGHT_LID_LASHES)], points[ring[8:9]]])
    along, depth = rng.uniform(0.0, 1.0, 4000), rng.uniform(0.0, 1.0, 4000)
    roots, tips = _polyline_at(margin, along), _polyline_at(tips_line, along)
    where = (roots + (_LASH_ROOTS + depth * (_LASH_TIPS - _LASH_ROOTS))[:, None] * (tips - roots)).astype(np.float32)
    direct = cv2.remap(picture, where[None, :, 0], where[None, :, 1], cv2.INTER_LINEAR).astype(np.float32)[0] @ LUMA_BGR
    rows, columns = strip.shape
    at = ((along * (columns - 1))[None].astype(np.float32), (depth * (rows - 1))[None].astype(np.float32))
    looked_up = cv2.remap(strip, *at, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    assert direct.max() - direct.min() > 120  # the band's edges are sampled
    error = np.abs(looked_up - direct)
    assert error.max() <= 5.0 and error.mean() < 0.3, (error.max(), error.mean())  # here 4.0 and 0.25


def test_the_renderer_samples_an_avatars_lash_strips_once_a_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Avatar path: the lash strips a closed lid's line looks up are sampled once per avatar picture level, kept by
    the renderer, and a blink drawn with them kept is the blink drawn with them fresh (first frame) to the byte."""
    from facewire.shared.face.identity import IdentityAsset
    from facewire.shared.render import mesh
    from facewire.shared.render.lids import LashSource
    from facewire.shared.render.mesh import MeshRenderer
    from facewire.shared.types import FrameState, KeyframeState
    from tests.render_fixtures import astronaut

    built: list[int] = []
    of = LashSource.of

    def counted(image: np.ndarray, points: np.ndarray) -> LashSource:
        built.append(image.shape[1])
        return of(image, points)

    monkeypatch.setattr(mesh.LashSource, "of", staticmethod(counted))
    lm = astronaut_landmarks()
    image = np.ascontiguousarray(astronaut()[:, ::-1][:, :, [2, 1, 0]])  # another face: the astronaut mirrored, recoloured
    avatar_lm = lm[topo.symmetry()].copy()
    avatar_lm[:, 0] = image.shape[1] - 1 - avatar_lm[:, 0]
    avatar = IdentityAsset(asset_id="lash-avatar", image=image, landmarks=avatar_lm)
    keyframe = KeyframeState(0, astronaut(), None, lm)
    blink = FrameState(1, 33_333, "tracked", close_eyes(lm), None)
    kept = MeshRenderer()
    first = draw(kept, avatar, keyframe, blink).image
    assert len(built) == 1
    again = draw(kept, avatar, keyframe, blink).image
    assert len(built) == 1  # not sampled again
    assert np.array_equal(first, again)
    assert np.array_equal(draw(MeshRenderer(), avatar, keyframe, blink).image, first)
    assert len(built) == 2  # a new renderer samples its own
