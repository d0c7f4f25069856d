"""Avatar textures: the avatar face frontalised once per identity, its hidden half filled from its mirror image.

A three-quarter portrait shows one cheek foreshortened or hidden; warping it to a frontal pose
smears that side. The mesh's left-right symmetry gives the head rotation (a face and its mirror
image differ by twice the yaw and roll), and each triangle is taken from whichever of the image
or its mirror shows it larger. Eye and mouth interiors always come from the original, so the
gaze is never mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.delight import DelightOptions, delight, eye_openings, feature_mask, normalised_blur
from facewire.shared.render.glasses import GlassesLayer, frontal_layer, lift_glasses
from facewire.shared.render.iris import Iris, lift_irises
from facewire.shared.render.occlusion import avatar_cover, brow_hulls
from facewire.shared.render.retarget import frontal_rotation
from facewire.shared.render.warp import Points, Region, fill_polygon, remap, similarity_2d, triangle_raster, warp_maps
from facewire.shared.types import Image, Landmarks

DEFAULT_DELIGHT = DelightOptions()
_MIN_YAW_FOR_MIRROR = 12.0  # degrees; below this both halves are seen well enough


@dataclass(frozen=True)
class Texture:
    image: Image
    landmarks: Landmarks  # where the face is in `image` (the frontalised mesh)
    src_vertices: Points  # extended mesh vertices in `image`
    mouth_ratio: float
    yaw: float  # degrees, of the original avatar image
    irises: tuple[Iris | None, Iris | None] = (None, None)  # lifted out of `image`, drawn whole per frame
    # `image` pre-shrunk in steps of 1/sqrt(2) (INTER_AREA), so a face rendered smaller than the
    # avatar's picture is sampled from a level near its own scale: a bilinear lookup that skips
    # pixels turns fine detail (wrinkles, paint strokes) into hard, aliased lines.
    levels: tuple[Image, ...] = ()
    lips: npt.NDArray[np.float32] | None = None  # median BGR of the lips in `image`: the hue of a synthetic mouth interior
    # The dark of the picture's open mouth (None: its lips meet), drawn over its interior as the sender's mouth
    # closes from the picture's opening (eyes_mouth.shade_narrowed): the warp would squeeze its teeth into a white line.
    shadow: npt.NDArray[np.float32] | None = None
    glasses: GlassesLayer | None = None  # the frames the avatar wears, out of `image`, drawn rigid per frame (glasses.py)

    def level_for(self, rendered_width: float) -> tuple[Image, npt.NDArray[np.float64]]:
        """The level for a face `rendered_width` pixels wide, and the 2x3 affine from texture to level pixels."""
        levels = self.levels or (self.image,)
        width = float(np.ptp(self.landmarks[:468, 0]))
        ratio = max(rendered_width, 1e-3) / max(width, 1e-3)
        k = int(np.clip(np.floor(np.log(ratio) / np.log(MIP_STEP) + 1e-6), 0, len(levels) - 1))
        level = levels[k]
        base = levels[0]
        sx = level.shape[1] / base.shape[1]
        sy = level.shape[0] / base.shape[0]
        # Pixel centres: x in the base maps to (x + 0.5) * s - 0.5 in the level, as cv2.resize samples.
        return level, np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


MIP_STEP = 2.0**-0.5
_MIN_LEVEL_SIDE = 24


def mip_levels(image: Image) -> tuple[Image, ...]:
    h, w = image.shape[:2]
    levels = [image]
    scale = MIP_STEP
    while min(h, w) * scale >= _MIN_LEVEL_SIDE:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        levels.append(np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8))
        scale *= MIP_STEP
    return tuple(levels)


def _signed_area(corners: Points) -> npt.NDArray[np.float64]:
    c = corners.astype(np.float64)
    e1 = c[:, 1] - c[:, 0]
    e2 = c[:, 2] - c[:, 0]
    return np.asarray(0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]), np.float64)


def soften_fine_chroma(image: Image, sigma: float, keep: float, spared: npt.NDArray[np.float32] | None = None) -> Image:
    """Faint colour detail finer than `sigma` (creases, pores, paint strokes) scaled by `keep`; strong detail kept.

    Once the rendered skin takes the scene's colour, a crease keeps the avatar's redder tint
    against the paler skin and reads as a red crack; its shading (luminance), which is what shows
    a wrinkle, is untouched. Strong colour detail (lips, saturated make-up) differs from the skin
    by more than the threshold and keeps most of it. `spared` (0..1) keeps its colour detail whole:
    the eyes' openings, where an iris's colour is only a little off the skin's (a blue or grey iris is
    dark and weakly saturated: Cb a dozen levels over the skin round it) and the threshold took most of
    it, so blue eyes came out brown.
    """
    if keep >= 1.0:
        return image
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
    chroma = ycc[..., 1:].astype(np.float32)
    low = cv2.GaussianBlur(chroma, (0, 0), max(0.5, sigma))
    faint = np.clip(chroma - low, -_FINE_CHROMA, _FINE_CHROMA)
    taken = np.float32(1.0 - keep) if spared is None else (np.float32(1.0 - keep) * (1.0 - spared))[..., None]
    ycc[..., 1:] = np.clip(chroma - faint * taken + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR), np.uint8)


_FINE_CHROMA = 14.0  # chroma units (of 255): creases and pores sit below this, lips and irises above
_FINE_SCALE = 0.045  # of the face width: detail finer than this counts as fine


def smooth_fine_texture(image: Image, sigma: float, contrast: float) -> Image:
    """Low-contrast grain finer than `sigma` (a painting's craquelure, canvas weave, JPEG noise) smoothed away.

    A portrait's face is often a third of the size it is drawn at; magnified and brightened to the
    scene's light, grain that was invisible in the picture becomes a speckle of brown dots over the
    skin. An edge-preserving (bilateral) filter takes out what differs from its neighbours by less
    than about `contrast` (grey levels summed over the three channels) and keeps edges stronger than
    that: lids, brows, lips, wrinkles.
    """
    if contrast <= 0.0:
        return image
    return np.asarray(cv2.bilateralFilter(image, 0, contrast, max(0.5, sigma)), np.uint8)


def picture_yaw(landmarks: Landmarks) -> float:
    """Degrees the face in the picture is turned, as prepare_texture frontalises it."""
    return float(np.degrees(Rotation.from_matrix(frontal_rotation(landmarks.astype(np.float32))).as_euler("yxz")[0]))


def glasses_drawn_rigid(yaw: float) -> bool:
    """Whether glasses worn in a picture turned `yaw` degrees are drawn as one rigid piece. A picture turned enough to
    need the mirror fill shows its far lens foreshortened: frontalised, that lens is stretched out past the eye, and
    a rigid piece keeps it there (and a half-found arm beside it); warped with the skin, it stays round its eye."""
    return abs(yaw) < _MIN_YAW_FOR_MIRROR


def prepare_texture(
    image: Image,
    landmarks: Landmarks,
    mirror_fill: bool = True,
    fine_chroma: float = 1.0,
    delighting: DelightOptions | None = None,
    rigid_irises: bool = True,
    fine_grain: float = 0.0,
    rigid_glasses: bool = True,
) -> Texture:
    """The avatar frontalised (and mirror-filled) and de-lit (`delighting`, None: DEFAULT_DELIGHT; zero strengths
    keep it as painted); `fine_chroma` < 1 softens its faint fine colour detail; `fine_grain` > 0 smooths grain of
    lower contrast than that (smooth_fine_texture); `rigid_irises` lifts the irises out of the texture to be drawn
    whole (facewire.shared.render.iris); `rigid_glasses` lifts the frames of glasses it wears to be drawn as one piece
    (facewire.shared.render.glasses)."""
    lm = landmarks.astype(np.float32)
    rotation = frontal_rotation(lm)
    yaw = picture_yaw(lm)
    # Glasses first: painted over with skin, they are neither cover nor skin to the steps below.
    lift = rigid_glasses and glasses_drawn_rigid(yaw)
    image, frames = lift_glasses(image, lm) if lift else (image, None)
    # Hair, a hat or a helmet over the face painted over with the avatar's own skin before anything
    # else: the mirror fill, de-lighting and every later step then see skin there.
    image = fill_cover(image, lm)
    centre = lm[:468].astype(np.float64).mean(axis=0)
    frontal = ((lm.astype(np.float64) - centre) @ rotation.T + centre).astype(np.float32)
    width = float(np.ptp(frontal[:468, 0]))
    region = Region.around(frontal[:, :2], (10**6, 10**6), 0.3 * width)
    region = Region(max(0, region.x0), max(0, region.y0), region.width, region.height)
    frontal[:, :2] -= np.array([region.x0, region.y0], np.float32)
    canvas = Region(0, 0, region.width, region.height)
    tris = em.mesh_triangles()
    # The irises' fans kept inside the eyes (extended_vertices' `inside`), as the texture is later drawn: a free fan
    # reaching past a narrowed eye's lid folds over the lid's triangles, and the fold, rotated to the front, left a
    # lash or a catchlight dragged across the texture's opening (happy1).
    dst = em.extended_vertices(frontal, inside=True)[tris]
    src = em.extended_vertices(lm, inside=True)[tris]
    # Outside the mesh, the avatar's surroundings under the same 2-D motion, for the feathered edge.
    fallback = similarity_2d(frontal, lm)
    order = np.arange(len(tris))
    map_x, map_y, _ = warp_maps(dst, src, canvas, 1, order, fallback)
    out = remap(image, map_x, map_y)
    glasses = frontal_layer(frames, map_x, map_y, frontal) if frames is not None else None
    if mirror_fill and abs(yaw) >= _MIN_YAW_FOR_MIRROR:
        out = _mirror_fill(image, lm, out, dst, src, canvas, fallback, tris)
    out = _soften_sides(out, frontal, dst, canvas, tris)
    out = _clean_outline(out, frontal)
    out = delight(out, frontal, delighting or DEFAULT_DELIGHT)
    out = soften_fine_chroma(out, _FINE_SCALE * width, fine_chroma, _eye_colour_kept(out.shape, frontal, width))
    out = smooth_fine_texture(out, _FINE_SCALE * width / 2.0, fine_grain)
    mouth = em.MouthFrame.of(frontal)
    out, irises = lift_irises(out, frontal) if rigid_irises else (out, (None, None))
    out = np.ascontiguousarray(out)
    return Texture(
        image=out,
        landmarks=frontal,
        src_vertices=em.extended_vertices(frontal, inside=True),
        mouth_ratio=mouth.ratio,
        yaw=yaw,
        irises=irises,
        levels=mip_levels(out),
        lips=em.lip_colour(out, frontal),
        shadow=em.interior_shadow(out, frontal),
        glasses=glasses,
    )


def _eye_colour_kept(shape: tuple[int, ...], landmarks: Landmarks, width: float) -> npt.NDArray[np.float32]:
    """0..1 over the eyes' openings and their lash line, soft-edged: where soften_fine_chroma keeps all colour."""
    mask = eye_openings(shape, landmarks, max(1, int(round(_LASH_LINE * width))))
    return np.asarray(cv2.GaussianBlur(mask.astype(np.float32) * np.float32(1.0 / 255.0), (0, 0), max(0.5, 0.005 * width)), np.float32)


def _soften_sides(image: Image, frontal: Landmarks, dst: Points, canvas: Region, tris: npt.NDArray[np.int32]) -> Image:
    """The sides of the frontal texture, where the face's surface turns away from the viewer, replaced by smooth skin.

    Seen frontally, the side of a cheek or temple is a thin foreshortened band, and in the picture it
    often holds the ear, hair or background the outline runs over. When the sender turns their head
    that band faces the camera and is magnified several times: its few pixels become streaks and smears.
    Where the surface's normal (from the mesh's depth) turns away by more than about 55 degrees, the
    texture fades to the skin further in, spread outwards (normalised convolution), which a turned head
    shows as plain skin in the scene's light.
    """
    points = frontal[:, :3].astype(np.float64)
    skin_tris = tris[len(em.hole_triangles()) :]
    if int(skin_tris.max()) >= len(points):
        return image
    a, b, c = (points[skin_tris[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    facing = np.abs(normal[:, 2]) / np.maximum(np.linalg.norm(normal, axis=1), 1e-9)
    weight = np.clip((_SIDE_FACING[1] - facing) / (_SIDE_FACING[1] - _SIDE_FACING[0]), 0.0, 1.0)
    table = np.concatenate([[0.0], np.zeros(len(em.hole_triangles())), weight]).astype(np.float32)
    width = float(np.ptp(frontal[:468, 0]))
    face = np.zeros(image.shape[:2], np.uint8)
    fill_polygon(face, frontal[topo.face_oval_ring(), :2])
    features = feature_mask((image.shape[0], image.shape[1]), frontal, width)
    # Only the sides: eye sockets and the nose's flanks turn away too, but they are seen well.
    depth = cv2.distanceTransform(face, cv2.DIST_L2, 3)
    near_outline = np.clip(1.0 - depth / np.float32(_SIDE_BAND * width), 0.0, 1.0) * (features == 0)
    side = cv2.GaussianBlur(table[triangle_raster(dst, canvas, 1)] * near_outline, (0, 0), max(1.0, 0.02 * width))
    if float(side.max()) < 0.05:
        return image
    trusted = ((face > 0) & (features == 0)).astype(np.float32) * np.clip(1.0 - 2.0 * side, 0.0, 1.0)
    fill = normalised_blur(image.astype(np.float32), trusted, max(1.0, 0.06 * width))
    w = side[..., None]
    return np.asarray(np.clip(image * (1.0 - w) + fill * w + 0.5, 0, 255), np.uint8)


# |normal z| of the mesh's surface: below the first the texture is all smooth skin, above the second all picture.
_SIDE_FACING = (0.35, 0.6)
_SIDE_BAND = 0.15  # of the face width from the outline: where the sides are


def _clean_outline(image: Image, landmarks: Landmarks) -> Image:
    """Dark specks along the face outline replaced by the skin next to them.

    Triangles at the outline of a turned or tightly cropped portrait are slivers in the picture;
    frontalised they sample the hair or background just past the cheek and leave a broken dark
    line down the cheek. Only pixels much darker than the skin inside are replaced, so the jaw's
    own shading stays.
    """
    oval = landmarks[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return image
    h, w = image.shape[:2]
    face = np.zeros((h, w), np.uint8)
    fill_polygon(face, oval)
    inner = max(1, int(round(0.03 * width)))
    skin = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inner + 1, 2 * inner + 1)))
    skin[feature_mask((h, w), landmarks, width) > 0] = 0
    band = np.zeros((h, w), np.uint8)
    cv2.polylines(band, [np.round(oval * 16).astype(np.int32)], True, 255, max(1, int(round(0.04 * width))), cv2.LINE_8, shift=4)
    fill = normalised_blur(image.astype(np.float32), (skin > 0).astype(np.float32), max(1.0, 0.03 * width))
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    fill_luma = fill @ LUMA_BGR
    speck = ((band > 0) & (face > 0) & (luma < 0.8 * fill_luma)).astype(np.float32)
    soft = cv2.GaussianBlur(speck, (0, 0), 0.7)[..., None]
    return np.asarray(np.clip(image * (1.0 - soft) + fill * soft + 0.5, 0, 255), np.uint8)


def fill_cover(image: Image, landmarks: Landmarks) -> Image:
    """The avatar picture with what covers its face (occlusion.avatar_cover) painted over with its own skin.

    Left in the texture, a fringe or a strand lands as brown smudges on the sender's face; showing
    the sender's own skin there instead pulls a recogniser towards the sender. The fill is the skin
    beside the cover at the same height (skin_across), first from the skin clear of the features'
    surroundings, then again from the skin near that colour, so shadow, eye make-up and a blush's
    edge are not spread; a fringe over the whole forehead takes the nearest heights that show skin.
    (A quadratic fitted to the whole face, the earlier fill, ran dark brown or red at the sides.)
    The strand's soft edge just past the cover takes the fill too (_penumbra). Worked in a crop
    round the face: avatars are often large pictures with a small face.
    """
    h, w = image.shape[:2]
    oval = landmarks[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return image
    region = Region.around(oval, (w, h), 0.3 * width)
    fy, fx, _, _ = region.clip_to((w, h))
    crop = np.ascontiguousarray(image[fy, fx])
    local = landmarks.copy()
    local[:, :2] -= np.array([fx.start, fy.start], np.float32)
    raw = avatar_cover(crop, local)
    if not raw.any():
        return image
    grow = max(1, int(round(_COVER_GROW * width)))
    cover = cv2.dilate(raw.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    face = np.zeros(crop.shape[:2], np.uint8)
    fill_polygon(face, local[topo.face_oval_ring(), :2])
    features = feature_mask((crop.shape[0], crop.shape[1]), local, width)
    skin = ((face > 0) & (cover == 0) & (features == 0)).astype(np.float32)
    logs = np.log(crop.astype(np.float32) + np.float32(8.0))
    level = _level_of(local)
    # First the skin clear of the features' surroundings (lashes, eye shadow, a brow's stray hairs), which
    # a fill taken across the face at the eyes' height would otherwise spread as a dark band.
    berth = max(1, int(round(_BERTH * width)))
    clear = cv2.dilate(features, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * berth + 1, 2 * berth + 1)))
    field = np.exp(skin_across(logs, skin * (clear == 0), level, width)) - np.float32(8.0)
    # The skin next to hair is often in its shadow, or holds a few of its hairs: not a colour to spread.
    # Nor is skin far off the face's colour at its height (eye shadow, a blush's edge, a painted rim).
    luma = LUMA_BGR
    skin *= ((crop.astype(np.float32) @ luma) > _FILL_SHADOW * (field @ luma)).astype(np.float32)
    skin *= (np.abs(logs - np.log(field + np.float32(8.0))).max(axis=2) < _FILL_OFF).astype(np.float32)
    fill = np.exp(skin_across(logs, skin, level, width)) - np.float32(8.0)
    # Not in the features' berths: where the cover comes near an eye (a pale forehead taken for cover), the
    # eye's own make-up and shadow are mid-tones darker than the fill too.
    taken = np.maximum(cover.astype(np.float32), _penumbra(crop, fill, cover, face, features, local, width))
    taken = _off_skin_by_brows(taken, crop, fill, local, width)
    taken = _shadowed_brows(taken, crop, fill, local, width)
    soft = _whole_in_zones(cv2.GaussianBlur(taken, (0, 0), max(1.0, 0.01 * width)), local, width)
    # The cover's growth and soft edge never paint out an eye's opening or its lash line: avatar_cover leaves
    # the features out, but a fringe down to the lashes or hair at an eye's outer corner, grown, took them.
    soft = soft * (1.0 - _lash_lines(crop.shape, local, width))
    filled = crop * (1.0 - soft[..., None]) + fill * soft[..., None]
    filled = _redraw_brows(filled, crop, soft, local, width, fill)
    filled = _mirror_hidden_eye(filled, raw, local, width)
    out = image.copy()
    out[fy, fx] = np.clip(filled + 0.5, 0, 255).astype(np.uint8)
    return out


def _off_skin_by_brows(taken: npt.NDArray[np.float32], crop: Image, fill: npt.NDArray[np.float32], landmarks: Landmarks,
                       width: float) -> npt.NDArray[np.float32]:
    """`taken` grown into the brows' zones through what is neither brow nor skin: no darker than a brow
    (_BROW_DARKER of the fill's luma) and off the fill's hue (_BERTH_HUE), joined to the cover.

    avatar_cover leaves the features' zones out, so a helmet's or a lit fringe's colour reaching past a brow's
    tail into its zone stayed in the texture as a wedge of it beside the brow (art_9's yellow helmet); a brow is
    darker than the skin and the skin has the fill's hue, lit or shaded, so neither is taken.
    """
    shape = (taken.shape[0], taken.shape[1])
    zones = np.zeros(shape, np.bool_)
    for hull in brow_hulls(shape, landmarks, _ZONE_GROW):
        zones |= hull > 0
    seed = taken > 0.5
    if not (zones & (cv2.dilate(seed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)).any():
        return taken
    pixels = crop.astype(np.float32)
    lighter = pixels @ LUMA_BGR >= np.float32(_BROW_DARKER) * (fill @ LUMA_BGR)
    off = _hue_off(crop, fill) > _BERTH_HUE
    passable = zones & lighter & off & (eye_openings(shape, landmarks, max(1, int(round(_LASH_LINE * width)))) == 0)
    if not passable.any():
        return taken
    count, labels = cv2.connectedComponents((passable | seed).astype(np.uint8), connectivity=8)
    joined = np.zeros(count, np.bool_)
    joined[np.unique(labels[seed])] = True
    joined[0] = False
    grown = joined[labels] & passable
    if not grown.any():
        return taken
    return np.asarray(np.maximum(taken, grown.astype(np.float32)), np.float32)


def _shadowed_brows(taken: npt.NDArray[np.float32], crop: Image, fill: npt.NDArray[np.float32], landmarks: Landmarks,
                    width: float) -> npt.NDArray[np.float32]:
    """`taken` whole over the zone of a brow beside the cover that lies in its shadow: one whose visible part is
    far darker against the fill than the other brow's (_BROW_SHADOWED times or more).

    A helmet's or a hat's brim casts a dark band over the brow below it; the skin round the brow takes the fill,
    lit like the rest of the face at that height, but the zone keeps its picture whole, and the brow with its
    shadow stayed as a black bar on a lit forehead (art_9). Painted, it is drawn again in the other brow's
    colour (_redraw_brows). The two brows of one face differ far less: on 37 portraits at most 2.0 times, 3.2 where
    black strands cross one (art_3), against 14 under art_9's helmet.
    """
    shape = (taken.shape[0], taken.shape[1])
    cover = (taken > 0.5).astype(np.uint8)
    hulls = brow_hulls(shape, landmarks)
    zones = brow_hulls(shape, landmarks, _ZONE_GROW)
    contrasts = []
    for hull in hulls:
        inside = hull > 0
        colour = _brow_colour(crop, fill, inside, cover) if inside.any() else None
        skin = float(fill[inside].mean(axis=0) @ LUMA_BGR) if inside.any() else 0.0
        contrasts.append(None if colour is None or skin <= 0.0 else float(colour @ LUMA_BGR) / skin)
    out = taken
    reach = max(1, int(round(_ZONE_GROW * width)))
    near = cv2.dilate(cover, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))) > 0
    for zone, mine, other in zip(zones, contrasts, contrasts[::-1], strict=True):
        if mine is None or other is None or mine * _BROW_SHADOWED > other:
            continue
        inside = zone > 0
        if not (near & inside).any():
            continue
        out = out.copy() if out is taken else out
        out[inside] = 1.0
    return out


def _penumbra(crop: Image, fill: npt.NDArray[np.float32], cover: npt.NDArray[np.uint8], face: npt.NDArray[np.uint8],
              features: npt.NDArray[np.uint8], landmarks: Landmarks, width: float) -> npt.NDArray[np.float32]:
    """How much of the fill to lay on the skin just beyond the cover: where it is darker than the fill.

    A strand's soft edge and the shadow it casts reach past any fixed growth of the cover; left, they
    draw a thin dark line along the fill's edge, which the render then stretches. Within a band
    beyond the cover, pixels darker than the fill take it in proportion to how much darker, fading
    out across the band, so the skin's own lighter shading and the features are untouched.
    The features' berths (round the eyes' openings and the brows) take it only beside hair
    (_beside_hair) and only where they have the skin's hue, darker: the shade of hair falling past
    an eye's corner or over a brow's tail, not the eye's make-up.
    """
    band = max(1.0, _PENUMBRA * width)
    beyond = cv2.distanceTransform((cover == 0).astype(np.uint8), cv2.DIST_L2, 3)
    luma = crop.astype(np.float32) @ LUMA_BGR
    want = fill @ LUMA_BGR
    ramp = np.maximum(np.float32(_PENUMBRA_RAMP) * want, 1.0)
    dark = np.clip((np.float32(_PENUMBRA_DARK) * want - luma) / ramp, 0.0, 1.0)
    # A soft edge is mid-tones; what stays as dark as hair past the cover is something of the face's own
    # (a beard, a moustache beside a strand), left as it is.
    floor = np.clip((luma - np.float32(_PENUMBRA_FLOOR) * want) / ramp, 0.0, 1.0)
    near = np.clip(2.0 * (1.0 - beyond / np.float32(band)), 0.0, 1.0)  # whole over the first half of the band
    taken = dark * near
    where = ((face > 0) & (features == 0) & (cover == 0)).astype(np.float32) * floor
    # The eyes' openings with their lash line stay whatever is beside them.
    openings = eye_openings(features.shape, landmarks, int(round(_LASH_LINE * width)))
    berth = (face > 0) & (features > 0) & (cover == 0) & (openings == 0)
    if berth.any():
        off = _hue_off(crop, fill)
        # Judged over a patch, not per pixel: per pixel, a brow's tail would be taken in flecks. (The
        # difference is blurred, not the verdict: a small strong make-up stays off the skin's hue.)
        off = cv2.GaussianBlur(off, (0, 0), max(0.7, _BERTH_HUE_PATCH * width))
        hue = np.clip((np.float32(2.0 * _BERTH_HUE) - off) / np.float32(_BERTH_HUE), 0.0, 1.0)
        # No floor here: a beard does not grow beside an eye, and hair falling past its corner is as dark as hair.
        where += berth * hue * _beside_hair(crop, fill, cover, width)
    return np.asarray(taken * where, np.float32)


def _hue_off(crop: Image, fill: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """How far each pixel's hue is off the fill's, as log chromaticity (blue and red against green): shade keeps
    the skin's hue, make-up, hair and a helmet do not."""
    logs = np.log(crop.astype(np.float32) + np.float32(8.0))
    fill_logs = np.log(fill + np.float32(8.0))
    return np.asarray(np.abs((logs[..., [0, 2]] - logs[..., 1:2]) - (fill_logs[..., [0, 2]] - fill_logs[..., 1:2])).max(axis=2), np.float32)


def _beside_hair(crop: Image, fill: npt.NDArray[np.float32], cover: npt.NDArray[np.uint8], width: float) -> npt.NDArray[np.float32]:
    """0..1: how far the cover near each pixel took something much darker than the skin (hair), not a pale
    or shaded forehead that the cover model took for cover."""
    taken = (cover > 0).astype(np.float32)
    step = np.log((fill @ LUMA_BGR + np.float32(8.0)) / (crop.astype(np.float32) @ LUMA_BGR + np.float32(8.0)))
    sigma = max(1.0, _BERTH_HAIR_REACH * width)
    den = cv2.GaussianBlur(taken, (0, 0), sigma)
    mean = cv2.GaussianBlur(step * taken, (0, 0), sigma) / np.maximum(den, np.float32(1e-6))
    hair = np.clip((mean - np.float32(_BERTH_HAIR_STEP)) / np.float32(_BERTH_HAIR_STEP), 0.0, 1.0)
    return np.asarray(hair * (den > _BERTH_HAIR_NEAR), np.float32)


def _whole_in_zones(soft: npt.NDArray[np.float32], landmarks: Landmarks, width: float) -> npt.NDArray[np.float32]:
    """`soft` made all or nothing inside the brows' and eyes' zones (the features' berths round them), with a short
    feathered edge.

    Hair at a temple reaches a brow's tail and an eye's outer corner; grown and blurred, the cover took those
    in part: a brow's tail left as dark flecks half painted over, a fringe's strand crossing a brow left as a
    pale or dark blob, the shadow past an eye's corner as a grey smudge. Warped with the brow and the lids, such
    half-tones render as smoky sockets and a wedge over the brow. Inside the zones a pixel is either the
    picture's or the fill's; a brow so painted is drawn again (_redraw_brows), an eye keeps its lash line.
    """
    shape = (soft.shape[0], soft.shape[1])
    zones = eye_openings(shape, landmarks, max(1, int(round(_ZONE_GROW * width)))) > 0
    for hull in brow_hulls(shape, landmarks, _ZONE_GROW):
        zones |= hull > 0
    if not (zones & (soft > 0.0)).any():
        return soft
    whole = cv2.GaussianBlur((soft > _ZONE_TAKEN).astype(np.float32), (0, 0), max(0.5, _ZONE_FEATHER * width))
    edge = cv2.GaussianBlur(zones.astype(np.float32), (0, 0), max(0.5, _ZONE_FEATHER * width))
    return np.asarray(soft * (1.0 - edge) + whole * edge, np.float32)


def _lash_lines(shape: tuple[int, ...], landmarks: Landmarks, width: float) -> npt.NDArray[np.float32]:
    """0..1 over the eyes' openings with their lash line, feathered outwards (whole on the lash line)."""
    grow = max(1, int(round(_LASH_LINE * width)))
    sure = eye_openings(shape, landmarks, grow).astype(np.float32) / np.float32(255.0)
    soft = cv2.GaussianBlur(sure, (0, 0), max(0.7, 0.5 * grow))
    return np.asarray(np.maximum(sure, np.clip(2.0 * soft, 0.0, 1.0)), np.float32)


def hidden_eye(cover: npt.NDArray[np.float32], landmarks: Landmarks, width: float) -> int | None:
    """Which eye (0: the mesh's right, 1: its left) lies under the cover, with the other one clear, or None.

    A fringe falling over an eye covers most of the skin round it (the lids, the corner, the cheek below);
    hair down to the lashes or at an eye's outer corner covers a side of it only. Measured on 37 portraits
    (share of a ring of _EYE_RING face widths round the opening): a fringe over an eye 0.44, every
    other eye at most 0.23.
    """
    shares = []
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        opening = np.zeros(cover.shape[:2], np.uint8)
        fill_polygon(opening, landmarks[ring, :2])
        g = max(1, int(round(_EYE_RING * width)))
        around = (cv2.dilate(opening, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1))) > 0) & (opening == 0)
        shares.append(float((cover[around] > 0).mean()) if around.any() else 0.0)
    for eye in (0, 1):
        if shares[eye] > _EYE_HIDDEN and shares[1 - eye] < _EYE_CLEAR:
            return eye
    return None


def _mirror_hidden_eye(filled: npt.NDArray[np.float32], cover: npt.NDArray[np.float32], landmarks: Landmarks,
                       width: float) -> npt.NDArray[np.float32]:
    """An eye under a fringe (hidden_eye) drawn from the mirror image of the other one, lids and lashes with it.

    Painted round with skin, the eye seen through the hair stays a darker, lashless hollow that the render
    then moves as a dark blob; the mesh's symmetry carries the clear eye over onto its place instead.
    """
    eye = hidden_eye(cover, landmarks, width)
    if eye is None:
        return filled
    h, w = filled.shape[:2]
    flipped = np.ascontiguousarray(np.clip(filled[:, ::-1] + 0.5, 0, 255).astype(np.uint8))
    mirror_lm = landmarks[topo.symmetry()].copy()
    mirror_lm[:, 0] = w - 1 - mirror_lm[:, 0]
    tris = em.mesh_triangles()
    dst = em.extended_vertices(landmarks, inside=True)[tris]
    src = em.extended_vertices(mirror_lm, inside=True)[tris]
    map_x, map_y, _ = warp_maps(dst, src, Region(0, 0, w, h), 1, np.arange(len(tris)))
    mirrored = remap(flipped, map_x, map_y).astype(np.float32)
    ring = (topo.right_eye_ring(), topo.left_eye_ring())[eye]
    zone = np.zeros((h, w), np.uint8)
    fill_polygon(zone, landmarks[ring, :2])
    g = max(1, int(round(_EYE_ZONE * width)))
    zone = cv2.dilate(zone, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
    alpha = cv2.GaussianBlur(zone.astype(np.float32) / np.float32(255.0), (0, 0), max(1.0, _EYE_FEATHER * width))
    alpha = np.clip(2.0 * alpha, 0.0, 1.0)[..., None]
    return np.asarray(filled * (1.0 - alpha) + mirrored * alpha, np.float32)


_EYE_RING = 0.07  # of the face width round an eye's opening: the skin whose cover says the eye is under hair
_EYE_HIDDEN = 0.35  # share of that ring under cover for the eye to be hidden
_EYE_CLEAR = 0.1  # share of the other eye's ring under cover, at most, for it to be mirrored
_EYE_ZONE = 0.035  # of the face width round the opening: the lids and lashes taken from the mirror
_EYE_FEATHER = 0.012  # of the face width: the mirrored eye's soft edge
_LASH_LINE = 0.012  # of the face width round an eye's opening: its lashes and liner, never taken
_BERTH_HUE = 0.12  # log chromaticity off the fill's: in a berth, within this a pixel is shaded skin, past twice it not
_BERTH_HUE_PATCH = 0.01  # of the face width: the blur over which a berth pixel's hue is judged
_BERTH_HAIR_REACH = 0.04  # of the face width: the blur over the cover that says what it took beside a berth
_BERTH_HAIR_STEP = 0.25  # log luma: the cover beside a berth took hair where the fill is this much lighter (wholly at twice)
_BERTH_HAIR_NEAR = 0.02  # share of that blur on the cover for a berth pixel to count as beside it


_PENUMBRA = 0.08  # of the face width beyond the cover: how far a strand's soft edge and shadow reach
_PENUMBRA_DARK = 0.98  # of the fill's luma: skin darker than this beside the cover is taken for its shadow, in part
_PENUMBRA_FLOOR = 0.4  # of the fill's luma: darker than this (and the ramp) beside the cover is not a shadow
_PENUMBRA_RAMP = 0.1  # of the fill's luma: darker than _PENUMBRA_DARK by this, wholly


def _level_of(landmarks: Landmarks) -> npt.NDArray[np.float64]:
    """2x3 affine that turns the face upright (its eye line level) about the middle of the eyes."""
    corners = landmarks[list(topo.EYE_CORNERS), :2].astype(np.float64)
    right, left = corners[:2].mean(axis=0), corners[2:].mean(axis=0)
    d = left - right
    # Which eye is on the image's left does not matter: a level line is level either way round.
    angle = np.degrees(np.arctan2(d[1], d[0])) if d[0] >= 0 else np.degrees(np.arctan2(-d[1], -d[0]))
    centre = 0.5 * (right + left)
    return np.asarray(cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0), np.float64)


def skin_across(values: npt.NDArray[np.float32], weight: npt.NDArray[np.float32], level: npt.NDArray[np.float64],
                width: float) -> npt.NDArray[np.float32]:
    """`values` (h, w, k) filled in everywhere from where `weight` is, taken across the face at the same height.

    A face's colour changes far more from brow to chin (forehead, cheeks, lips, jaw shadow) than
    across at one height, where it is the skin beside a strand that says what is under it. A fit
    over the whole face (a quadratic) extrapolates: its curvature runs dark or red at the sides,
    where hair is. Here each level is a blur long across the face and short down it (normalised
    convolution) in the face's upright frame; where a level has too little skin (a forehead wholly
    under a fringe), the next, taller one fills in, so the colour comes from the nearest heights
    that show skin.
    """
    h, w = weight.shape[:2]
    inverse = cv2.invertAffineTransform(level)
    upright = cv2.warpAffine(values * weight[..., None], level, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    upright_w = cv2.warpAffine(weight, level, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if upright.ndim == 2:
        upright = upright[..., None]
    total = float(upright_w.sum())
    if total <= 0.0:
        return np.zeros_like(values)
    # The coarsest level: the mean of all the skin, so every pixel has a value.
    out = np.broadcast_to(upright.reshape(-1, upright.shape[2]).sum(axis=0) / total, upright.shape).astype(np.float32)
    for across, down in _ACROSS_LEVELS:
        sx, sy = max(1.0, across * width), max(1.0, down * width)
        num = cv2.GaussianBlur(upright, (0, 0), sx, sigmaY=sy)
        den = cv2.GaussianBlur(upright_w, (0, 0), sx, sigmaY=sy)
        if num.ndim == 2:
            num = num[..., None]
        t = np.clip(den / np.float32(_ACROSS_ENOUGH), 0.0, 1.0)[..., None]
        out = out * (1.0 - t) + (num / np.maximum(den, np.float32(1e-6))[..., None]) * t
    back = cv2.warpAffine(np.ascontiguousarray(out), inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(back.reshape(values.shape), np.float32)


# (across, down) blur widths of the fill's levels, coarse to fine, of the face width.
_ACROSS_LEVELS = ((1.0, 0.4), (0.5, 0.15), (0.25, 0.07), (0.1, 0.03))
_ACROSS_ENOUGH = 0.15  # share of a level's blur on skin for it to set the colour


def _redraw_brows(filled: npt.NDArray[np.float32], crop: Image, painted: npt.NDArray[np.float32], landmarks: Landmarks,
                  width: float, fill: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The parts of the brows that the fill painted over (`painted`, 0..1: a fringe over them, hair at a temple
    over a tail) drawn again along the mesh's brow.

    A face with its brows painted over with skin reads as a mask, and a brow cut short where hair crossed it
    as a stub; the brow's shape comes from the mesh (the middle of its upper and lower edges, as thick as the
    brow, tapering to its tail), laid only where the brow was painted, and its colour from the part of the
    brow that shows, else from the other brow when that one shows (_brow_colour), else from the hair that
    covered it, no lighter than a shade of the skin under it.
    """
    shape = (filled.shape[0], filled.shape[1])
    strokes = np.zeros(shape, np.float32)
    colours = np.zeros(filled.shape, np.float32)
    hulls = brow_hulls(shape, landmarks)
    cover = (painted > 0.5).astype(np.uint8)
    taken = [bool((hull > 0).any()) and float(painted[hull > 0].max()) > 0.5 for hull in hulls]
    dark = _painted_dark(crop, fill, width)
    for brow, hull, gone, other in zip(topo.brows(), hulls, taken, hulls[::-1], strict=True):
        inside = hull > 0
        if not gone:
            continue
        # A brow mostly under cover (a fringe) is drawn whole; of one partly painted, only where the fill took
        # something dark (hair over its tail): a tail fading into the skin, painted, stays as faint as it was.
        under = float((cover[inside] > 0).mean()) >= _BROW_TAKEN
        upper = landmarks[brow[:5], :2].astype(np.float32)
        lower = landmarks[brow[5:][::-1], :2].astype(np.float32)
        stroke = np.zeros(shape, np.float32)
        # Thick at the head (the inner end), a third as thick at the tail: a brow, not a bar.
        taper = np.linspace(_BROW_TAIL, 1.0, len(upper), dtype=np.float32)
        thickness = np.linalg.norm(upper - lower, axis=1) * _BROW_THICKNESS * taper
        middle = 0.5 * (upper + lower)
        for a, b, t in zip(middle[:-1], middle[1:], thickness[1:], strict=True):
            cv2.line(stroke, tuple(int(v) for v in np.round(a * 16)), tuple(int(v) for v in np.round(b * 16)), 1.0,
                     max(1, int(round(t))), cv2.LINE_AA, shift=4)
        stroke = cv2.GaussianBlur(stroke, (0, 0), max(0.7, 0.006 * width)) * painted * (1.0 if under else dark)
        skin = filled[inside].mean(axis=0)
        seen = _brow_colour(crop, fill, inside, cover)
        if seen is None:
            seen = _brow_colour(crop, fill, other > 0, cover)
        if seen is None:
            hair = np.median(crop[inside & (cover > 0)].astype(np.float32), axis=0)
            # Half the hair's colour, half a shade of the skin: a black fringe would draw a black bar.
            colour = 0.5 * (np.minimum(hair, skin * _BROW_SHADE) + skin * _BROW_SHADE)
        else:
            colour = seen
        strokes = np.maximum(strokes, stroke)
        colours[stroke > 0] = colour
    if not strokes.any():
        return filled
    alpha = (_BROW_OPACITY * strokes)[..., None]
    return np.asarray(filled * (1.0 - alpha) + colours * alpha, np.float32)


def _painted_dark(crop: Image, fill: npt.NDArray[np.float32], width: float) -> npt.NDArray[np.float32]:
    """0..1: how much darker than the fill the picture was round each pixel (whole at _BROW_DARKER of its luma
    and below, over a patch a brow's thickness across): where painting a brow took its hairs or hair over it."""
    luma = crop.astype(np.float32) @ LUMA_BGR
    want = fill @ LUMA_BGR
    dark = np.clip((np.float32(_BROW_DARKER) * want - luma) / np.maximum(np.float32(_BROW_RAMP) * want, 1.0), 0.0, 1.0)
    return np.asarray(np.clip(2.0 * cv2.GaussianBlur(dark, (0, 0), max(0.7, _BROW_PATCH * width)), 0.0, 1.0), np.float32)


def _brow_colour(crop: Image, fill: npt.NDArray[np.float32], hull: npt.NDArray[np.bool_],
                 cover: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
    """The colour of a brow that shows (its hull's pixels clearly darker than the skin there), or None if
    too little of it does.

    A brow redrawn under a fringe from the hair's colour and a shade of the skin came out grey beside the
    other, painted or auburn brow; the face's other brow says what colour its brows are.
    """
    clear = hull & (cover == 0)
    if int(clear.sum()) < _BROW_SEEN_PX:
        return None
    luma = crop.astype(np.float32) @ LUMA_BGR
    skin = fill @ LUMA_BGR
    dark = clear & (luma < np.float32(_BROW_DARKER) * skin)
    if int(dark.sum()) < _BROW_SEEN_PX:
        return None
    # The darker half: the brow's dense middle, not its sparse edges with the skin between the hairs (a stroke
    # in the median of all came out a pale tan beside the brow it continues).
    core = dark & (luma <= np.float32(np.median(luma[dark])))
    return np.asarray(np.median(crop[core].astype(np.float32), axis=0), np.float32)


_BROW_SHADOWED = 5.0  # a visible brow this many times darker against the fill than the other is in a shadow
_BROW_TAKEN = 0.4  # share of a brow's hull painted for it to be drawn whole
_BROW_DARKER = 0.85  # of the skin's luma (the fill's) at a pixel of a brow's hull: darker is the brow itself
_BROW_RAMP = 0.15  # of the skin's luma: darker than _BROW_DARKER by this, wholly the brow (or hair over it)
_BROW_PATCH = 0.008  # of the face width: the blur over which what the fill took from a brow is judged
_BROW_SEEN_PX = 12  # pixels of a brow, at least, to take its colour from
# Of the distance between the brow's upper and lower landmarks (0.7 before): drawn as thick, a brow's end under hair
# raised dlib's distance to the avatar (happy on w0 0.582 -> 0.596; 0.619 at 1.0).
_BROW_THICKNESS = 0.5
_BROW_TAIL = 0.45  # the tail's thickness, of the head's
_BROW_SHADE = 0.6  # a redrawn brow is at most this share of the skin's brightness under it
_BROW_OPACITY = 0.75


_BERTH = 0.05  # of the face width round the features: left out of the first, reference fill
_ZONE_GROW = 0.025  # of the face width round a brow's hull and an eye's opening: its zone (feature_mask's berth)
_ZONE_TAKEN = 0.5  # of the fill's soft cover: inside a zone, more is painted whole, less not at all
_ZONE_FEATHER = 0.004  # of the face width: the soft edge of what is painted inside a zone
_COVER_GROW = 0.03  # of the face width: a strand's soft edge and the shadow it casts go with it
_FILL_SHADOW = 0.8  # of the reference fill's luma: darker skin is not spread over the cover
_FILL_OFF = 0.3  # largest difference in any channel's log colour from the reference fill for skin to be spread


def _mirror_fill(
    image: Image,
    lm: Landmarks,
    out: Image,
    dst: Points,
    src: Points,
    canvas: Region,
    fallback: npt.NDArray[np.float64],
    tris: npt.NDArray[np.int32],
) -> Image:
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    mirror_lm = lm[topo.symmetry()].copy()
    mirror_lm[:, 0] = width - 1 - mirror_lm[:, 0]
    src_m = em.extended_vertices(mirror_lm, inside=True)[tris]
    area_dst = _signed_area(dst)
    vis = _signed_area(src) / np.where(np.abs(area_dst) > 1e-6, area_dst, 1e-6)
    vis_m = _signed_area(src_m) / np.where(np.abs(area_dst) > 1e-6, area_dst, 1e-6)
    # Take the mirror where it shows the triangle clearly larger; keep the original's eyes and mouth.
    use_mirror = np.clip((vis_m / np.maximum(vis, 0.05) - 1.3) / 0.7, 0.0, 1.0)
    use_mirror[: len(em.hole_triangles())] = 0.0
    raster = triangle_raster(dst, canvas, 1)
    weight_table = np.concatenate([[0.0], use_mirror]).astype(np.float32)
    weight = weight_table[raster]
    weight = cv2.GaussianBlur(weight, (0, 0), max(1.0, 0.03 * canvas.width))
    flip = np.array([[-1.0, 0, width - 1], [0, 1.0, 0]])
    fallback_m = flip[:, :2] @ fallback
    fallback_m = np.hstack([fallback_m[:, :2], (flip[:, :2] @ fallback[:, 2] + flip[:, 2])[:, None]])
    map_x, map_y, _ = warp_maps(dst, src_m, canvas, 1, np.arange(len(tris)), fallback_m)
    mirrored = remap(flipped, map_x, map_y)
    w = weight[..., None]
    return (out.astype(np.float32) * (1 - w) + mirrored.astype(np.float32) * w + 0.5).astype(np.uint8)
