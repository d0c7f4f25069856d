"""The sender's CPU per frame with the residual layer (the closed loop: tracking, matte, keyframes,
the replica's prediction, the residual, the AV1 layer encoder), against features only.

    python bench/layer_cpu.py ../shared/data/clips [--clips d3,w0] [--frames 300] [--size 640x480] [--bitrate 16]
        [--layers features,features+residual] [--repeat 1]

Runs `facewire-send --record-stream` in this process (sender.runner.record_stream: the same coder, gate,
pacer and layer encoder, the stream written to a temporary file) and measures CPU time (time.process_time:
every thread of the process, MediaPipe's included) per input frame, reading and scaling the file's frames
left out (`capture`, reported apart), and per stage: analysis (tracker +
matte, side by side as the sender runs them), coding (keyframes and the codes' preparers, the closed loop's
replica and residual included, and a matte made late for a keyframe) and sending (the send plan, the
send-time encoders, the layer's AV1 included, the file). Also reports how many frames were matted, the
layer's frames, the stream's rate and a digest of its messages (wall-clock timestamps left out, as
tests/golden/digest.py does): two builds that send the same thing show the same digest.
Timing is noisy on a shared machine: medians and means are both reported, and --repeat runs each case
again (alternating the cases) so that two builds compared in turn see the same spells. Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SVT_LOG", "1")

import cv2  # noqa: E402
import msgspec  # noqa: E402

from facewire.sender.analysis import SenderAnalyzer  # noqa: E402
from facewire.sender.capture import CaptureOptions, FrameSource  # noqa: E402
from facewire.sender.cli import make_analyzer  # noqa: E402
from facewire.sender.coding import Budget, FrameCoder, codes_for  # noqa: E402
from facewire.sender.runner import record_stream  # noqa: E402
from facewire.shared.codec.layer_field import LayerPreparer  # noqa: E402
from facewire.shared.process.cliargs import parse_size  # noqa: E402
from facewire.shared.render import mesh as _mesh  # noqa: E402, F401  (imported here: its ~0.7 s import is not a frame's CPU)
from facewire.shared.types import CapturedFrame, FrameAnalysis  # noqa: E402


def messages_digest(path: Path) -> str:
    """sha256 of a stream file's messages, their wall-clock timestamps zeroed as the golden digest does."""
    spec = importlib.util.spec_from_file_location("golden_digest", Path(__file__).parents[1] / "tests/golden/digest.py")
    assert spec is not None and spec.loader is not None
    golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden)
    return hashlib.sha256(msgspec.msgpack.encode([golden.normalised(raw) for raw in golden.records(path)])).hexdigest()[:16]


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


class _TimedSource:
    """The source with the CPU its frames take (decoding the file, scaling it to --size) counted apart: a camera
    delivers its frames at the size asked for, and the original bench left them out too."""

    def __init__(self, source: FrameSource, spent: dict[str, float]) -> None:
        self._source, self._spent = source, spent

    def __getattr__(self, name: str) -> object:
        return getattr(self._source, name)

    def __iter__(self) -> Iterator[CapturedFrame]:
        frames = iter(self._source)
        while True:
            t0 = time.process_time()
            frame = next(frames, None)
            self._spent["capture"] += time.process_time() - t0
            if frame is None:
                return
            yield frame


def run(clip: Path, layers: str, frames: int, size: tuple[int, int], bitrate_bps: float) -> dict[str, object]:
    source = FrameSource(str(clip), CaptureOptions(size=size, max_frames=frames, media_clock=True))
    analyzer = make_analyzer("auto", "cpu")
    assert isinstance(analyzer, SenderAnalyzer)
    coder = FrameCoder(codes_for(layers, bitrate_bps, True), Budget.at_most(bitrate_bps))
    spent = {"capture": 0.0, "analysis": 0.0, "coding": 0.0}
    stages: dict[str, list[float]] = {"capture": [], "analysis": [], "coding": [], "sending": [], "total": []}
    matted = [0]
    analyze, code = analyzer.analyze, coder.code
    with_matte = getattr(analyzer, "with_matte", None)

    def timed_analyze(frame: CapturedFrame, matte: bool = True, coarse: bool = False) -> FrameAnalysis:
        t0 = time.process_time()
        # an older analyser (A/B) takes no `matte`, or no `coarse`
        out = analyze(frame, matte, coarse) if coarse else analyze(frame) if matte else analyze(frame, matte)
        spent["analysis"] += time.process_time() - t0
        matted[0] += out.alpha is not None
        return out

    def counted_with_matte(analysis: FrameAnalysis) -> FrameAnalysis:
        assert with_matte is not None
        out = with_matte(analysis)
        matted[0] += out is not analysis
        return out

    def timed_code(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = code(*args, **kwargs)
        spent["coding"] += time.process_time() - t0
        return out

    analyzer.analyze = timed_analyze  # type: ignore[method-assign]
    if with_matte is not None:
        analyzer.with_matte = counted_with_matte  # type: ignore[method-assign]
    coder.code = timed_code  # type: ignore[method-assign]
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
    last = [time.process_time()]

    def progress(count: int, nbytes: int) -> None:
        now = time.process_time()
        total = now - last[0] - spent["capture"]
        last[0] = now
        for name, value in (("capture", spent["capture"]), ("analysis", spent["analysis"]), ("coding", spent["coding"]),
                            ("sending", total - spent["analysis"] - spent["coding"]), ("total", total)):
            stages[name].append(value * 1000)
        spent.update(capture=0.0, analysis=0.0, coding=0.0)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.fws"
        try:
            writer = record_stream(_TimedSource(source, spent), analyzer, path, None, progress,  # type: ignore[arg-type]
                                   coder=coder)
            digest = messages_digest(path)
        finally:
            source.close()
            analyzer.close()
    seconds = len(stages["total"]) / source.fps
    summary: dict[str, object] = {name: _stats(v[10:]) for name, v in stages.items()}
    summary["frames"] = len(stages["total"])
    summary["matted_frames"] = matted[0]
    summary["layer_frames"] = len(layer_ms)
    if layer_ms:
        summary["replica_and_residual_ms_per_layer_frame"] = _stats(layer_ms)
    summary["kbps"] = writer.bytes * 8 / seconds / 1000
    summary["digest"] = digest
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="?", default=Path("../shared/data/clips"))
    parser.add_argument("--clips", default="")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=parse_size, default=(640, 480))
    parser.add_argument("--bitrate", type=float, default=16.0, help="kbps")
    parser.add_argument("--layers", default="features,features+residual", help="comma-separated --layers values")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every case, alternating")
    parser.add_argument("--out", type=Path, default=Path("out/bench/layer_cpu.json"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    wanted = set(args.clips.split(",")) - {""}
    clips = sorted(p for p in args.dir.glob("*.mp4") if not wanted or p.stem in wanted)
    results = []
    for repeat in range(args.repeat):
        for clip in clips:
            for layers in args.layers.split(","):
                result = run(clip, layers, args.frames, args.size, args.bitrate * 1000)
                results.append({"clip": clip.stem, "layers": layers, "repeat": repeat, **result})
                total, analysis, coding, sending = (result[k] for k in ("total", "analysis", "coding", "sending"))
                assert isinstance(total, dict) and isinstance(analysis, dict)
                assert isinstance(coding, dict) and isinstance(sending, dict)
                print(f"{clip.stem:6} {layers:18} total {total['mean']:.1f} ms/frame mean, {total['median']:.1f} median "
                      f"(analysis {analysis['mean']:.1f}, coding {coding['mean']:.1f}, sending {sending['mean']:.1f}); "
                      f"matted {result['matted_frames']}, layer frames {result['layer_frames']}, "
                      f"{result['kbps']:.1f} kbps, digest {result['digest']}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                "load": os.getloadavg()},
                                    "settings": {"frames": args.frames, "size": args.size, "bitrate_kbps": args.bitrate},
                                    "results": results}, default=msgspec.to_builtins, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
