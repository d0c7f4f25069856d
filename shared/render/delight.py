"""De-lighting an avatar texture once per identity: the picture's own soft light taken out, its features kept.

A painting or a portrait carries its own lighting: dark eye sockets, a shadowed side of the nose,
warm or brown patches of light and varnish. The renderer puts the scene's light on the face, and
whatever light the avatar keeps comes on top of it as blotches. Here the avatar's smooth light
field (its skin's luminance and colour blurred at a scale of a few percent of the face width) is
divided out in part, relative to the skin's mean, so the texture tends towards its albedo.

Features are not light: eyes, brows, lips, nostrils and anything much darker than the skin
around it (a moustache, lashes, a fringe) are left out of the light estimate, which is filled in
over them from the skin around (normalised convolution), so they keep their contrast to it.

Highlights are light too, but finer than that blur: a painted shine down the nose or pale lids
are toned down against the skin's light round them (_tame_highlights). Dark lines deeper than a
face's creases in ordinary light (a painting's craquelure, hard painted lines) are made shallower
(_tame_creases).

Light from one side is also finer than any blur: it darkens one flank of the nose, one side of
the nostrils and a cheek's hollow in narrow bands that follow the face's shape, not its distance.
Under the scene's light (from elsewhere) they show as a dark band down the nose. A face's skin is
nearly symmetric, so the difference between a pixel and its mirror partner (the mesh gives the
correspondence) is light: the shaded side is raised to its lit partner first, the skin's mean kept
(_one_sided_light), however deep, as long as it covers more of a patch than a mole or a strand
does. What both sides share (the relief of light from the front or above: sockets, the shade
under the nose) stays, as the recogniser reads the face's shape from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.warp import Region, fill_polygon, warp_map
from facewire.shared.types import Image, Landmarks

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DelightOptions:
    """How much of the avatar's own light comes out of its texture, in two bands (see _split_light).

    Broad light (coarser than `broad_scale`) goes by `strength`. The band between `scale` and
    `broad_scale` (eye sockets, the shade beside the nose, a cheek's hollow, the terminator of a side
    light) goes by `strength` up to `relief` (log luminance: the relief of a face in ordinary light,
    which a recogniser reads the face's shape from) and by `mid_strength` beyond it (a painted or
    studio shadow much deeper than that). Finer detail (pores, wrinkles, lashes, strokes) stays.
    `broad_scale=None` is the older single band: everything coarser than `scale` by `strength`.
    """

    strength: float = 0.7  # of the avatar's light variation taken out, up to `relief` (0: none, 1: all of it)
    scale: float = 0.05  # blur sigma of the local light estimate, in face widths
    max_gain: float = 2.5  # no pixel is brightened or darkened by more than this factor
    chroma: float = 0.6  # of the smooth colour variation (brown or red patches of light) taken out
    dark_outlier: float = 0.55  # darker than this fraction of the light: a feature (moustache, beard), not shade
    eye_lift: float = 0.0  # of the brightening given to the skin that the eyes get too (1: as the skin round them)
    broad_scale: float | None = 0.2  # face widths; None: one band
    mid_strength: float = 1.0  # of the band's relief beyond `relief` taken out
    # Of the band's relief within `relief` taken out (None: `strength`): the face's form (cheekbones, temples, the
    # jaw's turn); less than `strength` keeps more of the avatar's own modelling, which the blend's smooth light
    # fields cannot give back.
    # 0.15 (through the stream, dlib distance to the avatar: w0, 14 identities, 0.489 at 0.7 -> 0.483 at 0.35 -> 0.481;
    # w1 and d3, 12 identities each, 0.35 -> 0.15: 0.4686 -> 0.4693 and 0.4400 -> 0.4377, as the avatar 0.925 -> 0.933
    # and 0.967 -> 0.975).
    band_strength: float | None = 0.15
    relief: float = 0.25  # log luminance (x1.28): the band's relief treated as the face's shape, not its lighting
    # Above the nose only what is darker than this fraction of the local light is a feature (a frame
    # of glasses, a black strand): a broad dark patch there (a shadowed socket, eye make-up, the
    # shaded side of the face) is shade. Below the nose `dark_outlier` against the broad light holds.
    shade_floor: float = 0.3
    # Highlights: luminance more than `highlight_knee` (log) above the skin's local light keeps only
    # `highlight_keep` of the excess (see _tame_highlights); 1 keeps them as painted.
    highlight_knee: float = 0.1
    highlight_keep: float = 0.35
    highlight_scale: float = 0.1  # face widths: the blur of the skin's light that highlights are judged against
    # Creases: dark lines narrower than `crease_width` (face widths) deeper than `crease_knee` (log) below the skin
    # either side keep only `crease_keep` of the excess (see _tame_creases); 1 keeps them as painted.
    crease_width: float = 0.025
    crease_knee: float = 0.1
    crease_keep: float = 0.25
    # Deep dark patches: narrower than `deep_width` (face widths) and deeper than `deep_knee` (log) below the skin round
    # them keep only `deep_keep` of the excess (see _tame_deep); 1 keeps them as painted.
    deep_width: float = 0.12
    deep_knee: float = 0.7
    deep_keep: float = 0.3
    # Below the lower lip (outside the lips, above the chin) a smooth dark patch is the lip's cast shade, which a
    # photograph's light rarely takes past half the skin's brightness there and a painting or a strong key light
    # takes to black: under the scene's light it moves with the mouth as a second, dark mouth. Past
    # `under_lip_knee` only `under_lip_keep` of it is kept (see _under_lip_shade; hair there is spared).
    under_lip_knee: float = 0.45
    under_lip_keep: float = 0.15
    # Of the difference in light between the face's two sides (_one_sided_light) taken out, and the scale
    # (face widths) it is smoothed at: finer is the skin's own texture, kept on each side.
    side_strength: float = 1.0
    side_scale: float = 0.03
    side_bias: float = 1.0
    # The most the side evening lifts or lowers a pixel by (on top of the rest, bounded by `max_gain`; round the
    # eyes by `max_gain` too): a cast shadow down a flank of the nose is often a quarter of the lit side's brightness.
    side_max_gain: float = 4.0
    # Colour that follows brightness: the skin's log colour ratios (B/luma, R/luma) change with its log luminance by
    # at most this slope (see _paint_tint); None keeps them as painted.
    tint_slope: float | None = 0.4


def feature_mask(shape: tuple[int, int], landmarks: Landmarks, width: float) -> npt.NDArray[np.uint8]:
    """255 on the face's own features: eyes with their lashes, brows, lips, nostrils."""
    mask = np.zeros(shape, np.uint8)
    lm = landmarks[:, :2]

    for ring in (topo.right_eye_ring(), topo.left_eye_ring(), topo.outer_lip_ring()):
        fill_polygon(mask, lm[ring])
    for brow in topo.brows():
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm[brow]).astype(np.int32)), 255)
    radius = max(1, int(round(0.03 * width)))
    for i in topo.NOSTRILS:
        cv2.circle(mask, (int(round(lm[i, 0])), int(round(lm[i, 1]))), radius, 255, -1)
    grow = max(1, int(round(0.025 * width)))
    return np.asarray(cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))), np.uint8)


def normalised_blur(values: FloatImage, weight: FloatImage, sigma: float) -> FloatImage:
    """Blur of `values` (h, w, k) counting only where `weight` is, so excluded pixels take their surroundings' value."""
    num = cv2.GaussianBlur(values * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    if num.ndim == 2:
        num = num[..., None]
    return np.asarray(num / np.maximum(den, 1e-4)[..., None], np.float32)


def delight(image: Image, landmarks: Landmarks, options: DelightOptions | None = None) -> Image:
    """`image` with part of its own soft light (inside the face outline) divided out; the same size."""
    opts = options or DelightOptions()
    if opts.strength <= 0.0 and opts.chroma <= 0.0:
        return image
    h, w = image.shape[:2]
    oval = landmarks[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return image
    face = np.zeros((h, w), np.uint8)
    fill_polygon(face, oval)
    # Off the outline: the skin only, not the hair or background the outline may touch.
    edge = max(1, int(round(0.04 * width)))
    skin = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge + 1, 2 * edge + 1)))
    features = feature_mask((h, w), landmarks, width)
    skin[features > 0] = 0
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    sigma = max(1.0, opts.scale * width)
    weight = (skin > 0).astype(np.float32)
    # The light's one-sided part first, so that the smooth light is estimated on evened skin; its gain is
    # applied with the rest below (the eyes and highlights spared alike).
    own = ycc[..., 0].copy()
    side = _one_sided_light(own, weight, landmarks, width, opts) if opts.side_strength > 0.0 else None
    if side is not None:
        ycc[..., 0] *= np.exp(side)
    if opts.broad_scale is None:
        light = normalised_blur(ycc, weight, sigma)
        # Much darker than the light around it: a moustache, lashes, a strand of hair. Out, and again.
        weight *= (ycc[..., 0] >= opts.dark_outlier * light[..., 0]).astype(np.float32)
        light = normalised_blur(ycc, weight, sigma)
        wsum = float(weight.sum())
        if wsum < 50.0:
            return image
        mean = (light * weight[..., None]).reshape(-1, 3).sum(axis=0) / wsum
        log_gain = opts.strength * np.log((mean[0] + 8.0) / (light[..., 0] + 8.0))
    else:
        split = _split_light(ycc, weight, landmarks, width, opts)
        if split is None:
            return image
        light, mean, log_gain = split
    limit = float(np.log(opts.max_gain))
    log_gain = np.clip(log_gain, -limit, limit)
    if side is not None:
        ycc[..., 0] = own
        log_gain = log_gain + side  # bounded on its own (side_max_gain)
    gain = np.exp(log_gain)
    # Inside the face only, faded in over the outline band (the renderer's feather barely shows it).
    inside = cv2.GaussianBlur(face.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.02 * width))
    # Brightening a shadow lifts the skin in it, not what is already bright there (the white of an
    # eye in a dark socket, a highlight): those would glare as halos.
    above = np.clip(2.0 - (ycc[..., 0] + 8.0) / (light[..., 0] + 8.0), 0.0, 1.0)
    gain = np.where(gain > 1.0, 1.0 + (gain - 1.0) * above, gain)
    # Likewise darkening a bright patch tones down the skin in it, not what is far darker there (a moustache
    # under a lit nose, nostrils, a beard on the lit side): the estimate fills their light in from the bright
    # skin round them, and darkened by it a moustache merges with the nostrils into one black blob.
    below = np.clip(((ycc[..., 0] + 8.0) / (light[..., 0] + 8.0) - _DARK_KEPT) / _DARK_KEPT, 0.0, 1.0)
    gain = np.where(gain < 1.0, 1.0 - (1.0 - gain) * below, gain)
    if opts.eye_lift < 1.0:
        # Nor the eyes in a shadowed socket: a painter (or the light) gives the shaded eye its own
        # low contrast and a bright glint on the white; lifted with the socket, its iris greys and
        # its white glares, a washed-out eye. The socket's skin is lifted, the eye kept as it is.
        eyes = _eye_mask((h, w), landmarks, width)
        gain = np.where(gain > 1.0, 1.0 + (gain - 1.0) * (1.0 - (1.0 - opts.eye_lift) * eyes), gain)
    gain = 1.0 + (gain - 1.0) * inside
    out = ycc.copy()
    out[..., 0] *= gain
    if opts.highlight_keep < 1.0:
        exempt = _openings((h, w), landmarks, width)
        reach = max(1.0, opts.highlight_scale * width)
        out[..., 0] = _tame_highlights(out[..., 0], (skin > 0).astype(np.float32), inside * (1.0 - exempt), reach, opts)
    if opts.crease_keep < 1.0:
        # The features (eyes with their lashes, brows, lips, nostrils) are dark lines of their own, and stay.
        plain = cv2.GaussianBlur((face > 0).astype(np.float32) * (features == 0), (0, 0), max(0.5, 0.01 * width))
        out[..., 0] = _tame_creases(out[..., 0], plain, max(3, int(round(opts.crease_width * width)) | 1), opts)
    if opts.deep_keep < 1.0:
        deep_size = max(3, int(round(opts.deep_width * width)) | 1)
        under_lip = _under_lip_shade(ycc[..., 0], landmarks, width)  # hair judged as painted, before _tame_creases
        where = np.maximum(_deep_where((h, w), landmarks, width, face), under_lip)
        out[..., 0] = _tame_deep(out[..., 0], where, deep_size, opts, under_lip)
    # Chroma as a shift: the smooth colour patch moves to the skin's mean, the detail on it stays. Not on
    # what is far darker than the light round it (a moustache, nostrils): the shift is the skin's, a fixed
    # offset that on a dark pixel is a strong colour of its own (a moustache under a red nose went teal).
    chroma_where = inside * np.clip(out[..., 0] / np.maximum(light[..., 0], 1.0), 0.0, 1.0)
    out[..., 1:] -= (opts.chroma * chroma_where)[..., None] * (light[..., 1:] - mean[1:])
    result = np.asarray(cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR), np.uint8)
    if opts.tint_slope is not None:
        plain = cv2.GaussianBlur((features == 0).astype(np.float32), (0, 0), max(0.5, 0.01 * width))
        result = _paint_tint(result, (skin > 0).astype(np.float32), inside * plain, opts.tint_slope)
    return result


_DARK_KEPT = 0.35  # of the local light: darker than this is a feature or hair, never darkened (wholly from twice it)


def _split_light(
    ycc: FloatImage, weight: FloatImage, landmarks: Landmarks, width: float, opts: DelightOptions
) -> tuple[FloatImage, FloatImage, FloatImage] | None:
    """(local light in YCrCb, the skin's mean, the log luminance gain) of the frequency-split de-lighting.

    The light is estimated in log luminance at two scales; the band between them (the painted or
    photographed relief: sockets, the side of the nose) goes by `strength` up to `relief` and by
    `mid_strength` beyond, what is broader by `strength`, and finer detail (pores, wrinkles, lashes) stays. What counts as light: the skin
    less the mesh's features, less what is much darker than the light round it: below the nose
    by `dark_outlier` (a moustache or a beard is hair, not shade), above it only by `shade_floor`
    (a frame of glasses, a strand), so that a shadowed socket, eye make-up or the shaded side of a
    side-lit face counts as light and is lifted.
    """
    assert opts.broad_scale is not None
    sigma = max(1.0, opts.scale * width)
    log_y = np.log(ycc[..., 0] + np.float32(8.0))
    broad_sigma = max(sigma, opts.broad_scale * width)
    local = normalised_blur(log_y[..., None], weight, sigma)[..., 0]
    # A moustache is as wide as the local light's blur and darkens it: hair is judged against the broad light.
    wide = normalised_blur(log_y[..., None], weight, broad_sigma)[..., 0]
    hair = _below_nose(log_y.shape, landmarks, width)
    shade = log_y >= local + np.float32(np.log(opts.shade_floor))
    not_hair = log_y >= wide + np.float32(np.log(opts.dark_outlier))
    weight = weight * np.where(hair > 0.5, shade & not_hair, shade).astype(np.float32)
    wsum = float(weight.sum())
    if wsum < 50.0:
        return None
    light = normalised_blur(np.dstack([log_y, ycc[..., 1:]]), weight, sigma)
    broad = normalised_blur(log_y[..., None], weight, broad_sigma)[..., 0]
    mean = (light * weight[..., None]).reshape(-1, 3).sum(axis=0) / wsum
    band = broad - light[..., 0]
    # Ordinary relief by `strength`, what is beyond it (a painted shadow) by `mid_strength`: a soft knee.
    within = np.clip(band, -opts.relief, opts.relief)
    band_strength = opts.strength if opts.band_strength is None else opts.band_strength
    log_gain = band_strength * within + opts.mid_strength * (band - within) + opts.strength * (np.float32(mean[0]) - broad)
    light_ycc = light.copy()
    light_ycc[..., 0] = np.exp(light[..., 0]) - np.float32(8.0)
    mean_ycc = mean.copy()
    mean_ycc[0] = float(np.exp(mean[0]) - 8.0)
    return light_ycc, mean_ycc, np.asarray(log_gain, np.float32)


def _one_sided_light(y: FloatImage, weight: FloatImage, landmarks: Landmarks, width: float, opts: DelightOptions) -> FloatImage:
    """The log luminance gain that evens out the light on the face's two sides (to be faded out past the outline).

    A face's skin is nearly symmetric; its light often is not. Each skin pixel is compared with its
    mirror partner on the other side (the mesh's symmetry gives the dense correspondence), and the
    difference, smoothed at `side_scale` (normalised convolution over the skin of both sides,
    so features and hair count for nothing), is taken out (the shaded side raised to the lit one, or both
    halfway with `side_bias` 0): both sides then carry the light they
    share (from the front, above), at every scale coarser than pores and wrinkles, including the
    narrow shade down one flank of the nose that no smooth light estimate follows.
    """
    h, w = y.shape
    tris = topo.face_triangles()
    points = landmarks[:, :2].astype(np.float32)
    mirror = points[topo.symmetry()]
    maps, covered = warp_map(points[tris], mirror[tris], Region(0, 0, w, h), 1)
    log_y = np.log(np.maximum(y, 0.0) + np.float32(8.0))
    partner = cv2.remap(log_y, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    partner_weight = cv2.remap(weight, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = (covered >= 250).astype(np.float32)
    wt = weight * partner_weight * inside
    if float(wt.sum()) < 50.0:
        return np.zeros((h, w), np.float32)
    diff = log_y - partner
    # A strand or a mole on one side is not light: what differs far more from the difference round it than
    # light does pulls on nothing. Judged against the median round it, not against zero: a mole or a strand
    # covers less than half of a patch, a cast shadow (a deep band down the shaded flank of the nose, a whole
    # cheek in shade) more, and is light however deep. (A flat-topped bell: a shade is within it, a mole or
    # a strand is wholly out.)
    around = _patch_median(diff, wt, _SIDE_PATCH * width)
    wt *= np.exp(-np.square(np.square((diff - around) / np.float32(_SIDE_OUTLIER))))
    filled = _fill(np.dstack([diff, log_y]), wt, _SIDE_FILL * width, opts.side_scale * width)
    guide = filled[..., 1] * (1.0 - wt) + log_y * wt
    # Smoothed, but edge-aware (a guided filter on the face's own luminance): a shadow's edge is an
    # edge of the picture, so the lift follows it and a narrow band is lifted whole, not half of it
    # spread as a pale halo; the skin's faint texture (pores, below the edge threshold) is smoothed out.
    radius = max(1, int(round(opts.side_scale * width)))
    smooth = cv2.ximgproc.guidedFilter(guide.astype(np.float32), np.ascontiguousarray(filled[..., 0]), radius, _SIDE_EDGE**2)
    # Round the eyes no more than `max_gain`: a socket's shade is partly its own depth, which the light on one side
    # shows more than on the other, and a lid lifted past that glares as a pale patch over the eye.
    sockets = eye_openings((h, w), landmarks, max(1, int(round(_SOCKET * width))))
    near_eyes = cv2.GaussianBlur(sockets.astype(np.float32) / np.float32(255.0), (0, 0), max(1.0, 0.5 * _SOCKET * width))
    low, high = np.float32(np.log(min(opts.max_gain, opts.side_max_gain))), np.float32(np.log(opts.side_max_gain))
    limit = high + (low - high) * np.clip(2.0 * near_eyes, 0.0, 1.0)
    # To the average of the two sides (side_bias 0), or the shaded side up to the lit one (1); then the
    # skin's mean kept: the light is evened out, not added (the face's exposure is the scene's to set).
    gain = np.float32(0.5 * opts.side_strength) * (np.float32(opts.side_bias) * np.abs(smooth) - smooth)
    # Filled in over the eyes and the mouth (holes in the mesh) like over any feature; the caller fades it out at
    # the outline.
    gain = np.clip(gain, -limit, limit)
    gain -= np.float32((gain * weight).sum() / max(float(weight.sum()), 1e-6))
    return np.asarray(gain, np.float32)


def _fill(values: FloatImage, weight: FloatImage, fine: float, coarse: float) -> FloatImage:
    """`values` (h, w, k) where `weight` is, filled in elsewhere from around: from close by where there is enough
    weight within `fine`, else from within `coarse` (a mole wider than the fine blur takes the skin round it)."""
    near = normalised_blur(values, weight, max(1.0, fine))
    far = normalised_blur(values, weight, max(1.0, coarse))
    enough = np.clip(cv2.GaussianBlur(weight, (0, 0), max(1.0, fine)) / np.float32(0.3), 0.0, 1.0)[..., None]
    return np.asarray(near * enough + far * (1.0 - enough), np.float32)


_SIDE_OUTLIER = 0.9  # log luminance off the sides' difference round it: beyond about this a pixel is not skin in another light
_SIDE_PATCH = 0.1  # of the face width: the patch whose median difference says what the light round a pixel is
_PATCH_RANGE = 2.5  # log luminance: the sides' difference is quantised over +-this for the median (1/51 log a level)
_SOCKET = 0.035  # of the face width round an eye's opening: its lids
_SIDE_FILL = 0.005  # of the face width: the blur that fills the comparison in over features and outliers
_SIDE_EDGE = 0.08  # log luminance: a step in the picture stronger than this is an edge the lift keeps to


def _patch_median(values: FloatImage, weight: FloatImage, size: float) -> FloatImage:
    """The median of `values` over a square patch `size` pixels across round each pixel, where `weight` is (filled in
    from around elsewhere, so the features and the background do not pull it towards their own values).

    OpenCV's median of a large window (histogram-based, constant time in its size) works on 8 bits: the values
    are quantised over +-_PATCH_RANGE, finer than the outlier bell needs."""
    around = _fill(values[..., None], weight, 0.25 * size, size)[..., 0]
    filled = np.where(weight > 0.5, values, around)
    scale = np.float32(127.5 / _PATCH_RANGE)
    levels = np.clip(filled * scale + np.float32(127.5), 0, 255).astype(np.uint8)
    k = max(3, int(round(size)) | 1)
    return np.asarray((cv2.medianBlur(levels, k).astype(np.float32) - np.float32(127.5)) / scale, np.float32)


def _tame_highlights(y: FloatImage, skin: FloatImage, where: FloatImage, sigma: float, opts: DelightOptions) -> FloatImage:
    """Luminance `y` with what stands out brighter than the skin's local light compressed past a knee.

    A picture's own highlights (a shine down the nose, a lit brow ridge, pale lids lifted with their
    socket, a pale strand the cover did not take) are finer than the light estimate's blur, so the
    de-lighting keeps them as detail; under the scene's light they show as pale streaks and rings
    that move with the face. Their excess over the light of the skin round them past `highlight_knee`
    is kept by `highlight_keep`; that light is judged without them, and without what is far darker (a
    second estimate leaves out what the first found off). Darker detail (creases, pores) is untouched,
    and so is whatever `where` is 0 on (the eyes' whites and glints, teeth: no light).
    """
    log_y = np.log(np.maximum(y, 0.0) + np.float32(8.0))
    knee = np.float32(opts.highlight_knee)
    local = normalised_blur(log_y[..., None], skin, sigma)[..., 0]
    # Nor what is much darker than it: a frame of glasses or a moustache in the estimate makes the skin beside it a highlight.
    off = log_y - local
    skin = skin * ((off > np.float32(np.log(opts.shade_floor))) & (off < knee)).astype(np.float32)
    local = normalised_blur(log_y[..., None], skin, sigma)[..., 0]
    over = np.maximum(log_y - local - knee, 0.0)
    cut = over * np.float32(1.0 - opts.highlight_keep) * where
    return np.asarray(np.exp(log_y - cut) - np.float32(8.0), np.float32)


def _tame_creases(y: FloatImage, where: FloatImage, size: int, opts: DelightOptions) -> FloatImage:
    """Luminance `y` with dark lines narrower than `size` pixels made shallower past a knee, where `where` is 1.

    A face's fine detail in ordinary light is shallow: pores, fine lines, a crease a little darker than
    the skin on either side. A painting's craquelure, its hard painted lines and a photograph's deep,
    side-lit wrinkles are far deeper; magnified and brightened to the scene's light they read as cracks
    in the skin and grey flecks. A morphological closing (the skin either side of any line narrower than
    `size`) gives what the line is below; of the depth past `crease_knee` only `crease_keep` is kept. What
    is broader (a beard, a shade, a moustache) is its own surface and is untouched.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return _shallower(y, where, lambda log_y: cv2.morphologyEx(log_y, cv2.MORPH_CLOSE, kernel), opts.crease_knee, opts.crease_keep)


def _shallower(
    y: FloatImage,
    where: FloatImage,
    closing: Callable[[FloatImage], FloatImage],
    knee: float | FloatImage,
    keep: float | FloatImage,
) -> FloatImage:
    """Luminance `y` with what lies deeper than `knee` (log) below its `closing` (of log luminance) kept only by `keep`,
    where `where` is 1 (`knee` and `keep` per pixel or one for all)."""
    log_y = np.log(np.maximum(y, 0.0) + np.float32(8.0))
    depth = np.maximum(closing(log_y), log_y) - log_y
    lift = np.maximum(depth - np.asarray(knee, np.float32), 0.0) * (np.float32(1.0) - np.asarray(keep, np.float32)) * where
    return np.asarray(np.exp(log_y + lift) - np.float32(8.0), np.float32)


def _paint_tint(image: Image, skin: FloatImage, where: FloatImage, slope: float) -> Image:
    """`image` with the part of its skin's colour that follows its brightness more steeply than `slope` taken out.

    Under light, skin's chromaticity barely changes with its brightness: a photograph's shadows are a
    little warmer than its lights (log B/luma rises by 0.2-0.3 per unit of log luminance). A varnished
    painting's are not: glazes and a yellowed varnish take the blue out of the darks far more than out of
    the lights (slopes past 1), so its shadows and creases are brown and olive under any light, and the
    renderer's colour balance, a smooth gain per channel, cannot lift a blue channel that is near zero.
    The slope of each colour ratio (B, R over luma, in logs) on log luminance over the skin is fitted
    and its excess over `slope` taken out about the skin's mean luminance; luminance is kept, and green
    follows from it. Where `where` is 0 (outside the face, the features) nothing changes.
    """
    bgr = image.astype(np.float32) + np.float32(8.0)
    luma = bgr @ LUMA_BGR
    log_y = np.log(luma)
    wsum = float(skin.sum())
    if wsum < 50.0:
        return image
    mean_y = float((log_y * skin).sum() / wsum)
    dy = log_y - np.float32(mean_y)
    var = float((np.square(dy) * skin).sum() / wsum)
    if var < 1e-4:
        return image
    out = bgr.copy()
    for c in (0, 2):
        ratio = np.log(bgr[..., c]) - log_y
        fitted = float((dy * (ratio - float((ratio * skin).sum() / wsum)) * skin).sum() / wsum) / var
        excess = fitted - float(np.clip(fitted, -slope, slope))
        if excess == 0.0:
            continue
        shift = np.clip(np.float32(-excess) * dy, -_MAX_TINT_SHIFT, _MAX_TINT_SHIFT) * where
        out[..., c] = bgr[..., c] * np.exp(shift)
    # Luma kept: green takes up what blue and red moved.
    green = (luma - LUMA_BGR[0] * out[..., 0] - LUMA_BGR[2] * out[..., 2]) / LUMA_BGR[1]
    out[..., 1] = np.where(where > 0.0, green, bgr[..., 1])
    return np.asarray(np.clip(out - np.float32(8.0) + 0.5, 0, 255), np.uint8)


_MAX_TINT_SHIFT = 0.8  # log colour ratio: the most a pixel's colour is moved by _paint_tint


def _tame_deep(y: FloatImage, where: FloatImage, size: int, opts: DelightOptions, under_lip: FloatImage | None = None) -> FloatImage:
    """Luminance `y` with dark patches narrower than `size` pixels made shallower past `deep_knee`, where `where` is 1.

    In ordinary light a nostril, the shade under the lower lip or a fold beside the mouth is at most about
    a third as bright as the skin round it (a photograph's: 0.2-0.9 log). A painting or digital art often
    paints them near black (1.5-3 log): under the scene's light, which lifts the skin round them but
    cannot lift black, they read as holes in the face (black nostrils, a muzzle round the mouth). The same
    closing as _tame_creases at the scale of these features gives the skin round them; of the depth past
    `deep_knee` only `deep_keep` is kept. A moustache is as narrow and a photograph's is rarely past the
    knee; what is broader (a beard, a shaded side) is untouched. Where `under_lip` is 1 (the lip's cast shade) the
    knee and the share kept are `under_lip_knee` and `under_lip_keep` instead.
    """
    knee: float | FloatImage = opts.deep_knee
    keep: float | FloatImage = opts.deep_keep
    if under_lip is not None:
        knee = np.float32(opts.deep_knee) + np.float32(opts.under_lip_knee - opts.deep_knee) * under_lip
        keep = np.float32(opts.deep_keep) + np.float32(opts.under_lip_keep - opts.deep_keep) * under_lip
    return _shallower(y, where, partial(_coarse_closing, size=size), knee, keep)


def _under_lip_shade(y: FloatImage, landmarks: Landmarks, width: float) -> FloatImage:
    """0..1: where a dark patch is the shade the lower lip casts: a band under the lower lip's outline, from a rim
    inside it (a landmarker draws the outline a few pixels into the shade), not the lip's body nor the opening; on
    smooth skin only.

    A tuft or a beard grows there too, as dark and as narrow; hair is strokes and stubble, rough at the scale of a
    hundredth of the face, where a cast shade (painted or photographed) is as smooth as the skin round it. The
    roughness is the luminance's distance from its median over that scale, which keeps a shade's edge (a step).
    """
    shape = y.shape[:2]
    p = landmarks[:, :2].astype(np.float64)
    lower = p[list(topo.MOUTH_OUTER[:_LOWER_LIP_POINTS])]
    down = _down(landmarks) * width
    band = np.zeros(shape, np.uint8)
    fill_polygon(band, np.vstack([lower - _UNDER_LIP_RIM * down, (lower + _UNDER_LIP_REACH * down)[::-1]]))
    rim = max(1, int(round(_UNDER_LIP_RIM * width)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
    lips, opening = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    fill_polygon(lips, landmarks[topo.outer_lip_ring(), :2])
    fill_polygon(opening, landmarks[topo.inner_lip_ring(), :2])
    band[(cv2.erode(lips, disc) > 0) | (cv2.dilate(opening, disc) > 0)] = 0
    zone = cv2.GaussianBlur(band.astype(np.float32) / np.float32(255.0), (0, 0), max(0.5, 0.005 * width))
    log_y = np.log(np.maximum(y, 0.0) + np.float32(8.0))
    k = max(3, int(round(_ROUGH_SCALE * width)) | 1)
    rough = cv2.GaussianBlur(np.abs(log_y - _median_log(log_y, k)), (0, 0), max(0.5, _ROUGH_SCALE * width))
    smooth = np.clip((np.float32(_ROUGH_HAIR) - rough) / np.float32(_ROUGH_HAIR - _ROUGH_SHADE), 0.0, 1.0)
    return np.asarray(zone * smooth, np.float32)


_LOWER_LIP_POINTS = 11  # MOUTH_OUTER's first points: the lower lip's outline, corner to corner
_UNDER_LIP_REACH = 0.08  # of the face width below the lower lip's outline: its cast shade (the chin's crease is ~0.1)
_UNDER_LIP_RIM = 0.012  # of the face width inside the lip's outline: the shade's upper edge, under the outline
_ROUGH_SCALE = 0.015  # of the face width: hair's strokes are finer than this, a shade's edge is not
_ROUGH_SHADE = 0.03  # log luminance off the median: a cast shade (painted ~0.02, photographed ~0.01)
_ROUGH_HAIR = 0.05  # and stubble or a painted tuft (~0.06), spared
_LOG_LEVELS = 70.0  # 8-bit levels per unit of log luminance for the median (log(8) .. log(263) in 0..245)


def _median_log(log_y: FloatImage, k: int) -> FloatImage:
    """The median of log luminance over a `k`-pixel square (OpenCV's large medians are 8-bit: quantised finely)."""
    base = np.float32(np.log(8.0))
    levels = np.clip((log_y - base) * np.float32(_LOG_LEVELS) + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.asarray(cv2.medianBlur(levels, k).astype(np.float32) / np.float32(_LOG_LEVELS) + base, np.float32)


def _coarse_closing(log_y: FloatImage, size: int) -> FloatImage:
    """The closing of a `size`-pixel disc, in a quarter-size copy when it is large (the skin round a patch is smooth
    at that scale) and brought back up: the same result within a few levels at a sixteenth of the cost."""
    small = cv2.resize(log_y, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA) if size >= 16 else log_y
    k = max(3, (size // 4) | 1) if size >= 16 else size
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    if closed.shape != log_y.shape:
        closed = cv2.resize(closed, (log_y.shape[1], log_y.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.asarray(closed, np.float32)


def _deep_where(shape: tuple[int, int], landmarks: Landmarks, width: float, face: npt.NDArray[np.uint8]) -> FloatImage:
    """0..1: inside the face less the eyes with their lashes, the brows and the lips (dark features of their own;
    the nostrils are not left out: painted black, they are the holes this is for)."""
    keep = eye_openings(shape, landmarks, max(1, int(round(_EYE_MARGIN * width))))
    fill_polygon(keep, landmarks[topo.outer_lip_ring(), :2])
    for brow in topo.brows():
        cv2.fillConvexPoly(keep, cv2.convexHull(np.round(landmarks[brow, :2]).astype(np.int32)), 255)
    soft = max(0.5, 0.01 * width)
    return np.asarray(cv2.GaussianBlur(((face > 0) & (keep == 0)).astype(np.float32), (0, 0), soft), np.float32)


def _openings(shape: tuple[int, int], landmarks: Landmarks, width: float) -> FloatImage:
    """0..1: the eyes' openings (not their lids: a pale lid margin glares as a ring) and the lips' opening."""
    mask = eye_openings(shape, landmarks, 1)
    fill_polygon(mask, landmarks[topo.inner_lip_ring(), :2])
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.5, 0.005 * width))
    return np.asarray(np.clip(2.0 * soft, 0.0, 1.0), np.float32)


def _below_nose(shape: tuple[int, int], landmarks: Landmarks, width: float) -> FloatImage:
    """0..1: 1 from just above the base of the nose down (where a moustache and a beard grow), soft over 0.03 face widths."""
    down = _down(landmarks)
    start = float(landmarks[topo.SUBNASALE, :2].astype(np.float64) @ down) - _HAIR_ABOVE_NOSE * width
    xs = np.arange(shape[1], dtype=np.float32)[None, :]
    ys = np.arange(shape[0], dtype=np.float32)[:, None]
    depth = xs * np.float32(down[0]) + ys * np.float32(down[1]) - np.float32(start)
    return np.asarray(np.clip(depth / np.float32(0.03 * width) + 0.5, 0.0, 1.0), np.float32)


def _down(landmarks: Landmarks) -> npt.NDArray[np.float64]:
    """The face's downward unit vector in the picture (from the bridge of the nose to the chin)."""
    p = landmarks[:, :2].astype(np.float64)
    down = p[topo.CHIN] - p[topo.NOSE_BRIDGE]
    return np.asarray(down / max(float(np.linalg.norm(down)), 1e-6), np.float64)


_HAIR_ABOVE_NOSE = 0.02  # of the face width: a moustache's top edge sits at about the nostrils' base


def eye_openings(shape: tuple[int, ...], landmarks: Landmarks, grow: int = 0) -> npt.NDArray[np.uint8]:
    """255 on the eyes' openings (their landmark rings filled), grown by `grow` pixels."""
    mask = np.zeros(shape[:2], np.uint8)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        fill_polygon(mask, landmarks[ring, :2])
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask


def _eye_mask(shape: tuple[int, int], landmarks: Landmarks, width: float) -> FloatImage:
    """0..1 over the eyes' openings, a little past the lid margin, softened."""
    grow = max(1, int(round(_EYE_MARGIN * width)))
    mask = eye_openings(shape, landmarks, grow)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.5, 0.5 * grow))
    return np.asarray(np.clip(2.0 * soft, 0.0, 1.0), np.float32)


_EYE_MARGIN = 0.015  # of the face width: the lashes and lid margin round the opening
