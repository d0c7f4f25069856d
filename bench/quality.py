"""Picture-quality measures for the codec bench (bench/codec.py): face region, foreground, landmarks.

Every measure compares a decoded frame with the ORIGINAL camera frame, in regions taken from the
original (MediaPipe landmarks detected on it, a reference alpha matte made from it), so every
codec and facewire are judged on the same pixels. Luma is Y = 0.299 R + 0.587 G + 0.114 B as
float64; SSIM is the map of `skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255, full=True)` computed on a crop (the mask's
box + 8 px) and averaged inside the mask; PSNR is over the same mask. `ssim_map` computes that map
with OpenCV's separable filter (4x faster; it is the bench's slowest part) and `check_ssim` proves
it equal to scikit-image's, to 1e-9, on the caller's pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt
from skimage.metrics import structural_similarity

from facewire.shared.face import topology as topo
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio

SSIM_SIGMA = 1.5
SSIM_RANGE = 255.0

Image = npt.NDArray[np.uint8]  # HxWx3 BGR
Luma = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Points = npt.NDArray[np.float32]  # (478, 3) pixels, MediaPipe face mesh with irises

CROP_MARGIN = 8  # px around a region: SSIM's 11x11 window needs 5 px of real picture beyond the mask
BOX_GROWTH = 0.10  # the landmark box is grown by this share of its size on each side
GREY = 128.0  # '#808080', the background facewire's output is composited on in the bench
MATTE_BAND = 15  # px the reference matte is dilated by, so a halo or a bitten edge counts
PSNR_CAP = 99.0  # dB for identical regions: a finite number keeps means defined



def luma(image: Image) -> Luma:
    b, g, r = (image[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def face_oval_mask(points: Points, shape: tuple[int, int]) -> Mask:
    """The filled face-oval polygon of the landmarks, as an HxW mask."""
    mask = np.zeros(shape, np.uint8)
    polygon = np.round(points[topo.face_oval_ring(), :2]).astype(np.int32)
    cv2.fillPoly(mask, [polygon], 1)
    return mask.astype(bool)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), inside the image


def mask_box(mask: Mask, margin: int) -> Box | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return (max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
            min(w, int(xs.max()) + 1 + margin), min(h, int(ys.max()) + 1 + margin))


def landmark_box_mask(points: Points, shape: tuple[int, int], growth: float = BOX_GROWTH) -> Mask:
    """The bounding box of all landmarks, grown by `growth` of its size on each side, as a mask."""
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    pad = (hi - lo) * growth
    (x0, y0), (x1, y1) = np.floor(lo - pad).astype(int), np.ceil(hi + pad).astype(int)
    mask = np.zeros(shape, bool)
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return mask


@cache
def _gaussian_taps(sigma: float) -> npt.NDArray[np.float64]:
    radius = int(3.5 * sigma + 0.5)  # scikit-image's truncate=3.5, as scipy.ndimage rounds it
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * x**2 / sigma**2)
    return taps / taps.sum()


def ssim_map(a: Luma, b: Luma) -> Luma:
    """scikit-image's Gaussian SSIM map (population covariance, K1 0.01, K2 0.03, reflected borders)."""
    taps = _gaussian_taps(SSIM_SIGMA)

    def blur(image: Luma) -> Luma:
        return np.asarray(cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT), np.float64)

    ux, uy = blur(a), blur(b)
    vx, vy, vxy = blur(a * a) - ux * ux, blur(b * b) - uy * uy, blur(a * b) - ux * uy
    c1, c2 = (0.01 * SSIM_RANGE) ** 2, (0.03 * SSIM_RANGE) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def check_ssim(a: Luma, b: Luma, tolerance: float = 1e-9) -> float:
    """The largest difference between `ssim_map` and scikit-image's map on a, b; raises above tolerance."""
    _, reference = structural_similarity(a, b, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False,
                                         data_range=SSIM_RANGE, full=True)
    diff = float(np.abs(ssim_map(a, b) - reference).max())
    if not diff <= tolerance:
        raise AssertionError(f"ssim_map differs from scikit-image's by {diff}")
    return diff


@dataclass(frozen=True)
class RegionScore:
    ssim: float
    psnr: float


def region_score(reference: Luma, decoded: Luma, mask: Mask, verify: bool = False) -> RegionScore | None:
    """SSIM map (computed on the mask's box + CROP_MARGIN) averaged inside the mask; PSNR inside it.
    verify: also check the map against scikit-image's on this crop (check_ssim)."""
    box = mask_box(mask, CROP_MARGIN)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    a, b, m = reference[y0:y1, x0:x1], decoded[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    if min(a.shape) < 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1:  # scikit-image refuses crops under one window
        return None
    if verify:
        check_ssim(a, b)
    mse = float(np.mean((a[m] - b[m]) ** 2))
    psnr = PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))
    return RegionScore(float(ssim_map(a, b)[m].mean()), psnr)


def composite(image: Image, alpha: npt.NDArray[np.float32]) -> Image:
    """The image over a #808080 background with the given alpha (HxW in [0, 1])."""
    a = alpha[..., None].astype(np.float64)
    return np.clip(a * image + (1 - a) * GREY + 0.5, 0, 255).astype(np.uint8)


def foreground_mask(alpha: npt.NDArray[np.float32], band: int = MATTE_BAND) -> Mask:
    """The reference matte's person (alpha > 0.5) dilated by `band` px: the region foreground scores cover."""
    core = (alpha > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    return cv2.dilate(core, kernel).astype(bool)


def openness(points: Points) -> tuple[float, float]:
    """(mouth, eyes): inner-lip gap over mouth width; lid gap over eye width, both eyes averaged."""
    p = points.astype(np.float64)
    return mouth_ratio(p), 0.5 * (eye_open_ratio(p, "right") + eye_open_ratio(p, "left"))


def landmark_error(reference: Points, decoded: Points) -> float:
    """Mean image-plane distance (px) over all landmarks (MediaPipe's z is not comparable across frames)."""
    return float(np.linalg.norm(reference[:, :2] - decoded[:, :2], axis=1).mean())


def correlation(a: list[float], b: list[float]) -> float:
    """Pearson correlation; NaN when either series is (nearly) constant or too short to mean anything."""
    if len(a) < 3 or np.std(a) < 1e-6 or np.std(b) < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class FaceMesher:
    """MediaPipe FaceMesh (478 points with irises) in video mode: one instance per frame sequence."""

    def __init__(self) -> None:
        from mediapipe.python.solutions.face_mesh import FaceMesh

        self._mesh = FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                              min_detection_confidence=0.5, min_tracking_confidence=0.5)

    def detect(self, image: Image) -> Points | None:
        h, w = image.shape[:2]
        result = self._mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h, p.z * w) for p in lm], np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class FrameScore:
    """One decoded frame against its original; None where the measure has no region or no face."""

    face: RegionScore | None
    box_ssim: float | None
    foreground: RegionScore | None
    face_found: bool | None  # None: no face on the original, nothing to re-detect
    landmark_px: float | None
    openness: tuple[float, float] | None  # decoded (mouth, eyes)


def score_frame(original: Image, decoded: Image, points: Points | None, alpha: npt.NDArray[np.float32],
                decoded_points: Points | None, decoded_is_composited: bool, verify: bool = False) -> FrameScore:
    """All per-frame measures. `decoded_is_composited`: the decoded frame is already on #808080
    (facewire's output), so only the original is composited with the reference alpha. verify:
    check the SSIM map against scikit-image's on the face crop."""
    y_orig, y_dec = luma(original), luma(decoded)
    shape = (original.shape[0], original.shape[1])
    fg_dec = decoded if decoded_is_composited else composite(decoded, alpha)
    foreground = region_score(luma(composite(original, alpha)), luma(fg_dec), foreground_mask(alpha))
    if points is None:
        return FrameScore(None, None, foreground, None, None, None)
    face = region_score(y_orig, y_dec, face_oval_mask(points, shape), verify)
    box = region_score(y_orig, y_dec, landmark_box_mask(points, shape))
    box_ssim = box.ssim if box else None
    if decoded_points is None:
        return FrameScore(face, box_ssim, foreground, False, None, None)
    return FrameScore(face, box_ssim, foreground, True, landmark_error(points, decoded_points), openness(decoded_points))


def summarise(scores: list[FrameScore], original_points: list[Points | None]) -> dict[str, float]:
    """Per-clip aggregates of per-frame scores (means; correlations over frames with both faces)."""

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    with_face = [s for s in scores if s.face_found is not None]
    pairs = [(openness(p), s.openness) for s, p in zip(scores, original_points, strict=True)
             if p is not None and s.openness is not None]
    return {
        "face_ssim": mean([s.face.ssim for s in scores if s.face]),
        "face_psnr": mean([s.face.psnr for s in scores if s.face]),
        "box_ssim": mean([s.box_ssim for s in scores if s.box_ssim is not None]),
        "fg_ssim": mean([s.foreground.ssim for s in scores if s.foreground]),
        "fg_psnr": mean([s.foreground.psnr for s in scores if s.foreground]),
        "landmark_px": mean([s.landmark_px for s in scores if s.landmark_px is not None]),
        "no_face_frac": (sum(not s.face_found for s in with_face) / len(with_face)) if with_face else float("nan"),
        "mouth_corr": correlation([o[0] for o, _ in pairs], [d[0] for _, d in pairs]),
        "eye_corr": correlation([o[1] for o, _ in pairs], [d[1] for _, d in pairs]),
        "frames_scored": float(len(scores)),
        "frames_with_face": float(len(with_face)),
    }
