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
