"""Eyes and mouth: the triangles that fill the mesh's holes, and a mouth interior that is never stretched lips.

Eyes: each eye opening is triangulated around a small virtual ring centred on the iris, so the
iris follows the iris landmarks (468-477) while the sclera stretches around it; these triangles
are drawn first, so when the lids close the lid skin covers them instead of tearing.

Mouth: the opening is a fan from its centroid that samples the source's own interior. Where the
mouth opens wider than the source shows, a cavity is composited on top from two small panels in
lip coordinates (along the mouth, and distance from the lip in mouth widths): upper teeth hanging
from the upper lip's inner contour, lower teeth and tongue standing on the lower lip's. Teeth so
follow the lips' curves, keep their size however wide the mouth opens, darken towards the corners
and under the lip, and the lower teeth slide up from behind the lower lip only as the jaw drops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.iris import eye_span
from facewire.shared.render.warp import Points, Region
from facewire.shared.types import Image, Landmarks

IndexArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]
EYE_RING_POINTS = 8
# Virtual iris ring radius as a fraction of the iris radius: inside the iris, so it moves rigidly.
_IRIS_RING = 0.85
# Of the way from the iris centre to the eye's outline: the farthest an avatar's virtual iris point lies (extended_vertices'
# `inside`), leaving a band of white between it and the lid that stretches, not the lid's lashes.
_IRIS_INSIDE = 0.8
# The landmark ring just above each upper lid margin (ring[1:8]), subject's right eye; the left by symmetry.
RIGHT_LID_ABOVE = (113, 225, 224, 223, 222, 221, 189)  # the crease ring, above the lashes
RIGHT_LID_LASHES = (247, 30, 29, 27, 28, 56, 190)  # the lashes' ring, between the margin and the crease ring
# The two rings below each lower lid margin (ring[9:16], inner corner first), subject's right eye.
RIGHT_LID_BELOW = (112, 26, 22, 23, 24, 110, 25)
RIGHT_LID_BELOW_2 = (233, 232, 231, 230, 229, 228, 31)
RIGHT_OUTER_CORNER = (33, 130, 226)  # the outer eye corner and the two landmarks beyond it, outwards
_UPPER_PULL = 0.6  # of the way to the crease: where a closed upper lid is sampled from
# Closing fractions over which that pull comes in (smoothstep). A narrowed eye (a smile, a squint: 0.2-0.5) is open:
# its lid margin keeps the lash line, which the pull, taken from the first closing, cut over the iris and stretched
# into grey streaks above it (a smeared, washed-out eye); a shutting one (a wink, a blink: 0.75 and up) samples skin.
_UPPER_START, _UPPER_FULL = 0.35, 0.8
# The same pull for an avatar, over the *sender's* closing (eye_closings): a smile or a squint narrows the sender's eye to
# 0.2-0.6 (w1's smile peaks at 0.56) and the avatar's own measure of it overlaps a blink's (lids.close_lids), so the pull
# taken from the avatar's closing lifted a narrowed eye's margin into its lashes: the band between the margin and the
# lashes' ring then sampled a sliver of lash tips, drawn as vertical streaks over the lid. Below these the margin keeps
# the lash line; from a closing as shut as a blink's the lid samples the skin above the lashes (lids.REDRAWN redraws
# that lid from 0.55 and is complete at 0.78, so the pull is complete there too).
_SENDER_UPPER_START, _SENDER_UPPER_FULL = 0.6, 0.78
_LOWER_START, _LOWER_FULL = 0.35, 0.8  # closing fractions where the lower lid's sampling starts moving and has moved
_BELOW_PULL = 0.5  # of the way from the ring below to the next: where that ring samples once the eye is closed


@cache
def hole_triangles() -> IndexArray:
    """Triangles filling both eyes and the mouth, as indices into the extended vertex array.

    Extended vertices: 0..477 landmarks, then per eye EYE_RING_POINTS virtual iris-ring points,
    then the mouth centroid.
    """
    tris: list[tuple[int, int, int]] = []
    base = topo.MESH_SIZE
    for e, (ring, centre) in enumerate(((topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER), (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER))):
        n = len(ring)
        virt = [base + e * EYE_RING_POINTS + j for j in range(EYE_RING_POINTS)]
        for j in range(EYE_RING_POINTS):
            a, b = virt[j], virt[(j + 1) % EYE_RING_POINTS]
            c0, c1, c2 = ring[(2 * j) % n], ring[(2 * j + 1) % n], ring[(2 * j + 2) % n]
            tris += [(centre, a, b), (a, int(c0), int(c1)), (a, int(c1), b), (b, int(c1), int(c2))]
    mouth_centre = base + 2 * EYE_RING_POINTS
    ring = topo.inner_lip_ring()
    tris += [(mouth_centre, int(ring[k]), int(ring[(k + 1) % len(ring)])) for k in range(len(ring))]
    return np.array(tris, np.int32)


def mesh_triangles() -> IndexArray:
    """Holes (eyes, mouth) first so lid and lip skin, drawn later, covers them when they close."""
    return np.concatenate([hole_triangles(), topo.face_triangles()])


def skin_tone(image: Image, landmarks: Landmarks) -> float:
    """Brightness of the cheeks, 0..1, to put the synthetic teeth in the same light."""
    pts = landmarks[[50, 280, 101, 330], :2].astype(int)
    h, w = image.shape[:2]
    xs = np.clip(pts[:, 0], 0, w - 1)
    ys = np.clip(pts[:, 1], 0, h - 1)
    lum = float((image[ys, xs].astype(np.float32) @ LUMA_BGR).mean())
    return float(np.clip(lum / 170.0, 0.35, 1.15))


def _inside(point: Points, polygon: Points) -> bool:
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def extended_vertices(landmarks: Landmarks, inside: bool = False) -> Points:
    """Landmarks (x, y) plus the virtual eye-ring points and the mouth centroid; iris centres kept inside the eyes.

    `inside` (an avatar's texture and its targets): each virtual iris point kept within `_IRIS_INSIDE` of the way
    from the iris centre to the eye's outline. The iris is mostly larger than a narrowed eye's opening (a smile, a
    squint: on 36 of the 37 identities at least one virtual point lies outside an eye's ring), so the points above
    and below it lie on the lids: the iris's fan then samples the lashes and lid above the ring, and as the
    sender's iris and lids move apart (the avatar's iris held or moved, its lids retargeted) it stretches them
    across the opening into vertical streaks (happy1 on w0). Kept inside, the fan and the white round it sample
    the opening only, and the lids the lids. Self mode keeps the free ring: its keyframe and frame are the same
    eye, so the folds match.
    """
    pts = landmarks[:, :2].astype(np.float32).copy()
    centres, radii, directions, contours = [], [], [], []
    for ring, centre, iris in (
        (topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
        (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
    ):
        contour = pts[ring]
        eye_centre = contour.mean(axis=0)
        c = pts[centre]
        # A closing lid may leave the tracked iris outside the opening; pull it in so the fan stays valid.
        for _ in range(6):
            if _inside(c, contour):
                break
            c = eye_centre + 0.6 * (c - eye_centre)
        pts[centre] = c
        radius = float(np.linalg.norm(pts[list(iris)] - pts[centre], axis=1).mean()) * _IRIS_RING
        eye_width = float(np.linalg.norm(contour[0] - contour[len(ring) // 2]))
        radius = min(radius, 0.22 * eye_width)
        dirs = contour[0 : 2 * EYE_RING_POINTS : 2] - eye_centre
        dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-6)
        centres.append(c)
        radii.append(radius)
        directions.append(dirs)
        contours.append(contour)
    origin, dirs = np.stack(centres), np.stack(directions)  # (eye, xy), (eye, point, xy)
    reach = np.array(radii, np.float32)[:, None]
    if inside:
        reach = np.minimum(reach, _IRIS_INSIDE * _ray_exits(origin, dirs, np.stack(contours))).astype(np.float32)
    virtual = (origin[:, None, :] + reach[..., None] * dirs).reshape(-1, 2)
    mouth = pts[topo.inner_lip_ring()].mean(axis=0, keepdims=True)
    return np.concatenate([pts, virtual, mouth]).astype(np.float32)


def _ray_exits(origins: Points, dirs: Points, polygons: Points) -> npt.NDArray[np.float64]:
    """(eye, ray): how far each ray from its eye's origin (`origins`, eye x xy) along `dirs` (eye x ray x xy, unit)
    runs inside the eye's polygon (`polygons`, eye x vertex x xy) before it first meets its outline (inf if never)."""
    a = polygons.astype(np.float64)[:, None]  # eye, 1, vertex, xy
    e = np.roll(a, -1, axis=2) - a  # the edges
    ao = a - origins.astype(np.float64)[:, None, None]
    d = dirs.astype(np.float64)[:, :, None]  # eye, ray, 1, xy
    den = d[..., 0] * e[..., 1] - d[..., 1] * e[..., 0]
    den = np.where(np.abs(den) > 1e-9, den, np.inf)  # parallel: t = s = 0, no hit
    t = (ao[..., 0] * e[..., 1] - ao[..., 1] * e[..., 0]) / den  # along the ray
    s = (ao[..., 0] * d[..., 1] - ao[..., 1] * d[..., 0]) / den  # along the edge
    return np.asarray(np.where((t > 0.0) & (s >= 0.0) & (s <= 1.0), t, np.inf).min(axis=2), np.float64)


def lid_openness(landmarks: Landmarks, ring: IndexArray) -> float:
    """The eye's opening: the mean gap between facing lid points across the eye (normal to the corner-to-corner
    line), over the eye's width.

    Across, not the points' distance: facing points are not above one another (an avatar's by up to a third
    of its opening), and a retargeted blink brings the lids together across the eye only (retarget's
    `_set_eye_opening`), so a distance kept that offset and read a shut avatar eye as ~0.6 closed, where its
    lids were drawn as a dark stretched band rather than a closed lid.
    """
    half = len(ring) // 2
    points = landmarks[ring, :2].astype(np.float64)  # the ring's only: this runs per eye twice a frame, per renderer
    upper, lower = points[1:half], points[half + 1 :][::-1]
    along = points[half] - points[0]
    width = math.sqrt(float(along.dot(along)))  # np.linalg.norm's own arithmetic for a vector, without its checks
    across = np.array([-along[1], along[0]]) / max(width, 1e-6)
    return abs(float(((lower - upper) @ across).mean())) / max(width, 1e-6)


def lid_closing(landmarks: Landmarks, neutral: Landmarks, ring: IndexArray) -> float:
    """0 for an eye as open as in `neutral` (or more), 1 for a closed one."""
    reference = lid_openness(neutral, ring)
    if reference < 1e-3:
        return 0.0
    return 1.0 - float(np.clip(lid_openness(landmarks, ring) / reference, 0.0, 1.0))


def eye_closings(landmarks: Landmarks, neutral: Landmarks) -> tuple[float, float]:
    """lid_closing of the right eye and the left."""
    return lid_closing(landmarks, neutral, topo.right_eye_ring()), lid_closing(landmarks, neutral, topo.left_eye_ring())


def lid_source_vertices(vertices: Points, source: Landmarks, target: Landmarks, closings: tuple[float, float] | None = None) -> Points:
    """Source vertices with each lid margin moved away from the eye, into the skin beside it, as the eye closes;
    `closings` (right eye, left: eye_closings of the sender) drives an avatar's upper lids by how shut the
    sender's eyes are (_SENDER_UPPER_START), not by the avatar's own closing.

    A closing lid stretched from the source would drag the lashes down into a dark smear; sampling
    the upper lid from above the lashes gives the skin-coloured lid a closed eye shows. The lower
    lid likewise samples from towards the ring below it: a drawn (cartoon) eye is often larger than
    the mesh's opening, its white and lower rim lying between the lower margin and that ring, where
    the closing lids never reach; sampled from there they would show as a crescent of white under
    the closed lid.
    """
    out = vertices.copy()
    sym = topo.symmetry()
    for k, (ring, above, below, further, corners) in enumerate((
        (
            topo.right_eye_ring(),
            np.array(RIGHT_LID_ABOVE),
            np.array(RIGHT_LID_BELOW),
            np.array(RIGHT_LID_BELOW_2),
            RIGHT_OUTER_CORNER,
        ),
        (
            topo.left_eye_ring(),
            sym[list(RIGHT_LID_ABOVE)],
            sym[list(RIGHT_LID_BELOW)],
            sym[list(RIGHT_LID_BELOW_2)],
            tuple(int(i) for i in sym[list(RIGHT_OUTER_CORNER)]),
        ),
    )):
        closing = lid_closing(target, source, ring)
        if closing <= 0.0:
            continue
        half = len(ring) // 2
        upper, lower = ring[1:half], ring[half + 1 :]
        out[upper] += _upper_pull(closing, None if closings is None else closings[k]) * (source[above, :2] - source[upper, :2])
        # Closed, the lower lid shows from the ring below down: a drawn rim there becomes the lid's line,
        # and the band below samples the skin beyond it (the next ring's half way).
        amount = _smoothstep(closing, _LOWER_START, _LOWER_FULL)
        if amount > 0.0:
            out[lower] += amount * (source[below, :2] - source[lower, :2])
            out[below] += amount * _BELOW_PULL * (source[further, :2] - source[below, :2])
            # The same outwards at the outer corner, where a drawn eye's white reaches furthest past the mesh.
            corner, beyond, far = corners
            out[corner] += amount * (source[beyond, :2] - source[corner, :2])
            out[beyond] += amount * _BELOW_PULL * (source[far, :2] - source[beyond, :2])
    return out


def _upper_pull(closing: float, sender: float | None) -> float:
    """Of the way from the upper margin to the crease: where the margin samples at the eye's own `closing`, or,
    given, the sender's (an avatar's)."""
    if sender is None:
        return _UPPER_PULL * closing * _smoothstep(closing, _UPPER_START, _UPPER_FULL)
    return _UPPER_PULL * _smoothstep(sender, _SENDER_UPPER_START, _SENDER_UPPER_FULL)


def _smoothstep(x: float, start: float, full: float) -> float:
    t = float(np.clip((x - start) / (full - start), 0.0, 1.0))
    return t * t * (3.0 - 2.0 * t)


_EYES = (
    (topo.RIGHT_EYE_CORNERS, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
    (topo.LEFT_EYE_CORNERS, topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
)
_EYE_RINGS = (topo.right_eye_ring(), topo.left_eye_ring())


def _eye_axes(landmarks: Landmarks, corners: tuple[int, int]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The eye's centre and its axes (along the corners, and across), each as long as the eye is wide."""
    a, b = landmarks[corners[0], :2].astype(np.float64), landmarks[corners[1], :2].astype(np.float64)
    x0, x1 = float(b[0] - a[0]), float(b[1] - a[1])
    return (a + b) / 2, np.array([[x0, x1], [-x1, x0]])  # as np.stack of the two rows, with less overhead


def hold_irises(target: Landmarks, neutral: Landmarks, held: tuple[bool, bool], travel: float) -> Landmarks:
    """`target` with the irises of the `held` eyes (right, left) kept near where `neutral` has them in the eye,
    and at `neutral`'s size (scaled with the face).

    For eyes whose iris is left to the warp (too small or too blurred to lift, facewire.shared.render.iris):
    the warp moves such an iris by stretching the eye around it, and a far turn smears it sideways
    into the white. The iris's offset from its place in `neutral` (in eye widths, in the eye's own
    frame) is eased to at most `travel`: small glances pass almost unchanged, far ones stop short.
    Its ring is `neutral`'s radius times the face's scale (iris.eye_span), as a lifted iris is drawn: the
    target's is the sender's change added to the avatar's, and the tracker shrinks a raised or turned iris.
    The offset is taken from the middle of the eye's opening (its lid ring's mean), not from between its corners:
    the lids' middle lies 0.2-0.3 eye widths in front of the corners, so a head turned 20 degrees slides the opening
    0.05-0.07 eye widths along the eye between them, and an iris held to its place between the corners lagged the lids
    it is warped with: the fan from it to the lower lid was sheared 2x along the lid, a narrowed eye's white beside the
    iris drawn as a torn white band (happy1 on w1).
    """
    out = target.copy()
    scale = eye_span(target) / max(eye_span(neutral), 1e-6)
    for hold, (corners, centre, ring), lids in zip(held, _EYES, _EYE_RINGS, strict=True):
        placed = _iris_in_eye(target, neutral, corners, centre, lids) if hold else None
        if placed is None:
            continue
        rest, now, t_axes = placed
        shift = now - rest
        size = float(np.linalg.norm(shift))
        if size > 1e-9:
            eased = shift * (travel * np.tanh(size / travel) / size)
            out[[centre, *ring], :2] += ((eased - shift) @ t_axes).astype(np.float32)
        own = float(np.linalg.norm(neutral[list(ring), :2] - neutral[centre, :2], axis=1).mean()) * scale
        offsets = out[list(ring), :2] - out[centre, :2]
        radius = float(np.linalg.norm(offsets, axis=1).mean())
        if radius > 1e-6:
            out[list(ring), :2] = out[centre, :2] + offsets * np.float32(own / radius)
    return out


def _iris_in_eye(target: Landmarks, neutral: Landmarks, corners: tuple[int, int], centre: int,
                 lids: IndexArray | None = None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """The iris's place in `neutral`'s eye and in `target`'s (each in its eye's own frame: eye widths along and
    across, from between the corners or, `lids` given, from the mean of those lid points), and `target`'s eye axes;
    None when either eye is degenerate."""
    n_origin, n_axes = _eye_axes(neutral, corners)
    t_origin, t_axes = _eye_axes(target, corners)
    if abs(np.linalg.det(n_axes)) < 1e-6 or abs(np.linalg.det(t_axes)) < 1e-6:
        return None
    if lids is not None:
        n_origin = neutral[lids, :2].astype(np.float64).mean(axis=0)
        t_origin = target[lids, :2].astype(np.float64).mean(axis=0)
    rest = np.linalg.solve(n_axes.T, neutral[centre, :2] - n_origin)
    now = np.linalg.solve(t_axes.T, target[centre, :2] - t_origin)
    return rest, now, t_axes


def _room(neutral: Landmarks, corners: tuple[int, int], centre: int, ring: tuple[int, ...]) -> tuple[float, float]:
    """How far `neutral`'s iris travels along its eye, towards corner 0 and towards corner 1 (in eye widths), before
    its edge meets that corner: the room the eye's own opening gives its own iris."""
    origin, axes = _eye_axes(neutral, corners)
    width = float(np.linalg.norm(axes[0]))
    rest = float(np.linalg.solve(axes.T, neutral[centre, :2] - origin)[0])  # -0.5 at corner 0, 0.5 at corner 1
    radius = float(np.linalg.norm(neutral[list(ring), :2] - neutral[centre, :2], axis=1).mean()) / max(width, 1e-6)
    return max(0.5 + rest - radius, _MIN_ROOM), max(0.5 - rest - radius, _MIN_ROOM)


_MIN_ROOM = 0.02  # of the eye's width: the least room an iris keeps either way (one as wide as its eye still glances)
_KNEE = 0.5  # of the limit: glances up to here pass unchanged


def _soft_limit(x: float, limit: float) -> float:
    """`x` unchanged up to `_KNEE` of `limit`, then eased (tanh) towards `limit`, never reaching it; odd in `x`."""
    knee = _KNEE * limit
    size = abs(x)
    if size <= knee:
        return x
    return float(np.sign(x)) * (knee + (limit - knee) * float(np.tanh((size - knee) / (limit - knee))))


def limit_glance(target: Landmarks, neutral: Landmarks, limited: tuple[bool, bool], reach: float) -> Landmarks:
    """`target` with the irises of the `limited` eyes (right, left) travelling along the eye at most `reach` of the
    way from where `neutral` has them to where their edge would meet the corner (a soft limit): a glance is
    followed, but an iris never goes further than the avatar's own eye opening can show it.

    The retargeted gaze moves an iris in proportion to the eye's width, so a sender whose iris is small for his
    eye, rolling it into the corner, pushes an avatar's larger iris (or one in a narrower eye) into its corner
    whole: a round iris flush with the corner beside a wide white reads as a googly side-eye (d12 laughing with
    his eyes rolled aside, frame 36). Across the eye the lids clip the iris already.
    """
    out = target.copy()
    for limit, (corners, centre, ring) in zip(limited, _EYES, strict=True):
        placed = _iris_in_eye(target, neutral, corners, centre) if limit else None
        if placed is None:
            continue
        rest, now, t_axes = placed
        along = float(now[0] - rest[0])
        room = _room(neutral, corners, centre, ring)[0 if along < 0 else 1]
        eased = _soft_limit(along, reach * room)
        out[[centre, *ring], :2] += ((eased - along) * t_axes[0]).astype(np.float32)
    return out


@dataclass(frozen=True)
class MouthFrame:
    """The inner mouth in image pixels: where the lips meet the cavity."""

    upper: Points  # inner upper-lip midpoint
    lower: Points
    axis: Points  # unit vector corner to corner
    width: float
    opening: float

    @classmethod
    def of(cls, landmarks: Landmarks) -> MouthFrame:
        p = landmarks[:, :2].astype(np.float64)
        c0, c1 = p[topo.MOUTH_CORNERS[0]], p[topo.MOUTH_CORNERS[1]]
        width = float(np.linalg.norm(c1 - c0))
        axis = (c1 - c0) / max(width, 1e-6)
        upper, lower = p[topo.UPPER_LIP_INNER_MID], p[topo.LOWER_LIP_INNER_MID]
        normal = np.array([-axis[1], axis[0]])
        # Signed: lips pressed past each other (a retargeting overshoot) are closed, not open.
        return cls(upper, lower, axis, width, max(0.0, float((lower - upper) @ normal)))

    @property
    def ratio(self) -> float:
        return self.opening / max(self.width, 1e-6)


# Cavity panels live in lip coordinates, not image pixels: column u runs from one inner mouth
# corner (0) to the other (1), row d is the distance from the lip (down from the upper lip in the
# upper panel, up from the lower lip in the lower one), both in mouth widths. Teeth drawn there
# follow the lip's curve at any opening, keep their size, and are cut by the lips' own outline.
PANEL_W, PANEL_H = 160, 96
_U_RANGE = (-0.1, 1.1)
_D_RANGE = (-0.06, 0.6)
_UPPER_TEETH = 0.125  # visible height of the central upper incisors, in mouth widths
_LOWER_TEETH = 0.08
# Tooth edges on each side of the midline in projected |x| (x = 2u - 1): wide incisors at the
# centre, narrower teeth towards the corners as the arch turns away.
_UPPER_EDGES = np.array([0.0, 0.24, 0.44, 0.6, 0.73, 0.84, 0.93, 1.0])
_LOWER_EDGES = np.array([0.0, 0.14, 0.28, 0.42, 0.56, 0.68, 0.8, 0.9])


@dataclass(frozen=True)
class LipFrame:
    """The inner lip contours as curves over the corner-to-corner axis, for lip coordinates (u, d)."""

    origin: npt.NDArray[np.float64]  # inner mouth corner 0
    axis: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]  # towards the lower lip
    width: float
    upper: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # (u, v) sorted by u, v along the normal in widths
    lower: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]

    @classmethod
    def of(cls, landmarks: Landmarks) -> LipFrame:
        ring = topo.inner_lip_ring()
        half = len(ring) // 2
        p = landmarks[:, :2].astype(np.float64)
        c0, c1 = p[ring[0]], p[ring[half]]
        width = max(float(np.linalg.norm(c1 - c0)), 1e-6)
        axis = (c1 - c0) / width
        normal = np.array([-axis[1], axis[0]])

        def curve(idx: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
            rel = (p[idx] - c0) / width
            u = np.concatenate([[0.0], rel @ axis, [1.0]])
            v = np.concatenate([[0.0], rel @ normal, [0.0]])
            order = np.argsort(u, kind="stable")
            return u[order], v[order]

        return cls(c0, axis, normal, width, curve(ring[1:half]), curve(ring[half + 1 :]))

    def coords(self, xs: npt.NDArray[np.float32], ys: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Lip coordinates of the pixel grid xs (columns) by ys (rows): u, depth below the upper lip, above the lower lip."""
        dx, dy = (xs - self.origin[0]) / self.width, (ys - self.origin[1]) / self.width
        u = (dx * np.float32(self.axis[0]))[None, :] + (dy * np.float32(self.axis[1]))[:, None]
        v = (dx * np.float32(self.normal[0]))[None, :] + (dy * np.float32(self.normal[1]))[:, None]
        up = np.interp(u, *self.upper).astype(np.float32)
        low = np.interp(u, *self.lower).astype(np.float32)
        return u.astype(np.float32), v - up, low - v

    def opening(self, u: FloatArray) -> FloatArray:
        return (np.interp(u, *self.lower) - np.interp(u, *self.upper)).astype(np.float32)


def _panel_grid() -> tuple[FloatArray, FloatArray]:
    u = np.linspace(*_U_RANGE, PANEL_W, dtype=np.float32)
    d = np.linspace(*_D_RANGE, PANEL_H, dtype=np.float32)
    uu, dd = np.meshgrid(u, d)
    return uu, dd


def _smooth(x: FloatArray) -> FloatArray:
    t = np.clip(x, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _teeth(
    x: FloatArray, d: FloatArray, height: float, edges: npt.NDArray[np.float64], reach: float, seams: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """Coverage and shading of a row of teeth hanging `height` from the lip at d = 0, over projected x in -1..1."""
    ax = np.abs(x)
    k = np.clip(np.searchsorted(edges, ax) - 1, 0, len(edges) - 2)
    left, right = edges[k].astype(np.float32), edges[k + 1].astype(np.float32)
    local = (ax - left) / np.maximum(right - left, 1e-3)  # 0..1 across each tooth
    size = (right - left) / float(edges[1])  # the tooth's width relative to a central incisor
    tip = height * (1.0 - 0.45 * ax * ax) - 0.22 * height * size * (2.0 * local - 1.0) ** 2
    cover = _smooth((tip - d) / 0.012 + 0.5) * _smooth((reach - ax) / 0.18)
    gap = np.minimum(local, 1.0 - local) * (right - left)  # distance to the nearest tooth edge in x
    seam = seams * np.exp(-((gap / 0.009) ** 2)) * (0.2 + 0.35 * _smooth(d / max(height, 1e-3)))
    shade = (
        (0.93 + 0.1 * np.sin(np.pi * local))  # each tooth rounded
        * (1.0 - seam)
        * (0.3 + 0.7 * np.clip(1.0 - ax * ax, 0.0, 1.0) ** 0.8)  # the arch turns away into the dark
        * (0.55 + 0.45 * _smooth(d / 0.04))  # in the lip's shadow where they come out from under it
        * (1.0 - 0.18 * _smooth((d - 0.7 * tip) / np.maximum(0.3 * tip, 1e-3)))  # translucent tips
    )
    return cover.astype(np.float32), shade.astype(np.float32)


@cache
def _teeth_rows(upper: bool) -> tuple[FloatArray, FloatArray]:
    """_teeth of the upper row or the lower over the panel grid: the same for every palette, so made once (read-only)."""
    uu, d = _panel_grid()
    x = 2.0 * uu - 1.0
    rows = _teeth(x, d, _UPPER_TEETH, _UPPER_EDGES, 0.9) if upper else _teeth(x, d, _LOWER_TEETH, _LOWER_EDGES, 0.62, seams=0.5)
    for array in rows:
        array.flags.writeable = False
    return rows


_DARK = np.array([24, 22, 46], np.float32)  # BGR: the back of the mouth
_TEETH = np.array([168, 198, 222], np.float32)  # ivory, not paper white
_TONGUE = np.array([78, 88, 160], np.float32)


@dataclass(frozen=True)
class CavityPalette:
    """What a synthetic mouth interior is made of: colours (BGR, before the scene's `tone`) and sizes.

    `rim` is light falling in past the lips: the inside of the cheeks and the palate just behind
    the lips are lit from the front, so a wide opening is not one flat dark hole. `tongue` is its
    half-width (in x, -1..1 across the mouth), height (mouth widths above the lower lip) and the
    height over which its top turns away into shade.
    """

    dark: tuple[float, float, float] = (24.0, 22.0, 46.0)
    tongue_colour: tuple[float, float, float] = (78.0, 88.0, 160.0)
    rim: float = 0.0
    tongue: tuple[float, float, float] = (0.62, 0.2, 0.24)
    teeth_ambient: float = 0.0  # shaded teeth take this many times `dark` (the mouth's own red light), not grey
    cast: tuple[float, float, float] | None = None  # BGR gains of the scene's light colour (scene_cast); None: white
    teeth_cast: float = 1.0  # the power of `cast` the teeth take (1: all of it)
    teeth: tuple[float, float, float] = (float(_TEETH[0]), float(_TEETH[1]), float(_TEETH[2]))  # BGR of a lit tooth, before `tone`


# Self mode's synthetic interior: a dark red, not near black, and a wider tongue. With the darker default a mouth
# opened wide (a yawn, a shout, where the frame shows a pink tongue and palate) read as a black hole under the teeth.
DEFAULT_PALETTE = CavityPalette(dark=(24.0, 20.0, 62.0), tongue_colour=(80.0, 88.0, 170.0), tongue=(0.7, 0.2, 0.24))
# An avatar's teeth: the ivory's luma, half its colour. They still take part of the skin's cast (_TEETH_CAST), and
# teeth in the clips' own frames measure CIE b* +5 to +9 (the ivory is +16, so a warm cast made them yellow).
_AVATAR_TEETH = (float(_TEETH @ LUMA_BGR) * 0.5 + 0.5 * _TEETH).astype(np.float32)


def lip_colour(image: Image, landmarks: Landmarks) -> npt.NDArray[np.float32] | None:
    """The median BGR of a face's lips (between the outer and inner lip contours), or None when they hardly show."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[topo.outer_lip_ring(), :2]).astype(np.int32)], 255)
    cv2.fillPoly(mask, [np.round(landmarks[topo.inner_lip_ring(), :2]).astype(np.int32)], 0)
    pixels = image[mask > 0]
    if len(pixels) < 20:
        return None
    return np.median(pixels, axis=0).astype(np.float32)


_OWN_HUE = 0.4  # how far a synthetic mouth interior's hue moves from the default's to the lips'
_RED_OVER = 1.6  # the least red over the larger of blue and green (the default tongue's is 1.8)


# The power of the skin's cast (scene_cast) the teeth take when the scene's own teeth are not known (scene_teeth).
# The cast is mostly the difference of two skins (a grey painting's and the sender's), not of the light.
_TEETH_CAST = 0.35
_RIM_DEPTH = 0.12  # mouth widths behind the lips where light falling in is brightest
_CAST_POINTS = [50, 280, 101, 330]  # cheeks, as skin_tone
_MAX_CAST = 1.3


def scene_cast(
    scene: Image, scene_landmarks: Landmarks, avatar: Image, avatar_landmarks: Landmarks, strength: float
) -> tuple[float, float, float]:
    """BGR gains (unit luminance) of the colour the avatar's skin takes on in the scene, for what is drawn after the shading.

    match_shading moves the avatar's tint `strength` of the way to the scene's skin; teeth drawn
    afterwards in plain ivory then look blue on a face in warm light. Their ratio of cheek colours,
    each over its own luminance, to the same power, bounded.
    """

    def chroma(image: Image, landmarks: Landmarks) -> npt.NDArray[np.float32]:
        h, w = image.shape[:2]
        pts = np.round(landmarks[_CAST_POINTS, :2]).astype(int)
        bgr = image[np.clip(pts[:, 1], 0, h - 1), np.clip(pts[:, 0], 0, w - 1)].astype(np.float32).mean(axis=0) + 4.0
        return (bgr / float(bgr @ LUMA_BGR)).astype(np.float32)

    gains = np.clip((chroma(scene, scene_landmarks) / chroma(avatar, avatar_landmarks)) ** strength, 1.0 / _MAX_CAST, _MAX_CAST)
    gains = gains / float(gains @ LUMA_BGR)
    return (float(gains[0]), float(gains[1]), float(gains[2]))


# Real teeth against the cheeks in the clips' own open-mouth frames (8 clips, 870 frames whose bright,
# less-than-lip-saturated pixels inside the inner lips are teeth): a tooth is near-neutral, so it takes the
# light's colour, which the skin shows too, along with its own. Each channel's log over the luminance, the
# teeth's is three quarters of the skin's plus a little ivory (BGR), which predicts each clip's teeth left out of
# the fit within 0.04-0.09 (0.15 for a tanned, made-up face in white light); the skin's whole colour (x1) or half
# of it did no better. Blue-white teeth in a warm room were an ivory taking a third of a cast between two skins.
_TEETH_OF_SKIN = 0.75
_TEETH_TINT = np.array([0.058, 0.018, -0.039], np.float32)
# Their luminance over the cheeks' grows with the light (a dim room's mouth lies in shadow): 0.72 at cheek
# luma 98 (a dim warm room), about 1.0 at 138, 1.2 at 181 (a bright studio); a line through the clips whose
# teeth do not clip to white, bounded. As a ratio at the cheeks' luma 0 and its slope per luma level.
_TEETH_LUMA = (0.214, 0.00573)
_TEETH_LUMA_RANGE = (0.6, 1.2)
_SKIN_POINTS = [50, 280, 101, 330, 205, 425]  # cheeks, and beside the mouth
_SKIN_PATCH = 0.025  # face widths: the half-size of the patch whose median each point reads


def skin_colour(image: Image, landmarks: Landmarks) -> npt.NDArray[np.float32]:
    """The BGR of a face's cheeks: the median of small patches round them (a single pixel is grain or a pore)."""
    h, w = image.shape[:2]
    width = float(np.linalg.norm(landmarks[234, :2] - landmarks[454, :2]))
    r = max(1, int(round(_SKIN_PATCH * width)))
    patches = []
    for x, y in np.round(landmarks[_SKIN_POINTS, :2]).astype(int):
        x, y = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
        patch = image[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(-1, 3)
        patches.append(np.median(patch, axis=0))
    return np.asarray(np.median(np.array(patches, np.float32), axis=0), np.float32)


def scene_teeth(scene: Image, landmarks: Landmarks) -> tuple[float, float, float]:
    """The BGR of a lit tooth (before `tone`, skin_tone's) in a scene, from its skin as real teeth relate to theirs.

    The swapped face's skin takes the scene's skin colour (blend.match_shading moves the avatar's tint to
    it), so teeth drawn in the colour real teeth have beside that skin sit in the same light: warm and dim
    in a dim warm room, near white in a studio.
    """
    skin = skin_colour(scene, landmarks) + np.float32(4.0)
    luma = float(skin @ LUMA_BGR)
    chroma = np.exp(np.float32(_TEETH_OF_SKIN) * np.log(skin / np.float32(luma)) + _TEETH_TINT).astype(np.float32)
    chroma = chroma / np.float32(chroma @ LUMA_BGR)
    ratio = float(np.clip(_TEETH_LUMA[0] + _TEETH_LUMA[1] * luma, *_TEETH_LUMA_RANGE))
    teeth = chroma * np.float32(ratio * luma / skin_tone(scene, landmarks))
    return _bgr(teeth)


def avatar_palette(
    lips: npt.NDArray[np.float32] | None,
    cast: tuple[float, float, float] | None = None,
    wide: bool = True,
    teeth: tuple[float, float, float] | None = None,
) -> CavityPalette:
    """A mouth interior in the hue of a face's own lips (mucosa is continuous with them), lit past the lips.

    The default interior is a fixed dark red with a small tongue: under a pale painted or grey
    avatar its hue is foreign, and a mouth opened wider than the avatar's picture shows reads
    as a flat black hole. Here the back of the mouth is a little lighter than the default, in a hue
    part of the way from the default's to the lips' (bounded: a black-lipped cartoon still gets a
    mouth), the tongue is larger and lighter, as it lies on the floor of an open mouth, and light
    reaches past the lips. Only for a wide opening (`wide`); a narrow one keeps the default's
    darkness and tongue in the same hue, cast and warm-shaded teeth (the renderer blends the two).
    `teeth` (scene_teeth) is the colour of a lit tooth in the scene's light, which then takes no cast;
    without it, a grey ivory taking a third of the cast.
    """
    teeth_colour, teeth_cast = (_bgr(_AVATAR_TEETH), _TEETH_CAST) if teeth is None else (teeth, 0.0)
    hue = _TONGUE / float(_TONGUE @ LUMA_BGR)
    if lips is not None:
        own = np.clip((lips + 4.0) / (float(lips @ LUMA_BGR) + 4.0), 0.55, 1.8).astype(np.float32)
        # Part of the way to the lips' own hue, and always red-dominant: pale, grey or sepia-varnished lips
        # (a de-lit painting) would otherwise give a grey or olive tongue, which reads as dead.
        hue = hue ** (1.0 - _OWN_HUE) * own**_OWN_HUE
        hue[2] = max(float(hue[2]), _RED_OVER * float(max(hue[0], hue[1])))
        hue = hue / float(hue @ LUMA_BGR)
    if not wide:
        # A mouth a little open shows its teeth and darkness: a lit, tongue-filled gap there reads as
        # lip to the eye (and to a landmarker), and the opening looks smaller than it is.
        dark, tongue = hue * float(_DARK @ LUMA_BGR), hue * float(_TONGUE @ LUMA_BGR)
        return CavityPalette(
            dark=_bgr(dark), tongue_colour=_bgr(tongue), teeth_ambient=2.0, cast=cast, teeth_cast=teeth_cast, teeth=teeth_colour
        )
    dark = hue * (1.3 * float(_DARK @ LUMA_BGR))
    tongue = hue * 145.0
    return CavityPalette(
        dark=_bgr(dark), tongue_colour=_bgr(tongue), rim=2.0, tongue=(0.76, 0.34, 0.4), teeth_ambient=2.0, cast=cast,
        teeth_cast=teeth_cast, teeth=teeth_colour,
    )


WIDE_OPENING = (0.35, 0.65)  # opening / width over which an avatar's mouth interior goes from the narrow palette to the wide


def _bgr(colour: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    return (float(colour[0]), float(colour[1]), float(colour[2]))


# Of the mouth's own hue that the light reflected onto shaded teeth keeps: at full hue, red or purple lips
# (the palette's `dark` takes their hue) tinted the shaded rows orange or mauve, and a smile's bared rows lie
# mostly in the lips' shade.
_AMBIENT_HUE = 0.3


def _tooth_colour(shade: FloatArray, dark: FloatArray, ambient: float, teeth: FloatArray) -> FloatArray:
    """`teeth` under `shade`; with `ambient`, what the shade takes away is partly the mouth's dim, reddish light, not grey."""
    lit = teeth * shade[..., None]
    if ambient <= 0.0:
        return lit
    grey = np.float32(dark @ LUMA_BGR)
    light = (grey + np.float32(_AMBIENT_HUE) * (dark - grey)) * np.float32(ambient)
    return (lit + light * (1.0 - shade)[..., None]).astype(np.float32)


_PEAK = 250.0  # the brightest channel a lit panel keeps


def _lit(panel: FloatArray, teeth: FloatArray, tone: float, palette: CavityPalette) -> FloatArray:
    """A panel in the scene's light: `tone`, and the cast (the teeth, `teeth` their coverage, take `teeth_cast` of it).

    The brightest teeth are scaled down whole rather than clipped channel by channel: clipped red over
    a warm cast turns white teeth yellow-orange.
    """
    if palette.cast is None:
        lit = panel * np.float32(tone)
    else:
        cast = np.asarray(palette.cast, np.float32)
        own = cast ** np.float32(palette.teeth_cast)
        own = own / np.float32(own @ LUMA_BGR)
        gain = cast + (own - cast) * teeth[..., None]
        lit = panel * gain * np.float32(tone)
    # the channels' maximum pairwise: a reduction over the 3-long last axis costs ~6x more (numpy's strided reduce)
    peak = np.maximum(np.maximum(lit[..., 0], lit[..., 1]), lit[..., 2])[..., None]
    return (lit * np.minimum(np.float32(1.0), np.float32(_PEAK) / np.maximum(peak, np.float32(1.0)))).astype(np.float32)



def _cavity_panels(tone: float, upper_teeth: bool, lower_teeth: bool, palette: CavityPalette = DEFAULT_PALETTE) -> tuple[Image, Image]:
    uu, d = _panel_grid()
    x = 2.0 * uu - 1.0
    centre = np.clip(1.0 - x * x, 0.0, 1.0)
    depth = 0.55 + 0.45 * np.exp(-np.maximum(d, 0.0) / 0.1)
    if palette.rim > 0.0:
        # Lit a little way in, not at the lips: right behind them is the lips' own shadow, and that
        # dark line is what tells the eye (and a landmarker) where the opening starts.
        r = np.maximum(d, 0.0) / np.float32(_RIM_DEPTH)
        depth = depth * (1.0 + palette.rim * r * np.exp(1.0 - r))
    dark_colour = np.array(palette.dark, np.float32)
    teeth_colour = np.array(palette.teeth, np.float32)
    dark = dark_colour * ((0.5 + 0.5 * np.sqrt(centre)) * depth)[..., None]
    upper = dark.copy()
    lower = dark.copy()
    teeth_up = np.zeros_like(d)
    teeth_low = np.zeros_like(d)
    reach, height, fade = palette.tongue
    tongue = _smooth((1.0 - (x / reach) ** 2 - ((d - 0.04) / height) ** 2) / 0.25)
    tongue_shade = (0.55 + 0.45 * np.sqrt(centre)) * (1.0 - 0.5 * _smooth(d / fade))
    lower = lower * (1.0 - tongue[..., None]) + (np.array(palette.tongue_colour, np.float32) * tongue_shade[..., None]) * tongue[..., None]
    if upper_teeth:
        teeth_up, shade = _teeth_rows(upper=True)
        tooth = _tooth_colour(shade, dark_colour, palette.teeth_ambient, teeth_colour)
        upper = upper * (1.0 - teeth_up[..., None]) + tooth * teeth_up[..., None]
    if lower_teeth:
        # Lower teeth: smaller, mostly the front ones, and their edges barely show at this size.
        teeth_low, shade = _teeth_rows(upper=False)
        tooth = _tooth_colour(0.9 * shade, dark_colour, palette.teeth_ambient, teeth_colour)
        lower = lower * (1.0 - teeth_low[..., None]) + tooth * teeth_low[..., None]
    out = []
    for panel, teeth in ((upper, teeth_up), (lower, teeth_low)):
        lit = np.clip(_lit(panel, teeth, tone, palette), 0, 255)
        out.append(np.asarray(cv2.GaussianBlur(lit, (0, 0), 0.8) + 0.5, np.float32).astype(np.uint8))
    return out[0], out[1]


def synthetic_panels(tone: float, palette: CavityPalette = DEFAULT_PALETTE) -> tuple[Image, Image]:
    """Upper (teeth under the upper lip, darkness) and lower (lower teeth, tongue) cavity panels, in lip coordinates.

    `tone` in 0..1 scales the brightness so the teeth sit in the scene's light.
    """
    return _cavity_panels(tone, upper_teeth=True, lower_teeth=True, palette=palette)


_LIP_BAND = 0.03  # of the mouth width: lip inside the inner-lip landmarks of a source
REFERENCE_OPENING = 0.12  # opening / width from which a source's own mouth interior is worth copying


def mouth_panels(image: Image, landmarks: Landmarks, palette: CavityPalette = DEFAULT_PALETTE) -> tuple[tuple[Image, Image], bool]:
    """Cavity panels for a source face, and whether they hold its real mouth interior.

    When the source shows its mouth open (teeth, tongue), its interior is resampled into lip
    coordinates (the upper panel hanging from its upper lip, the lower one standing on its lower
    lip) over a toothless synthetic cavity, so an opening like the source's reproduces it and a
    wider one continues into darkness.
    """
    tone = skin_tone(image, landmarks)
    if MouthFrame.of(landmarks).ratio < REFERENCE_OPENING:
        return synthetic_panels(tone, palette), False
    # The source's upper teeth hang from its upper lip; a wide-open frame still shows lower teeth
    # (synthetic) when the source's narrower opening had none to copy.
    backdrop = _cavity_panels(tone, upper_teeth=False, lower_teeth=True, palette=palette)
    lips = LipFrame.of(landmarks)
    uu, d = _panel_grid()
    up = np.interp(uu, *lips.upper).astype(np.float32)
    low = np.interp(uu, *lips.lower).astype(np.float32)
    opening = low - up
    out = []
    # Short of the opposite lip and clear of the corners, where the landmarks often run over lip.
    inside = _smooth((opening - d - 2 * _LIP_BAND - 0.01) / 0.03) * _smooth((0.5 - np.abs(uu - 0.5)) / 0.08 - 0.3)
    # A narrow opening shows the upper teeth down to the lower lip: only a wide one is worth
    # copying for the lower panel, else the upper teeth would show twice.
    lower_share = float(np.clip((MouthFrame.of(landmarks).ratio - 0.25) / 0.1, 0.0, 1.0))
    # The inner-lip landmarks sit on the lip's wet edge, often a little inside it: skip that band so
    # the frame's own lip is not followed by a second, copied one.
    skip = np.float32(_LIP_BAND)
    for panel, v, share in ((backdrop[0], up + d + skip, 1.0), (backdrop[1], low - d - skip, lower_share)):
        px = lips.origin[0] + lips.width * (uu * lips.axis[0] + v * lips.normal[0])
        py = lips.origin[1] + lips.width * (uu * lips.axis[1] + v * lips.normal[1])
        copied = cv2.remap(image, px.astype(np.float32), py.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        w = (inside * np.float32(share))[..., None]
        out.append((panel.astype(np.float32) * (1 - w) + copied.astype(np.float32) * w + 0.5).astype(np.uint8))
    return (out[0], out[1]), True


def _panel_rows(d: FloatArray) -> FloatArray:
    return ((d - _D_RANGE[0]) * np.float32((PANEL_H - 1) / (_D_RANGE[1] - _D_RANGE[0]))).astype(np.float32)


def _opening(landmarks: Landmarks, mouth: MouthFrame, frame_size: tuple[int, int]) -> tuple[Region, FloatArray] | None:
    """The region around the inner lips and the opening's soft mask (0..1) in it; None when it is too small."""
    ring = landmarks[topo.inner_lip_ring(), :2].astype(np.float32)
    region = Region.around(ring, frame_size, 2)
    if region.width <= 2 or region.height <= 2:
        return None
    shift = np.array([region.x0, region.y0], np.float32)
    mask = np.zeros((region.height, region.width), np.uint8)
    cv2.fillPoly(mask, [np.round((ring - shift) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    # A soft edge: the lips' inner rims are rounded, not cut out.
    soft = max(0.6, 0.012 * mouth.width)
    return region, (cv2.GaussianBlur(mask, (0, 0), soft).astype(np.float32) * np.float32(1.0 / 255.0))


_OPEN_SOURCE = 0.08  # opening / width from which a source mouth shows its inside (its dark, its teeth)
_NARROW = (0.4, 0.8)  # closing (1 - opening over the source's) over which a narrowed opening turns to shadow


def interior_shadow(image: Image, landmarks: Landmarks) -> npt.NDArray[np.float32] | None:
    """The BGR of the dark of a source's open mouth (the median of its darkest fifth inside the inner lips);
    None when the mouth is not open enough to show it."""
    if MouthFrame.of(landmarks).ratio < _OPEN_SOURCE:
        return None
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[topo.inner_lip_ring(), :2]).astype(np.int32)], 255)
    pixels = image[mask > 0].astype(np.float32)
    if len(pixels) < 20:
        return None
    luma = pixels @ LUMA_BGR
    return np.asarray(np.median(pixels[luma <= np.percentile(luma, 20)], axis=0), np.float32)


def shade_narrowed(canvas: Image, landmarks: Landmarks, source_ratio: float, shadow: npt.NDArray[np.float32] | None) -> None:
    """A mouth opened much less than its source: the opening drawn (in place) as the mouth's shadow.

    The warp squeezes the source's interior into the narrower opening: an open mouth's teeth become a
    white line between the lips, which reads (to the eye and to a landmarker) as a mouth still open. A
    mouth nearly closed shows the shadow behind its lips, not its teeth.
    """
    if shadow is None or source_ratio < _OPEN_SOURCE:
        return
    mouth = MouthFrame.of(landmarks)
    closing = 1.0 - min(mouth.ratio / source_ratio, 1.0)
    t = min(max((closing - _NARROW[0]) / (_NARROW[1] - _NARROW[0]), 0.0), 1.0)
    amount = t * t * (3.0 - 2.0 * t)
    if amount <= 0.0:
        return
    frame_size = (canvas.shape[1], canvas.shape[0])
    opening = _opening(landmarks, mouth, frame_size)
    if opening is None:
        return
    region, mask = opening
    fy, fx, py, px = region.clip_to(frame_size)
    a = mask[py, px] * np.float32(amount)
    fill = np.empty((*a.shape, 3), np.uint8)
    fill[:] = np.clip(shadow + 0.5, 0, 255).astype(np.uint8)
    canvas[fy, fx] = cv2.blendLinear(fill, canvas[fy, fx], a, 1.0 - a)


_BARED_UPPER = 0.58  # of the opening the lips bare: the upper row's share down to the bite (the lower row the rest)
_BARED_FULL = 0.12  # mouth widths of bared opening from which the lower row shows whole


def _bared_teeth(
    bared: float, ratio: float, hide: np.float32, split: np.float32, d_up: FloatArray, d_low: FloatArray
) -> tuple[np.float32, np.float32, FloatArray, FloatArray]:
    """The cavity's lower-teeth hiding, panel split and panel depths for a mouth whose lips bare `bared` of a
    `ratio` opening (both in mouth widths) from teeth that stay together.

    The panels draw teeth of a fixed height from each lip, the rest dark: right for a dropped jaw, but a
    smile or a grimace opens the lips over closed teeth, and there the gap between the rows reads as a black
    slash. Here the rows are drawn taller (the panels' depths scaled) until together they fill the bared
    part, the lower row comes out from behind the lip, and the rows meet at the bite. Returns the hiding, the
    split and the depths to read the panels at (the split still goes by the true depths).
    """
    upper = max(_UPPER_TEETH, _BARED_UPPER * bared)
    lower = max(_LOWER_TEETH, (1.0 - _BARED_UPPER) * bared)
    share = bared / max(ratio, 1e-6)
    shown = np.float32(1.0 - min(bared / _BARED_FULL, 1.0))
    bite = np.float32(upper / (upper + lower))
    return (
        np.float32(hide * shown),
        np.float32(split + (bite - split) * share),
        (d_up * np.float32(_UPPER_TEETH / upper)).astype(np.float32),
        (d_low * np.float32(_LOWER_TEETH / lower)).astype(np.float32),
    )


def cavity_strength(ratio: float, source_ratio: float) -> float:
    """How much of the cavity composite_cavity draws over a mouth open `ratio` (opening / width), the source's
    open `source_ratio` (0: none, the mouth shut or the source's own interior showing)."""
    if ratio < 0.03:
        return 0.0
    if source_ratio < 0.08:
        return 1.0
    # Real interior from the source while it is at least as open; the panels (the source's own
    # interior continued into darkness, or a synthetic cavity) beyond.
    return float(np.clip((ratio - source_ratio) / max(0.08, 0.5 * source_ratio), 0.0, 1.0))


def composite_cavity(
    canvas: Image,
    landmarks: Landmarks,
    panels: tuple[Image, Image],
    source_ratio: float,
    bared: float = 0.0,
) -> npt.NDArray[np.float32] | None:
    """Draw the mouth cavity into `canvas` (in place) where the mouth opens; returns the cavity mask.

    `source_ratio` is how open the source's mouth is (opening / width): its own interior is kept
    while the frame opens no wider than that, and the cavity takes over beyond it. `bared` (0..1) is the
    share of the opening that is lips drawn back from teeth that stay together, not a dropped jaw
    (retarget.lip_retraction): both rows of teeth fill that much of it.
    """
    mouth = MouthFrame.of(landmarks)
    strength = cavity_strength(mouth.ratio, source_ratio)
    if strength <= 0.0:
        return None
    opening = _opening(landmarks, mouth, (canvas.shape[1], canvas.shape[0]))
    if opening is None:
        return None
    region, soft_mask = opening
    maskf = soft_mask * np.float32(strength)
    frame_size = (canvas.shape[1], canvas.shape[0])
    lips = LipFrame.of(landmarks)
    xs = np.arange(region.x0, region.x0 + region.width, dtype=np.float32)
    ys = np.arange(region.y0, region.y0 + region.height, dtype=np.float32)
    u, d_up, d_low = lips.coords(xs, ys)
    cols = ((u - _U_RANGE[0]) * np.float32((PANEL_W - 1) / (_U_RANGE[1] - _U_RANGE[0]))).astype(np.float32)
    # Lower teeth slide up from behind the lower lip only as the jaw drops well open.
    hide = np.float32(_LOWER_TEETH * (1.0 - np.clip((mouth.ratio - 0.2) / 0.2, 0.0, 1.0)))
    # Where the upper panel gives way to the lower: near the lower lip while the mouth is barely
    # open (upper teeth fill the gap), halfway once it is wide open.
    split = np.float32(1.0 - 0.5 * np.clip(mouth.ratio / 0.3, 0.0, 1.0))
    rows_up, rows_low = d_up, d_low
    if bared > 0.0:
        # In the panels' units (inner-lip widths), at the middle of the mouth where the opening is widest.
        middle = float(lips.opening(np.array([0.5], np.float32))[0])
        hide, split, rows_up, rows_low = _bared_teeth(min(bared, 1.0) * middle, middle, hide, split, d_up, d_low)
    upper = cv2.remap(panels[0], cols, _panel_rows(rows_up), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lower = cv2.remap(panels[1], cols, _panel_rows(rows_low + hide), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    t = np.maximum(d_up, 0.0) / np.maximum(np.maximum(d_up, 0.0) + np.maximum(d_low, 0.0), np.float32(1e-3))
    w_low = np.clip((t - split) / np.float32(0.16) + np.float32(0.5), 0.0, 1.0)
    cavity = cv2.blendLinear(lower, upper, w_low, 1.0 - w_low)
    fy, fx, py, px = region.clip_to(frame_size)
    a = maskf[py, px]
    canvas[fy, fx] = cv2.blendLinear(cavity[py, px], canvas[fy, fx], a, 1.0 - a)
    full = np.zeros(canvas.shape[:2], np.float32)
    full[fy, fx] = a
    return full
