"""Fits and checks the weights of facewire.shared.face.likeness (which keyframe draws a frame best).

    .venv/bin/python bench/likeness.py ../shared/data/clips [--keyframes 10 --targets 24]

For every clip: track every frame (the sender's MediaPipe tracker), then for random pairs of a
keyframe and a frame of the same clip draw the frame from the keyframe with the mesh renderer in
self mode and score face-box SSIM against the true frame. The SSIM is modelled as a per-clip offset
minus a weighted sum of the pair's differences (mean canonical landmark displacement, |yaw|,
|pitch|, |roll|, |log scale|); the weights are shared. Leave-one-clip-out: fitted without a clip,
for each of its frames the keyframe with the lowest predicted loss is compared with an average one.
Prints the weights (all clips) and the held-out gains; writes JSON (default out/bench/likeness.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from bench.quality import landmark_box_mask, luma, region_score
from facewire.sender.tracker import MediaPipeFaceTracker
from facewire.shared.face.likeness import FaceLikeness
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.types import CapturedFrame, FrameState, Image, KeyframeState, Landmarks

FEATURES = ("expression", "yaw", "pitch", "roll", "log_scale")


def tracked(path: Path) -> tuple[list[Image], list[Landmarks | None]]:
    capture, tracker = cv2.VideoCapture(str(path)), MediaPipeFaceTracker()
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames: list[Image] = []
    faces: list[Landmarks | None] = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        face = tracker.track(CapturedFrame(len(frames), round(len(frames) * 1e6 / fps), image))
        frames.append(image)
        faces.append(None if face is None else face.landmarks)
    tracker.close()
    return frames, faces


def differences(a: FaceLikeness, b: FaceLikeness) -> list[float]:
    return [float(np.mean(np.linalg.norm(a.canonical - b.canonical, axis=1))), abs(a.pose.yaw - b.pose.yaw),
            abs(a.pose.pitch - b.pose.pitch), abs(a.pose.roll - b.pose.roll), abs(float(np.log(a.pose.scale / b.pose.scale)))]


def pairs(clip: str, frames: list[Image], faces: list[Landmarks | None], keyframes: int, targets: int,
          rng: np.random.Generator) -> list[dict[str, object]]:
    good = [i for i, face in enumerate(faces) if face is not None]
    likeness = {i: FaceLikeness.of(faces[i]) for i in good}  # type: ignore[arg-type]
    renderer = MeshRenderer()
    renderer.prepare_identity(None)
    rows: list[dict[str, object]] = []
    for k in rng.choice(good, min(keyframes, len(good)), replace=False):
        renderer.prepare_keyframe(KeyframeState(int(k), frames[k], None, faces[k]))
        for t in rng.choice(good, min(targets, len(good)), replace=False):
            landmarks = faces[t]
            assert landmarks is not None
            drawn = renderer.render(FrameState(int(t), 0, "tracked", landmarks, None))
            score = region_score(luma(frames[t]), luma(drawn.image), landmark_box_mask(landmarks[:, :2], frames[t].shape[:2]))
            if score is not None:
                rows.append({"clip": clip, "keyframe": int(k), "frame": int(t), "ssim": score.ssim,
                             "x": differences(likeness[int(k)], likeness[int(t)])})
    return rows


def fit(rows: list[dict[str, object]]) -> npt.NDArray[np.float64]:
    """Shared weights (SSIM lost per unit of each feature) with a free offset per clip."""
    clips = sorted({str(r["clip"]) for r in rows})
    x = np.array([r["x"] for r in rows], np.float64)
    offsets = np.array([[r["clip"] == c for c in clips] for r in rows], np.float64)
    y = np.array([r["ssim"] for r in rows], np.float64)
    solution, *_ = np.linalg.lstsq(np.hstack([x, offsets]), y, rcond=None)
    return -solution[: len(FEATURES)]


def held_out_gain(rows: list[dict[str, object]], clip: str) -> float:
    weights = fit([r for r in rows if r["clip"] != clip])
    by_frame: dict[int, list[dict[str, object]]] = defaultdict(list)
    for r in rows:
        if r["clip"] == clip:
            by_frame[int(str(r["frame"]))].append(r)
    gains = []
    for candidates in by_frame.values():
        if len(candidates) > 1:
            ssim = np.array([float(str(c["ssim"])) for c in candidates])
            cost = np.array([c["x"] for c in candidates], np.float64) @ weights
            gains.append(ssim[int(np.argmin(cost))] - ssim.mean())
    return float(np.mean(gains)) if gains else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="?", default=Path("../shared/data/clips"))
    parser.add_argument("--keyframes", type=int, default=10)
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/bench/likeness.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, object]] = []
    for path in sorted(args.dir.glob("*.mp4")):
        frames, faces = tracked(path)
        rows += pairs(path.stem, frames, faces, args.keyframes, args.targets, rng)
        print(f"{path.stem}: {len(frames)} frames, {len(rows)} pairs so far", file=sys.stderr, flush=True)
    weights = fit(rows)
    clips = sorted({str(r["clip"]) for r in rows})
    report = {"weights": dict(zip(FEATURES, np.round(weights, 5).tolist(), strict=True)),
              "held_out_gain": {clip: round(held_out_gain(rows, clip), 4) for clip in clips},
              "pairs": len(rows), "settings": {k: str(v) for k, v in vars(args).items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
