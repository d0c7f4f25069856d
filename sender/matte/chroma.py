"""Chroma keying for green, blue or any uniform backdrop (facewire.shared.types.Matter).

The key is a colour-difference key of the Vlahos/Keylight family, generalised to any screen
hue: the frame is rotated about the grey axis so that the screen's hue lands on green, and the
key signal is K = G' - max(R', B') (how much "more screen" than the other two primaries a pixel
is). Alpha is 1 - K(pixel) / K(plate) -- refined at the edges to (K_P - K) / (K_P - K_F) with K_F
the key of the nearest solid foreground, which removes the classic colour-difference bias
towards opaque edges on strongly coloured hair and skin -- where the plate is a clean plate of the screen estimated
per region from confident screen pixels (low resolution, filled by push-pull interpolation,
remembered over time behind the person), so uneven lighting does not leak into the matte. For
a backdrop with little colour (a grey or white wall) the colour difference vanishes and the
key becomes a difference key against that same plate.

The key is computed at full resolution by default (measured better on 4:2:0 test footage than
a half-resolution key upsampled with a luma-guided filter, which `work_scale=0.5` still offers
as the cheaper mode). Foreground colours for
the keyframe come from `foreground()`: the plate's contribution removed from edge pixels
(C - (1 - a) P, un-premultiplied) and despilled (G' limited to the mean of R' and B').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.sender.matte.guided import refine_in_band
from facewire.shared.types import Alpha, CapturedFrame, Image

F32 = npt.NDArray[np.float32]

_U1 = np.array([-1.0, 0.0, 1.0]) / math.sqrt(2.0)  # (R - B) / sqrt 2, on BGR vectors
_U2 = np.array([-1.0, 2.0, -1.0]) / math.sqrt(6.0)  # (2G - R - B) / sqrt 6
_GREY = np.ones(3) / math.sqrt(3.0)
_GREEN_ANGLE = math.pi / 2


@dataclass(frozen=True)
class ScreenEstimate:
    """The backdrop colour (BGR, 0..255), its chroma magnitude in levels, and the fraction of the
    frame's side and top border that matches it (how much of the border is screen)."""

    bgr: tuple[float, float, float]
    saturation: float
    coverage: float


@dataclass(frozen=True)
class ChromaConfig:
    """screen_bgr: fix the screen colour instead of estimating it. clip_black / clip_white: raw
    key values at or below / above which alpha is exactly 0 / 1; noise_clip widens them to that
    many standard deviations of the key's noise measured on the screen each frame (so sensor
    noise never shows as a veil on the screen or holes in the subject). work_scale: the key is
    computed at this fraction of full resolution (0.5 is ~3x cheaper at 1280x720; alpha is then
    brought back with a luma-guided filter in the edge band, at some loss on fine edges).
    fg_aware: normalise each edge pixel by the key of the nearest solid foreground (within
    fg_reach pixels of the core eroded by fg_erode) instead of assuming a neutral foreground.
    min_saturation: below this screen chroma (levels) a difference key is used instead.
    plate_cell: clean-plate cell size in pixels. plate_memory: per-frame decay of how much a
    remembered plate cell is trusted."""

    screen_bgr: tuple[int, int, int] | None = None
    clip_black: float = 0.0
    clip_white: float = 1.0
    noise_clip: float = 4.0
    fg_aware: bool = True
    fg_erode: int = 1
    fg_reach: float = 4.0
    work_scale: float = 1.0
    min_saturation: float = 18.0
    diff_low: float = 14.0
    diff_high: float = 45.0
    plate_cell: int = 8
    plate_rate: float = 0.25
    plate_memory: float = 0.98
    guide_radius: int = 2
    guide_eps: float = 4e-4
    screen_every: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.work_scale <= 1.0:
            raise ValueError(f"work_scale must be in (0, 1], got {self.work_scale}")
        if not 0.0 <= self.clip_black < self.clip_white <= 1.0:
            raise ValueError(f"need 0 <= clip_black < clip_white <= 1, got {self.clip_black}, {self.clip_white}")
        if self.plate_cell < 2 or self.guide_radius < 1 or self.screen_every < 1:
            raise ValueError("plate_cell >= 2, guide_radius >= 1 and screen_every >= 1 are required")
        if not 0.0 < self.plate_rate <= 1.0 or not 0.0 < self.plate_memory <= 1.0:
            raise ValueError("plate_rate and plate_memory must be in (0, 1]")


def opponent(bgr: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The two chroma coordinates (R - B)/sqrt2 and (2G - R - B)/sqrt6 of BGR colours (..., 3)."""
    c = np.asarray(bgr, dtype=np.float64)
    return c @ _U1, c @ _U2


def hue_rotation(screen_bgr: npt.ArrayLike) -> F32:
    """3x3 matrix on BGR vectors that rotates about the grey axis so the screen's hue becomes green's."""
    c1, c2 = opponent(screen_bgr)
    d = _GREEN_ANGLE - math.atan2(float(c2), float(c1))
    basis = np.stack([_U1, _U2], axis=1)  # 3x2
    rot = np.array([[math.cos(d), -math.sin(d)], [math.sin(d), math.cos(d)]])
    m = np.outer(_GREY, _GREY) + basis @ rot @ basis.T
    return m.astype(np.float32)


def key_signal(bgr: F32, rot: F32) -> F32:
    """K = G' - max(R', B') of BGR pixels, primes denoting the hue-rotated colour (rot)."""
    # min(G' - R', G' - B') from one transform; OpenCV's 3-row transform is ~10x faster than its
    # 2-row one, so the third row is a dummy
    km = np.stack([rot[1] - rot[2], rot[1] - rot[0], np.zeros(3)]).astype(np.float32)
    t = cv2.transform(bgr, km)
    return np.asarray(cv2.min(cv2.extractChannel(t, 0), cv2.extractChannel(t, 1)), np.float32)


def _border_mask(h: int, w: int, frac: float = 0.15) -> npt.NDArray[np.bool_]:
    m = np.zeros((h, w), bool)
    bw, bh = max(1, int(w * frac)), max(1, int(h * frac))
    m[:, :bw] = m[:, w - bw :] = True
    m[:bh, :] = True
    return m


def estimate_screen(image: Image, radius: float = 14.0) -> ScreenEstimate:
    """The dominant colour of the frame's sides and top: the mode of a chroma histogram of the
    border (where a backdrop shows even when the person fills the middle and bottom), refined
    to the median of all frame pixels of that chroma."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got {image.shape}")
    h, w = image.shape[:2]
    step = max(1, min(h, w) // 64)
    # halving first: OpenCV's 2x area reduction is a fast path, a direct 7x one costs ~1 ms at 640x480
    reduced = image
    while min(reduced.shape[:2]) >= 128:
        reduced = cv2.resize(reduced, (reduced.shape[1] // 2, reduced.shape[0] // 2), interpolation=cv2.INTER_AREA)
    small = cv2.resize(reduced, (max(8, w // step), max(8, h // step)), interpolation=cv2.INTER_AREA)
    px = small.reshape(-1, 3).astype(np.float64)
    c1, c2 = opponent(px)
    border = _border_mask(small.shape[0], small.shape[1]).reshape(-1)
    edges = np.arange(-160.0, 161.0, 8.0)
    counts, _, _ = np.histogram2d(c1[border], c2[border], bins=[edges, edges])  # type: ignore[list-item]
    hist = cv2.blur(counts.astype(np.float32), (3, 3))
    i, j = np.unravel_index(int(np.argmax(hist)), hist.shape)
    m1, m2 = (edges[i] + edges[i + 1]) / 2, (edges[j] + edges[j + 1]) / 2
    near = np.hypot(c1 - m1, c2 - m2) < radius
    if not near.any():
        near = border
    bgr = np.median(px[near], axis=0)
    s1, s2 = opponent(bgr)
    sat = math.hypot(s1, s2)
    b1, b2 = c1[border], c2[border]
    if sat >= 2 * radius:
        # same hue within 20 degrees and at least half the saturation: unevenly lit screen still counts
        mag = np.hypot(b1, b2)
        cos = (b1 * s1 + b2 * s2) / np.maximum(mag * sat, 1e-9)
        coverage = float(np.mean((cos > math.cos(math.radians(20))) & (mag > 0.5 * sat)))
    else:
        coverage = float(np.mean(np.hypot(b1 - s1, b2 - s2) < radius))
    return ScreenEstimate(bgr=(float(bgr[0]), float(bgr[1]), float(bgr[2])), saturation=float(math.hypot(s1, s2)), coverage=coverage)


def push_pull_fill(values: F32, weight: F32) -> F32:
    """Fill a sparse low-resolution map: weighted values where the weight is high, smooth
    interpolation from coarser pyramid levels where it is low (normalised convolution)."""
    if values.shape[:2] != weight.shape:
        raise ValueError(f"values {values.shape} and weight {weight.shape} differ in size")
    w3 = weight[:, :, None] if values.ndim == 3 else weight
    levels: list[tuple[F32, F32]] = []
    num, den = (values * w3).astype(np.float32), weight.astype(np.float32)
    while min(den.shape[:2]) > 2:
        levels.append((num, den))
        num, den = np.asarray(cv2.pyrDown(num), np.float32), np.asarray(cv2.pyrDown(den), np.float32)
    d3 = den[:, :, None] if values.ndim == 3 else den
    total = float(den.sum())
    if total <= 1e-6:
        est = np.zeros_like(num)
    else:
        mean = (num.reshape(-1, *num.shape[2:]).sum(axis=0) / total).astype(np.float32)
        est = np.where(d3 > 1e-3, num / np.maximum(d3, 1e-3), mean).astype(np.float32)
    for n, d in reversed(levels):
        up = cv2.pyrUp(est, dstsize=(d.shape[1], d.shape[0]))
        dd = np.clip(d, 0.0, 1.0)
        dd3 = dd[:, :, None] if values.ndim == 3 else dd
        avg = n / np.maximum(d[:, :, None] if values.ndim == 3 else d, 1e-6)
        est = (dd3 * avg + (1.0 - dd3) * up).astype(np.float32)
    return est


class ChromaMatter:
    """Colour-difference keyer with an automatic, per-region clean plate (see module docstring)."""

    name = "chroma"

    def __init__(self, config: ChromaConfig | None = None) -> None:
        self.config = config or ChromaConfig()
        self.reset()

    def close(self) -> None:
        return None  # nothing held but arrays

    def reset(self) -> None:
        self._screen: ScreenEstimate | None = None
        self._rot: F32 | None = None
        self._plate: F32 | None = None  # remembered plate (low-res BGR float)
        self._trust: F32 | None = None  # how much each remembered cell is trusted
        self._plate_filled: F32 | None = None
        self._sure_bg: npt.NDArray[np.uint8] | None = None
        self.noise_sd = 0.0
        self._frames = 0
        self._last_image: Image | None = None
        self._last_alpha: Alpha | None = None
        self._fg_cache: Image | None = None

    @property
    def screen(self) -> ScreenEstimate | None:
        return self._screen

    def _update_screen(self, image: Image) -> None:
        c = self.config
        if c.screen_bgr is not None:
            if self._screen is None:
                s1, s2 = opponent(np.array(c.screen_bgr, dtype=np.float64))
                self._screen = ScreenEstimate(tuple(float(v) for v in c.screen_bgr), math.hypot(s1, s2), 1.0)  # type: ignore[arg-type]
        elif self._screen is None or self._frames % c.screen_every == 0:
            est = estimate_screen(image)
            if self._screen is not None:
                # drift slowly so the key does not jump when the estimate wobbles
                mix = np.array(self._screen.bgr) * 0.8 + np.array(est.bgr) * 0.2
                s1, s2 = opponent(mix)
                est = ScreenEstimate(tuple(float(v) for v in mix), math.hypot(s1, s2), est.coverage)  # type: ignore[arg-type]
            self._screen = est
        assert self._screen is not None
        self._rot = hue_rotation(self._screen.bgr)

    def _screen_key(self) -> float:
        assert self._screen is not None and self._rot is not None
        return float(key_signal(np.array(self._screen.bgr, np.float32).reshape(1, 1, 3), self._rot)[0, 0])

    def _noise_level(self, k: F32, kp: F32) -> float:
        """Robust spread of the key about the plate's over this frame's sure-screen cells, in
        levels (0 when there are too few)."""
        if self._sure_bg is None:
            return 0.0
        step = 4
        sub = k[::step, ::step] - kp[::step, ::step]
        sure = cv2.resize(self._sure_bg, (sub.shape[1], sub.shape[0]), interpolation=cv2.INTER_NEAREST)
        sample = sub[sure.astype(bool)]
        if sample.size < 50:
            return 0.0
        return 1.4826 * float(np.median(np.abs(sample - np.median(sample))))

    def _colour_key(self) -> bool:
        return self._screen is not None and self._screen.saturation >= self.config.min_saturation

    def _update_plate(self, low: F32) -> F32:
        """Clean plate at low resolution from this frame's confident screen cells."""
        assert self._screen is not None and self._rot is not None
        screen = np.array(self._screen.bgr, dtype=np.float32)
        if self._colour_key():
            k_low = key_signal(low, self._rot)
            k_screen = self._screen_key()
            rot = cv2.transform(low, self._rot)
            c1, c2 = opponent(rot)
            hue_ok = (c2 > 0) & (np.abs(c1) < 0.6 * c2)  # within ~30 degrees of the screen hue
            sure = (k_low >= 0.55 * k_screen) & hue_ok
        else:
            # a plain backdrop: same colour direction (within ~6 degrees) and similar brightness,
            # so a light falloff across the wall is still recognised as wall
            n_low = np.linalg.norm(low, axis=2) + 1e-6
            n_scr = float(np.linalg.norm(screen)) + 1e-6
            cos = (low @ screen) / (n_low * n_scr)
            ratio = n_low / n_scr
            sure = (cos > 0.9945) & (ratio > 0.7) & (ratio < 1.4)
        kernel = np.ones((3, 3), np.uint8)
        sure_u8 = np.asarray(cv2.erode(sure.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE), np.uint8)
        self._sure_bg = sure_u8
        m = sure_u8.astype(np.float32)
        if self._plate is None or self._trust is None or self._plate.shape != low.shape:
            self._plate = np.where(m[:, :, None] > 0, low, screen).astype(np.float32)
            self._trust = m
        else:
            r = self.config.plate_rate
            upd = (1 - r) * self._plate + r * low
            # a cell not trusted yet takes the observation as it is
            fresh = (self._trust < 0.5)[:, :, None]
            upd = np.where(fresh, low, upd)
            self._plate = np.where(m[:, :, None] > 0, upd, self._plate).astype(np.float32)
            self._trust = np.maximum(self._trust * self.config.plate_memory, m).astype(np.float32)
        return push_pull_fill(self._plate, self._trust)

    def matte(self, frame: CapturedFrame) -> Alpha:
        img = frame.image
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if h < 16 or w < 16:
            raise ValueError(f"frame too small to key: {w}x{h}")
        c = self.config
        self._update_screen(img)
        self._frames += 1
        assert self._rot is not None
        cell = c.plate_cell
        low = cv2.resize(img, (max(4, w // cell), max(4, h // cell)), interpolation=cv2.INTER_AREA).astype(np.float32)
        plate_low = self._update_plate(low)
        self._plate_filled = plate_low

        ws = c.work_scale
        ww, wh = max(8, round(w * ws)), max(8, round(h * ws))
        work = img if ws == 1.0 else cv2.resize(img, (ww, wh), interpolation=cv2.INTER_AREA)
        work_f = work.astype(np.float32)
        if self._colour_key():
            kp = np.maximum(key_signal(plate_low, self._rot), 0.3 * self._screen_key())
            kp_work = cv2.resize(kp, (ww, wh), interpolation=cv2.INTER_LINEAR)
            k = key_signal(work_f, self._rot)
            # The key's noise is about constant in levels, so on a dim part of the screen (small
            # K_P) it is a larger share of alpha: the black clip point scales with 1 / K_P. It is
            # smooth, so it is worked out on the plate grid and upsampled.
            sd_k = self._noise_level(k, kp_work)
            self.noise_sd = sd_k
            lo_low = np.clip(np.float32(c.noise_clip * sd_k) / kp, c.clip_black, 0.3)
            lo = cv2.resize(lo_low, (ww, wh), interpolation=cv2.INTER_LINEAR)
            hi = min(c.clip_white, 1.0 - min(c.noise_clip * sd_k / float(np.median(kp)), 0.3))
            raw = foreground_aware_alpha(k, kp_work, c.fg_erode, c.fg_reach) if c.fg_aware else vlahos_alpha(k, kp_work)
            a_work = np.clip(cv2.divide(cv2.subtract(raw, lo), cv2.subtract(hi, lo)), 0.0, 1.0)
        else:
            plate_work = cv2.resize(plate_low, (ww, wh), interpolation=cv2.INTER_LINEAR)
            diff = cv2.subtract(work_f, plate_work)
            # per-pixel Euclidean colour distance with OpenCV's vectorised ops (numpy's sum over
            # the channel axis alone costs several ms a frame)
            dist = cv2.sqrt(cv2.transform(cv2.multiply(diff, diff), np.ones((1, 3), np.float32)))
            raw = (dist - c.diff_low) / (c.diff_high - c.diff_low)
            a_work = np.clip((raw - c.clip_black) / (c.clip_white - c.clip_black), 0.0, 1.0).astype(np.float32)
        if ws == 1.0:
            alpha = a_work
        else:
            a_full = cv2.resize(a_work, (w, h), interpolation=cv2.INTER_LINEAR)
            luma = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
            luma_work = np.asarray(cv2.resize(luma, (ww, wh), interpolation=cv2.INTER_AREA), np.float32)
            alpha = refine_in_band(a_full, luma_work, a_work, luma, c.guide_radius, c.guide_eps)
        # a copy: capture may reuse its buffer before foreground() is asked for
        self._last_image, self._last_alpha, self._fg_cache = img.copy(), alpha, None
        return alpha

    def plate(self) -> Image | None:
        """The current clean plate at the last frame's size (BGR), or None before the first frame."""
        if self._plate_filled is None or self._last_image is None:
            return None
        h, w = self._last_image.shape[:2]
        up = cv2.resize(self._plate_filled, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(up, 0, 255).astype(np.uint8)

    def foreground(self) -> Image | None:
        """The last frame's foreground colours: screen removed from edge pixels, despilled.

        Straight (not premultiplied) colour, so `alpha * fg + (1 - alpha) * background` is the
        composite; where alpha is 0 the frame's despilled colour is returned (harmless under a 0
        alpha, and keeps the image smooth for the encoder).
        """
        if self._last_image is None or self._last_alpha is None or self._rot is None:
            return None
        if self._fg_cache is None:
            plate = self.plate()
            assert plate is not None
            self._fg_cache = unmix_and_despill(self._last_image, self._last_alpha, plate, self._rot)
        return self._fg_cache

    @property
    def last_despilled(self) -> Image | None:
        return self.foreground()


def vlahos_alpha(k: F32, kp: F32) -> F32:
    """Raw alpha 1 - K / K_P: the classic colour-difference key against the plate's key."""
    return np.asarray(cv2.subtract(1.0, cv2.divide(k, kp)), np.float32)


def foreground_aware_alpha(k: F32, kp: F32, erode: int, reach: float) -> F32:
    """Raw alpha (K_P - K) / (K_P - K_F), K_F the key of the nearest solid-foreground pixel.

    Vlahos' 1 - K/K_P assumes the foreground's key K_F is 0 and so gives the largest alpha any
    foreground could explain: a pixel half light-brown hair (K_F about -0.5 K_P) and half screen
    reads 0.75. Taking K_F from the nearest pixel of the solid core (K <= 0, eroded by `erode`
    so the mixed rim is not in it) removes that bias. Pixels farther than `reach` from the core
    (loose hair) or from the screen (the subject's interior) keep K_F = 0.
    """
    # K_F varies slowly (a local mean), so it is estimated at half resolution and upsampled
    h, w = k.shape
    ks = np.asarray(cv2.resize(k, (w // 2, h // 2), interpolation=cv2.INTER_AREA), np.float32)
    core = cv2.erode((ks <= 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, erode // 2))
    core_f = core.astype(np.float32)
    size = (2 * max(1, round(reach / 2)) + 1,) * 2
    # mean key of the core pixels within `reach`: a box-filtered, normalised sum; core keys are
    # <= 0, and where no core pixel is in reach num = 0, so K_F = 0 there (plain Vlahos)
    num = cv2.boxFilter(ks * core_f, -1, size, normalize=False)
    den = cv2.boxFilter(core_f, -1, size, normalize=False)
    kf_small = cv2.divide(num, cv2.max(den, 1.0))
    # only the rim next to the screen is an edge: inside the subject (eyes, grey or greenish
    # details next to skin) the plain key stays, or such pixels would turn see-through
    kps = np.asarray(cv2.resize(kp, (w // 2, h // 2), interpolation=cv2.INTER_AREA), np.float32)
    screen = (ks >= 0.5 * kps).astype(np.uint8)
    near = cv2.dilate(screen, np.ones((2 * round(reach) + 1,) * 2, np.uint8))
    kf_small = kf_small * near.astype(np.float32)
    kf = cv2.max(cv2.resize(kf_small, (w, h), interpolation=cv2.INTER_LINEAR), cv2.multiply(kp, -2.0))
    return np.asarray(cv2.divide(cv2.subtract(kp, k), cv2.subtract(kp, kf)), np.float32)


def _despill_planes(planes: list[F32], rot: F32) -> list[F32]:
    """Despill B, G, R float planes in place of a colour-space round trip: the spill is how far
    G' exceeds the mean of R' and B', and it is removed along the G' axis (both read off rot)."""
    w = rot[1] - 0.5 * (rot[0] + rot[2])
    d = rot[1]
    spill = np.maximum(planes[0] * np.float32(w[0]) + planes[1] * np.float32(w[1]) + planes[2] * np.float32(w[2]), 0)
    return [p - spill * np.float32(d[i]) for i, p in enumerate(planes)]


def despill(bgr: F32, rot: F32) -> F32:
    """Limit the screen primary to the mean of the other two, in the screen-aligned colour space."""
    planes = [np.ascontiguousarray(bgr[:, :, i], dtype=np.float32) for i in range(3)]
    return np.asarray(cv2.merge(_despill_planes(planes, rot)), np.float32)


def unmix_and_despill(image: Image, alpha: Alpha, plate: Image, rot: F32, min_alpha: float = 0.05) -> Image:
    """Straight foreground colour F from C = a F + (1 - a) P, then despilled. Below min_alpha the
    unmixing would amplify noise, so the pixel's own (despilled) colour fades in instead."""
    # plane by plane: numpy's (H, W, 1) x (H, W, 3) broadcasting is several times slower
    a = np.asarray(alpha, np.float32)
    inv_a = 1.0 / np.maximum(a, np.float32(min_alpha))
    one_minus_a = 1.0 - a
    t = np.minimum(a * np.float32(1.0 / min_alpha), np.float32(1.0))
    planes = []
    for c8, p8 in zip(cv2.split(image), cv2.split(plate), strict=True):
        c = c8.astype(np.float32)
        f = (c - one_minus_a * p8.astype(np.float32)) * inv_a
        planes.append(np.clip(c + t * (f - c), 0.0, 255.0))  # t F + (1 - t) C
    out = cv2.merge(_despill_planes(planes, rot))
    return np.asarray(np.clip(out + 0.5, 0, 255), np.uint8)
