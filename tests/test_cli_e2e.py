"""The command-line tools end to end on wheel media: record, play, demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import cv2

from facewire.receiver.demo_sample import avatar_path, write_sample
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_record_stream_then_play_into_frames(tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "sample", 12)
    stream = tmp_path / "s.fws"
    sent = run("facewire.sender.cli", "--input", str(sample), "--record-stream", str(stream), "--size", "256x256")
    assert sent.returncode == 0, sent.stderr
    played = run("facewire.receiver.cli", "--play-stream", str(stream), "--sink", f"frames:{tmp_path / 'out'}")
    assert played.returncode == 0, played.stderr
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outputs) == 12
    assert cv2.imread(str(outputs[5])).shape == (256, 256, 3)


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    missing = run("facewire.sender.cli", "--input", str(tmp_path / "nope.mp4"), "--record-stream", str(tmp_path / "x.fws"))
    assert missing.returncode == 1 and "not a camera index, a video file or an image folder" in missing.stderr
    no_token = run("facewire.receiver.cli", "--listen", "127.0.0.1:0", "--sink", "null")
    assert no_token.returncode == 2 and "--token" in no_token.stderr
    junk = tmp_path / "junk.fws"
    junk.write_bytes(b"definitely not a stream")
    bad_stream = run("facewire.receiver.cli", "--play-stream", str(junk), "--sink", "null")
    assert bad_stream.returncode == 1 and "not a facewire stream file" in bad_stream.stderr
    no_face = tmp_path / "flat.png"
    cv2.imwrite(str(no_face), 128 * (cv2.imread(str(write_sample(tmp_path / "s", 1) / "00000.png")) > 300))
    bad_identity = run("facewire.sender.cli", "--input", str(tmp_path / "s"), "--identity", str(no_face),
                       "--record-stream", str(tmp_path / "y.fws"))
    assert bad_identity.returncode == 1 and "no face" in bad_identity.stderr


def test_demo_runs_over_loopback(tmp_path: Path) -> None:
    output = tmp_path / "demo.mp4"
    demo = subprocess.run([sys.executable, "-m", "facewire.receiver.demo", "--output", str(output), "--frames", "30"],
                          capture_output=True, text=True, timeout=240, env=ENV, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "kbps" in demo.stdout and output.with_suffix(".png").is_file()
    with av.open(str(output)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 0


def test_identity_cycle_is_recorded_as_switch_messages(tmp_path: Path) -> None:
    sample = write_sample(tmp_path / "sample", 12)
    avatars = tmp_path / "avatars"
    avatars.mkdir()
    (avatars / "hopper.jpg").write_bytes(avatar_path().read_bytes())
    stream = tmp_path / "s.fws"
    sent = run("facewire.sender.cli", "--input", str(sample), "--record-stream", str(stream), "--fps", "30",
               "--identity-dir", str(avatars), "--identity-cycle", "0.1", "--size", "256x256", "--matte", "none")
    assert sent.returncode == 0, sent.stderr
    with StreamReader(stream) as reader:
        kinds = [(type(msg).__name__, getattr(msg, "asset", None)) for msg in reader
                 if isinstance(msg, m.Identity | m.IdentitySwitch)]
    assert kinds[0] == ("Identity", "self")
    assert kinds[1][0] == "Identity" and kinds[1][1] != "self"  # first switch to the avatar carries its image
    assert ("IdentitySwitch", "self") in kinds[2:]
