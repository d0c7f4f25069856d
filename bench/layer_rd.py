"""The person-only keyframe and the residual layer on real clips: real kbps against the target, face-oval
SSIM of the warped keyframe alone and fused with the layer, and the ms of every call.

    OMP_NUM_THREADS=1 .venv/bin/python bench/layer_rd.py --clips ../shared/data/clips/*.mp4 --frames 300

Per clip: the tracker and the `auto` matte run over the frames; the first frame with a face becomes the
keyframe (person_only, AVIF within --keyframe-bytes, the alpha code), decoded as the receiver would; the
mesh renderer in self mode warps it to every frame (the prediction). The layer then runs as sender and
receiver would: every --every-th frame residual_box -> LayerEncoder -> LayerDecoder, and every frame
apply_residual with the box held from the last layer frame. Scores: face-oval SSIM on luma (Gaussian
window, sigma 1.5) against the frame, both composited over grey with the sender's matte, on every
--stride-th frame. Real kbps counts every layer byte, headers included. Writes JSON (default
out/bench/layer_rd.json). Timings are medians on whatever the machine was doing: compare, don't quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt
from media import read_frames
from skimage.metrics import structural_similarity

from facewire.sender.matte import make_matter
from facewire.sender.tracker import MediaPipeFaceTracker
from facewire.shared.codec.keyframe import (
    decode_keyframe_alpha,
    decode_person,
    encode_keyframe_alpha,
    encode_person_search,
    person_only,
)
from facewire.shared.codec.layer import (
    BoxGeometry,
    LayerDecoder,
    LayerEncoder,
    apply_residual,
    face_box_transform,
    residual_box,
)
from facewire.shared.face import topology as topo
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.types import CapturedFrame, FrameState, HeadPose, KeyframeState

T = TypeVar("T")
Image = npt.NDArray[np.uint8]


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        out = fn()
        self.ms[name].append((time.perf_counter() - start) * 1e3)
        return out

    def medians(self) -> dict[str, float]:
        return {k: round(float(np.median(v)), 3) for k, v in self.ms.items()}


def composite(image: Image, alpha: npt.NDArray[np.float32]) -> Image:
    a = alpha[..., None]
    return np.clip(image * a + 128.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def face_ssim(reference: Image, test: Image, landmarks: npt.NDArray[np.float32]) -> float:
    """SSIM on luma over the face oval's box + 8 px, averaged inside the oval."""
    h, w = reference.shape[:2]
    oval = landmarks[topo.face_oval_ring(), :2]
    x0, y0 = (max(0, int(v) - 8) for v in np.floor(oval.min(axis=0)))
    x1, y1 = (int(v) + 8 for v in np.ceil(oval.max(axis=0)))
    x1, y1 = min(w, x1), min(h, y1)
    weights = np.array([0.114, 0.587, 0.299])
    ya = reference[y0:y1, x0:x1].astype(np.float64) @ weights
    yb = test[y0:y1, x0:x1].astype(np.float64) @ weights
    _, full = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, full=True)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(oval - [x0, y0]).astype(np.int32)], 1)
    return float(full[mask.astype(bool)].mean())


def analyse(frames: list[Image], fps: float, matte: str, timer: Timer) -> list[tuple[FrameState, npt.NDArray[np.float32] | None]]:
    """Per frame: the state the receiver renders from (the sender's landmarks, pose and matte) and the raw
    landmarks the metric uses (None without a face)."""
    tracker = MediaPipeFaceTracker()
    matter = make_matter(matte)
    out = []
    for index, image in enumerate(frames):
        frame = CapturedFrame(index, int(index * 1e6 / fps), image)
        face = timer("track", lambda frame=frame: tracker.track(frame))  # type: ignore[misc]
        alpha = np.ones(image.shape[:2], np.float32) if matter is None else matter.matte(frame)
        raw = None if face is None or face.state != "tracked" else face.unsmoothed
        state = FrameState(seq=index, ts_us=frame.ts_us, face="lost" if face is None else face.state,
                           confidence=0.0 if face is None else face.confidence, pose=None if face is None else face.pose,
                           landmarks=None if face is None else face.landmarks, alpha=alpha)
        out.append((state, None if face is None or raw is None else raw))
    tracker.close()
    return out


def run_clip(path: Path, args: argparse.Namespace) -> dict[str, object]:
    frames, fps = read_frames(path, args.frames)
    timer = Timer()
    states = analyse(frames, fps, args.matte, timer)
    first = next(i for i, (s, _) in enumerate(states) if s.landmarks is not None)
    key_state = states[first][0]
    assert key_state.alpha is not None and key_state.landmarks is not None
    person = timer("person_only", lambda: person_only(frames[first], key_state.alpha))
    found = timer("encode_person", lambda: encode_person_search(person, args.keyframe_bytes))
    image = timer("decode_person", lambda: decode_person(found.data, person.box, person.frame_size))
    alpha_code = timer("encode_keyframe_alpha", lambda: encode_keyframe_alpha(key_state.alpha, person.box))
    key_alpha = timer("decode_keyframe_alpha", lambda: decode_keyframe_alpha(alpha_code, person.box, person.frame_size))
    renderer = MeshRenderer()
    renderer.prepare_keyframe(KeyframeState(kf=1, image=image, alpha=key_alpha, landmarks=key_state.landmarks))
    predictions = [timer("render", lambda s=s: renderer.render(s).image) for s, _ in states]  # type: ignore[misc]
    geometry = BoxGeometry(size=args.size)
    seconds = len(frames) / fps
    scored = [i for i, (s, raw) in enumerate(states) if raw is not None and i % args.stride == 0 and i >= first]
    row: dict[str, object] = {
        "clip": path.name, "frames": len(frames), "fps": round(fps, 2), "keyframe_index": first,
        "keyframe": {"box": person.box, "bytes": len(found.data), "quality": found.quality, "encodes": found.encodes,
                     "alpha_bytes": len(alpha_code)},
    }
    references = {i: composite(frames[i], states[i][0].alpha) for i in scored}
    pred_scores = [face_ssim(references[i], composite(predictions[i], states[i][0].alpha), states[i][1])  # type: ignore[arg-type]
                   for i in scored]
    row["ssim_prediction"] = round(float(np.mean(pred_scores)), 4)
    layers = []
    for kbps in args.kbps:
        encoder = LayerEncoder(args.size, kbps=kbps, fps=fps / args.every)
        decoder = LayerDecoder(args.size)
        held: Image | None = None
        transform = None
        scores = []
        packets = []
        for i in range(first, len(frames)):
            state, raw = states[i]
            assert state.alpha is not None
            if state.pose is not None:
                pose: HeadPose = state.pose
                transform = timer("face_box_transform", lambda pose=pose: face_box_transform(pose, geometry))  # type: ignore[misc]
            if transform is None:
                continue
            t = transform
            if (i - first) % args.every == 0:
                box = timer("residual_box", lambda i=i, t=t, a=state.alpha: residual_box(frames[i], predictions[i], a, t, args.size))  # type: ignore[misc]
                packet = timer("layer_encode", lambda box=box, enc=encoder: enc.encode(box))  # type: ignore[misc]
                packets.append(len(packet))
                held = timer("layer_decode", lambda p=packet, dec=decoder: dec.decode(p))  # type: ignore[misc]
            assert held is not None
            h = held
            fused = timer("apply_residual", lambda i=i, t=t, h=h: apply_residual(predictions[i], h, t, detail=args.detail))  # type: ignore[misc]
            if i in references:
                scores.append(face_ssim(references[i], composite(fused, state.alpha), raw))  # type: ignore[arg-type]
        encoder.close()
        layer_seconds = (len(frames) - first) / fps
        layers.append({"target_kbps": kbps, "real_kbps": round(sum(packets) * 8 / layer_seconds / 1e3, 2),
                       "first_packet_bytes": packets[0], "packets": len(packets),
                       "ssim_fused": round(float(np.mean(scores)), 4)})
        print(path.name, layers[-1], flush=True)
    row["layer"] = layers
    row["total_kbps_at_each_layer_rate"] = [round(found_kbps + layer["real_kbps"], 2)
                                            for found_kbps in [(len(found.data) + len(alpha_code)) * 8 / seconds / 1e3]
                                            for layer in layers]
    row["ms"] = timer.medians()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", type=Path, default=sorted(Path("../shared/data/clips").glob("*.mp4")))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--matte", default="auto")
    parser.add_argument("--kbps", type=float, nargs="+", default=[3.0, 6.0, 10.0], help="layer target rates")
    parser.add_argument("--every", type=int, default=3, help="a layer packet every N frames")
    parser.add_argument("--size", type=int, default=96, help="the layer box's side")
    parser.add_argument("--detail", type=float, default=0.5, help="share of the warp's detail kept")
    parser.add_argument("--keyframe-bytes", type=int, default=4000)
    parser.add_argument("--stride", type=int, default=2, help="score every N-th frame")
    parser.add_argument("--output", type=Path, default=Path("out/bench/layer_rd.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    clips = [run_clip(path, args) for path in args.clips]
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "clips"},
        "clips": clips,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(json.dumps({c["clip"]: c["layer"] for c in clips}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
