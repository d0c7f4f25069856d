"""Hostile-load check: a live receiver with a token, one good sender streaming a clip, N hostile clients.

    .venv/bin/python bench/hostile.py --clip ../shared/data/clips/d3.mp4 --clients 200

The receiver and the good sender are the real command-line tools in their own processes;
the hostile clients run here and send noise, wrong tokens, truncated and oversized
msgpack, wrong and unknown message types, text frames, or nothing at all. Reports whether
the receiver stayed up, how each hostile client was closed, and how many of the good
sender's frames the receiver decoded and showed. Writes JSON (default out/bench/hostile.json).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import secrets
import sys
import time
from pathlib import Path

import msgspec
import websockets
from loopback import free_port
from websockets.asyncio.client import connect

from facewire.shared.wire import messages as m

KINDS = ("noise", "wrong_token", "truncated", "oversized", "wrong_type", "unknown_type", "text", "silent",
         "bad_first_frame", "deep_nesting")


def payload(kind: str, rng: random.Random) -> bytes | str | None:
    hello = m.encode(m.Hello(versions=[2], token="not-the-token"))
    if kind == "noise":
        return rng.randbytes(rng.randint(1, 4096))
    if kind == "wrong_token":
        return hello
    if kind == "truncated":
        return hello[: rng.randint(1, len(hello) - 1)]
    if kind == "oversized":
        return msgspec.msgpack.encode({"t": "hello", "versions": [1], "token": "x" * (5 * 1024 * 1024)})
    if kind == "wrong_type":
        return m.encode(m.Welcome(version=2, session="0123456789abcdef"))
    if kind == "unknown_type":
        return msgspec.msgpack.encode({"t": "teleport", "where": "mars"})
    if kind == "text":
        return '{"t": "hello"}'
    if kind == "bad_first_frame":
        return msgspec.msgpack.encode({"t": "frame", "seq": 1, "ts_us": 0, "kf": 0, "face": "tracked", "pose": [1e30] * 6})
    if kind == "deep_nesting":
        return b"\x91" * 100_000 + b"\xc0"
    return None  # silent: connect and say nothing until the handshake timeout


async def hostile_client(port: int, kind: str, rng: random.Random) -> tuple[str, str]:
    try:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None, open_timeout=10, close_timeout=5) as ws:
            data = payload(kind, rng)
            if data is not None:
                await ws.send(data)
            async for _ in ws:
                pass
            return kind, f"closed {ws.close_code}"
    except websockets.exceptions.ConnectionClosed as exc:
        return kind, f"closed {exc.rcvd.code if exc.rcvd else 'abnormal'}"
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        return kind, f"refused {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - a client-side failure is a result to report, not a crash
        return kind, f"client error {type(exc).__name__}"



async def run(args: argparse.Namespace) -> dict[str, object]:
    port, token = free_port(), secrets.token_hex(16)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats_path = out.with_suffix(".stats.jsonl")
    stats_path.unlink(missing_ok=True)
    env = {**os.environ, "FACEWIRE_TOKEN": token, "OMP_NUM_THREADS": "1"}
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{port}", "--sink", "null", "--once",
        "--stats-json", str(stats_path), "--log-level", "ERROR", env=env)
    await asyncio.sleep(args.startup_s)
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{port}", "--input", args.clip,
        "--realtime", "--loop", "--max-frames", str(args.frames), "--size", args.size, "--log-level", "ERROR", env=env)
    await asyncio.sleep(args.startup_s)
    rng = random.Random(7)
    kinds = [KINDS[i % len(KINDS)] for i in range(args.clients)]
    rng.shuffle(kinds)
    start = time.monotonic()
    results: list[tuple[str, str]] = []
    for wave in range(0, len(kinds), args.wave):
        batch = kinds[wave:wave + args.wave]
        results += await asyncio.gather(*(hostile_client(port, kind, rng) for kind in batch))
    hostile_s = time.monotonic() - start
    receiver_alive_after_attack = receiver.returncode is None
    sender_rc = await sender.wait()
    try:
        receiver_rc = await asyncio.wait_for(receiver.wait(), 20)
    except TimeoutError:
        receiver.terminate()
        receiver_rc = await receiver.wait()
    lines = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    final = lines[-1] if lines else {}
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for kind, outcome in results:
        outcomes[kind][outcome] += 1
    closed = sum(1 for _, outcome in results if outcome.startswith("closed"))
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"clip": args.clip, "frames": args.frames, "size": args.size, "clients": args.clients,
                     "wave": args.wave},
        "hostile_seconds": round(hostile_s, 2),
        "hostile_closed": closed,
        "hostile_outcomes": {k: dict(v) for k, v in sorted(outcomes.items())},
        "receiver_alive_during_attack": receiver_alive_after_attack,
        "receiver_exit_code": receiver_rc,
        "sender_exit_code": sender_rc,
        "good_frames_captured": args.frames,
        "good_frames_decoded": final.get("frames_in"),
        "good_frames_shown": final.get("frames_out"),
        "good_frames_decoded_fraction": round((final.get("frames_in") or 0) / args.frames, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="../shared/data/clips/d3.mp4")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--wave", type=int, default=50, help="hostile clients connected at once")
    parser.add_argument("--startup-s", type=float, default=3.0)
    parser.add_argument("--output", default="out/bench/hostile.json")
    args = parser.parse_args()
    if not Path(args.clip).is_file():
        print(f"no clip at {args.clip}", file=sys.stderr)
        return 2
    report = asyncio.run(run(args))
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    ok = (report["receiver_alive_during_attack"] and report["hostile_closed"] == args.clients
          and float(report["good_frames_decoded_fraction"]) >= 0.95)  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
