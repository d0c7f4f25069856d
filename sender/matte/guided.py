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


def apply_coefficients(a: F32, b: F32, guide_full: F32) -> F32:
    """Upsample (A, b) to the full guide's size and evaluate A . guide + b there."""
    h, w = guide_full.shape[:2]
    a_up = np.asarray(cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    q = np.asarray(cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    if guide_full.ndim == 2:
        return np.asarray(a_up * guide_full + q, np.float32)
    # per-channel planes: contiguous multiply-adds are several times faster than strided ones
    for a_c, g_c in zip(cv2.split(a_up), cv2.split(guide_full), strict=True):
        q += a_c * g_c
    return q


def sample_coefficients(a: F32, b: F32, ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp], full_hw: tuple[int, int]) -> tuple[F32, F32]:
    """(A, b) bilinearly interpolated at full-resolution pixels (ys, xs), with the pixel-centre
    alignment cv2.resize uses, so a sparse set of pixels costs only its own size."""
    h, w = full_hw
    lh, lw = b.shape
    u = np.clip((xs + 0.5) * (lw / w) - 0.5, 0.0, lw - 1.0)
    v = np.clip((ys + 0.5) * (lh / h) - 0.5, 0.0, lh - 1.0)
    x0, y0 = np.minimum(u.astype(np.intp), lw - 2 if lw > 1 else 0), np.minimum(v.astype(np.intp), lh - 2 if lh > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, lw - 1), np.minimum(y0 + 1, lh - 1)
    fx, fy = (u - x0).astype(np.float32), (v - y0).astype(np.float32)
    w00, w01, w10, w11 = (1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy

    def lerp(m: F32) -> F32:
        if m.ndim == 3:
            return (m[y0, x0] * w00[:, None] + m[y0, x1] * w01[:, None] + m[y1, x0] * w10[:, None] + m[y1, x1] * w11[:, None]).astype(
                np.float32
            )
        return (m[y0, x0] * w00 + m[y0, x1] * w01 + m[y1, x0] * w10 + m[y1, x1] * w11).astype(np.float32)

    return lerp(a), lerp(b)


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

    The band is every pixel whose 3x3 neighbourhood in `alpha` is not all certain (< lo or > 1-lo),
    so sure background stays exactly 0 and sure foreground exactly 1. The filter is evaluated at
    the band's pixels only (typically a few per cent of the frame).
    """
    unsure = ((alpha > lo) & (alpha < 1.0 - lo)).astype(np.uint8)
    if not unsure.any():
        return alpha
    band = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    pts = cv2.findNonZero(band)  # (N, 1, 2) x, y; several times faster than np.nonzero here
    xs, ys = pts[:, 0, 0].astype(np.intp), pts[:, 0, 1].astype(np.intp)
    a, b = guided_coefficients(guide_low, alpha_low, radius, eps)
    a_s, b_s = sample_coefficients(a, b, ys, xs, (alpha.shape[0], alpha.shape[1]))
    g = guide_full[ys, xs].astype(np.float32)
    q = b_s + (a_s * g).sum(axis=1) if g.ndim == 2 else b_s + a_s * g
    out = alpha.copy()
    out[ys, xs] = np.clip(q, 0.0, 1.0)
    return out
