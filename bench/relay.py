"""The relay under load: N senders x M receivers per room on loopback, through one facewire-relay and
through two relays sharing a real redis-server (senders on relay A, receivers on relay B).

    .venv/bin/python bench/relay.py --rooms 100 --senders 2 --receivers 2 --seconds 60 [--mode direct|one|redis|all]

Senders and receivers are protocol-true clients (SenderProtocol / JoinProtocol over websockets) in two
client processes, one for the senders and one for the receivers, at the codec's real message sizes: a
keyframe of ~3 KB in three parts of ~1 KB at the start and every 10 s, and 30 frames a second of 20-60 B
of codes, intra every 150 frames and whenever the relay asks (keyframe_request). Receiver k of a room
shows sender k mod N (?show=), so every sender is watched. Each frame carries its send time
(CLOCK_MONOTONIC, shared by the processes of one machine) in its code; a receiver takes arrival minus
that. Figures, over the run after a warm-up of 5 s:

* `frames_per_s_in` / `_out`: frames the senders sent / the receivers got, per second;
* `latency_p50_ms`, `latency_p95_ms`: send to arrival through the relay(s), including both clients'
  own event loops (on a shared 2-core machine these clients compete with the relay for the CPU); the
  `direct` mode (every sender straight to one listening receiver, no relay) is the clients' own share,
  so the relay's added latency is a relay mode's figure minus direct's;
* `lost`: frames sent to a watched sender that no receiver of it got, with the relays' own counts by
  cause (`stale`: a slow receiver's queue overflowed; `before_intra`: it then waited for an intra frame);
* `relay_held_ms`: inside each relay, a frame's time from its arrival (read and validated) to its write
  to a receiver's socket, p50/p95 (the median of the relay's per-second percentiles): the relay's own
  share of the latency, without the kernel's buffers and the clients;
* `cpu_percent` (of one core) and `rss_mb` of every process (relays, redis-server, the two clients);
  `relay_cpu_us_per_message`: each relay's CPU time per message it took in or sent out, which says
  what a relay can carry on a core of its own even when the machine is shared (`load_average` at the
  start and the end of the measurement says how shared it was).

Writes JSON (default out/bench/relay.json) with the machine, the settings and the commit, and keeps the
relays' logs and per-second counters beside it (relay-logs/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from loopback import free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from facewire.shared.wire import messages as m
from facewire.shared.wire.protocol import JoinProtocol, MessageReceived, ReceiverProtocol, SenderProtocol

TOKEN = "bench-token"
FPS = 30.0
WARMUP_S = 5.0
ROOT = Path(__file__).resolve().parent.parent


# --- clients (run as their own processes) ----------------------------------------------------------------

async def flush(ws: ClientConnection, protocol: SenderProtocol) -> None:
    for data in protocol.data_to_send():
        await ws.send(data)


async def one_sender(url: str, seconds: float, stats: dict[str, int], rng: random.Random) -> None:
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        protocol = SenderProtocol(TOKEN, time.monotonic(), capabilities=["landmarks"])
        await flush(ws, protocol)
        while protocol.welcome is None:
            protocol.receive(await ws.recv(), time.monotonic())
        intra = asyncio.Event()
        intra.set()

        async def read() -> None:
            async for data in ws:
                for event in protocol.receive(data, time.monotonic()):
                    if isinstance(event, MessageReceived) and isinstance(event.message, (m.KeyframeRequest, m.IntraRequest)):
                        intra.set()

        reader = asyncio.create_task(read())
        start = time.monotonic()
        kf, seq, next_keyframe = 0, 0, start
        await asyncio.sleep(rng.uniform(0, 1 / FPS))
        while (now := time.monotonic()) - start < seconds:
            if now >= next_keyframe:
                kf += 1
                image = rng.randbytes(3000)
                protocol.send(m.Keyframe(kf=kf, ts_us=int(time.time() * 1e6), width=640, height=480, image=image[:1000],
                                         image_format="avif", parts=3, image_bytes=3000))
                for part in (1, 2):
                    protocol.send(m.KeyframePart(kf=kf, part=part, data=image[part * 1000:(part + 1) * 1000]))
                next_keyframe = now + 10.0
                intra.set()
            code = time.monotonic_ns().to_bytes(8, "little") + rng.randbytes(rng.randint(12, 52))
            protocol.send(m.Frame(seq=seq, dt_ms=0, kf=kf, face=0, codes=[code], intra=intra.is_set()))
            intra.clear()
            seq += 1
            stats["sent"] += 1
            protocol.tick(time.monotonic())
            await flush(ws, protocol)
            await asyncio.sleep(max(0.0, start + seq / FPS - time.monotonic()))
        reader.cancel()


def count_frames(events: Iterable[object], arrived_ns: int, start: float, stats: dict[str, int],
                 latencies: list[float]) -> None:
    """Count the frames among a receiver's events and, after the warm-up, their send-to-arrival time (the
    sender wrote its clock into the first 8 bytes of the frame's code)."""
    for event in events:
        if isinstance(event, MessageReceived) and isinstance(event.message, m.Frame):
            stats["received"] += 1
            if arrived_ns / 1e9 - start > WARMUP_S:
                sent = int.from_bytes((event.message.codes[0] or b"")[:8], "little")
                latencies.append((arrived_ns - sent) / 1e6)


async def one_receiver(url: str, seconds: float, stats: dict[str, int], latencies: list[float], start: float) -> None:
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        protocol = JoinProtocol(TOKEN, time.monotonic(), capabilities=["landmarks", "alpha"])
        await flush(ws, protocol)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for data in ws:
                    arrived = time.monotonic_ns()
                    count_frames(protocol.receive(data, arrived / 1e9), arrived, start, stats, latencies)
                    await flush(ws, protocol)
        if ws.close_code is not None:
            stats[f"closed_{ws.close_code}"] = stats.get(f"closed_{ws.close_code}", 0) + 1


async def direct_receiver(port: int, seconds: float, stats: dict[str, int], latencies: list[float], start: float) -> None:
    """The baseline: one listening receiver takes every sender's link directly (no relay), with the
    receiver's own protocol object (validation, acks), so the clients' share of the latency shows."""

    async def handle(ws: ServerConnection) -> None:
        protocol = ReceiverProtocol(TOKEN, time.monotonic())
        async for data in ws:
            arrived = time.monotonic_ns()
            count_frames(protocol.receive(data, arrived / 1e9), arrived, start, stats, latencies)
            protocol.tick(arrived / 1e9)
            for out in protocol.data_to_send():
                await ws.send(out)

    async with serve(handle, "127.0.0.1", port, max_size=None, ping_interval=None, compression=None):
        await asyncio.sleep(seconds)


async def run_clients(role: str, urls: list[str], seconds: float, out: Path) -> None:
    stats = {"sent": 0, "received": 0}
    latencies: list[float] = []
    rng = random.Random(1)
    start = time.monotonic()
    if role == "senders":
        tasks = [one_sender(url, seconds, stats, rng) for url in urls]
    elif urls[0].startswith("listen:"):
        tasks = [direct_receiver(int(urls[0].removeprefix("listen:")), seconds + 3.0, stats, latencies, start)]
    else:
        tasks = [one_receiver(url, seconds + 3.0, stats, latencies, start) for url in urls]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    out.write_text(json.dumps({**stats, "errors": errors[:5], "error_count": len(errors),
                               "cpu_percent": round(100 * time.process_time() / (time.monotonic() - start), 1),
                               "latencies_ms": latencies}))


# --- the orchestra ---------------------------------------------------------------------------------------

def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WARMUP_S_LINES = 10  # the relays' per-second counters before the senders' warm-up ended


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def messages_moved(stats: Path) -> int:
    """Messages a relay took in and sent out so far, from its --stats-json counters."""
    lines = stats.read_text().splitlines() if stats.exists() else []
    last = json.loads(lines[-1]) if lines else {}
    return int(last.get("messages_in", 0)) + int(last.get("messages_out", 0))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_mode(mode: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    processes: dict[str, subprocess.Popen[bytes]] = {}
    redis_url = None
    try:
        if mode == "redis":
            redis_port = free_port()
            processes["redis-server"] = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
            wait_port(redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        relays = {"redis": ["relay-a", "relay-b"], "one": ["relay-a"], "direct": []}[mode]
        ports = {}
        for name in relays:
            ports[name] = free_port()
            profile = ["-m", "cProfile", "-o", str(args.profile / f"{mode}-{name}.prof")] if args.profile else []
            command = [sys.executable, *profile, "-m", "facewire.relay.cli", "--listen", f"127.0.0.1:{ports[name]}",
                       "--token", TOKEN, "--stats-json", str(work / f"{mode}-{name}.jsonl"), "--log-level", "WARNING",
                       "--max-rooms-per-token", str(args.rooms + 1)]
            if redis_url:
                command += ["--redis", redis_url]
            processes[name] = subprocess.Popen(command, stderr=open(work / f"{mode}-{name}.log", "wb"))  # noqa: SIM115
            wait_port(ports[name])
        if relays:
            sender_port, receiver_port = ports["relay-a"], ports[relays[-1]]
            sender_urls = [f"ws://127.0.0.1:{sender_port}/rooms/r{r}?name=s{s}" for r in range(args.rooms)
                           for s in range(args.senders)]
            receiver_urls = [f"ws://127.0.0.1:{receiver_port}/rooms/r{r}?show=s{k % args.senders}"
                             for r in range(args.rooms) for k in range(args.receivers)]
        else:  # every sender straight to one listening receiver: what the clients cost without a relay
            direct_port = free_port()
            sender_urls = [f"ws://127.0.0.1:{direct_port}/"] * (args.rooms * args.senders)
            receiver_urls = [f"listen:{direct_port}"]
        outs = {role: work / f"{mode}-{role}.json" for role in ("senders", "receivers")}
        client = [sys.executable, __file__, "--client"]
        processes["receivers"] = subprocess.Popen([*client, "receivers", "--out", str(outs["receivers"]),
                                                   "--seconds", str(args.seconds), "--urls", json.dumps(receiver_urls)])
        time.sleep(2.0)
        if not relays:
            wait_port(direct_port)
        processes["senders"] = subprocess.Popen([*client, "senders", "--out", str(outs["senders"]),
                                                 "--seconds", str(args.seconds), "--urls", json.dumps(sender_urls)])
        time.sleep(WARMUP_S)
        cpu0 = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        moved0 = {name: messages_moved(work / f"{mode}-{name}.jsonl") for name in relays}
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        rss: dict[str, float] = dict.fromkeys(processes, 0.0)
        while processes["senders"].poll() is None:
            for name, process in processes.items():
                with contextlib.suppress(OSError):
                    rss[name] = max(rss[name], rss_mb(process.pid))
            time.sleep(1.0)
        t1 = time.monotonic()
        cpu: dict[str, float] = {}
        per_message: dict[str, float] = {}
        for name, process in processes.items():
            with contextlib.suppress(OSError):
                used = cpu_seconds(process.pid) - cpu0[name]
                cpu[name] = round(100 * used / (t1 - t0), 1)
                if name in relays:
                    moved = messages_moved(work / f"{mode}-{name}.jsonl") - moved0[name]
                    per_message[name] = round(1e6 * used / max(1, moved), 1)
        load1 = os.getloadavg()[0]
        processes["receivers"].wait(30)
        senders, receivers = (json.loads(outs[role].read_text()) for role in ("senders", "receivers"))
        cpu.update(senders=senders["cpu_percent"], receivers=receivers["cpu_percent"])  # their own, over their run
        relay_lost: dict[str, int] = {}
        held: dict[str, dict[str, float | None]] = {}
        for name in relays:
            lines = [json.loads(line) for line in (work / f"{mode}-{name}.jsonl").read_text().splitlines()]
            for cause, count in lines[-1]["lost"].items():
                relay_lost[cause] = relay_lost.get(cause, 0) + count
            steady = [line for line in lines[WARMUP_S_LINES:] if line.get("held_ms_p95") is not None]
            held[name] = {key: _median([line[key] for line in steady]) for key in ("held_ms_p50", "held_ms_p95")}
        latencies = np.array(receivers["latencies_ms"])
        watched_sent = senders["sent"] * min(1.0, args.receivers / args.senders)
        expected = senders["sent"] * (args.receivers / args.senders if relays else 1)
        return {
            "mode": mode, "streams_in": len(sender_urls), "streams_out": len(receiver_urls),
            "frames_per_s_in": round(senders["sent"] / args.seconds, 1),
            "frames_per_s_out": round(receivers["received"] / args.seconds, 1),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 2) if latencies.size else None,
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
            "lost": {"frames_not_received": int(max(0, expected - receivers["received"])),
                     "fraction": round(max(0.0, 1 - receivers["received"] / expected), 4) if expected else None,
                     "watched_frames_sent": int(watched_sent), **relay_lost},
            "cpu_percent": cpu, "rss_mb": {k: round(v, 1) for k, v in rss.items()},
            # What the relays cost, whatever share of the CPU the machine gave them: CPU time per message in or out.
            "relay_cpu_us_per_message": per_message, "load_average": [round(load0, 1), round(load1, 1)],
            # Inside each relay: a frame's time from its arrival (read and validated) to its write to a receiver,
            # the median over the seconds of the run of each second's percentiles.
            "relay_held_ms": held,
            "client_errors": {"senders": senders["error_count"], "receivers": receivers["error_count"],
                              "examples": senders["errors"] + receivers["errors"]},
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--senders", type=int, default=2, help="per room")
    parser.add_argument("--receivers", type=int, default=2, help="per room")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--mode", choices=("direct", "one", "redis", "all"), default="all",
                        help="direct: no relay, the clients' own latency (a baseline); one; redis; all three")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "relay.json")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="run the relays under cProfile, profiles into DIR")
    parser.add_argument("--client", choices=("senders", "receivers"), help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(run_clients(args.client, json.loads(args.urls), args.seconds, args.out))
        return
    modes = ["direct", "one", "redis"] if args.mode == "all" else [args.mode]
    work = args.out.parent / (args.out.stem + "-logs")  # the relays' logs and counters, kept beside the JSON
    work.mkdir(parents=True, exist_ok=True)
    runs = [run_mode(mode, args, work) for mode in modes]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
              "settings": {k: getattr(args, k) for k in ("rooms", "senders", "receivers", "seconds")},
              "commit": commit, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
