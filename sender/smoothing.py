"""One-Euro filtering of face landmarks (Casiez, Roussel, Vogel, CHI 2012), vectorised.

Every landmark gets its own adaptive low-pass: the cutoff rises with that point's speed, so a
still face is smoothed hard (jitter gone) while a moving one is followed closely (little lag).
Speeds are measured in face units per second (the caller passes the face scale in pixels), so
one set of parameters works whether the face is near the camera or far from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OneEuroParams:
    """min_cutoff in Hz (smoothing of a still point), beta in 1/(face unit) (how fast the cutoff
    opens with speed), d_cutoff in Hz (smoothing of the speed estimate itself)."""

    # Chosen on recorded MediaPipe tracks (bench/sender.py): still-head jitter down ~6x, lag
    # under half a frame on a head panning at ~1 face width per second and on talking clips.
    # d_cutoff 3 Hz, not the paper's 1: at 1 Hz the speed estimate took ~5 frames to follow a
    # blink, so the cutoff stayed shut while the lids moved and the filtered eye opening kept
    # 0.915-0.995 (correlation) of the raw one on the 8 clips (blinks clipped and late); at 3 Hz
    # 0.962-0.997, still-head jitter 0.165 -> 0.171 of the raw.
    min_cutoff: float = 1.0
    beta: float = 8.0
    d_cutoff: float = 3.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(f"OneEuroParams need min_cutoff > 0, d_cutoff > 0, beta >= 0, got {self}")


def _alpha(dt: float, cutoff: FloatArray | float) -> FloatArray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float32))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """State for filtering one (N, D) array of points over time.

    The speed used to open the cutoff is the norm over the D coordinates of each point, so the
    x, y and z of a landmark share one cutoff and a diagonal move is treated like a straight one.
    """

    def __init__(self, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self._x: FloatArray | None = None
        self._dx: FloatArray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = None
        self._t = None

    def __call__(self, x: npt.ArrayLike, t_s: float, scale: float = 1.0) -> FloatArray:
        """Filter the points `x` observed at time `t_s` (seconds); `scale` is pixels per face unit."""
        pts = np.asarray(x, dtype=np.float32)
        if pts.ndim != 2:
            raise ValueError(f"expected an (N, D) array of points, got shape {pts.shape}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if self._x is None or self._t is None or self._dx is None or self._x.shape != pts.shape:
            self._x, self._dx, self._t = pts.copy(), np.zeros_like(pts), t_s
            return pts.copy()
        dt = t_s - self._t
        if dt <= 0:
            # A repeated or out-of-order timestamp carries no new timing: keep the state as is.
            return self._x.copy()
        p = self.params
        dx = (pts - self._x) / dt
        dx_hat = self._dx + _alpha(dt, p.d_cutoff) * (dx - self._dx)
        speed = np.linalg.norm(dx_hat, axis=1, keepdims=True) / scale
        a = _alpha(dt, p.min_cutoff + p.beta * speed)
        x_hat = self._x + a * (pts - self._x)
        self._x, self._dx, self._t = x_hat.astype(np.float32), dx_hat.astype(np.float32), t_s
        return self._x.copy()


def jitter_px(track: npt.ArrayLike) -> float:
    """RMS frame-to-frame displacement of a (T, N, D) track in pixels, over x and y only.

    On a still head every displacement is noise, so this is the jitter a viewer sees.
    """
    arr = np.asarray(track, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 2:
        raise ValueError(f"expected a (T>=2, N, D) track, got shape {arr.shape}")
    d = np.diff(arr[:, :, :2], axis=0)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=2))))


def lag_frames(raw: npt.ArrayLike, smoothed: npt.ArrayLike, max_lag: float = 10.0) -> float:
    """How many frames `smoothed` trails `raw`, by the best-fitting (sub-frame) time shift.

    Both are (T, K) signals (e.g. a flattened landmark track). The shift that minimises the
    squared difference of the two velocity signals is searched on a 0.05-frame grid with linear
    interpolation, so a filter that only delays the signal reports its delay exactly.
    """
    r = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)  # type: ignore[arg-type]
    s = np.asarray(smoothed, dtype=np.float64).reshape(len(smoothed), -1)  # type: ignore[arg-type]
    if r.shape != s.shape or r.shape[0] < 4:
        raise ValueError(f"raw and smoothed must be equal (T>=4, ...) arrays, got {r.shape} and {s.shape}")
    vr, vs = np.diff(r, axis=0), np.diff(s, axis=0)
    n = vr.shape[0]
    t = np.arange(n, dtype=np.float64)
    best, best_err = 0.0, math.inf
    for shift in np.arange(0.0, max_lag + 1e-9, 0.05):
        lo, hi = int(math.ceil(shift)), n
        if hi - lo < 3:
            break
        tt = t[lo:hi] - shift  # smoothed at time t matches raw at time t - shift
        i0 = np.clip(np.floor(tt).astype(int), 0, n - 2)
        w = (tt - i0)[:, None]
        shifted = vr[i0] * (1.0 - w) + vr[i0 + 1] * w
        err = float(np.mean((vs[lo:hi] - shifted) ** 2))
        if err < best_err:
            best, best_err = float(shift), err
    return best
