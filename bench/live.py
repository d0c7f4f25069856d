"""Live link on loopback: the real sender and receiver processes, measured by the receiver's stats.

    .venv/bin/python bench/live.py --clip ../shared/data/clips/d6.mp4 --size 640x480 --seconds 20

The sender paces the clip at its fps (`--realtime --loop`), the receiver renders into a
null sink (or --sink), and its `--stats-json` lines give fps, capture-to-sink latency
percentiles, kbps and drops. Each process gets OpenCV/BLAS/ONNX Runtime pinned to one
thread, so on a 2-core machine the two sides do not fight over cores. Writes JSON (default
out/bench/live.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="../shared/data/clips/d6.mp4")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sink", default="null")
    parser.add_argument("--identity", default="self")
    parser.add_argument("--matte", default="auto")
    parser.add_argument("--output", type=Path, default=Path("out/bench/live.json"))
    args = parser.parse_args()
    port, token = free_port(), secrets.token_hex(16)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    stats_path = args.output.with_suffix(".stats.jsonl")
    stats_path.unlink(missing_ok=True)
    env = {**os.environ, "FACEWIRE_TOKEN": token, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "FACEWIRE_ORT_THREADS": "1"}
    receiver = subprocess.Popen([sys.executable, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{port}", "--sink",
                                 args.sink, "--once", "--stats-json", str(stats_path), "--log-level", "ERROR"], env=env)
    time.sleep(3.0)
    sender = subprocess.Popen([sys.executable, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{port}", "--input",
                               args.clip, "--realtime", "--loop", "--size", args.size, "--identity", args.identity,
                               "--matte", args.matte, "--max-frames", str(int(args.seconds * 30)),
                               "--log-level", "ERROR"], env=env)
    sender_rc = sender.wait(timeout=args.seconds * 4 + 60)
    receiver_rc = receiver.wait(timeout=30)
    lines = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    steady = [line for line in lines[2:-1] if line["fps"] > 0] or lines
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": vars(args) | {"output": str(args.output)},
        "sender_exit_code": sender_rc, "receiver_exit_code": receiver_rc,
        "fps_mean": round(float(np.mean([s["fps"] for s in steady])), 2),
        "latency_ms_p50_median": round(float(np.nanmedian([s["latency_ms_p50"] or np.nan for s in steady])), 1),
        "latency_ms_p95_median": round(float(np.nanmedian([s["latency_ms_p95"] or np.nan for s in steady])), 1),
        "kbps_in_mean": round(float(np.mean([s["kbps_in"] for s in steady])), 1),
        "frames_in": lines[-1].get("frames_in") if lines else None,
        "frames_out": lines[-1].get("frames_out") if lines else None,
        "dropped": lines[-1].get("dropped") if lines else None,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
