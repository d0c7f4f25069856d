"""The sender's CPU per frame with the residual layer (the closed loop: tracking, matte, keyframes,
the replica's prediction, the residual, the AV1 layer encoder), against features only.

    python bench/layer_cpu.py ../shared/data/clips [--clips d3,w0] [--frames 300] [--size 640x480] [--bitrate 16]

Runs the sender's coding stage in this process, one thread, through the same pieces as
`facewire-send --record-stream` (FrameCoder, FeatureStream, the --bitrate ceiling), and measures CPU
time (time.process_time: every thread of the process, MediaPipe's included) per stage: analysis
(tracker + matte), coding (keyframes and the codes' preparers, the layer's replica included), sending
(the send-time encoders, the layer's AV1 included).
Timing is noisy on a shared machine: medians and means are both reported. Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SVT_LOG", "1")

import cv2  # noqa: E402

from facewire.sender.capture import CaptureOptions, FrameSource  # noqa: E402
from facewire.sender.cli import make_analyzer  # noqa: E402
from facewire.sender.coding import Budget, FrameCoder, codes_for  # noqa: E402
from facewire.sender.sending import Ceiling, plan  # noqa: E402
from facewire.sender.stream import FeatureStream  # noqa: E402
from facewire.shared.codec.fields import FIELD_CODECS, negotiate  # noqa: E402
from facewire.shared.codec.frames import FrameEncoder  # noqa: E402
from facewire.shared.codec.layer_field import LayerPreparer  # noqa: E402
from facewire.shared.process.cliargs import parse_size  # noqa: E402
from facewire.shared.render import mesh as _mesh  # noqa: E402, F401  (imported here: its ~0.7 s import is not a frame's CPU)


def run(clip: Path, layers: str, frames: int, size: tuple[int, int], bitrate_bps: float) -> dict[str, object]:
    source = FrameSource(str(clip), CaptureOptions(size=size, max_frames=frames, media_clock=True))
    analyzer = make_analyzer("auto", "cpu")
    coder = FrameCoder(codes_for(layers, bitrate_bps, True), Budget.at_most(bitrate_bps))
    codes = negotiate(coder.codes, list(FIELD_CODECS))
    stream, gate = FeatureStream(FrameEncoder(codes)), Ceiling(bitrate_bps)
    layer_ms: list[float] = []
    preparer = next((p for p in coder._preparers.values() if isinstance(p, LayerPreparer)), None)  # noqa: SLF001
    if preparer is not None:
        inner = preparer.prepare_layer

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            t0 = time.process_time()
            out = inner(*args, **kwargs)
            if out is not None:
                layer_ms.append((time.process_time() - t0) * 1000)
            return out

        preparer.prepare_layer = timed  # type: ignore[method-assign]
    stages: dict[str, list[float]] = {"analysis": [], "coding": [], "sending": [], "total": []}
    try:
        for frame in source:
            t0 = time.process_time()
            analysis = analyzer.analyze(frame)
            t1 = time.process_time()
            item = coder.code(analyzer, analysis)
            t2 = time.process_time()
            plan(stream, item, gate, frame.index / source.fps)
            coder.budget.observe_frame(stream.last_features_bytes, source.fps)
            coder.held = stream.held
            t3 = time.process_time()
            for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                stages[name].append(value * 1000)
    finally:
        source.close()
        analyzer.close()
    summary: dict[str, object] = {
        name: {"mean": statistics.fmean(v[10:]), "median": statistics.median(v[10:])} for name, v in stages.items()}
    summary["layer_frames"] = len(layer_ms)
    if layer_ms:
        summary["replica_and_residual_ms_per_layer_frame"] = {"mean": statistics.fmean(layer_ms),
                                                              "median": statistics.median(layer_ms)}
    summary["frames"] = len(stages["total"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="?", default=Path("../shared/data/clips"))
    parser.add_argument("--clips", default="")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=parse_size, default=(640, 480))
    parser.add_argument("--bitrate", type=float, default=16.0, help="kbps")
    parser.add_argument("--out", type=Path, default=Path("out/bench/layer_cpu.json"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    wanted = set(args.clips.split(",")) - {""}
    clips = sorted(p for p in args.dir.glob("*.mp4") if not wanted or p.stem in wanted)
    results = []
    for clip in clips:
        for layers in ("features", "features+residual"):
            result = run(clip, layers, args.frames, args.size, args.bitrate * 1000)
            results.append({"clip": clip.stem, "layers": layers, **result})
            total = result["total"]
            assert isinstance(total, dict)
            print(f"{clip.stem:6} {layers:18} total {total['mean']:.1f} ms/frame mean, {total['median']:.1f} median; "
                  f"layer frames {result['layer_frames']}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                "load": os.getloadavg()},
                                    "settings": {"frames": args.frames, "size": args.size, "bitrate_kbps": args.bitrate},
                                    "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
