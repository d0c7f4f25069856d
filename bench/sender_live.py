"""The live sender's time per part: the sender as bench/realtime.py launches it, run in this process and timed inside.

    .venv/bin/python bench/sender_live.py [--clip ../shared/data/clips/w1.mp4] [--seconds 25] [--size 640x480] [--bitrate K]

The receiver runs as its own process (`--sink null --stats-json`, as in bench/realtime.py); the sender's command line
(`--connect --realtime --loop --fps 30 --size WxH --identity self`, the live default unless --bitrate) runs here, with
its stages wrapped: each call's CPU on its own thread (time.thread_time: OpenCV runs on one thread, MediaPipe's graphs
and SVT-AV1 on theirs, which the per-thread figures hold) and its wall time. Every thread's CPU is sampled from
/proc/self/task (Python's threads by name, native ones by their comm). Reported per frame analysed: the parts (tracker,
matte, the coder's preparers, the body fit, the closed loop, the send plan and the layer's AV1 encode), the threads,
the receiver's latency and per-stage medians, and what became of the closed loop's residuals (made, sent, or drawn
against a keyframe the frame carrying them is not drawn from). Writes JSON to --out.

Timings drift a lot on a shared machine: compare builds run alternately (this script from one tree, its PYTHONPATH or
venv pointing at the other), and read CPU rather than wall where the load is high.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("FACEWIRE_ORT_THREADS", "1")
os.environ.setdefault("SVT_LOG", "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from loopback import free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_REPORTS = 3  # as bench/realtime.py: the first seconds hold model loading and the first keyframe


class Parts:
    """Each wrapped call's (thread CPU ms, wall ms), by part; and counts of what the closed loop's residuals became."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def wrap(self, owner: Any, attr: str, label: str, count: Callable[[Any], str | None] | None = None) -> None:
        """Times `owner.attr` (when the build has it) as `label`; `count` names a counter for a call's result."""
        inner = getattr(owner, attr, None)
        if inner is None:
            return

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            out = inner(*args, **kwargs)
            row = ((time.thread_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3)
            with self._lock:
                self.calls[label].append(row)
                if count is not None and (name := count(out)) is not None:
                    self.counts[name] += 1
            return out

        setattr(owner, attr, timed)


def instrument(parts: Parts) -> None:
    import facewire.sender.analysis as analysis
    import facewire.sender.coding as coding
    import facewire.sender.stream as stream
    import facewire.sender.tracker as tracker
    import facewire.sender.uplink as uplink
    import facewire.shared.codec.body as body
    import facewire.shared.codec.layer as layer
    import facewire.shared.codec.layer_field as layer_field
    from facewire.sender.matte import auto, learned
    from facewire.shared.codec.expression import field as expression

    parts.wrap(analysis.SenderAnalyzer, "analyze", "analyze")
    parts.wrap(tracker.MediaPipeFaceTracker, "track", "analyze.track")
    parts.wrap(auto.AutoMatter, "_decide", "analyze.matte.screen_check")
    parts.wrap(learned.LearnedMatter, "_small", "analyze.matte.reduce")
    parts.wrap(learned.LearnedMatter, "_segment", "analyze.matte.segment")
    parts.wrap(learned.LearnedMatter, "_refine", "analyze.matte.refine")
    parts.wrap(coding.FrameCoder, "code", "code")
    parts.wrap(expression.ExpressionPreparer, "prepare", "code.expression")
    parts.wrap(coding.ReferenceChooser, "choose", "code.choose_reference")
    parts.wrap(coding.FrameCoder, "_prepare_body", "code.body")
    parts.wrap(body, "frame_signal", "code.body.frame_signal")
    parts.wrap(body, "body_signal", "code.body.body_signal")
    parts.wrap(body, "fit_body_motion", "code.body.fit")
    parts.wrap(coding, "build_keyframe", "background.keyframe")
    parts.wrap(layer_field.LayerPreparer, "prepare_layer", "background.closed_loop",
               lambda out: None if out is None else "residuals_made")
    parts.wrap(uplink, "plan", "loop.plan")
    parts.wrap(layer.LayerEncoder, "encode", "loop.plan.layer_av1", lambda out: "layer_packets_sent")
    due = stream.FeatureStream.layer_bytes_due

    def counted_due(self: stream.FeatureStream, item: coding.Outgoing) -> int:
        nbytes = due(self, item)
        if item.carries_layer and nbytes == 0:
            parts.counts["residuals_for_another_keyframe"] += 1
        return nbytes

    stream.FeatureStream.layer_bytes_due = counted_due  # type: ignore[method-assign]


class ThreadCpu:
    """Every thread's CPU seconds over the run, sampled from /proc/self/task, by Python name or native comm."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> ThreadCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            named = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
            for task in Path("/proc/self/task").iterdir():
                tid = int(task.name)
                try:
                    if tid in named:  # a Python thread may show in /proc before threading knows its id
                        self._names[tid] = named[tid]
                    elif tid not in self._names:
                        self._names[tid] = "native:" + (task / "comm").read_text().strip()
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # a thread that ended meanwhile
                    continue
                seconds = (int(fields[11]) + int(fields[12])) / TICKS
                self._first.setdefault(tid, seconds)
                self._last[tid] = seconds
            time.sleep(0.2)

    def seconds(self) -> dict[str, float]:
        by_name: dict[str, float] = collections.defaultdict(float)
        for tid, last in self._last.items():
            name = self._names.get(tid, "?")
            by_name[name.split("/")[0] if name.startswith("native:") else name] += last - self._first[tid]
        return dict(sorted(by_name.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="../shared/data/clips/w1.mp4")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--bitrate", help="the sender's --bitrate (default: none, the live default)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/sender_live.json"))
    args = parser.parse_args(argv)
    parts = Parts()
    instrument(parts)
    from facewire.sender import cli

    port, token = free_port(), secrets.token_hex(16)
    os.environ["FACEWIRE_TOKEN"] = token
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.jsonl"
        receiver = subprocess.Popen([sys.executable, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{port}",
                                     "--sink", "null", "--fps", "30", "--once", "--stats-json", str(stats_path),
                                     "--log-level", "ERROR"])
        time.sleep(3.0)  # the receiver's imports
        sender_args = ["--connect", f"ws://127.0.0.1:{port}", "--input", args.clip, "--realtime", "--loop", "--fps", "30",
                       "--size", args.size, "--identity", "self", "--max-frames", str(int(args.seconds * 30)),
                       "--log-level", "ERROR", *(["--bitrate", args.bitrate] if args.bitrate else [])]
        with ThreadCpu() as threads:
            cpu = time.process_time()
            code = cli.main(sender_args)
            cpu = time.process_time() - cpu
        try:
            receiver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            receiver.kill()
        reports = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    steady = reports[WARMUP_REPORTS:-1] or reports
    frames = max(len(parts.calls["analyze"]), 1)

    def median(key: str) -> float | None:
        values = [float(r[key]) for r in steady if r.get(key) is not None]
        return round(float(np.median(values)), 1) if values else None

    stages = sorted({name for r in steady for name in r.get("stages_ms") or {}})
    result = {
        "settings": vars(args) | {"out": str(args.out)}, "sender_exit_code": code, "load": os.getloadavg(),
        "frames_analysed": frames, "process_cpu_ms_per_frame": round(cpu * 1e3 / frames, 2),
        "fps_median": median("fps"), "latency_ms_p50_median": median("latency_ms_p50"),
        "latency_ms_p95_median": median("latency_ms_p95"),
        "stages_ms_median": {name: round(float(np.nanmedian([float((r.get("stages_ms") or {}).get(name, np.nan))
                                                             for r in steady])), 2) for name in stages},
        "threads_cpu_ms_per_frame": {name: round(s * 1e3 / frames, 2) for name, s in threads.seconds().items()},
        "parts": {label: {"calls": len(rows), "cpu_ms_per_frame": round(sum(c for c, _ in rows) / frames, 3),
                          "cpu_ms_per_call": round(float(np.mean([c for c, _ in rows])), 3),
                          "wall_ms_per_call_median": round(float(np.median([w for _, w in rows])), 3)}
                  for label, rows in sorted(parts.calls.items())},
        "residuals": dict(parts.counts),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "parts"}, indent=1))
    for label, row in result["parts"].items():  # type: ignore[attr-defined]
        print(f"{label:32} {row['calls']:5d} calls  {row['cpu_ms_per_frame']:7.3f} CPU ms/frame  "
              f"{row['cpu_ms_per_call']:7.3f} CPU ms/call  {row['wall_ms_per_call_median']:7.3f} wall ms/call (median)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
