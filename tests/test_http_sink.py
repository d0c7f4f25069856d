from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.receiver.http_sink import HttpSink
from facewire.receiver.player import Player
from facewire.receiver.session import RenderJob
from facewire.receiver.sink_spec import open_sink
from facewire.receiver.stats import StatsMeter
from facewire.shared.face.identity import detect_faces
from facewire.shared.types import FrameState, KeyframeState
from tests.render_fixtures import astronaut
from tests.wire_fixtures import KeyframeRenderer


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink(0)
    yield s
    s.close()


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read()


def test_serves_the_latest_frame_and_stats(sink: HttpSink) -> None:
    sink.write(astronaut(), 1)
    ctype, body = _get(sink.url + "frame.jpg")
    assert ctype == "image/jpeg"
    frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == astronaut().shape
    assert np.abs(frame.astype(int) - astronaut()).mean() < 6
    dark = np.zeros_like(astronaut())
    sink.write(dark, 2)
    frame = cv2.imdecode(np.frombuffer(_get(sink.url + "frame.jpg")[1], np.uint8), cv2.IMREAD_COLOR)
    assert frame.mean() < 3
    sink.update_stats({"fps": 29.5, "latency_ms_p50": 41.0})
    assert json.loads(_get(sink.url + "stats.json")[1]) == {"fps": 29.5, "latency_ms_p50": 41.0}
    ctype, page = _get(sink.url)
    assert ctype.startswith("text/html") and b"/frame.jpg" in page and b"/stats.json" in page
    with pytest.raises(urllib.error.HTTPError):
        _get(sink.url + "nope")


def test_mjpeg_stream_sends_frames(sink: HttpSink) -> None:
    sink.write(astronaut(), 1)
    with urllib.request.urlopen(sink.url + "stream.mjpg", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = b""
        while b"\r\n\r\n" not in head:
            head += response.read(1)
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
        frame = cv2.imdecode(np.frombuffer(response.read(length), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == astronaut().shape


def test_listens_on_loopback_only_and_via_open_sink() -> None:
    s = open_sink("http:0", 30.0)
    try:
        assert isinstance(s, HttpSink) and s.url.startswith("http://127.0.0.1:")
    finally:
        s.close()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_headless_chromium_shows_a_face(sink: HttpSink, tmp_path: Path) -> None:
    sink.write(astronaut(), 1)
    sink.update_stats({"fps": 30.0})
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--window-size=640,620", "--virtual-time-budget=3000", f"--screenshot={shot}", sink.url,
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=90)
    image = cv2.imread(str(shot))
    assert image is not None
    faces = detect_faces(image)
    assert len(faces) == 1, "the preview page shows the face"


def test_the_receivers_stats_reach_the_preview(sink: HttpSink) -> None:
    """The stats meter's reports reach /stats.json through the player (they never did: it stayed {})."""
    stats = StatsMeter()
    player = Player(KeyframeRenderer(), sink, stats)
    keyframe = KeyframeState(kf=1, image=astronaut(), alpha=None, landmarks=None)
    frame = FrameState(seq=1, ts_us=1, face="lost", landmarks=None, alpha=None)
    player.show(RenderJob(None, keyframe, frame), 1 / 30)
    stats.tick(force=True)
    shown = json.loads(_get(sink.url + "stats.json")[1])
    assert shown["frames_out"] == 1 and shown["fps"] > 0
    assert shown["rtt_ms"] is None  # not measured offline: null, not NaN (which JSON cannot carry)


def _raw_get(port: int, host_header: str | None, path: str = "/stats.json") -> int:
    """The status code of a GET sent with exactly this Host header (None: no Host header at all)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_requests_naming_another_host_are_refused(sink: HttpSink) -> None:
    """DNS rebinding: a page served as evil.example whose name now points at 127.0.0.1 must read nothing."""
    port = sink.port
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", "LOCALHOST:" + str(port)):
        assert _raw_get(port, good) == 200, good
    for bad in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", "", None, f"10.0.0.1:{port}"):
        assert _raw_get(port, bad) == 421, bad
        assert _raw_get(port, bad, "/frame.jpg") == 421, bad


def test_clients_are_bounded_and_a_freed_slot_serves_again() -> None:
    import socket
    import time

    sink = HttpSink(0, max_clients=3, timeout_s=2.0)
    try:
        sink.write(astronaut(), 1)
        streams = [urllib.request.urlopen(sink.url + "stream.mjpg", timeout=5) for _ in range(3)]
        for response in streams:
            response.read(16)  # each stream holds its slot while it plays
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(sink.url + "stats.json")
        assert refused.value.code == 503
        streams.pop().close()
        for _ in range(100):  # the freed slot comes back once the server notices the closed stream
            try:
                assert _get(sink.url + "stats.json")[0] == "application/json"
                break
            except urllib.error.HTTPError:
                time.sleep(0.05)
        else:
            pytest.fail("a freed slot never served again")
        # a client that connects and says nothing is dropped after the timeout, freeing its slot
        for response in streams:
            response.close()
        idle = [socket.create_connection(("127.0.0.1", sink.port)) for _ in range(3)]
        time.sleep(2.6)
        assert _get(sink.url + "stats.json")[0] == "application/json"
        for conn in idle:
            conn.close()
    finally:
        sink.close()
