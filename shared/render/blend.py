"""Putting a rendered face into the scene: the scene's light on the face, and seams that do not show.

Shading: the avatar keeps its albedo (its own fine detail and colours) but takes the sender's
low-frequency shading: the face is multiplied by the ratio of the two faces' blurred luminance.
Its mean brightness and tint go all the way to the scene's skin, so the face belongs to the neck
and ears beside it: a fraction (once half the brightness, two thirds of the tint) left a pale,
greyed mask on a tan sender, and measured through dlib the full match cost nothing (w0, 14
identities: distance to the avatar 0.489 -> 0.490). The sender's form is not carried: its
cheekbones and nose shade are the sender's identity (at half strength, distance +0.011); the
avatar keeps more of its own instead (delight.DelightOptions.band_strength). Blending: a feathered face mask that stops short of the outline
(so the sender's jaw, hairline and ears stay), weakened where the matte is uncertain and zero
where an occluder (glasses, hair, a hand) covers the face in the keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.warp import Points, Region
from facewire.shared.types import Alpha, Image, Landmarks

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BlendOptions:
    shading_strength: float = 1.0
    # Of the avatar's mean tint moved to the scene's skin (1: all of it, the neck's colour; see the module docstring).
    chroma_strength: float = 1.0
    # The most of the avatar's own tint (log colour ratio per channel, off the scene's skin) that is kept:
    # a fraction keeps too much of a far-off tint (a varnished painting's ochre), which reads as a mask
    # against the sender's neck and ears; inf keeps the fraction alone.
    max_kept_tint: float = 0.08
    # The most the avatar's tint is moved over the face (a gain per channel). A yellow-varnished painting on a
    # cool-lit sender needs about 2.3 in blue; at 1.6 it stayed a yellow mask on a pink neck. A large cast moves
    # dark features (eyes, brows) with the skin: they keep their colour relative to the skin round them.
    max_cast: float = 2.4
    feather: float = 0.07  # fraction of the face width
    inset: float = 0.03  # the mask edge sits this far inside the outline
    max_gain: float = 1.7
    # The part of the mean brightness difference that is transferred, and its bound. The mean is mostly the two
    # albedos (skin tone, paint), not the light, but the neck and ears next to the face show the sender's: all of it,
    # bounded so a far-off picture is not pushed past what the roll-off can take (people_0 on w0 needs about x0.7).
    exposure_strength: float = 1.0
    max_exposure: float = 1.5
    # Darkening clips nothing: a pale picture goes further down than a dark one up. At 1.5 both ways, pale avatars
    # on a dark-skinned, dimly lit sender stayed a glowing peach mask on her neck.
    max_darkening: float = 2.2
    forehead_fade: float = 0.75  # of the brows-to-mesh-top height, faded out towards the hairline
    # How far in from the mask's edge (fraction of the face width) the face's colour is carried to
    # the scene's where they meet; 0 turns the seam correction off.
    seam_reach: float = 0.2
    # Faces at least this wide (pixels) get their shading statistics at an eighth of the size, not a
    # quarter (shading_scale); inf keeps the quarter for every face.
    eighth_scale_width: float = 200.0


def shading_scale(width: float, options: BlendOptions) -> int:
    """The reduction at which match_shading gathers its statistics for a face `width` pixels wide.

    Its light and colour fields are smooth and its blurs scale with the face, so what matters is the
    face's size in the small copy: a quarter keeps a mid-size face ~50 samples across; a large face
    (the slowest frames) is as well served at an eighth, at half the cost (d6 x s42: under half a grey
    level on the face on average, at most 6).
    The face's region should be a multiple of it on each side (see mesh._face_region).
    """
    return 8 if width >= options.eighth_scale_width else 4


def face_width(landmarks: Landmarks) -> float:
    oval = landmarks[topo.face_oval_ring(), :2]
    return float(oval[:, 0].max() - oval[:, 0].min())


def face_mask(landmarks: Landmarks, region: Region, options: BlendOptions) -> FloatImage:
    """Feathered mask of the face inside its outline, region-sized, 1 inside, 0 beyond the outline."""
    width = face_width(landmarks)
    oval = landmarks[topo.face_oval_ring(), :2] - np.array([region.x0, region.y0], np.float32)
    inset = options.inset * width
    sigma = max(1.0, options.feather * width / 2.0)
    # Shrink the outline by the inset plus the feather's reach so the blurred edge ends at the outline.
    centre = oval.mean(axis=0)
    offsets = oval - centre
    radius = np.linalg.norm(offsets, axis=1, keepdims=True)
    shrunk = centre + offsets * np.clip(1.0 - (inset + 1.5 * sigma) / np.maximum(radius, 1e-3), 0.2, 1.0)
    # Drawn and blurred at quarter size: the mask is smooth, and this runs every frame. The small
    # canvas has a margin so the feather fades out past the region's edge: a tight region (the
    # chin 2 px from its border) would otherwise cut the fade off and leave a hard edge.
    f = 4 if min(region.width, region.height) >= 64 else 1
    pad = 2 + int(np.ceil(2.0 * sigma / f))
    cols, rows = -(-region.width // f) + 2 * pad, -(-region.height // f) + 2 * pad
    mask = np.zeros((rows, cols), np.float32)
    # Pixel centres: full-size x sits at (x + 0.5) / f - 0.5 on the small canvas, as cv2.resize samples.
    points = (shrunk + 0.5) / f - 0.5 + pad
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, sigma / f), borderType=cv2.BORDER_CONSTANT)
    big = cv2.resize(mask, (cols * f, rows * f), interpolation=cv2.INTER_LINEAR)
    soft = np.ascontiguousarray(big[pad * f : pad * f + region.height, pad * f : pad * f + region.width], np.float32)
    if options.forehead_fade <= 0.0:
        return soft
    return soft * _forehead_fade(landmarks, region, options.forehead_fade)


def _forehead_fade(landmarks: Landmarks, region: Region, fraction: float) -> FloatImage:
    """1 up to above the brows, fading to 0 at the top of the mesh: the hairline is the sender's.

    The top of the mesh is where hair, fringes and hats begin on both faces; leaving it to the
    keyframe hides the seam there and keeps an avatar's fringe off the sender's forehead.
    """
    p = landmarks[:, :2].astype(np.float64)
    up = p[topo.FOREHEAD] - p[topo.CHIN]
    up /= max(float(np.linalg.norm(up)), 1e-6)
    top = float(p[topo.FOREHEAD] @ up)
    brows = float(p[list(topo.BROW_TOPS)].mean(axis=0) @ up)
    span = max(top - brows, 1.0)
    xs = np.arange(region.width, dtype=np.float32) + region.x0
    ys = np.arange(region.height, dtype=np.float32) + region.y0
    height = xs[None, :] * np.float32(up[0]) + ys[:, None] * np.float32(up[1])
    if fraction <= 0.0:
        return np.ones((region.height, region.width), np.float32)
    t = np.clip((top - height) / np.float32(fraction * span), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


# Half-width of the side-of-midline step, as a fraction of the face width. A narrow step fits a
# painted terminator exactly, but whatever of it the two faces do not share becomes a hard line
# down the nose of the result; a broad one reads as light falling off across the face.
_TERMINATOR_WIDTH = 0.2


def _light_basis(size: tuple[int, int], midline: tuple[Points, Points] | None, width: float) -> FloatImage:
    """[1, u, v, u^2, uv, v^2, step] per pixel, u and v in [-1, 1] across the region; shape (h, w, 7).

    `step` is a soft sign of the side of the face's midline (nose bridge to chin): paintings and
    studio portraits are often lit from one side with a terminator down the nose, which a smooth
    quadratic cannot follow. Points are in the (small) region's pixels.
    """
    w, h = size
    quadratic = quadratic_basis(w, h)
    if midline is None:
        return quadratic
    basis = np.empty((h, w, quadratic.shape[-1] + 1), np.float32)
    basis[..., :-1] = quadratic
    a, b = midline
    direction = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    side = (xs - a[0]) * direction[1] - (ys - a[1]) * direction[0]
    basis[..., -1] = np.tanh(side / max(_TERMINATOR_WIDTH * width, 0.5))
    return basis


@lru_cache(maxsize=16)
def quadratic_basis(w: int, h: int) -> FloatImage:
    """[1, u, v, u^2, uv, v^2] over a w x h grid, cached: the region size repeats from frame to frame."""
    u, v = np.meshgrid(np.linspace(-1, 1, w, dtype=np.float32), np.linspace(-1, 1, h, dtype=np.float32))
    basis = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
    basis.flags.writeable = False
    return basis


def fit_field(values: FloatImage, weight: FloatImage, basis: FloatImage) -> FloatImage:
    """Weighted least-squares surfaces through `values` (h, w) or (h, w, k), evaluated on the whole region."""
    b = basis.reshape(-1, basis.shape[-1])
    w = np.maximum(weight.reshape(-1), 0.0)
    flat = values.reshape(b.shape[0], -1)
    if float(w.sum()) < 1.0:
        return np.broadcast_to(flat.mean(axis=0), flat.shape).reshape(values.shape).astype(np.float32)
    bw = b * w[:, None]
    # Normal equations (7x7, one solve for all channels), lightly regularised: a tenth of the cost
    # of an SVD least squares.
    gram = (bw.T @ b).astype(np.float64) + 1e-3 * float(w.sum()) * np.eye(b.shape[1])
    coef = np.linalg.solve(gram, (bw.T @ flat).astype(np.float64))
    return (b @ coef.astype(np.float32)).reshape(values.shape).astype(np.float32)


def match_shading(
    face: Image,
    scene: Image,
    weight: FloatImage,
    width: float,
    options: BlendOptions,
    midline: tuple[Points, Points] | None = None,
) -> Image:
    """The face with the scene's low-frequency light on the avatar's albedo, region-sized.

    The face's RGB is multiplied by a smooth factor per channel: the ratio of the two fitted light
    fields (its variation in full, its mean by `exposure_strength`, bounded; _split_gain),
    rolled off where the face's brightest channel would pass white, times a smooth colour balance
    that takes out the avatar's own coloured light and moves its tint `chroma_strength` of the way
    to the scene's (_colour_balance). A factor that is smooth keeps every pixel's chromaticity relative
    to its neighbours: scaling luminance alone, or rolling off per pixel, bleaches the brightened
    skin while its darker creases keep their colour, and fine wrinkles turn into red or orange
    cracks (see also frontal.soften_fine_chroma). Statistics come from small copies (shading_scale).
    """
    h, w = face.shape[:2]
    f = shading_scale(width, options)
    if h % f or w % f or min(h, w) < 8 * f:
        # Off the eighth grid (the exact block averaging is the fast path) or small: a quarter, or full size.
        f = 4 if min(h, w) >= 32 else 1
    small = (max(1, w // f), max(1, h // f))
    face_bgr = cv2.resize(face, small, interpolation=cv2.INTER_AREA)
    scene_bgr = cv2.resize(scene, small, interpolation=cv2.INTER_AREA)
    wt = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    # The light as smooth quadratic fields of log-luminance and log-colour over the face: they carry
    # direction, falloff and the light's colour but not features (eye sockets, moustaches), which a
    # blur ratio would also transfer. All fields share one solve.
    small_midline = None if midline is None else (midline[0] / f, midline[1] / f)
    basis = _light_basis(small, small_midline, width / f)
    # Least squares is linear in the values: fitting the differences of the logs gives the
    # differences of the fitted fields, in four fits instead of eight.
    face_y = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY)
    scene_y = cv2.cvtColor(scene_bgr, cv2.COLOR_BGR2GRAY)
    logs = np.log(np.dstack([face_y, face_bgr, scene_y, scene_bgr]).astype(np.float32) + np.float32(8.0))
    # Colour: each picture's colour relative to its own luminance; their difference is the
    # avatar's tint and coloured light (a warm glow on one cheek) against the scene's.
    tint = (logs[..., 5:8] - logs[..., 4:5]) - (logs[..., 1:4] - logs[..., 0:1])
    # The avatar's outline is not the sender's: where the avatar is wider or the head turns, its
    # mask covers background and hair, whose darkness would read as light falling off the face.
    skin = wt * _skin_likeness(logs[..., 4:8], wt)
    fields = fit_field(np.dstack([logs[..., 4] - logs[..., 0], tint]), skin, basis)
    gain = np.exp(_split_gain(fields[..., 0], skin, options)).astype(np.float32)
    balance = _colour_balance(fields[..., 1:], skin, options.chroma_strength, options.max_kept_tint, options.max_cast)
    # Brightening a painted face to a bright room would clip its skin to flat white: the roll-off
    # acts on the local brightness of the brightest channel (features blurred away), so a crease and
    # the skin around it get the same factor and no channel clips (a clipped red channel turns
    # warm skin white while its shadows keep their colour: a bleached face with brown blotches).
    face_float = face_bgr.astype(np.float32)
    blue, green, red = cv2.split(cv2.multiply(face_float, balance))
    peak = cv2.GaussianBlur(cv2.max(cv2.max(blue, green), red), (0, 0), max(0.5, 0.04 * width / f))
    factor = (_rolloff(peak * gain) + 1.0) / (peak + 1.0)
    factor3 = cv2.multiply(_three(factor), balance)
    if options.seam_reach > 0.0:
        shaded = face_float * factor3
        factor3 = factor3 * np.exp(_seam_field(shaded, logs[..., 5:8], wt, options.seam_reach * width / f))
    factor_full = cv2.resize(factor3.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.multiply(face, factor_full, dtype=cv2.CV_8U), np.uint8)


def _skin_likeness(scene_logs: FloatImage, weight: FloatImage) -> FloatImage:
    """0..1 per pixel: how much a scene pixel under the mask looks like the face's typical skin.

    `scene_logs` holds log luminance then log B, G, R. Distance from the median over the mask's
    solid part, in brightness and in colour, through a flat-topped bell (exp of minus the squared
    squared distance): a shadowed cheek stays in, hair, a dark wall or a green screen drop out
    altogether; even a small weight there would bend the fitted light at the mask's edge.
    """
    solid = weight > 0.5
    if int(solid.sum()) < 8:
        return np.ones(weight.shape, np.float32)
    chroma = scene_logs[..., 1:] - scene_logs[..., :1]
    luma_off = scene_logs[..., 0] - np.float32(np.median(scene_logs[..., 0][solid]))
    # One channel at a time: a median down the columns of an (N, 3) array is twice as slow.
    chroma_off: FloatImage = chroma - np.array([np.median(chroma[..., k][solid]) for k in range(3)], np.float32)
    chroma_sq = np.square(chroma_off / np.float32(_SKIN_CHROMA))
    # the channels summed as numpy's sum over the last axis adds them, without its slow 3-long reduction
    spread = np.square(luma_off / np.float32(_SKIN_LUMA)) + (chroma_sq[..., 0] + chroma_sq[..., 1] + chroma_sq[..., 2])
    # Pixels next to an outlier are mixtures (the small copy averages the cheek with the wall).
    return np.asarray(cv2.erode(np.exp(-0.5 * np.square(spread)).astype(np.float32), _NEIGHBOURS), np.float32)


_NEIGHBOURS = np.ones((3, 3), np.uint8)
_SKIN_LUMA = 0.5  # log luminance: a side-lit face spans about this much
_SKIN_CHROMA = 0.15  # log colour ratio


def _seam_field(shaded: FloatImage, scene_log: FloatImage, weight: FloatImage, reach: float) -> FloatImage:
    """Log gains (h, w, 3) that bring the face's colour to the scene's at the mask's edge, fading to none inside.

    The light fields match the two faces as a whole; what they leave at the edge (a forehead
    lit differently from the cheeks, a jaw in the neck's shadow) shows as a line where the avatar
    stops. The edge's ratio is spread inwards like a membrane and faded out over `reach` pixels,
    so the avatar keeps its own colour away from the edge. Pixels of the band where the two differ
    a lot (hair or a collar on the scene's side) do not count. `scene_log` is log(scene + 8) per channel.
    """
    band = 4.0 * weight * (1.0 - weight)
    ratio = scene_log - np.log(shaded + np.float32(8.0))
    luma = ratio @ LUMA_BGR
    trust = band * np.exp(-np.square(luma / np.float32(_SEAM_OUTLIER)))
    sigma = max(1.0, reach / 2.0)
    spread = cv2.GaussianBlur(cv2.multiply(ratio, _three(trust)), (0, 0), sigma)
    support = cv2.GaussianBlur(trust, (0, 0), sigma)
    membrane = cv2.divide(spread, _three(np.maximum(support, np.float32(1e-3))))
    inner = cv2.GaussianBlur((weight > 0.5).astype(np.float32), (0, 0), sigma)
    fade = np.clip(2.0 * (1.0 - inner), 0.0, 1.0) * np.clip(support / np.float32(_SEAM_SUPPORT), 0.0, 1.0)
    bound = np.float32(np.log(_MAX_SEAM_GAIN))
    return np.asarray(cv2.multiply(np.clip(membrane, -bound, bound), _three(fade)), np.float32)


def _three(plane: FloatImage) -> FloatImage:
    """A float plane repeated into 3 channels, for OpenCV's per-channel arithmetic with a 3-channel image: the same
    float32 products and quotients as numpy's broadcast `image * plane[..., None]`, which iterates the 3-long last
    axis slowly (~2x on a face's small copy)."""
    return np.asarray(cv2.merge([np.ascontiguousarray(plane, np.float32)] * 3), np.float32)


_SEAM_OUTLIER = 0.35  # log ratio: beyond this a band pixel is another material, not another light
_SEAM_SUPPORT = 0.05  # blurred band weight below which the edge's colour is too far away to carry
_MAX_SEAM_GAIN = 1.6


def _split_gain(log_gain: FloatImage, weight: FloatImage, options: BlendOptions) -> FloatImage:
    """The log light ratio as a bounded part of its mean (exposure) plus its variation over the face (direction).

    The two fitted fields differ by the light and by the faces' albedos: their mean ratio is mostly
    skin tone (a pale sender, a dark painting). Taking it makes the avatar's skin the sender's tone,
    which the neck beside it shows; `exposure_strength` of it is taken, within `max_exposure` (the
    roll-off keeps a brightened face off white; `max_darkening` down). The variation (where the light comes from)
    is taken in full.
    """
    wsum = float(weight.sum())
    mean = float((log_gain * weight).sum() / wsum) if wsum > 1e-3 else 0.0
    exposure = float(np.clip(options.exposure_strength * mean, -np.log(options.max_darkening), np.log(options.max_exposure)))
    relief = (log_gain - np.float32(mean)) * np.float32(options.shading_strength)
    limit = float(np.log(options.max_gain))
    # `max_gain` bounds the light's relief around a darkened face, not the darkening itself.
    return np.clip(relief + np.float32(exposure), min(-limit, exposure - limit), limit).astype(np.float32)


def _colour_balance(tint: FloatImage, weight: FloatImage, strength: float, max_kept: float = np.inf,
                    max_cast: float = BlendOptions.max_cast) -> FloatImage:
    """Per-pixel channel gains (B, G, R), smooth, from the log colour difference field `tint` (h, w, 3).

    The avatar's own coloured light (its variation over the face) is taken out in full, so a cartoon's
    warm key light does not stay as a red patch on one cheek while the other turns blue; its overall
    tint moves `strength` of the way to the scene's, the sender's skin that the neck shows (a full match
    did not move dlib off the avatar: see the module docstring); but no more than `max_kept`
    of it is kept (log ratio per channel): a tint far off the scene's skin (a painting's yellow
    varnish, a sepia photograph) would stay far off it, a face that does not belong to its neck.
    Gains, not an additive shift: every pixel keeps its chromaticity relative to its neighbours, so
    dark creases and pupils change in proportion to the skin around them. Unit luminance: the light
    comes from the shading field alone.
    """
    wsum = float(weight.sum())
    if wsum <= 1e-3:
        return np.ones(tint.shape, np.float32)
    mean = (weight.reshape(-1) @ tint.reshape(-1, 3)) / wsum
    kept = np.clip(np.float32(1.0 - strength) * mean, -max_kept, max_kept)
    bound_cast = np.float32(np.log(max_cast))
    cast = np.clip(mean - kept, -bound_cast, bound_cast)
    bound = np.float32(np.log(_MAX_BALANCE))
    gains = np.exp(np.clip(tint - mean, -bound, bound) + cast)
    return np.asarray(cv2.divide(gains.astype(np.float32), _three(gains @ LUMA_BGR)), np.float32)


_MAX_BALANCE = 1.35  # the avatar's coloured light, per pixel


_ROLLOFF_KNEE = 200.0


def _rolloff(x: FloatImage) -> FloatImage:
    """Tone curve: identity below the knee, then an exponential approach to white instead of clipping."""
    room = 255.0 - _ROLLOFF_KNEE
    above = 255.0 - room * np.exp(-(np.maximum(x, _ROLLOFF_KNEE) - _ROLLOFF_KNEE) / room)
    return np.where(x <= _ROLLOFF_KNEE, x, above).astype(np.float32)


def swap_weight(mask: FloatImage, alpha: Alpha | None, occluder: FloatImage | None) -> FloatImage:
    """How much of the rendered face to use per pixel: less where the matte is unsure, none under occluders."""
    weight = mask.astype(np.float32)  # a copy, then the factors in place: the same products, fewer face-sized arrays
    if alpha is not None:
        sure = alpha - np.float32(0.3)
        sure /= np.float32(0.5)
        weight *= np.clip(sure, 0.0, 1.0, out=sure)
    if occluder is not None:
        weight *= 1.0 - occluder
    return weight


def blend(base: Image, face: Image, weight: FloatImage) -> Image:
    """base + weight * (face - base), rounded: a few whole-array OpenCV passes (faster than cv2.blendLinear here).

    The pictures go in as bytes: OpenCV converts them to float32 inside the subtraction and the addition (the same
    values as float copies of them, without making the copies)."""
    weight3 = _three(weight)
    step = cv2.multiply(cv2.subtract(face, base, dtype=cv2.CV_32F), weight3)
    return np.asarray(cv2.convertScaleAbs(cv2.add(base, step, dtype=cv2.CV_32F)), np.uint8)
