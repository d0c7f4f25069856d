"""Sender analysis bench: speed per stage, alpha quality against exact ground truth, jitter and lag.

    .venv/bin/python bench/sender.py [--frames 40] [--out out/bench] [--all-cores]

* speed: ms/frame of the face tracker and of each matte mode at 640x480 and 1280x720, on
  frames of the clips in ../shared/data/clips (centre-cropped to the aspect, resized), pinned
  to one core unless --all-cores;
* alpha quality: a generated green-screen sequence with exact ground truth -- a real clip's
  person (its alpha from MediaPipe selfie segmentation, refined; "known" because we composite
  with it; its colours un-mixed from the source clip's wall) over an uneven green screen, with
  green spill on the subject (added light, in proportion to the surface's reflectance), sensor
  noise and 4:2:0 chroma subsampling -- scored with Robust Video Matting's MAD, MSE, Grad and
  dtSSD (its evaluate_lr.py definitions); also how much of the true alpha lies far from the
  outline (wide semi-transparent areas that the segmentation-made truth has on some clips);
* tracking: landmark jitter on a still head (px RMS frame-to-frame), raw and smoothed, and the
  smoothing's lag in frames on a moving head (synthetic pan and a real clip).

Writes out/bench/sender.json and out/bench/sender.png. Timings taken while other jobs share the
machine are inflated; the JSON records the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

from facewire.sender.analysis import SenderAnalyzer  # noqa: E402
from facewire.sender.matte.auto import AutoMatter  # noqa: E402
from facewire.sender.matte.chroma import ChromaMatter  # noqa: E402
from facewire.sender.matte.guided import apply_coefficients, guided_coefficients  # noqa: E402
from facewire.sender.matte.learned import LearnedMatter  # noqa: E402
from facewire.sender.smoothing import OneEuroFilter, jitter_px, lag_frames  # noqa: E402
from facewire.sender.tracker import MediaPipeFaceTracker, TrackerConfig  # noqa: E402
from facewire.shared.process.heap import reuse_heap_memory  # noqa: E402
from facewire.shared.types import CapturedFrame, Matter  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "clips"
F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


# ---------------------------------------------------------------- frames


def read_frames(path: Path, n: int, start: int = 0) -> list[U8]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    out: list[U8] = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(np.asarray(f, np.uint8))
    cap.release()
    return out


def fit(img: U8, w: int, h: int) -> U8:
    """Centre-crop to w:h and resize."""
    ih, iw = img.shape[:2]
    if iw * h > ih * w:
        cw = ih * w // h
        img = img[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = iw * h // w
        img = img[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    return np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), np.uint8)


def frames_of(images: list[U8], fps: float = 30.0) -> Iterator[CapturedFrame]:
    for i, im in enumerate(images):
        yield CapturedFrame(index=i, ts_us=int(i * 1e6 / fps), image=im)


# ---------------------------------------------------------------- metrics (Robust Video Matting's definitions)


def _gauss_deriv_filters(sigma: float = 1.4, epsilon: float = 1e-2) -> tuple[F32, F32]:
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * epsilon))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dg = -x * g / sigma**2
    fx = np.outer(g, dg)  # rows: gaussian, columns: derivative (an x-derivative filter)
    fx /= np.sqrt((fx**2).sum())
    return fx.astype(np.float32), fx.T.copy().astype(np.float32)


_FX, _FY = _gauss_deriv_filters()


def _grad_mag(a: F32) -> F32:
    gx = cv2.filter2D(a, cv2.CV_32F, _FX, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(a, cv2.CV_32F, _FY, borderType=cv2.BORDER_REPLICATE)
    return np.asarray(np.sqrt(gx * gx + gy * gy), np.float32)


def _to_8bit(a: F32) -> F32:
    """Alpha as RVM's evaluation sees it: read back from an 8-bit PNG."""
    return np.asarray(np.round(np.clip(a, 0.0, 1.0) * 255.0) / 255.0, np.float32)


def _minmax(a: F32) -> F32:
    return np.asarray(cv2.normalize(a, None, 1.0, 0.0, cv2.NORM_MINMAX), np.float32)


def matting_metrics(pred: list[F32], true: list[F32]) -> dict[str, float]:
    """Per-frame means of MAD x1e3, MSE x1e3, Grad (/1e3) and dtSSD x1e2 with the definitions of
    RVM's evaluation/evaluate_lr.py: both mattes quantised to 8 bits (it reads PNGs), Grad on
    min-max normalised mattes, and dtSSD counted as 0 on the first frame of a clip."""
    mad, mse, grad, dt = [], [], [], []
    prev: tuple[F32, F32] | None = None
    for p_raw, t_raw in zip(pred, true, strict=True):
        p, t = _to_8bit(p_raw), _to_8bit(t_raw)
        d = p.astype(np.float64) - t
        mad.append(np.abs(d).mean() * 1e3)
        mse.append((d**2).mean() * 1e3)
        grad.append(float(((_grad_mag(_minmax(t)) - _grad_mag(_minmax(p))) ** 2).sum()) / 1000)
        if prev is None:
            dt.append(0.0)
        else:
            e = (p - prev[0]).astype(np.float64) - (t - prev[1])
            dt.append(np.sqrt((e**2).sum() / t.size) * 1e2)
        prev = (p, t)
    return {"MAD": float(np.mean(mad)), "MSE": float(np.mean(mse)), "Grad": float(np.mean(grad)), "dtSSD": float(np.mean(dt))}


def iou_mad(pred: F32, true: F32) -> dict[str, float]:
    p, t = pred > 0.5, true > 0.5
    union = float((p | t).sum())
    return {"IoU": float((p & t).sum()) / union if union else 1.0, "MAD_abs": float(np.abs(pred - true).mean())}


# ---------------------------------------------------------------- generated green screen with exact alpha


def gt_alpha(images: list[U8]) -> list[F32]:
    """Soft person alphas: MediaPipe selfie segmentation, then a colour guided filter at full
    resolution so the edges follow the picture (hair and shoulders get natural soft edges)."""
    import mediapipe as mp

    seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
    out = []
    for im in images:
        m = seg.process(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)).segmentation_mask.astype(np.float32)
        guide = im.astype(np.float32) / 255.0
        a, b = guided_coefficients(guide, m, 6, 1e-3)
        q = np.clip(apply_coefficients(a, b, guide), 0.0, 1.0)
        q[q < 0.02] = 0.0
        q[q > 0.98] = 1.0
        out.append(q.astype(np.float32))
    seg.close()
    return out


def uneven_screen(h: int, w: int, rng: np.random.Generator, base: tuple[float, float, float]) -> F32:
    """A green screen lit unevenly: a lighting gradient, a vignette and soft fabric folds."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    light = 1.0 + 0.25 * xn - 0.15 * yn - 0.45 * (xn**2 + yn**2)
    folds = np.asarray(cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=w / 25))
    folds = folds * (0.06 / max(1e-6, float(folds.std())))
    light = (light + folds).astype(np.float32)
    return np.clip(np.array(base, np.float32)[None, None, :] * light[:, :, None], 0, 255).astype(np.float32)


def chroma_420(img: F32) -> U8:
    """Round to 8 bits through YCrCb with the chroma planes at half resolution (4:2:0)."""
    u8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    ycc = cv2.cvtColor(u8, cv2.COLOR_BGR2YCrCb)
    h, w = u8.shape[:2]
    for c in (1, 2):
        small = cv2.resize(ycc[:, :, c], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        ycc[:, :, c] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR), np.uint8)


def source_background(image: U8, alpha: F32, sigma: float = 12.0) -> F32:
    """The source clip's own backdrop behind the person: a normalised Gaussian average of the
    pixels the alpha calls background (the clips have plain walls), filled in behind the person."""
    w = cv2.erode((alpha <= 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    num = cv2.GaussianBlur(image.astype(np.float32) * w[:, :, None], (0, 0), sigma)
    den = cv2.GaussianBlur(w, (0, 0), sigma)
    return np.asarray(num / np.maximum(den, 1e-4)[:, :, None], np.float32)


def unmix_foreground(image: U8, alpha: F32, floor: float = 0.5) -> F32:
    """The person's own colour F at every pixel, from image = alpha F + (1 - alpha) B_source.

    At a partly covered pixel the source frame holds the person mixed with the source's wall;
    composited as it is, that wall colour would show as a pale outline over the green screen
    (a third colour no green-screen shot contains). Un-mixing removes it. Below `floor` the
    division would amplify the source's noise and shading more than 1/floor times, so alpha is
    floored there (the old wall is then only partly removed)."""
    b = source_background(image, alpha)
    t = np.maximum(alpha, floor)[:, :, None]
    return np.asarray(np.clip(b + (image.astype(np.float32) - b) / t, 0.0, 255.0), np.float32)


def make_green_set(
    images: list[U8], seed: int = 7, spill: float = 0.7, noise: float = 2.0, alphas: list[F32] | None = None
) -> tuple[list[U8], list[F32], F32]:
    """(composites, true alphas, screen) for a clip's frames (alphas from gt_alpha unless given).

    Spill is screen light reflected by the subject, so it is added light, in proportion to the
    surface's reflectance (its colour over white): F + spill * near_edge * (F / 255) * screen,
    strongest near the outline. spill = 0.7 adds as much key signal (G - max(R, B)) to a mid-grey
    surface as the earlier model (+0.35 x the screen's chroma, which also took red and blue away)
    did; on d0, the real green screen, the rim of the dark jacket reads about 4 levels greener
    than its inside, ~6.5 scaled to this brighter screen, where this model adds ~9."""
    rng = np.random.default_rng(seed)
    h, w = images[0].shape[:2]
    screen = uneven_screen(h, w, rng, (70.0, 170.0, 60.0))
    if alphas is None:
        alphas = gt_alpha(images)
    comps = []
    for im, a in zip(images, alphas, strict=True):
        a3 = a[:, :, None]
        fg = unmix_foreground(im, a)
        near_edge = cv2.GaussianBlur(1.0 - a, (0, 0), sigmaX=6)[:, :, None] * a3
        fg = fg + spill * near_edge * (fg * (1.0 / 255.0)) * screen
        c = a3 * fg + (1.0 - a3) * screen
        c += rng.normal(0.0, noise, c.shape).astype(np.float32)
        comps.append(chroma_420(c))
    return comps, alphas, screen


# ---------------------------------------------------------------- stages


def time_stage(fn: Callable[[CapturedFrame], object], frames: list[CapturedFrame], warmup: int = 3) -> tuple[float, float]:
    """(wall, cpu) ms per frame. CPU time counts every thread of this process (MediaPipe's
    included) and not the time other programs held the core, so on a shared machine it is the
    better estimate of what the stage costs on one core of its own."""
    for f in frames[:warmup]:
        fn(f)
    t, c = time.perf_counter(), time.process_time()
    for f in frames[warmup:]:
        fn(f)
    n = max(1, len(frames) - warmup)
    return (time.perf_counter() - t) / n * 1e3, (time.process_time() - c) / n * 1e3


def _matters() -> list[tuple[str, Callable[[], Matter]]]:
    return [("chroma", ChromaMatter), ("learned", LearnedMatter), ("auto", _auto)]


def speed(clips: list[Path], n: int) -> dict[str, dict[str, dict[str, float]]]:
    """Mean ms/frame per stage over the clips, per frame size, as wall and CPU time. Each matte
    is timed on its own; 'track(max_faces=k)+<matte>' sums the two stages and 'analyzer:<matte>'
    times them together as the sender runs them (SenderAnalyzer: the tracker beside the matter)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for w, h in ((640, 480), (1280, 720)):
        row: dict[str, list[tuple[float, float]]] = {}
        for clip in clips:
            frames = list(frames_of([fit(f, w, h) for f in read_frames(clip, n)]))
            for max_faces in (2, 1):
                tr = MediaPipeFaceTracker(TrackerConfig(max_faces=max_faces))
                row.setdefault(f"tracker(max_faces={max_faces})", []).append(time_stage(tr.track, frames))
                tr.close()
            for name, make in _matters():
                m = make()
                row.setdefault(f"matte:{name}", []).append(time_stage(m.matte, frames))
                _close(m)
                an = SenderAnalyzer(MediaPipeFaceTracker(TrackerConfig(max_faces=1)), make())
                row.setdefault(f"analyzer:{name}", []).append(time_stage(an.analyze, frames))
                an.close()
        size: dict[str, dict[str, float]] = {}
        for i, kind in enumerate(("wall", "cpu")):
            means = {k: float(np.mean([t[i] for t in v])) for k, v in row.items()}
            for name, _ in _matters():
                for max_faces in (2, 1):
                    key = f"track(max_faces={max_faces})+{name}"
                    means[key] = means[f"tracker(max_faces={max_faces})"] + means[f"matte:{name}"]
            size[kind] = means
        out[f"{w}x{h}"] = size
    return out


def _close(m: object) -> None:
    close = getattr(m, "close", None)
    if close is not None:
        close()


def _auto() -> AutoMatter:
    return AutoMatter(chroma=ChromaMatter(), learned=LearnedMatter())


def quality(images: list[U8]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of every matter on the generated set, plus chroma on the same set without spill
    (to show how much of its error the spill causes)."""
    truths = gt_alpha(images)
    comps, _, _ = make_green_set(images, alphas=truths)
    scores: dict[str, Any] = {}
    keep: dict[str, Any] = {"comp": comps[-1], "true": truths[-1]}
    for name, mk in _matters():
        m = mk()
        preds = [m.matte(f) for f in frames_of(comps)]
        scores[name] = matting_metrics(preds, truths) | iou_mad(preds[-1], truths[-1])
        keep[name] = preds[-1]
        if isinstance(m, ChromaMatter):
            keep["fg"] = m.foreground()
        _close(m)
    clean, _, _ = make_green_set(images, alphas=truths, spill=0.0)
    cm = ChromaMatter()
    preds = [cm.matte(f) for f in frames_of(clean)]
    scores["chroma_without_spill"] = matting_metrics(preds, truths)
    scores["truth_soft_mass_x1e3"] = far_soft_mass(truths)
    return scores, keep


def far_soft_mass(truths: list[F32], px: float = 6.0) -> dict[str, float]:
    """How much of the truth is semi-transparent far from the outline: the mean over frames of
    sum(min(a, 1 - a)) x1e3 / pixels (an upper bound on what a keyer that got the outline right
    but made everything else 0 or 1 would lose), all of it and only beyond `px` pixels from the
    alpha = 0.5 contour. Real people are semi-transparent in a rim of a few pixels (hair, motion
    blur); wide areas come from the segmentation-made truth smearing over the source's wall."""
    total, far = [], []
    for t in truths:
        inside = (t >= 0.5).astype(np.uint8)
        dist = np.where(inside > 0, cv2.distanceTransform(inside, cv2.DIST_L2, 5), cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5))
        soft = np.minimum(t, 1.0 - t)
        total.append(float(soft.sum()) / t.size * 1e3)
        far.append(float(soft[dist > px].sum()) / t.size * 1e3)
    return {"all": float(np.mean(total)), f"beyond_{px:g}px": float(np.mean(far))}


def independent_key(image: U8) -> F32:
    """A plain clean-plate difference key, sharing no code with the sender's keyer: the screen
    colour is the median of the frame's top corners, alpha ramps with the CIELab distance to it
    from 12 to 40. A cross-check on real footage that has no ground truth."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    h, w = image.shape[:2]
    corners = np.concatenate([lab[: h // 8, : w // 8].reshape(-1, 3), lab[: h // 8, -w // 8 :].reshape(-1, 3)])
    plate = np.median(corners, axis=0)
    d = np.sqrt(((lab - plate) ** 2).sum(axis=2))
    return np.clip((d - 12.0) / 28.0, 0.0, 1.0).astype(np.float32)


def _track(seq: list[U8], fps: float) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(raw, smoothed) landmark tracks of the frames where a face was tracked."""
    tr = MediaPipeFaceTracker(TrackerConfig(max_faces=1))
    raw, smooth = [], []
    for f in frames_of(seq, fps):
        o = tr.track(f)
        if o is not None and o.state == "tracked":
            raw.append(o.unsmoothed)
            smooth.append(o.landmarks)
    tr.close()
    return np.array(raw, np.float32), np.array(smooth, np.float32)


def tracking(still: U8, moving: dict[str, list[U8]], fps: float = 30.0) -> dict[str, float]:
    """Jitter on a still head (one frame, fresh sensor noise and 4:2:0 each time) and the
    smoothing's lag on moving heads (a synthetic pan of that frame, and real clips)."""
    rng = np.random.default_rng(3)

    def noisy(img: U8) -> U8:
        return chroma_420(img.astype(np.float32) + rng.normal(0, 2.0, img.shape).astype(np.float32))

    res: dict[str, float] = {}
    raw, smooth = _track([noisy(still) for _ in range(60)], fps)
    res["still_frames_tracked"] = float(len(raw))
    if len(raw) > 10:
        res["jitter_raw_px"] = jitter_px(raw[5:])
        res["jitter_smoothed_px"] = jitter_px(smooth[5:])
        res["jitter_ratio"] = res["jitter_smoothed_px"] / res["jitter_raw_px"]

    # synthetic pan: the still frame moved along a smooth path (~1 face width per second at peak)
    h, w = still.shape[:2]
    pan = []
    for i in range(90):
        dx, dy = 25.0 * np.sin(2 * np.pi * i / 45.0), 10.0 * np.sin(2 * np.pi * i / 60.0)
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        pan.append(noisy(np.asarray(cv2.warpAffine(still, m, (w, h), borderMode=cv2.BORDER_REFLECT), np.uint8)))
    for label, seq in {"pan": pan, **moving}.items():
        raw, smooth = _track(seq, fps)
        if len(raw) > 20:
            res[f"lag_{label}_frames"] = lag_frames(raw[:, :, :2], smooth[:, :, :2])
            res[f"motion_{label}_px_per_frame"] = jitter_px(raw)
    # the filter alone on a constant-speed ramp (120 px/s, 60 px face), for reference
    f1 = OneEuroFilter()
    ramp = np.array([[[i * 4.0, 0.0]] for i in range(60)], np.float32)
    out = np.array([f1(p, i / fps, scale=60.0) for i, p in enumerate(ramp)])
    res["lag_ramp_frames"] = float((ramp[-1, 0, 0] - out[-1, 0, 0]) / 4.0)
    return res


# ---------------------------------------------------------------- sheet


def _label(img: U8, text: str) -> U8:
    out = img.copy()
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _grey(a: F32) -> U8:
    return np.asarray(cv2.cvtColor(np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), np.uint8)


def over(fg: U8, a: F32, colour: tuple[int, int, int] = (255, 0, 255)) -> U8:
    bg = np.empty_like(fg)
    bg[:] = colour
    a3 = a[:, :, None]
    return np.clip(fg * a3 + bg * (1 - a3) + 0.5, 0, 255).astype(np.uint8)


def sheet(keep: dict[str, Any], real: dict[str, Any], path: Path) -> None:
    size = (320, 320)

    def t(img: U8) -> U8:
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)

    true = keep["true"]
    row1 = [
        _label(t(keep["comp"]), "generated input"),
        _label(t(_grey(true)), "true alpha"),
        _label(t(_grey(keep["chroma"])), "chroma alpha"),
        _label(t(_grey(np.abs(keep["chroma"] - true) * 4)), "chroma |err| x4"),
        _label(t(_grey(keep["learned"])), "learned alpha"),
    ]
    row2 = [
        _label(t(over(keep["fg"], keep["chroma"])), "chroma fg over magenta"),
        _label(t(real["frame"]), "d0 (real green screen)"),
        _label(t(_grey(real["alpha"])), "d0 chroma alpha"),
        _label(t(over(real["fg"], real["alpha"])), "d0 fg over magenta"),
        _label(t(over(real["frame"], real["alpha"])), "d0 raw over magenta"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([np.hstack(row1), np.hstack(row2)]))


def machine() -> dict[str, object]:
    import mediapipe

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "mediapipe": mediapipe.__version__,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, default=CLIPS)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    ap.add_argument("--frames", type=int, default=40, help="frames per clip for speed and quality")
    ap.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)
    if not args.clips.is_dir():
        print(f"no clips at {args.clips}: the bench needs ../shared/data/clips", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    info = machine()
    heap_reuse = reuse_heap_memory()
    settings = {"frames": args.frames, "one_core": not args.all_cores, "cv2_threads": 1, "heap_reuse": heap_reuse}
    print(json.dumps({"machine": info, "settings": settings}, indent=1))

    result: dict[str, object] = {"machine": info, "settings": settings}
    clips = sorted(args.clips.glob("d*.mp4"))
    if not args.skip_speed:
        result["speed_ms_per_frame"] = speed(clips, args.frames)
        print(json.dumps(result["speed_ms_per_frame"], indent=1))

    qual: dict[str, object] = {}
    keep: dict[str, Any] = {}
    for name in ("d18", "d3", "d6"):
        imgs = [fit(f, 512, 512) for f in read_frames(args.clips / f"{name}.mp4", args.frames, start=30)]
        scores, k = quality(imgs)
        qual[name] = scores
        keep = keep or k
        print(name, json.dumps(scores, indent=1))
    result["alpha_quality_generated"] = qual

    d0 = read_frames(args.clips / "d0.mp4", 30)
    cm = ChromaMatter()
    alpha = None
    for f in frames_of(d0):
        alpha = cm.matte(f)
    real: dict[str, Any] = {"frame": d0[-1], "alpha": alpha, "fg": cm.foreground()}
    assert alpha is not None
    indep = independent_key(d0[-1])
    result["d0_against_independent_key"] = iou_mad(alpha, indep)
    print("d0 vs independent key", result["d0_against_independent_key"])

    still = read_frames(args.clips / "d18.mp4", 1, start=60)[0]
    moving = {"d3": read_frames(args.clips / "d3.mp4", 150), "d6": read_frames(args.clips / "d6.mp4", 150)}
    result["tracking"] = tracking(still, moving)
    print(json.dumps(result["tracking"], indent=1))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sender.json").write_text(json.dumps(result, indent=1))
    sheet(keep, real, args.out / "sender.png")
    print(f"wrote {args.out / 'sender.json'} and {args.out / 'sender.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
