"""Face-swap quality bench: every clip x every avatar through a renderer, judged by independent models.

For each clip the sender side runs the project's tracker (facewire.sender.tracker); the first tracked
frame is the keyframe (the receiver's neutral face). Every frame is rendered with each avatar and
the output is judged:

* identity: dlib's 128-d ResNet face descriptor (face_recognition_models' weights) of the output
  face against the avatar image and against the sender's input frame; same person < 0.6;
* expression: MediaPipe landmarks re-detected on the output; Pearson correlation of mouth opening
  and eye openness (each over its width) between input and output (NaN, left out of the means,
  where the input's openness hardly changes: MIN_SPREAD);
* pose: yaw/pitch/roll (facewire.shared.face.pose.head_pose) of input vs re-detected output, mean abs degrees;
* flicker: colour jumps: mean |second temporal difference| of the face box's mean colour, output
  minus input (grey levels; > 0 means the face's brightness or colour pops more than the camera's
  picture does). Pixel-wise differences are avoided: they grow with motion times texture contrast,
  so a sharp avatar on a moving head would score as flicker;
* ms/frame: render time only (shared CPU: treat as an upper bound).

Writes JSON and a contact-sheet PNG. Run: .venv/bin/python bench/swap.py --frames 40 --clips d3,d18
(needs `pip install dlib-bin face-recognition-models`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from facewire.sender.tracker import MediaPipeFaceTracker, TrackerConfig  # noqa: E402
from facewire.shared.face.identity import load_identity  # noqa: E402
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio  # noqa: E402
from facewire.shared.face.pose import head_pose  # noqa: E402
from facewire.shared.render import make_renderer  # noqa: E402
from facewire.shared.render.mesh import MeshOptions, MeshRenderer  # noqa: E402
from facewire.shared.types import CapturedFrame, FrameState, IdentityAsset, Image, KeyframeState, Landmarks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SAME_PERSON = 0.6


class Recogniser:
    """dlib 128-d face descriptors; the face box comes from MediaPipe landmarks so detection is not the judge."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._dlib = dlib

    def descriptor(self, image: Image, landmarks: Landmarks) -> npt.NDArray[np.float64]:
        x0, y0 = landmarks[:468, :2].min(axis=0)
        x1, y1 = landmarks[:468, :2].max(axis=0)
        rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        shape = self._shape(rgb, rect)
        return np.array(self._net.compute_face_descriptor(rgb, shape, 1), np.float64)


@dataclass
class PairResult:
    clip: str
    avatar: str
    frames: int
    face_found: float
    as_avatar: float
    as_sender: float
    dist_avatar: float
    dist_sender: float
    avatar_vs_sender: float  # the two input faces' own distance: how alike the people already are
    mouth_corr: float
    eye_corr: float
    pose_err_deg: float
    flicker: float
    ms_per_frame: float


def _ratios(lm: Landmarks) -> tuple[float, float]:
    p = lm.astype(np.float64)
    return mouth_ratio(p), 0.5 * (eye_open_ratio(p, "right") + eye_open_ratio(p, "left"))


def _face_crop(image: Image, lm: Landmarks, side: int = 240) -> Image:
    """A square around the face (its box plus a fifth on each side), `side` pixels: faces are what the sheet is for."""
    lo, hi = lm[:468, :2].min(axis=0), lm[:468, :2].max(axis=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.7
    scale = side / (2 * half)
    matrix = np.array([[scale, 0, side / 2 - scale * centre[0]], [0, scale, side / 2 - scale * centre[1]]])
    return np.asarray(cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)), np.uint8)


def _jerk(means: list[npt.NDArray[np.float64]]) -> float:
    a, b, c = means
    return float(np.abs(a - 2 * b + c).mean())


# Input openness (over width) must spread at least this much for a correlation to mean anything: a
# mouth that stays shut for the whole clip gives a correlation of noise (d14 frames 180-330: 0.001).
MIN_SPREAD = 0.02


def _corr(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.std(a) < MIN_SPREAD or np.std(b) < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def track_clip(path: Path, max_frames: int, start: int = 0) -> list[tuple[Image, Landmarks | None]]:
    tracker = MediaPipeFaceTracker(TrackerConfig())
    cap = cv2.VideoCapture(str(path))
    frames: list[tuple[Image, Landmarks | None]] = []
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        while len(frames) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            obs = tracker.track(CapturedFrame(len(frames), len(frames) * 33_333, image))
            frames.append((image, None if obs is None else obs.landmarks))
    finally:
        cap.release()
        tracker.close()
    return frames


def run_pair(
    clip: str,
    frames: list[tuple[Image, Landmarks | None]],
    avatar_name: str,
    identity: IdentityAsset,
    avatar_desc: npt.NDArray[np.float64],
    recogniser: Recogniser,
    renderer_name: str,
    sheet_every: int,
    mesh_options: MeshOptions,
    stride: int = 1,
) -> tuple[PairResult, list[Image]]:
    renderer = make_renderer(renderer_name, mesh_factory=lambda: MeshRenderer(mesh_options))
    key = next(i for i, (_, lm) in enumerate(frames) if lm is not None)
    kf_image, kf_lm = frames[key]
    assert kf_lm is not None
    keyframe = KeyframeState(0, kf_image, None, kf_lm)
    renderer.prepare_identity(identity)
    renderer.prepare_keyframe(keyframe)
    redetect = MediaPipeFaceTracker(TrackerConfig(smoothing=None))
    baseline = float(np.linalg.norm(recogniser.descriptor(kf_image, kf_lm) - avatar_desc))
    found = as_avatar = as_sender = 0
    d_av: list[float] = []
    d_se: list[float] = []
    m_in: list[float] = []
    m_out: list[float] = []
    e_in: list[float] = []
    e_out: list[float] = []
    pose_err: list[float] = []
    flicker: list[float] = []
    times: list[float] = []
    sheet: list[Image] = []
    history: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
    n = judged = 0
    sheet_cells = max(1, len(frames) // max(sheet_every, 1))
    for i, (image, lm) in enumerate(frames):
        if lm is None:
            continue
        n += 1
        state = FrameState(i, i * 33_333, "tracked", lm, None)
        t0 = time.perf_counter()
        out = renderer.render(state).image
        times.append((time.perf_counter() - t0) * 1000)
        x0, y0 = np.maximum(lm[:468, :2].min(axis=0).astype(int), 0)
        x1, y1 = lm[:468, :2].max(axis=0).astype(int)
        box = (slice(y0, y1), slice(x0, x1))
        means = (image[box].reshape(-1, 3).mean(axis=0), out[box].reshape(-1, 3).mean(axis=0))
        history = (history + [means])[-3:]
        if len(history) == 3:
            flicker.append(_jerk([h[1] for h in history]) - _jerk([h[0] for h in history]))
        if len(sheet) < sheet_cells and i >= len(sheet) * sheet_every:
            sheet.append(np.hstack([_face_crop(image, lm), _face_crop(out, lm)]))
        if i % stride:
            continue
        judged += 1
        obs = redetect.track(CapturedFrame(i, i * 33_333, out))
        if obs is None:
            continue
        found += 1
        olm = obs.landmarks
        desc = recogniser.descriptor(out, olm)
        sender_desc = recogniser.descriptor(image, lm)
        da = float(np.linalg.norm(desc - avatar_desc))
        ds = float(np.linalg.norm(desc - sender_desc))
        d_av.append(da)
        d_se.append(ds)
        as_avatar += da < SAME_PERSON
        as_sender += ds < SAME_PERSON
        mi, ei = _ratios(lm)
        mo, eo = _ratios(olm)
        m_in.append(mi)
        m_out.append(mo)
        e_in.append(ei)
        e_out.append(eo)
        pi, po = head_pose(lm), head_pose(olm)
        pose_err.append((abs(pi.yaw - po.yaw) + abs(pi.pitch - po.pitch) + abs(pi.roll - po.roll)) / 3)
    redetect.close()
    result = PairResult(
        clip=clip,
        avatar=avatar_name,
        frames=n,
        face_found=found / max(judged, 1),
        as_avatar=as_avatar / max(found, 1),
        as_sender=as_sender / max(found, 1),
        dist_avatar=float(np.mean(d_av)) if d_av else float("nan"),
        dist_sender=float(np.mean(d_se)) if d_se else float("nan"),
        avatar_vs_sender=baseline,
        mouth_corr=_corr(m_in, m_out),
        eye_corr=_corr(e_in, e_out),
        pose_err_deg=float(np.mean(pose_err)) if pose_err else float("nan"),
        flicker=float(np.mean(flicker)) if flicker else float("nan"),
        ms_per_frame=float(np.median(times)) if times else float("nan"),
    )
    return result, sheet


def parse_mesh_options(settings: list[str]) -> MeshOptions:
    """MeshOptions with `group.field=value` overrides (groups: retarget, blend; or a top-level field)."""
    options = MeshOptions()
    for item in settings:
        key, _, raw = item.partition("=")
        value: float | bool = raw.lower() == "true" if raw.lower() in ("true", "false") else float(raw)
        group, _, name = key.rpartition(".")
        if group:
            inner = getattr(options, group)
            options = replace(options, **{group: replace(inner, **{name: type(getattr(inner, name))(value)})})
        else:
            options = replace(options, **{name: type(getattr(options, name))(value)})
    return options


def _label(image: Image, text: str) -> Image:
    out = image.copy()
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(rows: list[tuple[str, Image, list[Image]]], cells: int, cell_h: int = 240) -> Image:
    lines = []
    for label, avatar, pairs in rows:
        thumbs = [cv2.resize(avatar, (int(avatar.shape[1] * cell_h / avatar.shape[0]), cell_h))]
        for pair in pairs[:cells]:
            thumbs.append(cv2.resize(pair, (int(pair.shape[1] * cell_h / pair.shape[0]), cell_h)))
        line = np.hstack(thumbs)
        lines.append(_label(line, label))
    width = max(line.shape[1] for line in lines)
    return np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: all in ../shared/data)")
    parser.add_argument("--avatars", default="", help="comma-separated avatar names (default: all)")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (from --start)")
    parser.add_argument("--start", type=int, default=0, help="first frame of each clip (a later segment: another keyframe)")
    parser.add_argument("--stride", type=int, default=1, help="judge every Nth frame (all are tracked and rendered)")
    parser.add_argument("--renderer", default="mesh")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "swap", help="folder for swap.json and the sheet")
    parser.add_argument("--cells", type=int, default=4, help="frames per contact-sheet row")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="mesh option, e.g. retarget.outline_pull=0.5 or blend.chroma_strength=0.4")  # fmt: skip
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if not DATA.is_dir():
        print(f"no evaluation data at {DATA}", file=sys.stderr)
        return 2
    clips = args.clips.split(",") if args.clips else sorted(p.stem for p in (DATA / "clips").glob("*.mp4"))
    avatars = args.avatars.split(",") if args.avatars else sorted(p.stem for p in (DATA / "avatars").glob("*.jpg"))
    mesh_options = parse_mesh_options(args.set)
    recogniser = Recogniser()
    identities = {a: load_identity(DATA / "avatars" / f"{a}.jpg") for a in avatars}
    avatar_desc = {}
    for a, ident in identities.items():
        assert ident.image is not None and ident.landmarks is not None
        avatar_desc[a] = recogniser.descriptor(ident.image, ident.landmarks)
    results: list[PairResult] = []
    rows: list[tuple[str, Image, list[Image]]] = []
    sheet_every = max(1, args.frames // args.cells)
    for clip in clips:
        frames = track_clip(DATA / "clips" / f"{clip}.mp4", args.frames, args.start)
        for a in avatars:
            res, cells = run_pair(clip, frames, a, identities[a], avatar_desc[a], recogniser, args.renderer,
                                  sheet_every, mesh_options, args.stride)  # fmt: skip
            results.append(res)
            image = identities[a].image
            assert image is not None
            rows.append((f"{clip} x {a}: av {res.as_avatar:.2f} se {res.as_sender:.2f} m {res.mouth_corr:.2f} "
                         f"e {res.eye_corr:.2f}", image, cells))  # fmt: skip
            print(json.dumps(asdict(res)), flush=True)
    summary = {
        "as_avatar": float(np.mean([r.as_avatar for r in results])),
        "as_sender": float(np.mean([r.as_sender for r in results])),
        # Pairs whose own faces dlib already calls one person cannot score better than the inputs do.
        "as_sender_distinct_pairs": float(np.mean([r.as_sender for r in results if r.avatar_vs_sender >= SAME_PERSON] or [float("nan")])),
        "face_found": float(np.mean([r.face_found for r in results])),
        "mouth_corr": float(np.nanmean([r.mouth_corr for r in results])),
        "eye_corr": float(np.nanmean([r.eye_corr for r in results])),
        "pose_err_deg": float(np.nanmean([r.pose_err_deg for r in results])),
        "flicker": float(np.nanmean([r.flicker for r in results])),
        "ms_per_frame": float(np.median([r.ms_per_frame for r in results])),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    settings = {"clips": clips, "avatars": avatars, "frames": args.frames, "start": args.start, "stride": args.stride,
                "renderer": args.renderer, "set": args.set}  # fmt: skip
    report = {"machine": machine, "settings": settings, "summary": summary, "pairs": [asdict(r) for r in results]}
    (args.out / "swap.json").write_text(json.dumps(report, indent=2))
    cv2.imwrite(str(args.out / "swap_sheet.png"), contact_sheet(rows, args.cells))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
