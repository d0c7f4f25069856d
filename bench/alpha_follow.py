"""How well the receiver's alpha follows the person between keyframes, with and without one code (--code:
the alpha corrections by default, or the body-motion code).

    OMP_NUM_THREADS=1 .venv/bin/python bench/alpha_follow.py --clips ../shared/data/clips/*.mp4 --frames 150

Per clip the sender runs as `record_stream` does (tracker, --matte, FrameCoder with its keyframe policy
and references, FeatureStream under the --bitrate ceiling) twice over the same analyses: with the default
codes, and with the same codes less --code. The messages are decoded and drawn in process as the
receiver does (FrameDecoder, MeshRenderer in self mode), and the alpha drawn for every frame sent is
compared with the sender's own matte of that frame: IoU of the masks at 0.5 and mean absolute difference.
This measures what the prediction of the alpha loses between keyframes (the matte itself is the sender's;
bench/chain_alpha.py checks that against an independent key). Writes JSON and, per clip, a PNG of the
frame where the two variants differ most: the sender's frame and matte composite over grey, without,
with, and the alpha differences (green both, red drawn but not in the matte, blue the reverse).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from media import read_frames

from facewire.sender.analysis import SenderAnalyzer
from facewire.sender.coding import DEFAULT_BITRATE_BPS, DEFAULT_CODES, Budget, FrameCoder
from facewire.sender.matte import make_matter
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.sender.tracker import MediaPipeFaceTracker
from facewire.shared.codec.alpha_fix import CAPABILITY as ALPHA_FIX
from facewire.shared.codec.alpha_fix import apply_fix
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameDecoder, FrameEncoder
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.types import CapturedFrame, FrameAnalysis
from facewire.shared.wire import messages as m

F32 = npt.NDArray[np.float32]


class Variant:
    """One sender (coder, stream, gate) and the receiver that decodes and draws what it sends."""

    def __init__(self, codes: tuple[str, ...], bitrate_bps: float, measured: str) -> None:
        self.measured = measured
        self.coder = FrameCoder(codes=codes, budget=Budget.at_most(bitrate_bps))
        self.codes = negotiate(codes, list(FIELD_CODECS))
        self.stream, self.gate = FeatureStream(FrameEncoder(self.codes)), Ceiling(bitrate_bps)
        self.decoder, self.renderer = FrameDecoder(self.codes), MeshRenderer()
        self.drawn: dict[int, F32] = {}  # frame index -> the receiver's alpha
        self.pictures: dict[int, npt.NDArray[np.uint8]] = {}
        self.code_bytes: list[int] = []  # the measured code's bytes in each frame sent
        self.keyframes = 0

    def send(self, analyzer: SenderAnalyzer, analysis: FrameAnalysis, now: float, fps: float, keep_picture: bool) -> None:
        item = self.coder.code(analyzer, analysis)
        for message in plan(self.stream, item, self.gate, now):
            wire = m.decode(m.encode(message))
            if isinstance(wire, m.Keyframe | m.KeyframePart):
                state = self.decoder.decode_keyframe(wire) if isinstance(wire, m.Keyframe) else self.decoder.decode_part(wire)
                if state is not None:
                    self.keyframes += 1
            elif isinstance(wire, m.Setup):
                self.decoder.setup(wire)
            elif isinstance(wire, m.Frame):
                frame = self.decoder.decode_frame(wire)
                assert self.decoder.keyframe is not None
                self.renderer.prepare_keyframe(self.decoder.keyframe)
                person = self.renderer.render(frame)
                index = analysis.frame.index
                self.drawn[index] = apply_fix(person.alpha, frame.alpha_fix)
                if keep_picture:
                    self.pictures[index] = person.image
                if self.measured in self.codes:
                    code = wire.codes[self.codes.index(self.measured)]
                    self.code_bytes.append(0 if code is None else len(code))
        self.coder.budget.observe_frame(self.stream.last_features_bytes, fps)
        self.coder.held = self.stream.held  # as the recorder does: the keyframes the receiver holds


def scores(drawn: F32, matte: F32) -> tuple[float, float]:
    got, want = drawn > 0.5, matte > 0.5
    return float((got & want).sum() / max((got | want).sum(), 1)), float(np.abs(drawn - matte).mean())


def grey(image: npt.NDArray[np.uint8], alpha: F32) -> npt.NDArray[np.uint8]:
    a = alpha[..., None]
    return np.clip(image * a + 128.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def differences(drawn: F32, matte: F32) -> npt.NDArray[np.uint8]:
    out = np.zeros((*matte.shape, 3), np.uint8)
    out[..., 1] = np.minimum(drawn, matte) * 255
    out[..., 2] = np.clip(drawn - matte, 0, 1) * 255
    out[..., 0] = np.clip(matte - drawn, 0, 1) * 255
    return out


def run_clip(path: Path, args: argparse.Namespace) -> dict[str, object]:
    frames, fps = read_frames(path, args.frames)
    analyzer = SenderAnalyzer(MediaPipeFaceTracker(), make_matter(args.matte))
    with_codes = tuple(dict.fromkeys((*DEFAULT_CODES, args.code)))
    without_codes = tuple(code for code in with_codes if code != args.code)
    variants = {"without": Variant(without_codes, args.bitrate * 1000, args.code),
                "with": Variant(with_codes, args.bitrate * 1000, args.code)}
    mattes: dict[int, F32] = {}
    for index, image in enumerate(frames):
        analysis = analyzer.analyze(CapturedFrame(index, int(index * 1e6 / fps), image))
        if analysis.alpha is None:
            raise SystemExit("--matte none leaves nothing to compare")
        mattes[index] = analysis.alpha
        for variant in variants.values():
            variant.send(analyzer, analysis, index / fps, fps, keep_picture=True)
    analyzer.close()
    row: dict[str, object] = {"clip": path.name, "frames": len(frames)}
    common = sorted(set(variants["with"].drawn) & set(variants["without"].drawn))
    if not common:
        raise SystemExit(f"{path.name}: no frame was drawn in {len(frames)} (the first keyframe is still being repaid?)")
    per: dict[str, list[tuple[float, float]]] = {}
    for name, variant in variants.items():
        per[name] = [scores(variant.drawn[i], mattes[i]) for i in common]
        row[name] = {"iou_mean": round(float(np.mean([s[0] for s in per[name]])), 4),
                     "iou_min": round(float(np.min([s[0] for s in per[name]])), 4),
                     "mad_mean": round(float(np.mean([s[1] for s in per[name]])), 4),
                     "frames_drawn": len(variant.drawn), "keyframes": variant.keyframes}
    spent = variants["with"].code_bytes
    row["code_bytes"] = {"mean": round(float(np.mean(spent)), 2) if spent else 0.0,
                         "max": max(spent, default=0), "frames_without": sum(1 for b in spent if b == 0)}
    gain = [w[0] - o[0] for w, o in zip(per["with"], per["without"], strict=True)]
    worst = common[int(np.argmax(np.abs(gain)))] if common else None
    if worst is not None:
        sheet = [grey(frames[worst], mattes[worst])]
        for variant in (variants["without"], variants["with"]):
            sheet.append(grey(variant.pictures[worst], variant.drawn[worst]))
        sheet += [differences(variants["without"].drawn[worst], mattes[worst]),
                  differences(variants["with"].drawn[worst], mattes[worst])]
        picture = np.hstack([cv2.resize(s, (256, round(256 * s.shape[0] / s.shape[1]))) for s in sheet])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.output.with_name(f"{args.output.stem}_{path.stem}.png")), picture)
        row["sheet_frame"] = worst
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, nargs="+", default=sorted(Path("../shared/data/clips").glob("*.mp4")))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--matte", default="auto")
    parser.add_argument("--code", default=ALPHA_FIX, help="the code measured (the default codes with and without it)")
    parser.add_argument("--bitrate", type=float, default=DEFAULT_BITRATE_BPS / 1000, help="ceiling, kbps")
    parser.add_argument("--output", type=Path, default=Path("out/bench/alpha_follow.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = []
    for clip in args.clips:
        rows.append(run_clip(clip, args))
        print(json.dumps(rows[-1]), flush=True)
    summary = {name: {key: round(float(np.mean([r[name][key] for r in rows])), 4) for key in ("iou_mean", "mad_mean")}  # type: ignore[index]
               for name in ("without", "with")}
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "settings": {"frames": args.frames, "matte": args.matte, "bitrate_kbps": args.bitrate, "code": args.code},
              "clips": rows, "mean": summary}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
