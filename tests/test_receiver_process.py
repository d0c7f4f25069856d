"""The receiver as a process: TLS, stats lines, clean exit on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.runner import stream_live
from facewire.sender.uplink import Uplink
from tests.wire_fixtures import SyntheticAnalyzer, write_frames

TOKEN = "process-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(port: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FACEWIRE_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "facewire.receiver.cli", "--listen", f"127.0.0.1:{port}", *extra],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1])
        time.sleep(0.2)
    process.kill()
    raise AssertionError("receiver did not start listening")


def stream_frames(url: str, frames: Path, context: ssl.SSLContext | None = None) -> tuple[int, int]:
    """(frames sent, frames accounted for: sent, or skipped by the rate control or a busy capture)."""
    source = FrameSource(str(frames), CaptureOptions(realtime=True, fps=30.0))
    stats = asyncio.run(stream_live(source, SyntheticAnalyzer(), Uplink(url, TOKEN, ssl_context=context)))
    return stats.frames_sent, stats.frames_sent + stats.skipped + stats.dropped


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_clean_exit_on_signal_keeps_the_video(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    video, stats = tmp_path / "out.mp4", tmp_path / "stats.jsonl"
    receiver = start_receiver(port, "--sink", f"file:{video}", "--stats-json", str(stats), "--renderer", "mesh")
    sent, _ = stream_frames(f"ws://127.0.0.1:{port}", write_frames(tmp_path / "in", 45))
    time.sleep(1.2)
    receiver.send_signal(stop)
    _, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 0, err
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    assert {"fps", "latency_ms_p50", "latency_ms_p95", "kbps_in", "frames_out", "dropped", "rtt_ms"} <= set(lines[-1])
    assert lines[-1]["frames_in"] == sent
    rtts = [line["rtt_ms"] for line in lines if line["rtt_ms"] is not None]
    assert rtts and all(0 < rtt < 1000 for rtt in rtts)  # the receiver's pings, answered by the sender


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls_link(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    receiver = start_receiver(port, "--sink", "null", "--once", "--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    sent, accounted = stream_frames(f"wss://127.0.0.1:{port}", write_frames(tmp_path / "in", 15), context)
    _, err = receiver.communicate(timeout=30)
    assert sent > 0 and accounted == 15 and receiver.returncode == 0, err
    assert "0 decode errors" in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_sender_refuses_an_untrusted_certificate_for_good(tmp_path: Path) -> None:
    """A self-signed receiver the sender was not told to trust: no frame goes, and the sender stops with the
    reason instead of retrying forever."""
    from facewire.sender.uplink import UplinkError

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = free_port()
    receiver = start_receiver(port, "--sink", "null", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        source = FrameSource(str(write_frames(tmp_path / "in", 5)), CaptureOptions(realtime=True, loop=True))
        uplink = Uplink(f"wss://127.0.0.1:{port}", TOKEN, ssl_context=ssl.create_default_context())
        start = time.monotonic()
        with pytest.raises(UplinkError, match="certificate is not trusted"):
            asyncio.run(asyncio.wait_for(stream_live(source, SyntheticAnalyzer(), uplink), 30))
        assert time.monotonic() - start < 20 and uplink.stats.frames_sent == 0
    finally:
        receiver.send_signal(signal.SIGINT)
        receiver.communicate(timeout=30)
