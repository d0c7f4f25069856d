"""Eyes and mouth: the triangles that fill the mesh's holes, and a mouth interior that is never stretched lips.

Eyes: each eye opening is triangulated around a small virtual ring centred on the iris, so the
iris follows the iris landmarks (468-477) while the sclera stretches around it; these triangles
are drawn first, so when the lids close the lid skin covers them instead of tearing.

Mouth: the opening is a fan from its centroid that samples the source's own interior. Where the
mouth opens wider than the source shows, a cavity is composited on top: two small textures, one
anchored at the upper lip (upper teeth, then darkness) and one at the lower lip (tongue), each
placed by a similarity transform, so teeth keep their size however wide the mouth opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt

from shared.render import topology as topo
from shared.render.warp import Points, Region
from shared.types import Image, Landmarks

IndexArray = npt.NDArray[np.int32]
EYE_RING_POINTS = 8
# Virtual iris ring radius as a fraction of the iris radius: inside the iris, so it moves rigidly.
_IRIS_RING = 0.85
# The landmark ring just above each upper lid margin (ring[1:8]), subject's right eye; the left by symmetry.
_RIGHT_LID_ABOVE = (113, 225, 224, 223, 222, 221, 189)  # the crease ring, above the lashes
PANEL = 128  # cavity texture side; the mouth width maps to _PANEL_MOUTH pixels of it
_PANEL_MOUTH = 100.0
_PANEL_ANCHOR = 6.0


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
    lum = float((image[ys, xs].astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)).mean())
    return float(np.clip(lum / 170.0, 0.35, 1.15))


def _inside(point: Points, polygon: Points) -> bool:
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def extended_vertices(landmarks: Landmarks) -> Points:
    """Landmarks (x, y) plus the virtual eye-ring points and the mouth centroid; iris centres kept inside the eyes."""
    pts = landmarks[:, :2].astype(np.float32).copy()
    extra: list[Points] = []
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
        extra.append(c + radius * dirs)
    extra.append(pts[topo.inner_lip_ring()].mean(axis=0, keepdims=True))
    return np.concatenate([pts, *extra]).astype(np.float32)


def _openness(points: Points, ring: IndexArray) -> float:
    half = len(ring) // 2
    upper, lower = points[ring[1:half], :2], points[ring[half + 1 :][::-1], :2]
    width = float(np.linalg.norm(points[ring[0], :2] - points[ring[half], :2]))
    return float(np.linalg.norm(upper - lower, axis=1).mean()) / max(width, 1e-6)


def lid_source_vertices(vertices: Points, source: Landmarks, target: Landmarks) -> Points:
    """Source vertices with each upper-lid margin raised towards the skin above it as the eye closes.

    A closing lid stretched from the source would drag the lashes down into a dark smear; sampling
    the lid from above the lashes gives the skin-coloured lid a closed eye shows.
    """
    out = vertices.copy()
    sym = topo.symmetry()
    for ring, above in (
        (topo.right_eye_ring(), np.array(_RIGHT_LID_ABOVE)),
        (topo.left_eye_ring(), sym[list(_RIGHT_LID_ABOVE)]),
    ):
        src_open = _openness(source, ring)
        if src_open < 1e-3:
            continue
        closing = 1.0 - float(np.clip(_openness(target, ring) / src_open, 0.0, 1.0))
        if closing > 0.0:
            upper = ring[1 : len(ring) // 2]
            out[upper] += 0.6 * closing * (source[above, :2] - source[upper, :2])
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

    def panel_affine(self, anchor: Points, panel_anchor: tuple[float, float]) -> npt.NDArray[np.float64]:
        """2x3 affine from image pixels to panel pixels: a similarity (no stretch) anchored at a lip."""
        s = _PANEL_MOUTH / max(self.width, 1e-6)
        u = self.axis
        n = np.array([-u[1], u[0]])
        rot = np.stack([u, n]) * s
        return np.hstack([rot, (np.array(panel_anchor) - rot @ anchor)[:, None]])


def synthetic_panels(tone: float) -> tuple[Image, Image]:
    """Upper (teeth under the upper lip, darkness) and lower (tongue over darkness) cavity panels.

    `tone` in 0..1 scales the brightness so the teeth sit in the scene's light.
    """
    yy, xx = np.mgrid[0:PANEL, 0:PANEL].astype(np.float32)
    cx = PANEL / 2
    edge = np.clip(1.0 - np.abs(xx - cx) / (_PANEL_MOUTH / 2), 0.0, 1.0)  # 1 at the centre, 0 at the corners
    dark = np.array([22, 20, 48], np.float32)
    upper = np.broadcast_to(dark, (PANEL, PANEL, 3)).copy() * (0.6 + 0.4 * edge[..., None])
    top = _PANEL_ANCHOR
    tooth_h = 0.11 * _PANEL_MOUTH
    in_band = (yy >= top - 2) & (yy < top + tooth_h) & (np.abs(xx - cx) < 0.36 * _PANEL_MOUTH)
    tooth_w = 0.085 * _PANEL_MOUTH
    gap = np.abs(((xx - cx) / tooth_w + 0.5) % 1.0 - 0.5) * 2  # 0 at the gaps between teeth
    fall = np.clip((top + tooth_h - yy) / (0.3 * tooth_h), 0, 1)  # tooth tips fade into the dark
    shade = (0.55 + 0.45 * edge) * (0.75 + 0.25 * np.clip(gap * 3, 0, 1)) * fall
    teeth = np.array([196, 212, 226], np.float32)
    upper = np.where(in_band[..., None], dark + (teeth - dark) * shade[..., None], upper)
    lower = np.broadcast_to(dark, (PANEL, PANEL, 3)).copy() * (0.6 + 0.4 * edge[..., None])
    bottom = PANEL - _PANEL_ANCHOR
    tongue = ((xx - cx) / (0.32 * _PANEL_MOUTH)) ** 2 + ((yy - bottom - 4) / (0.16 * _PANEL_MOUTH)) ** 2
    t = np.clip(1.0 - tongue, 0, 1) ** 0.5
    tongue_col = np.array([70, 80, 150], np.float32)
    lower = lower * (1 - t[..., None]) + tongue_col * t[..., None]
    up = cv2.GaussianBlur(np.clip(upper * tone, 0, 255), (3, 3), 0).astype(np.uint8)
    low = cv2.GaussianBlur(np.clip(lower * tone, 0, 255), (5, 5), 0).astype(np.uint8)
    return up, low


REFERENCE_OPENING = 0.12  # opening / width from which a source's own mouth interior is worth copying


def mouth_panels(image: Image, landmarks: Landmarks) -> tuple[tuple[Image, Image], bool]:
    """Cavity panels for a source face, and whether they hold its real mouth interior.

    When the source shows its mouth open (teeth, tongue), that interior is copied into both panels
    with the same lip-anchored similarities the compositing uses, over the synthetic cavity, so an
    opening like the source's reproduces it and a wider one continues into darkness.
    """
    panels = synthetic_panels(skin_tone(image, landmarks))
    mouth = MouthFrame.of(landmarks)
    if mouth.ratio < REFERENCE_OPENING:
        return panels, False
    ring = landmarks[topo.inner_lip_ring(), :2].astype(np.float64)
    out = []
    for panel, anchor, panel_anchor in (
        (panels[0], mouth.upper, (PANEL / 2, _PANEL_ANCHOR)),
        (panels[1], mouth.lower, (PANEL / 2, PANEL - _PANEL_ANCHOR)),
    ):
        to_panel = mouth.panel_affine(anchor, panel_anchor)
        copied = cv2.warpAffine(image, to_panel, (PANEL, PANEL), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = np.zeros((PANEL, PANEL), np.uint8)
        poly = ring @ to_panel[:, :2].T + to_panel[:, 2]
        cv2.fillPoly(inside, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        # Shrink off the lip edge, then feather into the synthetic darkness.
        inside = cv2.erode(inside, np.ones((5, 5), np.uint8))
        w = cv2.GaussianBlur(inside.astype(np.float32) / 255.0, (0, 0), 2.0)[..., None]
        out.append((panel.astype(np.float32) * (1 - w) + copied.astype(np.float32) * w + 0.5).astype(np.uint8))
    return (out[0], out[1]), True


def composite_cavity(
    canvas: Image,
    landmarks: Landmarks,
    panels: tuple[Image, Image],
    source_ratio: float,
) -> npt.NDArray[np.float32] | None:
    """Draw the mouth cavity into `canvas` (in place) where the mouth opens; returns the cavity mask.

    `source_ratio` is how open the source's mouth is (opening / width): its own interior is kept
    while the frame opens no wider than that, and the cavity takes over beyond it.
    """
    mouth = MouthFrame.of(landmarks)
    ring = landmarks[topo.inner_lip_ring(), :2].astype(np.float32)
    if mouth.ratio < 0.03:
        return None
    frame_size = (canvas.shape[1], canvas.shape[0])
    region = Region.around(ring, frame_size, 3)
    if region.width <= 2 or region.height <= 2:
        return None
    size = (region.width, region.height)
    shift = np.array([region.x0, region.y0], np.float64)
    mask = np.zeros((region.height, region.width), np.uint8)
    cv2.fillPoly(mask, [np.round((ring - shift) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    maskf = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) / 255.0
    # Real interior from the source while it is at least as open; the panels (the source's own
    # interior continued into darkness, or a synthetic cavity) beyond.
    strength = float(np.clip((mouth.ratio - source_ratio) / max(0.08, 0.5 * source_ratio), 0.0, 1.0))
    if source_ratio < 0.08:
        strength = 1.0
    if strength <= 0.0:
        return None
    layers = []
    for panel, anchor, panel_anchor in (
        (panels[0], mouth.upper, (PANEL / 2, _PANEL_ANCHOR)),
        (panels[1], mouth.lower, (PANEL / 2, PANEL - _PANEL_ANCHOR)),
    ):
        to_panel = mouth.panel_affine(anchor - shift, panel_anchor)
        layers.append(
            cv2.warpAffine(panel, to_panel, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
        )  # fmt: skip
    yy, xx = np.mgrid[0 : region.height, 0 : region.width].astype(np.float32)
    mid = (mouth.upper + mouth.lower) / 2 - shift
    normal = np.array([-mouth.axis[1], mouth.axis[0]], np.float32)
    side = (xx - mid[0]) * normal[0] + (yy - mid[1]) * normal[1]
    w_lower = np.clip(side / max(1.0, 0.15 * mouth.opening) + 0.5, 0, 1)[..., None]
    cavity = layers[0].astype(np.float32) * (1 - w_lower) + layers[1].astype(np.float32) * w_lower
    fy, fx, py, px = region.clip_to(frame_size)
    a = (maskf * strength)[py, px, None]
    canvas[fy, fx] = (canvas[fy, fx].astype(np.float32) * (1 - a) + cavity[py, px] * a + 0.5).astype(np.uint8)
    full = np.zeros(canvas.shape[:2], np.float32)
    full[fy, fx] = a[..., 0]
    return full
