"""Real time end to end: the real sender and receiver processes over loopback, measured.

    .venv/bin/python bench/realtime.py --clip ../shared/data/clips/d6.mp4 --sizes 640x480,1280x720 --seconds 60

For each size the sender paces the clip at 30 fps (`--realtime --loop --fps 30`) and the receiver
renders into a sink (default null) with `--stats-json`. Reported per size: delivered fps, capture-to-
sink latency p50/p95/max (from the receiver's once-a-second reports: their medians, and the worst),
the per-stage share of the latency as the receiver reports it, frames not shown, and CPU% and RSS of
each process sampled from /proc every second. Each process pins OpenCV/BLAS/ONNX Runtime to one
thread: two processes on two cores is the case designed for. Writes JSON and a latency-over-time
plot (default out/bench/realtime.json and .png).

Timings drift ~20% within minutes on a shared machine; compare runs made alternately in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loopback import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
WARMUP_REPORTS = 3  # the first seconds hold model loading and the first keyframe



@dataclass
class ProcessSampler:
    """CPU% and RSS of one process, from /proc, sampled once a second."""

    pid: int
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (t, cpu %, rss MiB)
    _last: tuple[float, int] | None = None

    def sample(self, now: float) -> None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss_pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            return
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        if self._last is not None:
            cpu = 100.0 * (ticks - self._last[1]) / CLOCK_TICKS / max(now - self._last[0], 1e-6)
            self.samples.append((now, cpu, rss_pages * PAGE_BYTES / 2**20))
        self._last = (now, ticks)

    def summary(self) -> dict[str, float | None]:
        steady = self.samples[WARMUP_REPORTS:] or self.samples
        if not steady:
            return {"cpu_percent_mean": None, "rss_mib_max": None}
        return {"cpu_percent_mean": round(float(np.mean([s[1] for s in steady])), 1),
                "rss_mib_first": round(steady[0][2], 1), "rss_mib_max": round(max(s[2] for s in steady), 1)}


def run_size(args: argparse.Namespace, size: str, out_dir: Path) -> dict[str, object]:
    port, token = free_port(), secrets.token_hex(16)
    stats_path = out_dir / f"realtime_{size}.stats.jsonl"
    stats_path.unlink(missing_ok=True)
    env = {**os.environ, "FACEWIRE_TOKEN": token, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "FACEWIRE_ORT_THREADS": "1"}
    receiver = subprocess.Popen([sys.executable, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{port}",
                                 "--sink", args.sink, "--fps", str(args.fps), "--once", "--stats-json", str(stats_path),
                                 "--log-level", "ERROR"], env=env)
    time.sleep(3.0)  # the receiver's imports; a sender that finds no listener would retry anyway
    sender = subprocess.Popen([sys.executable, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{port}",
                               "--input", args.clip, "--realtime", "--loop", "--fps", str(args.fps), "--size", size,
                               "--identity", args.identity, "--max-frames", str(int(args.seconds * args.fps)),
                               "--log-level", "ERROR"], env=env)
    samplers = {"sender": ProcessSampler(sender.pid), "receiver": ProcessSampler(receiver.pid)}
    deadline = time.monotonic() + args.seconds * 4 + 60
    while sender.poll() is None and time.monotonic() < deadline:
        now = time.monotonic()
        for sampler in samplers.values():
            sampler.sample(now)
        time.sleep(1.0)
    if sender.poll() is None:
        sender.kill()
    sender_rc = sender.wait()
    try:
        receiver_rc = receiver.wait(timeout=30)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver_rc = receiver.wait()
    reports = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    return summarise(size, reports, samplers, sender_rc, receiver_rc, int(args.seconds * args.fps))


def summarise(size: str, reports: list[dict[str, object]], samplers: dict[str, ProcessSampler],
              sender_rc: int, receiver_rc: int, frames_sent_planned: int) -> dict[str, object]:
    steady = [r for r in reports[WARMUP_REPORTS:-1] if float(str(r["fps"])) > 0] or reports

    def values(key: str) -> np.ndarray:
        return np.array([float(str(v)) for r in steady if (v := r.get(key)) is not None] or [np.nan])

    def stage_medians(key: str) -> dict[str, float]:
        per_report = [dict(r.get(key) or {}) for r in steady]  # type: ignore[call-overload]
        names = sorted({name for stages in per_report for name in stages})
        return {name: round(float(np.nanmedian([float(stages.get(name, np.nan)) for stages in per_report])), 2)
                for name in names}

    last = reports[-1] if reports else {}
    return {
        "size": size,
        "sender_exit_code": sender_rc, "receiver_exit_code": receiver_rc,
        "fps_median": round(float(np.nanmedian(values("fps"))), 2),
        "latency_ms_p50_median": round(float(np.nanmedian(values("latency_ms_p50"))), 1),
        "latency_ms_p95_median": round(float(np.nanmedian(values("latency_ms_p95"))), 1),
        "latency_ms_max": round(float(np.nanmax(values("latency_ms_max"))), 1),
        "stages_ms_median": stage_medians("stages_ms"),
        # the slowest 5% of each second's frames, on the receiver's side (upstream: the sender and the link)
        "stages_ms_slowest_median": stage_medians("stages_ms_slowest"),
        "frames_planned": frames_sent_planned,
        "frames_in": last.get("frames_in"), "frames_out": last.get("frames_out"),
        "frames_new_shown": last.get("frames_new"), "dropped": last.get("dropped"),
        "processes": {name: sampler.summary() for name, sampler in samplers.items()},
        "timeline": [{"t": r.get("t"), "fps": r.get("fps"), "p50": r.get("latency_ms_p50"),
                      "p95": r.get("latency_ms_p95")} for r in reports],
    }


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3 * len(results)), squeeze=False)
    for axis, result in zip(axes[:, 0], results, strict=True):
        timeline = list(result["timeline"])  # type: ignore[call-overload]
        if not timeline:
            continue
        t0 = float(timeline[0]["t"])
        ts = [float(p["t"]) - t0 for p in timeline]
        for key, style in (("p50", "-"), ("p95", "--")):
            axis.plot(ts, [np.nan if p[key] is None else p[key] for p in timeline], style, label=f"latency {key} (ms)")
        axis.plot(ts, [p["fps"] for p in timeline], ":", label="fps")
        axis.set_title(f"{result['size']}: fps {result['fps_median']}, p95 {result['latency_ms_p95_median']} ms")
        axis.set_xlabel("s")
        axis.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="../shared/data/clips/d6.mp4")
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--sink", default="null")
    parser.add_argument("--identity", default="self")
    parser.add_argument("--output", type=Path, default=Path("out/bench/realtime.json"))
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        print(f"{size}: {args.seconds:.0f} s live ...", file=sys.stderr, flush=True)
        result = run_size(args, size, args.output.parent)
        print(f"{size}: fps {result['fps_median']}, latency p50 {result['latency_ms_p50_median']} ms, "
              f"p95 {result['latency_ms_p95_median']} ms, stages {result['stages_ms_median']}", file=sys.stderr)
        results.append(result)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "settings": vars(args) | {"output": str(args.output)},
        "results": results,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str))
    plot(results, args.output.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "results"} | {
        "results": [{k: v for k, v in r.items() if k != "timeline"} for r in results]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
