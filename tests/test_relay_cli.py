"""The issue's check, with the programs themselves: two `facewire-relay` processes started with `--listen`,
`--token` and `--redis` only, sharing one real redis-server; `facewire-send` streams a clip it never saw
into a room on relay A; `facewire-receive --join` receivers on A and on B each get >= 95% of the frames,
and one joined to another room gets none."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from facewire.receiver.demo_sample import write_sample
from tests.test_relay import free_port, redis_server, redis_url, wait_port  # noqa: F401 - redis_server, redis_url: fixtures

TOKEN = "relay-cli-token"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=ENV)


def frames_in(stats: Path) -> int:
    lines = stats.read_text().splitlines() if stats.exists() else []
    return int(json.loads(lines[-1])["frames_in"]) if lines else 0


def test_two_relay_processes_share_a_room_through_redis(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    sample = write_sample(tmp_path / "clip", 90)
    ports = {name: free_port() for name in ("a", "b")}
    processes = []
    try:
        for name, port in ports.items():
            processes.append(start("facewire.relay.cli", "--listen", f"127.0.0.1:{port}", "--token", TOKEN,
                                   "--redis", redis_url, log=tmp_path / f"relay-{name}.log"))
        for port in ports.values():
            wait_port(port)
        joins = {"on_a": f"ws://127.0.0.1:{ports['a']}/rooms/call", "on_b": f"ws://127.0.0.1:{ports['b']}/rooms/call",
                 "elsewhere": f"ws://127.0.0.1:{ports['b']}/rooms/other"}
        receivers = {name: start("facewire.receiver.cli", "--join", url, "--token", TOKEN, "--sink", "null",
                                 "--stats-json", str(tmp_path / f"{name}.jsonl"), log=tmp_path / f"{name}.log")
                     for name, url in joins.items()}
        processes += receivers.values()
        time.sleep(3.0)  # the receivers join before the sender starts
        sender = subprocess.run([sys.executable, "-m", "facewire.sender.cli", "--connect",
                                 f"ws://127.0.0.1:{ports['a']}/rooms/call?name=alice", "--token", TOKEN,
                                 "--input", str(sample), "--realtime", "--size", "256x256"],
                                capture_output=True, text=True, timeout=240, env=ENV)
        assert sender.returncode == 0, sender.stderr
        time.sleep(1.0)
        for process in receivers.values():
            process.send_signal(signal.SIGINT)  # a receiver writes its last statistics as it stops
        for process in receivers.values():
            process.wait(30)
        sent = int(re.search(r"sent (\d+) frames", sender.stderr).group(1))  # type: ignore[union-attr]
        got = {name: frames_in(tmp_path / f"{name}.jsonl") for name in receivers}
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(30)
    assert sent >= 10, sender.stderr  # the rest the sender's analysis skipped on a loaded machine
    assert got["on_a"] >= 0.95 * sent and got["on_b"] >= 0.95 * sent, (sent, got)
    assert got["elsewhere"] == 0


def test_the_relay_refuses_to_start_without_access_rules(tmp_path: Path) -> None:
    env = {key: value for key, value in ENV.items() if key != "FACEWIRE_TOKEN"}

    def relay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "facewire.relay.cli", "--listen", "127.0.0.1:0", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    no_token = relay()
    assert no_token.returncode == 2 and "--token" in no_token.stderr
    rooms = tmp_path / "rooms.toml"
    rooms.write_text('[rooms."Bad Name"]\npublish = "a"\nsubscribe = "b"\n')
    bad_rooms = relay("--rooms", str(rooms))
    assert bad_rooms.returncode == 1 and "Bad Name" in bad_rooms.stderr
    both = relay("--token", "t", "--rooms", str(rooms))
    assert both.returncode == 2 and "not allowed with" in both.stderr
