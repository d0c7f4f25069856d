"""Fast guided filter (He & Sun, "Fast Guided Filter", 2015) for refining mattes at edges.

The linear coefficients are solved on a subsampled image and upsampled, so the cost at full
resolution is a couple of multiply-adds per pixel. OpenCV's cv2.ximgproc.guidedFilter solves
them at full resolution (about 20 ms for a 640x480 colour guide on one core), which does not
fit the sender's budget, hence this small version on cv2 box filters.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def _box(x: F32, r: int) -> F32:
    return np.asarray(cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT), np.float32)


def guided_coefficients(guide: F32, src: F32, radius: int, eps: float) -> tuple[F32, F32]:
    """Box-averaged coefficients (A, b) with src ~ A . guide + b in every window.

    guide: HxW (grey) or HxWx3 (colour) float32 in [0, 1]; src: HxW float32. A has the guide's
    channel count; b is HxW.
    """
    if guide.shape[:2] != src.shape[:2]:
        raise ValueError(f"guide {guide.shape} and src {src.shape} differ in size")
    if radius < 1 or eps <= 0:
        raise ValueError(f"radius must be >= 1 and eps > 0, got {radius}, {eps}")
    mean_p = _box(src, radius)
    if guide.ndim == 2:
        mean_i = _box(guide, radius)
        cov_ip = _box(guide * src, radius) - mean_i * mean_p
        var_i = _box(guide * guide, radius) - mean_i * mean_i
        a = cov_ip / (var_i + eps)
        b = mean_p - a * mean_i
        return _box(a, radius), _box(b, radius)
    chans = [np.ascontiguousarray(guide[:, :, c]) for c in range(3)]
    mean = [_box(c, radius) for c in chans]
    cov_p = [_box(c * src, radius) - m * mean_p for c, m in zip(chans, mean, strict=True)]
    # symmetric 3x3 covariance per pixel, regularised, inverted by cofactors
    s: dict[tuple[int, int], F32] = {}
    for i in range(3):
        for j in range(i, 3):
            prod = np.asarray(chans[i] * chans[j], np.float32)
            s[i, j] = _box(prod, radius) - mean[i] * mean[j] + (eps if i == j else 0.0)
    a00, a01, a02, a11, a12, a22 = s[0, 0], s[0, 1], s[0, 2], s[1, 1], s[1, 2], s[2, 2]
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    det = a00 * c00 + a01 * c01 + a02 * c02
    inv_det = 1.0 / det
    a0 = (c00 * cov_p[0] + c01 * cov_p[1] + c02 * cov_p[2]) * inv_det
    a1 = (c01 * cov_p[0] + c11 * cov_p[1] + c12 * cov_p[2]) * inv_det
    a2 = (c02 * cov_p[0] + c12 * cov_p[1] + c22 * cov_p[2]) * inv_det
    b = mean_p - a0 * mean[0] - a1 * mean[1] - a2 * mean[2]
    a_all = np.dstack([_box(a0, radius), _box(a1, radius), _box(a2, radius)])
    return a_all.astype(np.float32), _box(b, radius)


def apply_coefficients(a: F32, b: F32, guide_full: npt.NDArray[np.floating] | npt.NDArray[np.uint8]) -> F32:
    """Upsample (A, b) to the full guide's size and evaluate A . guide + b there.

    guide_full: HxW or HxWx3, float32 or uint8 (A must then be scaled to the guide's range)."""
    h, w = guide_full.shape[:2]
    a_up = np.asarray(cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    q = np.asarray(cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    # OpenCV's mixed-depth multiply and 1x3 transform (the channel sum) are several times
    # faster than numpy's broadcasting over the channel axis
    prod = cv2.multiply(a_up, np.asarray(guide_full, np.float32))
    if prod.ndim == 3:
        prod = cv2.transform(prod, np.ones((1, 3), np.float32))
    return np.asarray(cv2.add(prod, q), np.float32)


def refine_in_band(
    alpha: F32,
    guide_low: F32,
    alpha_low: F32,
    guide_full: npt.NDArray[np.floating] | npt.NDArray[np.uint8],
    radius: int,
    eps: float,
    lo: float = 0.02,
) -> F32:
    """Replace `alpha` (full size) by the guided-filter output only where it is uncertain.

    The band is every pixel whose 3x3 neighbourhood in `alpha` is not all certain (<= lo or >= 1-lo),
    so sure background stays exactly as it was (0) and sure foreground too (1). The filter is
    evaluated densely over the band's bounding box and copied in under the band's mask: a dense
    multiply-add (~0.6 ms for a whole 640x480 frame) is cheaper than gathering the band's pixels
    one by one (~3 ms for a typical 20k-pixel band).
    """
    lo_in, hi_in = float(np.nextafter(np.float32(lo), np.float32(1))), float(np.nextafter(np.float32(1 - lo), np.float32(0)))
    unsure = cv2.inRange(alpha, lo_in, hi_in)
    if cv2.countNonZero(unsure) == 0:
        return alpha
    band = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    a, b = guided_coefficients(guide_low, alpha_low, radius, eps)
    # only the band's bounding box is evaluated (the frame's margins around the person are not)
    x, y, bw, bh = cv2.boundingRect(band)
    h, w = alpha.shape[:2]
    a_up = np.asarray(cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)[y : y + bh, x : x + bw]
    q = np.asarray(cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)[y : y + bh, x : x + bw]
    # converting first is faster than OpenCV's mixed-depth multiply
    prod = cv2.multiply(a_up, np.asarray(guide_full[y : y + bh, x : x + bw], np.float32))
    if prod.ndim == 3:
        prod = cv2.transform(prod, np.ones((1, 3), np.float32))
    q = cv2.min(cv2.max(cv2.add(prod, q), 0.0), 1.0)
    out = alpha.copy()
    roi = out[y : y + bh, x : x + bw]
    cv2.copyTo(q, band[y : y + bh, x : x + bw], roi)
    return out
