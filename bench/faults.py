"""Faults a live link must survive, measured: the real sender and receiver with a fault proxy between them.

    .venv/bin/python bench/faults.py --clip ../shared/data/clips/d3.mp4 [--soak-s 600] [--only blackhole,bombs]

A receiver (`facewire-receive --listen ... --sink null --stats-json F`), the fault proxy
(bench/faultproxy.py, in this process, reading every frame message off the uplink as it is delivered)
and a sender (`facewire-send --connect <proxy> --input CLIP --realtime --loop`). Then, one after the
other, each fault, with the time until frames flow again and the frames lost:

* `receiver_restart`: the receiver stopped (SIGTERM) and started again on its port 1 s later (recovery
  from the moment it listens again; `receiver_stop_s`, `receiver_start_s`: how long it took to exit and
  to listen);
* `link_drop`: every connection reset (RST) at once;
* `blackhole`: 8 s in which every byte either way is silently dropped (a pulled cable, a dead NAT);
* `outage`: 10 s in which bytes are held, not lost (both ends give up on the link after 4 s anyway);
* `slow_link`: the uplink throttled to 24 kbit/s for 10 s (the rate control must follow it down and up);
* `frozen_receiver`: the receiver stopped (SIGSTOP) for 2 s, shorter than the dead-link time: the
  session should survive it;
* `preauth_flood`: 500 silent websocket connections to the receiver, and the sender's link reset
  while they are held: the sender must get back in;
* `bombs`: a token holder (the sender kept out for the while) sends a frame whose landmark code is a
  1 GiB zstd bomb, an identity PNG claiming 46341x46341, a TIFF sent as `webp`: each must be closed
  with an `error`, the receiver's peak RSS must not move by 64 MiB.

Per fault: `noticed_s` (fault start to the first connection the proxy saw end), `recovery_s` (the end
of the fault, or its start for an instant one, to the first frame delivered), `gap_s` (the longest
stretch without a delivered frame around it), `frames_missing` (gap x the steady frame rate: what the
viewer did not see), `seq_lost` (frames sent but never delivered: holes in the sequence numbers),
`connections` (new sessions it took). Then a soak of `--soak-s` seconds with the RSS of both
processes sampled every 5 s (flat: at most 5 % growth after the first minute). Crashes: a process
that exited, or a traceback in either log. JSON (default out/bench/faults.json) with the machine,
settings and commit; the processes' logs beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import websockets
from bombs import landmark_code, png_claiming, tiff, zstd_bomb
from faultproxy import FaultProxy
from loopback import free_port, wait_for_port
from PIL import Image as PILImage
from websockets.asyncio.client import ClientConnection, connect
from wstap import WebSocketTap, packed_frame_head

from facewire.shared.wire import messages as m


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1])
    return out


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class FrameLog:
    """Every frame message the receiver got through the proxy: (delivered at, seq), wall clock."""

    taps: dict[int, WebSocketTap] = field(default_factory=dict)
    frames: list[tuple[float, int]] = field(default_factory=list)

    def feed(self, conn: int, chunk: bytes, t: float) -> None:
        for message in self.taps.setdefault(conn, WebSocketTap()).feed(chunk, t):
            head = packed_frame_head(message.payload)
            if head is not None:
                self.frames.append((message.last_s, head[0]))
            elif message.payload[:1] and message.payload[0] in (0x96, 0x95):  # a stream message, ["f", ...]
                try:
                    body = msgspec.msgpack.decode(message.payload)
                except msgspec.DecodeError:
                    continue
                if isinstance(body, list) and body and body[0] == "f":
                    self.frames.append((message.last_s, int(body[1])))

    def first_after(self, t: float) -> float | None:
        return next((when for when, _ in self.frames if when >= t), None)

    def between(self, t0: float, t1: float) -> list[tuple[float, int]]:
        return [(when, seq) for when, seq in self.frames if t0 <= when < t1]


@dataclass
class Rig:
    args: argparse.Namespace
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    rx_port: int = field(default_factory=free_port)
    frames: FrameLog = field(default_factory=FrameLog)
    receiver: subprocess.Popen[bytes] | None = None
    sender: subprocess.Popen[bytes] | None = None
    proxy: FaultProxy | None = None
    restarts: int = 0

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "FACEWIRE_TOKEN": self.token, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "FACEWIRE_ORT_THREADS": "1"}

    def _log(self, name: str) -> Any:
        return (self.workdir / f"{name}.log").open("ab")

    async def start_receiver(self) -> None:
        self.receiver = subprocess.Popen(
            [self.args.python, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{self.rx_port}", "--sink", "null",
             "--stats-json", str(self.workdir / "receiver.jsonl"), "--log-level", "WARNING"],
            env=self.env, stdout=self._log("receiver"), stderr=subprocess.STDOUT)
        if not await wait_for_port(self.rx_port, 60):
            raise RuntimeError("the receiver did not start")

    async def start(self) -> None:
        for name in ("receiver", "sender"):
            (self.workdir / f"{name}.log").unlink(missing_ok=True)
        (self.workdir / "receiver.jsonl").unlink(missing_ok=True)
        await self.start_receiver()
        self.proxy = await FaultProxy(("127.0.0.1", self.rx_port), tap=self.frames.feed).start()
        self.sender = subprocess.Popen(
            [self.args.python, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{self.proxy.port}",
             "--input", str(self.args.clip), "--realtime", "--loop", "--identity", "self", "--log-level", "WARNING",
             *(["--size", self.args.size] if self.args.size else [])],
            env=self.env, stdout=self._log("sender"), stderr=subprocess.STDOUT)

    async def stop(self) -> None:
        for proc in (self.sender, self.receiver):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self.proxy is not None:
            await self.proxy.close()

    def alive(self) -> dict[str, bool]:
        return {name: proc is not None and proc.poll() is None for name, proc in (("receiver", self.receiver),
                                                                                  ("sender", self.sender))}

    async def flowing(self, after: float, timeout_s: float) -> float | None:
        """When the first frame after `after` was delivered (None: none within `timeout_s`)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            first = self.frames.first_after(after)
            if first is not None:
                return first
            await asyncio.sleep(0.05)
        return None


async def outcome(rig: Rig, start: float, end: float, recovered: float | None, fps: float, opened_before: int,
                  **extra: object) -> dict[str, object]:
    """The figures of one fault from the frame log: lasting from `start` to `end`, flowing again at `recovered`
    (waits until 3 s after it, for the rate the stream is back at)."""
    assert rig.proxy is not None
    if recovered is not None:
        await asyncio.sleep(max(0.0, recovered + 3.0 - time.time()))
    before = [(w, s) for w, s in rig.frames.frames if w < start]
    after = rig.frames.between(recovered, recovered + 3.0) if recovered is not None else []
    window = [w for w, _ in rig.frames.frames if start - 2.0 <= w <= (recovered or end) + 1.0]
    gaps = np.diff(window) if len(window) > 1 else np.array([(recovered or end) - start])
    gap = float(gaps.max()) if gaps.size else float("nan")
    last_seq = before[-1][1] if before else None
    seqs = {s for _, s in rig.frames.between(start, (recovered or end) + 3.0)}
    next_seq = min((s for s in seqs), default=None)
    # The link's loss is noticed when the proxy sees a connection of before the fault end, or the sender open
    # a new one (the proxy notices an end late while it holds a stalled connection's bytes).
    signs = [closed for _, opened, closed in rig.proxy.ended if opened < start <= closed]
    signs += [opened for opened in rig.proxy.opened if opened >= start]
    return {
        "noticed_s": round(min(signs) - start, 2) if signs else None,
        "recovery_s": None if recovered is None else round(recovered - end, 2),
        "gap_s": round(gap, 2),
        "frames_missing": int(round(gap * fps)) - 1 if np.isfinite(gap) else None,
        "seq_lost": None if last_seq is None or next_seq is None else max(0, next_seq - last_seq - 1),
        "connections": rig.proxy.connections - opened_before,
        "fps_after": round(len(after) / 3.0, 1) if after else 0.0,
        **extra,
    }


# ------------------------------------------------------------------------------------------------ faults
async def receiver_restart(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.receiver is not None and rig.proxy is not None
    opened, start = rig.proxy.connections, time.time()
    rig.receiver.send_signal(signal.SIGTERM)
    await asyncio.to_thread(rig.receiver.wait, 15)
    stopped = time.time()
    await asyncio.sleep(1.0)
    await rig.start_receiver()
    rig.restarts += 1
    up = time.time()
    recovered = await rig.flowing(up, 30)
    return await outcome(rig, start, up, recovered, fps, opened, receiver_stop_s=round(stopped - start, 2),
                         receiver_start_s=round(up - stopped - 1.0, 2))


async def link_drop(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.proxy is not None
    opened, start = rig.proxy.connections, time.time()
    cut = rig.proxy.cut()
    recovered = await rig.flowing(start + 0.01, 30)
    return await outcome(rig, start, start, recovered, fps, opened, connections_cut=cut)


async def _held(rig: Rig, fps: float, mode: str, seconds: float) -> dict[str, object]:
    assert rig.proxy is not None
    opened, start = rig.proxy.connections, time.time()
    rig.proxy.mode = mode  # type: ignore[assignment]
    await asyncio.sleep(seconds)
    rig.proxy.mode = "pass"
    end = time.time()
    recovered = await rig.flowing(end, 30)
    return await outcome(rig, start, end, recovered, fps, opened, fault_s=seconds)


async def blackhole(rig: Rig, fps: float) -> dict[str, object]:
    return await _held(rig, fps, "blackhole", 8.0)


async def outage(rig: Rig, fps: float) -> dict[str, object]:
    return await _held(rig, fps, "stall", 10.0)


async def slow_link(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.proxy is not None
    opened, start = rig.proxy.connections, time.time()
    rig.proxy.up_rate_bps = 24_000
    await asyncio.sleep(10.0)
    rig.proxy.up_rate_bps = None
    end = time.time()
    during = rig.frames.between(start + 3.0, end)
    recovered = await rig.flowing(end, 30)
    result = await outcome(rig, start, end, recovered, fps, opened, fault_s=10.0)
    result["fps_during"] = round(len(during) / 7.0, 1)  # after the first 3 s, which the controller needs to settle
    result["recovery_s"] = None  # frames flow all along: the figure is the rate during the fault
    return result


async def frozen_receiver(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.receiver is not None and rig.proxy is not None
    opened, start = rig.proxy.connections, time.time()
    rig.receiver.send_signal(signal.SIGSTOP)
    await asyncio.sleep(2.0)
    rig.receiver.send_signal(signal.SIGCONT)
    end = time.time()
    recovered = await rig.flowing(end, 30)
    return await outcome(rig, start, end, recovered, fps, opened, fault_s=2.0)


async def _silent(port: int) -> ClientConnection | None:
    try:
        return await connect(f"ws://127.0.0.1:{port}", open_timeout=10, close_timeout=0.1)
    except (OSError, websockets.exceptions.WebSocketException, TimeoutError):
        return None


async def preauth_flood(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.proxy is not None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    crowd: list[ClientConnection | None] = []
    for _ in range(10):
        crowd += await asyncio.gather(*(_silent(rig.rx_port) for _ in range(50)))
    opened, start = rig.proxy.connections, time.time()
    rig.proxy.cut()
    recovered = await rig.flowing(start + 0.01, 30)
    result = await outcome(rig, start, start, recovered, fps, opened, crowd_opened=sum(ws is not None for ws in crowd))
    for ws in crowd:
        if ws is not None:
            ws.transport.abort()
    return result


def _avif(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (120, 100, 90)).save(buf, format="AVIF", quality=50)
    return buf.getvalue()


async def _bomb(port: int, token: str, messages: list[m.Message]) -> dict[str, object]:
    """A token holder's session that sends `messages`; what came back."""
    for _ in range(40):  # the sender's session may still be ending
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            await ws.send(m.encode(m.Hello(versions=[2], token=token, capabilities=["landmarks", "alpha"])))
            reply = m.decode(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
            if isinstance(reply, m.Error) and reply.code == "busy":
                await asyncio.sleep(0.25)
                continue
            for message in messages:
                await ws.send(m.encode(message))
            errors = []
            try:
                while True:
                    answer = m.decode(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
                    if isinstance(answer, m.Error):
                        errors.append(f"{answer.code}: {answer.message}")
            except websockets.exceptions.ConnectionClosed as closed:
                return {"close": closed.rcvd.code if closed.rcvd else None, "errors": errors}
            except TimeoutError:
                return {"close": "still open after 10 s", "errors": errors}
    return {"close": "busy throughout", "errors": []}


async def bombs(rig: Rig, fps: float) -> dict[str, object]:
    assert rig.proxy is not None and rig.receiver is not None
    keyframe = m.Keyframe(kf=1, ts_us=0, width=64, height=48, image=_avif((64, 48)), image_format="avif", box=[0, 0, 64, 48])
    big_png, fake_webp = png_claiming(46341, 46341), tiff()
    cases: dict[str, list[m.Message]] = {
        "zstd_bomb_frame": [keyframe, m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[landmark_code(zstd_bomb()), None])],
        "png_2^31_pixels_identity": [m.Identity(asset=hashlib.sha256(big_png).hexdigest(), image=big_png, image_format="png")],
        "tiff_as_webp_identity": [m.Identity(asset=hashlib.sha256(fake_webp).hexdigest(), image=fake_webp, image_format="webp")],
    }
    opened, start = rig.proxy.connections, time.time()
    rig.proxy.mode = "refuse"  # the sender is kept out while the token holder's bombs go in
    rig.proxy.cut()
    pid = rig.receiver.pid
    before = memory_kib(pid)
    reset_peak(pid)
    results = {name: await _bomb(rig.rx_port, rig.token, messages) for name, messages in cases.items()}
    after = memory_kib(pid)
    rig.proxy.mode = "pass"
    end = time.time()
    recovered = await rig.flowing(end, 30)
    return await outcome(rig, start, end, recovered, fps, opened, results=results,
                   receiver_peak_growth_mib=round((after["VmHWM"] - before["VmRSS"]) / 1024, 1),
                   receiver_rss_mib=round(after["VmRSS"] / 1024, 1))


FAULTS = {f.__name__: f for f in (receiver_restart, link_drop, blackhole, outage, slow_link, frozen_receiver,
                                  preauth_flood, bombs)}


async def soak(rig: Rig, seconds: float) -> dict[str, object]:
    assert rig.receiver is not None and rig.sender is not None
    samples: list[dict[str, float]] = []
    start = time.time()
    frames_at_start = len(rig.frames.frames)
    while time.time() - start < seconds:
        if not all(rig.alive().values()):
            break
        samples.append({"t": round(time.time() - start, 1), "receiver_mib": memory_kib(rig.receiver.pid)["VmRSS"] / 1024,
                        "sender_mib": memory_kib(rig.sender.pid)["VmRSS"] / 1024})
        await asyncio.sleep(5.0)
    result: dict[str, object] = {"seconds": round(time.time() - start, 1), "samples": samples,
                                 "fps": round((len(rig.frames.frames) - frames_at_start) / max(1.0, time.time() - start), 1)}
    settled = [s for s in samples if s["t"] >= 60.0]
    for who in ("receiver_mib", "sender_mib"):
        if len(settled) >= 3:
            first, last = settled[0][who], float(np.median([s[who] for s in settled[-3:]]))
            result[f"{who[:-4]}_growth_pct"] = round(100.0 * (last - first) / first, 2)
            result[f"{who[:-4]}_mib"] = [round(first, 1), round(last, 1)]
    return result


def code_version() -> dict[str, str]:
    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "uncommitted_changes": str(bool(dirty))}


async def main_async(args: argparse.Namespace) -> int:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.output.parent / (args.output.stem + "_logs")
    workdir.mkdir(exist_ok=True)
    report: dict[str, object] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_start": os.getloadavg()},
        "code": code_version(), "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    rig = Rig(args, workdir)
    faults: dict[str, object] = {}
    try:
        await rig.start()
        first = await rig.flowing(time.time() - 1.0, args.startup_s)
        if first is None:
            report["error"] = "no frame arrived: see the logs"
            return 1
        await asyncio.sleep(5.0)
        steady = rig.frames.between(time.time() - 5.0, time.time())
        fps = len(steady) / 5.0
        report["steady_fps"] = round(fps, 1)
        print(json.dumps({"steady_fps": report["steady_fps"]}), flush=True)
        for name in args.only.split(",") if args.only else FAULTS:
            faults[name] = await FAULTS[name](rig, fps)
            faults[name]["alive"] = rig.alive()  # type: ignore[index]
            print(json.dumps({name: faults[name]}), flush=True)
            await asyncio.sleep(3.0)
        if args.soak_s > 0:
            report["soak"] = await soak(rig, args.soak_s)
            print(json.dumps({k: v for k, v in report["soak"].items() if k != "samples"}), flush=True)  # type: ignore[union-attr]
        report["alive_at_end"] = rig.alive()
    finally:
        report["faults"] = faults
        await rig.stop()
        logs = {name: (workdir / f"{name}.log").read_text(errors="replace") for name in ("receiver", "sender")}
        report["tracebacks"] = {name: text.count("Traceback") for name, text in logs.items()}
        report["crashes"] = sum(not ok for ok in report.get("alive_at_end", {}).values())  # type: ignore[union-attr]
        report["crashes"] += sum(report["tracebacks"].values())  # type: ignore[operator]
        report["machine"]["load_avg_at_end"] = os.getloadavg()  # type: ignore[index]
        args.output.write_text(json.dumps(report, indent=2))
        print(json.dumps({"crashes": report["crashes"], "tracebacks": report["tracebacks"]}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/clips/d3.mp4"))
    parser.add_argument("--size", default="480x360", help="sender --size (empty: the clip's own)")
    parser.add_argument("--only", default="", help=f"comma-separated faults to run (default all: {', '.join(FAULTS)})")
    parser.add_argument("--soak-s", type=float, default=600.0, help="soak seconds after the faults (0: none)")
    parser.add_argument("--startup-s", type=float, default=90.0, help="longest wait for the first frame")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose facewire runs (default this one)")
    parser.add_argument("--output", type=Path, default=Path("out/bench/faults.json"))
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
