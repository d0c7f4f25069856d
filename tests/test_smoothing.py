"""One-Euro landmark smoothing: noise removed on still points, little lag on moving ones."""

from __future__ import annotations

import numpy as np
import pytest

from facewire.sender.smoothing import OneEuroFilter, OneEuroParams, jitter_px, lag_frames

FPS = 30.0


def _run(track: np.ndarray, params: OneEuroParams | None = None, scale: float = 60.0) -> np.ndarray:
    f = OneEuroFilter(params)
    return np.array([f(p, i / FPS, scale=scale) for i, p in enumerate(track)])


def test_still_points_jitter_at_least_halved() -> None:
    rng = np.random.default_rng(0)
    still = np.tile(rng.uniform(0, 500, (1, 478, 3)), (90, 1, 1)) + rng.normal(0, 0.5, (90, 478, 3))
    out = _run(still)
    assert jitter_px(out[10:]) < 0.5 * jitter_px(still[10:])


def test_a_blink_keeps_its_shape() -> None:
    """Lids 8 px apart on a face of 100 px per unit close in two frames and reopen in two: the filtered
    opening follows (the speed estimate's own smoothing, d_cutoff, at the paper's 1 Hz gave 0.79)."""
    gap = np.array([8.0] * 10 + [4.0, 0.0, 0.0, 4.0, 8.0] + [8.0] * 6)
    lids = np.stack([np.zeros((len(gap), 2)), np.stack([np.zeros_like(gap), gap], axis=1)], axis=1)
    out = _run(lids, scale=100.0)
    filtered = out[:, 1, 1] - out[:, 0, 1]
    assert np.corrcoef(filtered, gap)[0, 1] > 0.85


def test_first_sample_passes_through_and_reset_forgets() -> None:
    f = OneEuroFilter()
    x = np.array([[10.0, 20.0, 0.0]])
    assert np.allclose(f(x, 0.0), x)
    f(x + 100, 1 / FPS)
    f.reset()
    assert np.allclose(f(x + 5, 2 / FPS), x + 5)


def test_lag_on_a_head_speed_ramp_is_under_one_frame() -> None:
    # 120 px/s with a 60 px face: a brisk head turn
    ramp = np.array([[[i * 4.0, 0.0]] for i in range(60)])
    out = _run(ramp)
    assert (ramp[-1, 0, 0] - out[-1, 0, 0]) / 4.0 < 1.0


def test_lag_frames_recovers_a_known_delay() -> None:
    t = np.arange(200)
    sig = np.stack([np.sin(t / 7.0), np.cos(t / 11.0)], axis=1)
    delayed = np.stack([np.sin((t - 2) / 7.0), np.cos((t - 2) / 11.0)], axis=1)
    assert lag_frames(sig, delayed) == pytest.approx(2.0, abs=0.06)
    assert lag_frames(sig, sig) == pytest.approx(0.0, abs=0.06)


def test_repeated_timestamp_keeps_state() -> None:
    f = OneEuroFilter()
    a = f(np.zeros((2, 2)), 0.0)
    b = f(np.ones((2, 2)) * 50, 0.0)
    assert np.allclose(a, b)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 2, 2))])
def test_bad_shapes_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        OneEuroFilter()(bad, 0.0)


def test_bad_params_rejected() -> None:
    with pytest.raises(ValueError):
        OneEuroParams(min_cutoff=0.0)
