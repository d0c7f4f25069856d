"""The live link on a thin, delayed uplink: sender and receiver processes with the shaping proxy between them.

    .venv/bin/python bench/thinlink.py --clip ../shared/data/clips/d6.mp4 --seconds 30 \\
        --rates 16,24,64 --delays 150,300 [--outage-every 5 --outage-ms 500] [-- --bitrate 16]

For every rate x delay: a receiver (`facewire-receive --listen ... --sink null --stats-json F`),
the shaping proxy (bench/shaping.py, in this process: the rate cap and one-way delay on the uplink,
the delay alone on the downlink, optional outages) and a sender (`facewire-send --connect <proxy>
--input CLIP --realtime --loop --identity self`, plus whatever follows `--`). Steady state runs from
`--warmup` seconds after the first picture to the end. Figures:

* `fps_decoded`, `fps_shown`: frames decoded and shown per second (deltas of the receiver's
  `frames_in` and `frames_out`: its `fps` also counts the repeated pictures of a steady sink);
* `latency_p50_ms`, `latency_p95_ms`: capture to sink, the median over the steady seconds of the
  receiver's per-second percentiles (`latency_p95_max_ms`: the worst second);
* `arrival_p50_ms`, `arrival_p95_ms`: capture to the last byte leaving the proxy, exact, over every
  frame of the steady state (the proxy reads the messages off the websocket);
* `kbps_link`: what the shaped uplink carried in the steady state (application and websocket bytes,
  no TCP/IP headers; `kbps_link_whole_run`: from the sender's connection on);
* `keyframes`: each keyframe's size and its delivery time, capture to last byte delivered
  (`delivery_s`), and the time its bytes took to cross (`on_link_s`); `first_picture_s`: from the
  sender's connection to the first second with a frame shown;
* `<tag>.rate.jsonl` beside the logs: the sender's rate control once a second (its `snapshot()`: target,
  acked rate, window, RTTs, and which rule last moved the target), for post-mortems;
* `connections`: the sessions the sender opened; more than one means it lost the link and came back
  (the processes' warnings, in the logs beside the JSON, say why).

Writes JSON with the machine, the settings and the code that ran (default out/bench/thinlink.json),
and keeps each run's logs and stats beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from loopback import free_port, wait_for_port
from shaping import Shape, ShapingProxy
from wstap import Message, WebSocketTap, packed_frame_head


async def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int | None:
    """SIGINT, then SIGTERM, then SIGKILL, to the one process we started; the event loop (the proxy) keeps
    running meanwhile, so a sender can still say bye through it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(sig)
        try:
            return await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


@dataclass
class LinkLog:
    """Every message of the uplink as the receiver got it, read off the proxy's tap (wall-clock seconds)."""

    tap: WebSocketTap = field(default_factory=WebSocketTap)
    keyframe_ts_us: dict[int, int] = field(default_factory=dict)  # keyframe id -> capture time
    frames: list[tuple[float, float]] = field(default_factory=list)  # (capture, last byte delivered)
    keyframes: list[dict[str, float]] = field(default_factory=list)
    bytes_by_kind: dict[str, int] = field(default_factory=dict)

    def feed(self, chunk: bytes) -> None:
        """The proxy's tap: a chunk of the uplink, just delivered."""
        for message in self.tap.feed(chunk, time.time()):
            self.on_message(message)

    def on_message(self, message: Message) -> None:
        """A v2 frame is an array ["f", seq, dt_ms, kf, face, codes]; keyframes and the rest are maps with `t`."""
        head = packed_frame_head(message.payload)
        try:
            body = ["f", *head] if head is not None else msgspec.msgpack.decode(message.payload)
        except msgspec.DecodeError:
            return
        kind = body[0] if isinstance(body, list) and body else body.get("t") if isinstance(body, dict) else None
        kind = str(kind)
        self.bytes_by_kind[kind] = self.bytes_by_kind.get(kind, 0) + len(message.payload)
        if kind == "keyframe":
            self.keyframe_ts_us[int(body["kf"])] = int(body["ts_us"])
            capture = int(body["ts_us"]) / 1e6
            self.keyframes.append({"bytes": len(message.payload), "capture_s": capture, "delivered_s": message.last_s,
                                   "delivery_s": message.last_s - capture, "on_link_s": message.last_s - message.first_s,
                                   "first_s": message.first_s, "parts": int(body.get("parts", 1))})
        elif kind == "keyframe_part" and self.keyframes:  # a keyframe is delivered with its last part
            last = self.keyframes[-1]
            last["bytes"] += len(message.payload)
            last["delivered_s"] = message.last_s
            last["delivery_s"] = message.last_s - last["capture_s"]
            last["on_link_s"] = message.last_s - last["first_s"]
        elif kind == "f" and len(body) >= 4 and int(body[3]) in self.keyframe_ts_us:
            capture = (self.keyframe_ts_us[int(body[3])] + int(body[2]) * 1000) / 1e6
            self.frames.append((capture, message.last_s))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def summarise(receiver: list[dict[str, Any]], link_bytes: list[tuple[float, int]], log: LinkLog,
              connect_t: float | None, end_t: float, warmup_s: float) -> dict[str, object]:
    """One run's figures from the receiver's once-a-second lines, the proxy's byte counts and the tap, over
    the steady state: from `warmup_s` after the first picture to `end_t`, when the processes were stopped."""
    if connect_t is None:
        return {"note": "the sender never connected"}
    out: dict[str, object] = {}
    if len(link_bytes) >= 2:
        out["kbps_link_whole_run"] = _round((link_bytes[-1][1] - link_bytes[0][1]) * 8 / 1000
                                            / (link_bytes[-1][0] - link_bytes[0][0]), 2)
    out["keyframes"] = [{"bytes": k["bytes"], "delivered_at_s": _round(k["delivered_s"] - connect_t, 2),
                         "delivery_s": _round(k["delivery_s"], 2), "on_link_s": _round(k["on_link_s"], 2)}
                        for k in log.keyframes if k["delivered_s"] <= end_t]
    out["bytes_by_kind"] = dict(log.bytes_by_kind)
    first = next((r for r in receiver if (r.get("frames_out") or 0) > 0 and float(r["t"]) <= end_t), None)
    if first is None:
        return {"first_picture_s": None, "note": "no picture reached the receiver's sink", **out}
    t0 = float(first["t"]) + warmup_s
    steady = [r for r in receiver if t0 <= float(r["t"]) <= end_t]
    out |= {"first_picture_s": _round(float(first["t"]) - connect_t, 2), "steady_s": None}
    if len(steady) >= 2:
        span = float(steady[-1]["t"]) - float(steady[0]["t"])
        p50 = [r["latency_ms_p50"] for r in steady if r.get("latency_ms_p50") is not None]
        p95 = [r["latency_ms_p95"] for r in steady if r.get("latency_ms_p95") is not None]
        out |= {
            "steady_s": _round(span),
            "fps_decoded": _round((steady[-1]["frames_in"] - steady[0]["frames_in"]) / span, 2),
            "fps_shown": _round((steady[-1]["frames_out"] - steady[0]["frames_out"]) / span, 2),
            "latency_p50_ms": _round(float(np.median(p50))) if p50 else None,
            "latency_p95_ms": _round(float(np.median(p95))) if p95 else None,
            "latency_p95_max_ms": _round(float(np.max(p95))) if p95 else None,
        }
    link = [(t, n) for t, n in link_bytes if t0 <= t <= end_t]
    if len(link) >= 2:
        out["kbps_link"] = _round((link[-1][1] - link[0][1]) * 8 / 1000 / (link[-1][0] - link[0][0]), 2)
    arrivals = [(delivered - capture) * 1000 for capture, delivered in log.frames if t0 <= delivered <= end_t]
    if arrivals:
        out |= {"frames_arrived": len(arrivals), "arrival_p50_ms": _round(float(np.percentile(arrivals, 50))),
                "arrival_p95_ms": _round(float(np.percentile(arrivals, 95)))}
    return out


@dataclass(frozen=True)
class Link:
    rate_kbps: float | None
    delay_ms: float
    outage_every_s: float | None
    outage_ms: float

    def shapes(self, queue_ms: float) -> tuple[Shape, Shape]:
        """The uplink: rate, delay, outages; the downlink (acks, pongs): delay and outages."""
        down = Shape(delay_s=self.delay_ms / 1000, outage_every_s=self.outage_every_s, outage_s=self.outage_ms / 1000)
        rate = None if self.rate_kbps is None else self.rate_kbps * 1000
        return replace(down, rate_bps=rate, queue_s=queue_ms / 1000), down

    @property
    def tag(self) -> str:
        return f"{self.rate_kbps or 'inf'}k_{self.delay_ms:g}ms"


async def run_one(args: argparse.Namespace, link: Link, workdir: Path) -> dict[str, object]:
    # The receiver serves every session of the run (no --once): a sender that loses the link and comes back
    # is what a user would see, and `connections` counts the sessions.
    token, rx_port = secrets.token_hex(16), free_port()
    rx_stats = workdir / f"{link.tag}.receiver.jsonl"
    rx_stats.unlink(missing_ok=True)
    rate_trace = workdir / f"{link.tag}.rate.jsonl"
    rate_trace.unlink(missing_ok=True)
    env = {**os.environ, "FACEWIRE_TOKEN": token, "FACEWIRE_RATE_TRACE": str(rate_trace),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "FACEWIRE_ORT_THREADS": "1"}
    logs = {name: (workdir / f"{link.tag}.{name}.log").open("wb") for name in ("receiver", "sender")}
    log = LinkLog()
    up, down = link.shapes(args.queue_ms)
    proxy = ShapingProxy(("127.0.0.1", 0), ("127.0.0.1", rx_port), up=up, down=down, tap=log.feed)
    link_bytes: list[tuple[float, int]] = []
    procs: list[subprocess.Popen[bytes]] = []
    connect_t, sender_rc, end_t = None, None, time.time()
    try:
        procs.append(subprocess.Popen(
            [args.python, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{rx_port}", "--sink", "null",
             "--stats-json", str(rx_stats), "--log-level", "WARNING"], env=env, stdout=logs["receiver"], stderr=subprocess.STDOUT))
        if not await wait_for_port(rx_port, 60):
            return {"error": "the receiver did not start"}
        await proxy.start()
        sender = subprocess.Popen(
            [args.python, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{proxy.port}", "--input", str(args.clip),
             "--realtime", "--loop", "--identity", "self", "--log-level", "WARNING",
             *(["--size", args.size] if args.size else []), *args.sender_args],
            env=env, stdout=logs["sender"], stderr=subprocess.STDOUT)
        procs.append(sender)
        deadline = time.time() + args.startup_s
        while time.time() < deadline and sender.poll() is None:
            await asyncio.sleep(1.0)
            link_bytes.append((time.time(), proxy.up_stats.bytes))
            if connect_t is None and proxy.connected_at:
                connect_t = proxy.connected_at[0]
                deadline = connect_t + args.seconds
        sender_rc = sender.poll()
    finally:
        end_t = time.time()
        for proc in reversed(procs):
            await stop(proc)
        await proxy.close()
        for handle in logs.values():
            handle.close()
    result = summarise(read_jsonl(rx_stats), link_bytes, log, connect_t, end_t, args.warmup)
    return {"rate_kbps": link.rate_kbps, "delay_ms": link.delay_ms, "outage_every_s": link.outage_every_s,
            "outage_ms": link.outage_ms, "sender_ended_early": sender_rc, "connections": proxy.connections,
            "connections_refused": proxy.refused, **result}


def code_version(python: str) -> dict[str, str]:
    """Where the interpreter's facewire comes from, and that checkout's commit (the code the run measured)."""
    where = subprocess.run([python, "-c", "import facewire.sender, os; print(os.path.dirname(facewire.sender.__file__))"],
                           capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", where or ".", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", where or ".", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"facewire_sender": where, "commit": commit, "uncommitted_changes": str(bool(dirty))}


async def main_async(args: argparse.Namespace) -> int:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.output.parent / (args.output.stem + "_runs")
    workdir.mkdir(exist_ok=True)
    machine: dict[str, object] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                                  "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}
    report: dict[str, object] = {"machine": machine, "code": code_version(args.python),
                                 "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    runs = []
    for rate in [float(r) for r in args.rates.split(",")]:
        for delay in [float(d) for d in args.delays.split(",")]:
            link = Link(rate or None, delay, args.outage_every, args.outage_ms)
            result = await run_one(args, link, workdir)
            print(json.dumps({k: v for k, v in result.items() if k not in ("keyframes", "bytes_by_kind")}), flush=True)
            runs.append(result)
    report["runs"] = runs
    machine["load_avg_at_end"] = os.getloadavg()
    args.output.write_text(json.dumps(report, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/clips/d6.mp4"))
    parser.add_argument("--size", default="640x480", help="sender --size (empty: the clip's own)")
    parser.add_argument("--seconds", type=float, default=30.0, help="streaming time after the sender connects")
    parser.add_argument("--startup-s", type=float, default=60.0, help="longest wait for the sender to connect")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the first picture left out")
    parser.add_argument("--rates", default="16,24,64", help="uplink kbps list; 0 = no cap")
    parser.add_argument("--delays", default="150,300", help="one-way delay ms list")
    parser.add_argument("--queue-ms", type=float, default=1000.0, help="the bottleneck's buffer, in ms of its rate")
    parser.add_argument("--outage-every", type=float, metavar="S", help="an outage every S seconds")
    parser.add_argument("--outage-ms", type=float, default=0.0, metavar="D", help="each outage's length")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose facewire runs (default this one)")
    parser.add_argument("--output", type=Path, default=Path("out/bench/thinlink.json"))
    parser.add_argument("sender_args", nargs="*", help="sender flags after --, e.g. -- --bitrate 16")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
