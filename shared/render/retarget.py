"""Expression retargeting: the sender's expression, as a delta from the sender's neutral face, on an avatar.

All three faces (sender neutral N, sender now F, avatar neutral A) are 478x3 mesh landmarks.
Head pose is removed with a 3-D similarity (Procrustes) fitted on points that expression barely
moves; the delta F - N is taken in the neutral head frame, scaled per region by the ratio of the
avatar's feature size to the sender's, added to the avatar's neutral face brought into the same
frame, and the result is placed back at the sender's current pose. Eyelids use the ratio of
opening instead of a delta so a blink closes any eye, large or small; the skin over each upper lid keeps its
share of the margin-to-brow span, so a thin lid is not stretched into streaks, and the brow moves only so far from
the lid (a picture's lid cannot unfold), and the skin between the lower lip
and the chin likewise keeps its share of that span, so a smile's squeeze never folds it over the lip. The face outline can be pulled
towards the sender's own outline so the avatar's features sit inside the sender's head and hair.
The avatar's neutral face is first pushed further from the sender's (identity_push): the sender's
head, hair and ears stay round the face and pull a recogniser back towards the sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from facewire.shared.face import topology as topo
from facewire.shared.face.measures import (
    EYE_SHUT_BELOW,
    TYPICAL_OPEN_EYE,
    eye_open_ratio,
    eye_opening,
    eye_width,
    mouth_ratio,
    mouth_width,
)
from facewire.shared.types import Landmarks

Vec = npt.NDArray[np.float64]

STABLE = np.array(topo.RIGID, np.int32)


@dataclass(frozen=True)
class Similarity3:
    """x -> scale * R @ x + t on row vectors."""

    scale: float
    rotation: Vec
    translation: Vec

    def apply(self, points: Vec) -> Vec:
        return self.scale * points @ self.rotation.T + self.translation

    def inverse(self) -> Similarity3:
        r_inv = self.rotation.T
        return Similarity3(1.0 / self.scale, r_inv, -(self.translation @ r_inv.T) / self.scale)

    def compose(self, inner: Similarity3) -> Similarity3:
        """self after inner."""
        return Similarity3(
            self.scale * inner.scale,
            self.rotation @ inner.rotation,
            self.apply(inner.translation[None])[0],
        )


def fit_similarity(source: Vec, target: Vec) -> Similarity3:
    """Least-squares similarity (Umeyama) mapping source points onto target points, no reflection."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s0, t0 = source - mu_s, target - mu_t
    cov = t0.T @ s0 / len(source)
    u, d, vt = np.linalg.svd(cov)
    fix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[2, 2] = -1.0
    rotation = u @ fix @ vt
    var = (s0**2).sum() / len(source)
    scale = float((d * np.diag(fix)).sum() / max(var, 1e-12))
    return Similarity3(scale, rotation, mu_t - scale * mu_s @ rotation.T)


def frontal_rotation(landmarks: Landmarks) -> npt.NDArray[np.float64]:
    """Rotation that turns the face to face the camera (yaw and roll; pitch is not observable by symmetry)."""
    pts = landmarks[:468].astype(np.float64)
    sym = topo.symmetry()[:468]
    mirrored = pts[sym] * np.array([-1.0, 1.0, 1.0])
    fit = fit_similarity(pts, mirrored)
    # fit.rotation is R0^-2 for the head rotation R0 (mirroring reverses yaw and roll).
    half = Rotation.from_matrix(fit.rotation).as_rotvec() / 2.0
    return np.asarray(Rotation.from_rotvec(half).as_matrix(), np.float64)


def head_alignment(landmarks: Landmarks, reference: Landmarks) -> Similarity3:
    """Similarity taking `landmarks` into the frame of `reference`, fitted on the rigid points."""
    return fit_similarity(landmarks[STABLE].astype(np.float64), reference[STABLE].astype(np.float64))


@cache
def _mesh_adjacency() -> npt.NDArray[np.bool_]:
    """[i, j]: landmark j is a neighbour of i along the mesh's edges (each triangle's sides, both ways); irises hang
    on their eye's ring: an edge from each iris point to each ring point, none back, so no search from the face
    reaches an iris."""
    adjacency = np.zeros((topo.MESH_SIZE, topo.MESH_SIZE), np.bool_)
    tris = np.asarray(topo.face_triangles(), np.intp)
    for i, j in ((0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)):
        adjacency[tris[:, i], tris[:, j]] = True
    for ring, centre, iris in (
        (topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
        (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
    ):
        adjacency[np.ix_(np.array([centre, *iris], np.intp), np.asarray(ring, np.intp))] = True
    return adjacency


def _hops(seeds: npt.NDArray[np.int32], adjacency: npt.NDArray[np.bool_] | None = None) -> Vec:
    """Graph distance from the seed landmarks (breadth first over `adjacency`, default the mesh's; inf: not reached).
    A ring of the search at a time over the adjacency's rows: a search vertex by vertex in Python sets cost ~0.5 ms,
    ~5 ms of a process's first keyframe (scipy's csgraph is as fast but costs ~12 ms to import)."""
    adjacency = _mesh_adjacency() if adjacency is None else adjacency
    dist = np.full(topo.MESH_SIZE, np.inf)
    reached = np.zeros(topo.MESH_SIZE, np.bool_)
    frontier = np.unique(np.asarray(seeds, np.intp))
    step = 0
    while frontier.size:
        dist[frontier] = step
        reached[frontier] = True
        frontier = np.flatnonzero(adjacency[frontier].any(axis=0) & ~reached)
        step += 1
    return dist


@cache
def _lip_band() -> npt.NDArray[np.int32]:
    """Every landmark on the lips: both lip rings and the rings between them (reached from the inner ring
    without passing the outer one)."""
    adjacency = _mesh_adjacency().copy()
    adjacency[np.asarray(topo.outer_lip_ring(), np.intp)] = False  # the outer ring is reached, not passed
    return np.flatnonzero(np.isfinite(_hops(np.asarray(topo.inner_lip_ring(), np.int32), adjacency))).astype(np.int32)


@cache
def _region_weights() -> tuple[Vec, Vec, Vec]:
    """Per-landmark weights for mouth and eye regions and the outline pull, from the mesh graph.

    Graph distance (hops) makes these identical for every face and independent of pose. The mouth's
    is whole over the lips: faded from the outer ring only, the inner lip (three rings in) took about
    a third of the mouth's scale, so a dropped jaw, one motion of both contours, stretched an avatar
    with a larger mouth's lower lip (its outer edge moved 1.44x the sender's, its inner edge 1.16x)
    into a thick band that reads as a tongue, and opened its mouth less than the sender's.
    """
    mouth = np.exp(-((_hops(_lip_band()) / 3.0) ** 2))
    eyes = np.exp(-((_hops(np.concatenate([topo.right_eye_ring(), topo.left_eye_ring()])) / 3.0) ** 2))
    outline = np.clip(1.0 - _hops(topo.face_oval_ring()) / 3.0, 0.0, 1.0)
    return mouth, eyes, outline


@cache
def _features() -> tuple[tuple[npt.NDArray[np.int32], Vec], ...]:
    """Each eye (lids and iris) and the mouth (both lip rings), with a weight fading over ~2 hops round it."""
    right = np.concatenate([topo.right_eye_ring(), [topo.RIGHT_IRIS_CENTER, *topo.RIGHT_IRIS]]).astype(np.int32)
    left = np.concatenate([topo.left_eye_ring(), [topo.LEFT_IRIS_CENTER, *topo.LEFT_IRIS]]).astype(np.int32)
    mouth = np.concatenate([topo.outer_lip_ring(), topo.inner_lip_ring()]).astype(np.int32)
    return tuple((ids, np.exp(-((_hops(ids) / 1.5) ** 2))) for ids in (right, left, mouth))


def _identity_difference(avatar_n: Vec, neutral: Vec) -> Vec:
    """How the avatar's neutral face differs from the sender's, eyes and mouth moved whole.

    Exaggerating it (a caricature) moves the output away from the sender, whose head, hair and
    ears stay round the face. Eyes and mouth only move by their mean difference: reshaping them
    would change how open they look. The outline is left where it is: it meets the sender's head.
    """
    # Only what is the same on both sides: a face's shape is nearly symmetric, while a photo's
    # residual turn, a lopsided smile or a landmark's noise are not, and exaggerating those makes
    # the face less like the avatar too.
    rotation = frontal_rotation(neutral.astype(np.float32))
    frontal = (avatar_n - neutral) @ rotation.T
    mirrored = frontal[topo.symmetry()] * np.array([-1.0, 1.0, 1.0])
    diff = (0.5 * (frontal + mirrored)) @ rotation
    for ids, weight in _features():
        diff = (1.0 - weight[:, None]) * diff + weight[:, None] * diff[ids].mean(axis=0)
    return diff * (1.0 - _region_weights()[2])[:, None]


@dataclass(frozen=True)
class RetargetOptions:
    expression_gain: float = 1.0
    # How far the outline follows the sender's own outline (1 = the sender's jaw and cheeks).
    # The jaw and cheeks are the avatar's own (recognisers rely on them); the temples and forehead
    # follow the sender's so the face sits in the sender's hairline.
    outline_pull: float = 0.0
    upper_outline_pull: float = 0.0
    max_eye_ratio: float = 1.8
    closed_neutral_mouth: bool = True  # both neutral faces (the sender's keyframe, the avatar's picture) with closed lips
    # Caricature: the avatar's neutral face moved further from the sender's by this fraction of
    # their difference (the sender's head, hair and ears round the face pull recognition back),
    # scaled down so that no landmark moves more than push_limit face widths.
    identity_push: float = 1.0
    push_limit: float = 0.03
    # The widest mouth (per span of the eyes' outer corners) taken as its size for the expression's scale
    # (_mouth_size); wider is a smile in the neutral picture.
    widest_rest_mouth: float = 0.6
    # The avatar's chin at least this share of the sender's lower-lip-to-chin span below the sender's lower lip:
    # a shorter chin leaves the sender's own lower lip showing under the avatar's (_chin_cover).
    min_chin_share: float = 0.5
    # The lashes' and crease's rings over each upper lid at the avatar's own shares of the margin-to-brow span
    # (_keep_lid_skin); off, they move by the sender's motion in eye widths.
    lid_skin: bool = True
    # With lid_skin, the lashes' ring keeps its own distance from the margin where the column stretches (_keep_lid_skin's
    # `rest`): lashes are hairs on the margin, and the lid skin above them is what unfolds as an eye narrows. At their
    # share of a stretched column a smile's narrowed eye drew long painted lashes (people_0) as a tall dark band.
    rigid_lashes: bool = True
    # Of its own length: how far the top of an upper lid's margin-to-brow column may move from where the avatar has it
    # at rest, its margin held, lengthening or turning the column (_limit_lid_columns; 0: as the delta puts it). Half
    # of it passes unchanged, the rest eases towards this; the brow above is carried with the top.
    lid_reach: float = 0.2


def _mouth_size(points: Vec, widest: float) -> float:
    """The mouth's width as a measure of its size: at most `widest` times the span of the eyes' outer corners.

    A mouth at rest is 0.45-0.6 of that span (0.39-0.6 over the 37 identity pictures but four); a smiling
    picture's is stretched past it (a grin: 0.72-0.8). That stretch is expression, not size: taken for size it
    scaled the sender's smile up by a third on a grinning avatar, whose grin then spread past the cheeks.
    """
    span = float(np.linalg.norm(points[topo.RIGHT_EYE_CORNERS[0], :2] - points[topo.LEFT_EYE_CORNERS[0], :2]))
    return min(mouth_width(points), widest * span)


def _set_eye_opening(points: Vec, avatar: Vec, ring: npt.NDArray[np.int32], ratio: float) -> None:
    """Eyelid points at `ratio` of the avatar's own opening, measured from the line through the corners."""
    c0, c1 = avatar[ring[0], :2], avatar[ring[len(ring) // 2], :2]
    axis = (c1 - c0) / max(float(np.linalg.norm(c1 - c0)), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    offsets = (avatar[ring, :2] - c0) @ normal
    shift = points[ring, :2] - avatar[ring, :2]  # the delta's motion of the whole eye (e.g. a squint pulls it)
    along = (avatar[ring, :2] - c0) @ axis
    base = c0 + along[:, None] * axis + offsets[:, None] * ratio * normal
    mean_shift = shift.mean(axis=0)
    points[ring, :2] = base + mean_shift


def _neutral_eye_opening(neutral: Vec, side: str) -> float:
    """The eye opening later openings are measured against; a typical open eye if the keyframe caught a blink.

    Measured against a shut eye, every open frame would be several times "wider than neutral" and the
    avatar's eyes would stare (clipped at max_eye_ratio) until the next keyframe.
    """
    if eye_open_ratio(neutral, side) >= EYE_SHUT_BELOW:
        return eye_opening(neutral, side)
    return TYPICAL_OPEN_EYE * eye_width(neutral, side)


def _profile(along: Vec, values: Vec, length: float) -> tuple[Vec, Vec]:
    """`values` over position `along` the mouth, sorted, from corner (0) to corner (`length`), 0 at both corners:
    the knots for np.interp."""
    order = np.argsort(along)
    return np.concatenate([[0.0], along[order], [length]]), np.concatenate([[0.0], values[order], [0.0]])


def _contour(points: Vec, idx: npt.NDArray[np.int32], c0: Vec, axis: Vec, normal: Vec, length: float) -> tuple[Vec, Vec]:
    """A lip contour as depth (along `normal`) over position along `axis`, from corner to corner."""
    return _profile((points[idx, :2] - c0) @ axis, (points[idx, :2] - c0) @ normal, length)


# The upper lip's part of a parted mouth's gap: the rest of it is the lower lip's and the jaw's. Where the lips of
# three keyframes caught open (w0, w1, d3) met in the frames where the same person's mouth was shut (in the
# keyframe's head frame): 0.28, 0.33 and 0.07 of the gap below the upper lip; over every open frame of the eight
# clips, the outer lower lip's drop left 0.27 (median of the clips) of the opening to the upper lip.
_UPPER_LIP_SHARE = 0.3


def _close_neutral_mouth(neutral: Vec, rest: float) -> Vec:
    """The neutral face with its lips brought together until the opening is `rest` (never further apart).

    A talking mouth opens both ways: the upper lip comes down by _UPPER_LIP_SHARE of the gap (at most to the line
    between the inner corners), the lower lip rises by the rest. w0's keyframe, caught mid-word, has its upper
    lip 15 px above where her lips meet at rest. Closed by raising the lower lip alone, its lips met 15 px too
    high, and every later frame, with the upper lip back at rest, drew the avatar's upper lip down by that much:
    at w0's closed, pursed lips a beak that the face mesh reads as an open mouth (mouth correlation 0.24 on
    art_11), and a mouth lower on the face.

    Each lip moves whole (its contours and the rings between; zero at the corners), so it keeps its thickness,
    and the sender's parted lips later open the avatar's mouth in the same lens shape (a smile's crescent).
    The skin beyond each lip follows part of the way: all of it at the lip, none at the chin below or at the
    nose above; a lip moved alone would fold the mesh beside it.
    """
    ratio = mouth_ratio(neutral)
    excess = ratio - max(rest, 0.0)
    if excess <= 0.0:
        return neutral
    fraction = excess / max(ratio, 1e-6)
    out = neutral.copy()
    ring = topo.inner_lip_ring()
    half = len(ring) // 2
    upper, lower = ring[1:half], ring[half + 1 :][::-1]
    c0, c1 = neutral[ring[0], :2], neutral[ring[half], :2]
    length = float(np.linalg.norm(c1 - c0))
    axis = (c1 - c0) / max(length, 1e-6)
    normal = np.array([-axis[1], axis[0]])
    along_all = (neutral[:, :2] - c0) @ axis
    depth = (neutral[:, :2] - c0) @ normal  # below the line between the corners: positive
    upper_line = np.interp(along_all, *_contour(neutral, upper, c0, axis, normal, length))
    lower_line = np.interp(along_all, *_contour(neutral, lower, c0, axis, normal, length))
    gap = np.maximum(lower_line - upper_line, 0.0) * fraction  # level with each landmark
    # The upper lip's way down, never past the line between the corners: towards a corner it meets the lower lip
    # at the corner (lowered there, the thin lip's triangles at the corner fold), and the lower lip's way up.
    drop = np.minimum(_UPPER_LIP_SHARE * gap, np.maximum(-upper_line, 0.0))
    rise = gap - drop
    # Whole lips: the band's landmarks below the upper contour are the lower lip's, the rest the upper lip's.
    band = _lip_band()
    is_lower = (depth[band] > upper_line[band]) & ~np.isin(band, upper)
    out[band[is_lower], :2] -= rise[band[is_lower], None] * normal
    out[band[~is_lower], :2] += drop[band[~is_lower], None] * normal
    inside = (along_all > 0.0) & (along_all < length)
    inside[band] = False
    outer_ring = topo.outer_lip_ring()
    n_outer = len(outer_ring)
    for edge, end, sign, way in (
        (outer_ring[n_outer // 2 + 1 :], topo.CHIN, -1.0, rise),  # the skin under the lower lip, to the chin
        (outer_ring[: n_outer // 2 + 1], topo.SUBNASALE, 1.0, drop),  # the skin over the upper lip, to the nose
    ):
        order = np.argsort(along_all[edge])
        lip_depth = np.interp(along_all, along_all[edge][order], depth[edge][order])
        end_depth = float(depth[end])
        beyond = inside & ((depth - lip_depth) * (end_depth - lip_depth) > 0.0)
        t = np.clip((depth - lip_depth) / np.where(np.abs(end_depth - lip_depth) > 1e-6, end_depth - lip_depth, 1e-6), 0.0, 1.0)
        out[beyond, :2] += (sign * way * (1.0 - t))[beyond, None] * normal
    return out


def _uncross_lips(points: Vec) -> None:
    """Inner lips that the delta pushed past each other (the sender closes a mouth that was open in
    the neutral face) meet in the middle instead of inverting."""
    ring = topo.inner_lip_ring()
    half = len(ring) // 2
    upper, lower = ring[1:half], ring[half + 1 :][::-1]
    c0, c1 = points[topo.MOUTH_CORNERS[0], :2], points[topo.MOUTH_CORNERS[1], :2]
    axis = (c1 - c0) / max(float(np.linalg.norm(c1 - c0)), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    gap = (points[lower, :2] - points[upper, :2]) @ normal
    crossed = gap < 0
    if crossed.any():
        shift = 0.5 * gap[crossed, None] * normal
        points[upper[crossed], :2] += shift
        points[lower[crossed], :2] -= shift


@dataclass(frozen=True)
class ChinStrip:
    """The skin between the lower lip's outer edge and the chin, each landmark as a share of that span.

    A delta adds the sender's squeeze of that skin in pixels. Under a lower lip that sits close to
    the skin ring below it (a thick lip over a small chin), a smile that squeezes the sender's 20-px
    strip by 13 px puts the avatar's ring above its lip: the triangles between fold, a jagged dark edge
    under the lip. As a share of the avatar's own span, scaled by the sender's change of share (as the
    eyes' opening is a ratio), the skin squeezes as much as the sender's does and never crosses the lip.
    """

    ids: npt.NDArray[np.int32]  # landmarks below the lower lip, above the chin, between the mouth's corners
    avatar_share: Vec  # each one's depth below the lip, as a share of the lip-to-chin span, in the avatar
    sender_share: Vec  # the same in the sender's neutral face
    corner: Vec  # a mouth corner, the mouth's axis and its downward normal, in the neutral head frame
    axis: Vec
    normal: Vec

    def shares(self, points: Vec) -> tuple[Vec, Vec]:
        """Each strip landmark's share of the lip-to-chin span, and that span, in `points`."""
        depth, lip = _below_lower_lip(points, self.corner, self.axis, self.normal)
        span = np.maximum(depth[topo.CHIN] - lip[self.ids], 0.0)
        return (depth[self.ids] - lip[self.ids]) / np.maximum(span, 1e-6), span


# A landmark just under the lip in the sender's neutral face moves a long way in share for a pixel's
# noise; no stretch of the skin under the lip is larger than this.
_MAX_STRIP_STRETCH = 3.0
# The skin just outside the mouth's corners folds the same way (a thin ragged line at the corner); there the
# lip's depth is the corner's.
_STRIP_PAST_CORNERS = 0.15


@cache
def _outer_lower_lip() -> npt.NDArray[np.int32]:
    """The outer lip ring's lower half, corner to corner."""
    ring = topo.outer_lip_ring()
    return np.asarray([*ring[len(ring) // 2 :], ring[0]], np.int32)


def _below_lower_lip(points: Vec, corner: Vec, axis: Vec, normal: Vec) -> tuple[Vec, Vec]:
    """Every landmark's depth along `normal`, and the depth of the lower lip's outer edge level with it."""
    along = (points[:, :2] - corner) @ axis
    depth = (points[:, :2] - corner) @ normal
    lower = _outer_lower_lip()
    order = np.argsort(along[lower])
    return depth, np.interp(along, along[lower][order], depth[lower][order])


def plan_chin_strip(neutral: Vec, avatar_n: Vec) -> ChinStrip:
    corner, other = neutral[topo.MOUTH_OUTER_CORNERS[0], :2], neutral[topo.MOUTH_OUTER_CORNERS[1], :2]
    length = float(np.linalg.norm(other - corner))
    axis = (other - corner) / max(length, 1e-6)
    normal = np.array([-axis[1], axis[0]])
    depth, lip = _below_lower_lip(neutral, corner, axis, normal)
    along = (neutral[:, :2] - corner) @ axis
    margin = _STRIP_PAST_CORNERS * length
    inside = (depth > lip) & (depth < depth[topo.CHIN]) & (along > -margin) & (along < length + margin)
    inside[_lip_band()] = False
    inside[topo.face_oval_ring()] = False  # the outline is the face's edge against the sender's head: it stays
    ids = np.flatnonzero(inside).astype(np.int32)
    strip = ChinStrip(ids, np.zeros(0), np.zeros(0), corner, axis, normal)
    return ChinStrip(ids, np.clip(strip.shares(avatar_n)[0], 0.0, 1.0), strip.shares(neutral)[0], corner, axis, normal)


def _keep_chin_strip(target: Vec, now_n: Vec, strip: ChinStrip) -> None:
    """Each landmark under the lower lip at the avatar's own share of the lip-to-chin span times the sender's
    change of share; the lip and the chin stay where the delta put them."""
    if not len(strip.ids):
        return
    change = np.clip(strip.shares(now_n)[0] / np.maximum(strip.sender_share, 1e-6), 0.0, _MAX_STRIP_STRETCH)
    share, span = strip.shares(target)
    want = np.clip(strip.avatar_share * change, 0.0, 1.0)
    target[strip.ids, :2] += ((want - share) * span)[:, None] * strip.normal


# The skin over the subject's right upper lid in seven columns, outer corner to inner: the margin's landmark
# (eye ring[1:8]), the lashes' ring, the crease's ring, and the brow's lower edge (the mesh's rings one, two and
# three edges above the margin); the left lid's by symmetry.
_RIGHT_LID_COLUMNS = np.array(
    [
        (246, 161, 160, 159, 158, 157, 173),
        (247, 30, 29, 27, 28, 56, 190),
        (113, 225, 224, 223, 222, 221, 189),
        (124, 46, 53, 52, 65, 55, 193),
    ],
    np.int32,
).T


@cache
def _lid_columns() -> npt.NDArray[np.int32]:
    """Both upper lids' columns (14 x 4: margin, lashes, crease, brow edge)."""
    return np.concatenate([_RIGHT_LID_COLUMNS, topo.symmetry()[_RIGHT_LID_COLUMNS]]).astype(np.int32)


def _lid_place(points: Vec, columns: npt.NDArray[np.int32]) -> tuple[Vec, Vec]:
    """Each column's lashes and crease in its margin-to-brow chord's frame, (n, 2, 2): along the chord and across it
    (a quarter turn), as shares of the chord's length; and the chord."""
    start = points[columns[:, 0], :2]
    chord = points[columns[:, 3], :2] - start
    across = np.stack([-chord[:, 1], chord[:, 0]], axis=1)
    length2 = np.maximum((chord**2).sum(axis=1), 1e-9)[:, None]
    inner = points[columns[:, 1:3], :2] - start[:, None]
    return np.stack([(inner * chord[:, None]).sum(axis=2) / length2, (inner * across[:, None]).sum(axis=2) / length2], axis=2), chord


def plan_lid_skin(avatar_n: Vec) -> Vec:
    """The avatar's lashes and crease in each column's chord frame (_keep_lid_skin), in order from the margin up."""
    place = _lid_place(avatar_n, _lid_columns())[0]
    place[:, :, 0] = np.maximum.accumulate(np.clip(place[:, :, 0], 0.0, 1.0), axis=1)
    return place


def _keep_lid_skin(target: Vec, place: Vec, rest: Vec | None = None) -> None:
    """The lashes' and crease's rings over each upper lid where they sit on the avatar's own column, the column's ends
    at the margin and the brow's edge where the opening's ratio and the delta put them.

    The margin is set by a ratio of the avatar's own opening (_set_eye_opening); a delta moved the rings above it by
    the sender's motion in eye widths, and a lid thin for its eye took it all: on w0's raised brows happy1's margin-to-
    crease band (0.08-0.27 eye widths, the sender's 0.13-0.38) stretched 1.3-1.5x where the sender's grew 1.16-1.26x,
    the lashes and a smile's fold drawn as streaks, and a thinner band (sad) 9x. Each column carried whole (a
    similarity taking its margin and brow edge where they go), no band stretches more than its column does, the
    least any placement of the rings can give, whatever the lid's thickness; the avatar's proportion of lid to fold is
    kept and no ring crosses another. The sender's own spread is not followed: its lid skin unfolds as the eye narrows
    (margin to crease 1.4-1.6x on w1's smile), which a picture, its lashes and fold painted on, shows as streaks.
    `rest` (the avatar at rest, in `target`'s frame) given, a column stretched past its rest length keeps the lashes'
    ring at its rest distance from the margin (RetargetOptions.rigid_lashes): the lid skin above takes the stretch,
    both its bands (lashes to crease, crease to brow) alike.
    """
    columns = _lid_columns()
    chord = target[columns[:, 3], :2] - target[columns[:, 0], :2]
    across = np.stack([-chord[:, 1], chord[:, 0]], axis=1)
    start = target[columns[:, 0], :2]
    place = place.copy()
    if rest is not None:
        rest_length = np.linalg.norm(rest[columns[:, 3], :2] - rest[columns[:, 0], :2], axis=1)
        shrink = np.minimum(1.0, rest_length / np.maximum(np.linalg.norm(chord, axis=1), 1e-9))
        # The crease drawn towards the brow's edge as far as the lashes' ring is along the column: the lid skin above
        # the lashes takes the stretch evenly. At its own share a crease close over the lashes took all of it (a band
        # 0.03 of the column between them at rest: 5x on a column stretched 1.25x), and its fold's shadow was drawn
        # as a dark smudge from the eye up to the brow.
        lashes = place[:, 0, 0]
        towards_brow = (1.0 - lashes * shrink) / np.maximum(1.0 - lashes, 1e-9)
        brow_edge = np.array([1.0, 0.0])
        place[:, 0] *= shrink[:, None]
        place[:, 1] = brow_edge + (place[:, 1] - brow_edge) * towards_brow[:, None]
    target[columns[:, 1:3], :2] = start[:, None] + place[:, :, :1] * chord[:, None] + place[:, :, 1:] * across[:, None]


# Of a column's length (plan_brow_carry): the brow and the skin above it are carried whole up to this far above the
# column's top, and less and less up to the second (the forehead takes the difference); a point this far below a
# column's top, or one column spacing past the last column, is not carried at all.
_CARRIED, _CARRY_FADES = 1.5, 3.0
_CARRY_BELOW = 0.1


def _polyline_weights(points: Vec, tops: Vec) -> tuple[Vec, Vec]:
    """Each of `points`' distance to the polyline through `tops` (one lid's columns' tops, in order), and its weight on
    each top (point x top): linear between the two of its nearest segment, faded over one segment's length past the ends."""
    seg = tops[1:] - tops[:-1]  # segment, xy
    t = ((points[:, None] - tops[:-1]) * seg).sum(axis=2) / np.maximum((seg**2).sum(axis=1), 1e-9)  # point, segment
    near = tops[:-1] + np.clip(t, 0.0, 1.0)[..., None] * seg
    gap = np.sqrt(((points[:, None] - near) ** 2).sum(axis=2))
    k = np.argmin(gap, axis=1)
    rows = np.arange(len(points))
    tk = t[rows, k]
    past = np.where(k == 0, np.maximum(-tk, 0.0), 0.0)
    past = np.maximum(past, np.where(k == len(seg) - 1, tk - 1.0, 0.0))
    weights = np.zeros((len(points), len(tops)))
    weights[rows, k] = 1.0 - np.clip(tk, 0.0, 1.0)
    weights[rows, k + 1] += np.clip(tk, 0.0, 1.0)
    return gap[rows, k], weights * np.maximum(0.0, 1.0 - past)[:, None]


@dataclass(frozen=True)
class BrowCarry:
    """What _limit_lid_columns needs of the avatar: each upper lid column's top (the brow's lower edge) at rest in the
    sender's neutral head frame (as the identity push draws it), the column's direction (margin to top) and length,
    and (landmark, column) how much of each column's top's motion a landmark takes: the brow over the column and the
    skin above it whole, fading up the forehead and past the lid's ends; none below the columns' tops, and none on
    the lids' own rings (the margin stays, the lashes' and crease's are placed after)."""

    tops: Vec
    up: Vec
    lengths: Vec
    weights: Vec


def plan_brow_carry(picture: Vec, pushed: Vec) -> BrowCarry:
    """The BrowCarry of the avatar: `picture` in the sender's neutral head frame, `pushed` the same after the identity
    push. A column's length is the longer of the two: the push exaggerates a lid's difference from the sender's (a
    short column pushed 0.5-0.7 as long on happy and sad), and the texture is sampled from the picture."""
    columns = _lid_columns()
    n = len(columns) // 2
    points = picture[:, :2]
    tops, margins = points[columns[:, 3]], points[columns[:, 0]]
    chords = pushed[columns[:, 3], :2] - pushed[columns[:, 0], :2]
    rest = np.maximum(np.linalg.norm(tops - margins, axis=1), np.linalg.norm(chords, axis=1))
    at_rest = pushed[columns[:, 3], :2]
    up = (tops - margins) / np.maximum(rest, 1e-9)[:, None]
    sides = [_polyline_weights(points, tops[k * n : (k + 1) * n]) for k in range(2)]
    carry = np.zeros((len(points), len(columns)))
    for k, (gap, weights) in enumerate(sides):
        mine = gap <= sides[1 - k][0] if k == 0 else gap < sides[0][0]
        span = slice(k * n, (k + 1) * n)
        share = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        base = share @ tops[span]
        height = ((points - base) * (share @ up[span])).sum(axis=1) / np.maximum(share @ rest[span], 1e-9)
        vertical = np.where(height < 0.0, np.maximum(0.0, 1.0 + height / _CARRY_BELOW),
                            np.clip((_CARRY_FADES - height) / (_CARRY_FADES - _CARRIED), 0.0, 1.0))
        carry[:, span] = np.where(mine[:, None], weights * vertical[:, None], 0.0)
    carry[columns[:, :3].ravel()] = 0.0
    carry[columns[:, 3]] = np.eye(len(columns))
    carry[topo.right_eye_ring()] = carry[topo.left_eye_ring()] = 0.0
    # The outline stays where it meets the sender's head (as the identity push leaves it); the forehead between it and
    # the brow takes the difference.
    carry[topo.face_oval_ring()] = 0.0
    return BrowCarry(at_rest, chords / np.maximum(np.linalg.norm(chords, axis=1), 1e-9)[:, None], rest, carry)


def _eased(size: Vec, limit: float) -> Vec:
    """`size` (>= 0) unchanged up to half `limit`, then eased (tanh) towards `limit`, never reaching it."""
    knee = 0.5 * limit
    return np.where(size <= knee, size, knee + knee * np.tanh((size - knee) / knee))


def _limit_lid_columns(target: Vec, carry: BrowCarry, reach: float) -> None:
    """Each upper lid column's top (its brow edge) moved from where the avatar has it at rest (in the sender's neutral
    head frame: by expression only) by at most `reach` of the column's length (eased; a top coming down towards the
    eye is free): the top, the brow over it and the skin above (`carry.weights`) moved back by the rest. The top's
    own motion, not the column's: a blink or a smile's narrowing lowers the margin, and the brow is not to follow it.

    The margin follows the sender's opening as a ratio of the avatar's own (_set_eye_opening), the brow the sender's
    motion: w0's and w1's raised inner brows and smiles' narrowed eyes moved happy's and sad's inner columns' tops by
    half their length and more, up and towards the nose (a column lying sideways, from the inner corner to a brow low
    beside it, turned up by 45 degrees), and the lid's triangles were sheared and stretched 2-7x over the picture's: its
    crease, socket shadow and the brow's inner end were drawn as a dark smudge from the eye up to the brow. A picture
    cannot show the skin a fold unfolds; the brow so rises less than the sender's, the forehead taking the difference.
    """
    moved = target[_lid_columns()[:, 3], :2] - carry.tops
    down = np.minimum((moved * carry.up).sum(axis=1), 0.0)[:, None] * carry.up  # free: it hides the lid, not stretch it
    limited = moved - down
    size = np.linalg.norm(limited, axis=1) / np.maximum(carry.lengths, 1e-9)
    kept = _eased(size, reach) / np.maximum(size, 1e-12)
    if np.all(kept >= 1.0):
        return
    target[:, :2] += carry.weights @ (limited * (np.minimum(kept, 1.0) - 1.0)[:, None])


@dataclass(frozen=True)
class RetargetPlan:
    """What retarget needs that depends only on the sender's neutral face and the avatar: built once per keyframe and avatar."""

    sender_neutral: Landmarks  # as given: the head alignment is fitted to it
    neutral: Vec  # sender neutral in float64, its mouth closed if the options say so
    avatar_n: Vec  # the avatar brought into the sender's neutral head frame
    gain: Vec  # per-landmark expression scale
    eye_neutral: tuple[float, float]  # the sender's neutral eye openings (right, left)
    pull: Vec  # (N, 1) how far each landmark is pulled towards the sender's own outline
    options: RetargetOptions
    chin_strip: ChinStrip
    lid_place: Vec | None  # the avatar's upper lids' rings in their margin-to-brow columns' frames (None: moved by the delta)
    brow_carry: BrowCarry | None  # plan_brow_carry of the avatar (None: the lids' columns stretch as the delta puts them)


def plan_retarget(sender_neutral: Landmarks, avatar_neutral: Landmarks, options: RetargetOptions | None = None) -> RetargetPlan:
    opts = options or RetargetOptions()
    neutral = sender_neutral.astype(np.float64)
    if opts.closed_neutral_mouth:
        # A keyframe caught with the lips apart would otherwise keep the avatar's mouth shut until
        # the sender opens wider than that: measure the mouth from closed lips instead.
        neutral = _close_neutral_mouth(neutral, 0.0)
    avatar_n = head_alignment(avatar_neutral, sender_neutral).apply(avatar_neutral.astype(np.float64))
    if opts.closed_neutral_mouth:
        # The avatar's picture is its neutral face: photographed with an open smile, its mouth would
        # never close, and the sender's opening would be added to its own (the avatar's teeth
        # stretched into a dark gap, an open mouth twice as wide as the sender's). Its lips meet too;
        # the renderer shows its own interior again up to the picture's opening (texture.mouth_ratio).
        avatar_n = _close_neutral_mouth(avatar_n, 0.0)
    # The skin under the lip as shares of the picture's own span: the identity push, which moves the mouth
    # whole and the skin by its own difference, would fold a thin strip before any expression.
    chin = plan_chin_strip(neutral, avatar_n)
    # The lids' rings likewise: the push exaggerates a thin lid's difference from the sender's, its lashes' ring
    # pushed onto or past the margin (a synthetic lid 0.2 as thick as the sender's: every share below zero).
    lids = plan_lid_skin(avatar_n) if opts.lid_skin else None
    picture = avatar_n
    # Sizes from the picture as it is: the push moves the eyes apart, which would change a mouth's size (_mouth_size).
    k_mouth = _mouth_size(avatar_n, opts.widest_rest_mouth) / max(_mouth_size(neutral, opts.widest_rest_mouth), 1e-6)
    k_eye = np.mean([eye_width(avatar_n, side) / max(eye_width(neutral, side), 1e-6) for side in ("right", "left")])
    if opts.identity_push:
        # Both with their lips closed: a mouth open in one picture is not a difference of identity.
        diff = _identity_difference(avatar_n, neutral)
        face_width = float(np.ptp(avatar_n[topo.face_oval_ring(), 0]))
        largest = float(np.linalg.norm(diff[:, :2], axis=1).max())
        avatar_n = avatar_n + min(opts.identity_push, opts.push_limit * face_width / max(largest, 1e-9)) * diff
    carry = plan_brow_carry(picture, avatar_n) if opts.lid_reach > 0.0 else None
    mouth_w, eye_w, outline_w = _region_weights()
    gain = 1.0 + (k_mouth - 1.0) * mouth_w + (k_eye - 1.0) * eye_w * (1.0 - mouth_w)
    eye_line = float(neutral[list(topo.EYE_CORNERS), 1].mean())
    top = float(neutral[topo.FOREHEAD, 1])
    upper = np.clip((eye_line - neutral[:, 1]) / max(eye_line - top, 1e-6), 0.0, 1.0)
    strength = opts.outline_pull + (opts.upper_outline_pull - opts.outline_pull) * upper
    mouth_line = float(neutral[list(topo.MOUTH_OUTER_CORNERS), 1].mean())
    below = np.clip((neutral[:, 1] - eye_line) / max(mouth_line - eye_line, 1e-6), 0.0, 1.0)
    # The keyframe's lips as they are (not closed): those are what the keyframe shows round the avatar.
    strength = np.maximum(strength, _chin_cover(sender_neutral.astype(np.float64), avatar_n, opts.min_chin_share) * below)
    pull = np.clip(outline_w * strength, 0.0, 1.0)[:, None]
    eyes = (_neutral_eye_opening(neutral, "right"), _neutral_eye_opening(neutral, "left"))
    return RetargetPlan(sender_neutral, neutral, avatar_n, gain * opts.expression_gain, eyes, pull, opts, chin, lids, carry)


def _chin_cover(keyframe: Vec, avatar_n: Vec, min_share: float) -> float:
    """How far the lower outline must move towards the sender's for the avatar's chin to lie `min_share` of the
    keyframe's lower-lip-to-chin span below the keyframe's lower lip (0: it already does); `avatar_n` in its frame.

    The face is drawn inside the avatar's own outline, and the sender's keyframe shows round it. An avatar whose
    chin is short against the sender's (a small drawn jaw, a picture looking down) ends just under its own
    mouth, and the sender's lower lip, a little lower, shows under it as a second lip.
    """
    lip = float(keyframe[topo.outer_lip_ring(), 1].max())
    span = float(keyframe[topo.CHIN, 1]) - lip
    if span <= 0.0:
        return 0.0
    share = (float(avatar_n[topo.CHIN, 1]) - lip) / span
    if share >= min_share or share >= 1.0:
        return 0.0
    return float(np.clip((min_share - share) / (1.0 - share), 0.0, 1.0))


@dataclass(frozen=True)
class AlignedSender:
    """The sender's landmarks now, brought into the neutral head frame (align_sender): what apply_retarget and
    lip_retraction both start from, fitted once per frame."""

    to_neutral: Similarity3
    points: Vec  # the landmarks in the neutral head frame


def align_sender(plan: RetargetPlan, sender_now: Landmarks) -> AlignedSender:
    to_neutral = head_alignment(sender_now, plan.sender_neutral)
    return AlignedSender(to_neutral, to_neutral.apply(sender_now.astype(np.float64)))


def apply_retarget(plan: RetargetPlan, sender: AlignedSender) -> Landmarks:
    """The avatar's face with the sender's expression, at the sender's current pose, in frame pixels."""
    now_n = sender.points
    target = plan.avatar_n + (now_n - plan.neutral) * plan.gain[:, None]
    for k, (side, ring) in enumerate((("right", topo.right_eye_ring()), ("left", topo.left_eye_ring()))):
        ratio = eye_opening(now_n, side) / max(plan.eye_neutral[k], 1e-6)
        _set_eye_opening(target, plan.avatar_n, ring, float(np.clip(ratio, 0.0, plan.options.max_eye_ratio)))
    if plan.brow_carry is not None:
        _limit_lid_columns(target, plan.brow_carry, plan.options.lid_reach)
    if plan.lid_place is not None:
        _keep_lid_skin(target, plan.lid_place, plan.avatar_n if plan.options.rigid_lashes else None)
    _uncross_lips(target)
    _keep_chin_strip(target, now_n, plan.chin_strip)
    if plan.pull.any():
        target = (1.0 - plan.pull) * target + plan.pull * now_n
    return sender.to_neutral.inverse().apply(target).astype(np.float32)


# Mouth widths of lip opening a dropped jaw gives per mouth width the chin drops (median over the 90 frames of
# eight talking-head clips where the chin dropped more than 0.1 mouth widths: 1.94).
_OPENING_PER_JAW = 2.0


def lip_retraction(plan: RetargetPlan, sender: AlignedSender) -> float:
    """How much of the sender's mouth opening (a share, 0..1) is lips drawn back from closed teeth.

    A smile or a grimace bares the teeth with the jaw shut; talking or a yawn drops the jaw. The chin
    tells them apart: what the chin's drop from the neutral face (in the head's own frame) does not
    account for is lips drawn back, and there both rows of teeth show (eyes_mouth.composite_cavity).
    """
    now_n = sender.points
    chin, top = plan.neutral[topo.CHIN, :2], plan.neutral[topo.NOSE_BRIDGE, :2]
    down = (chin - top) / max(float(np.linalg.norm(chin - top)), 1e-6)
    drop = float((now_n[topo.CHIN, :2] - chin) @ down) / max(mouth_width(plan.neutral), 1e-6)
    ratio = mouth_ratio(now_n)
    if ratio <= 1e-6:
        return 0.0
    return float(np.clip(1.0 - _OPENING_PER_JAW * max(drop, 0.0) / ratio, 0.0, 1.0))


def retarget(
    sender_now: Landmarks,
    sender_neutral: Landmarks,
    avatar_neutral: Landmarks,
    options: RetargetOptions | None = None,
) -> Landmarks:
    """The avatar's face with the sender's expression, at the sender's current pose, in frame pixels."""
    plan = plan_retarget(sender_neutral, avatar_neutral, options)
    return apply_retarget(plan, align_sender(plan, sender_now))
