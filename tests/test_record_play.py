"""Offline path: record a stream file with no network, play it back: one output per input frame."""

from __future__ import annotations

from pathlib import Path

import cv2

from facewire.receiver.player import Player
from facewire.receiver.runtime import play_stream
from facewire.receiver.sinks import FramesSink
from facewire.receiver.stats import StatsMeter
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import Budget, FrameCoder
from facewire.sender.runner import record_stream
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.sender.uplink import IdentityBook
from facewire.shared.codec.frames import FrameEncoder
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamHeader, StreamReader, StreamWriter
from tests.wire_fixtures import KeyframeRenderer, SyntheticAnalyzer, write_frames


def AMPLE() -> FrameCoder:  # noqa: N802 - reads as a setting
    """A coder whose budget never makes the recorder skip a frame (these tests are about the file, not the rate)."""
    return FrameCoder(budget=Budget.at_most(50e6))


def test_record_then_play_gives_one_frame_per_input_frame(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 40, size=(200, 150))
    path = tmp_path / "out.fws"
    source = FrameSource(str(frames), CaptureOptions(fps=25.0, media_clock=True))  # stamped by the media clock: load cannot move frames
    writer = record_stream(source, SyntheticAnalyzer(), path, IdentityBook([m.Identity(asset="self")]), coder=AMPLE())

    with StreamReader(path) as reader:
        assert (reader.header.width, reader.header.height, reader.header.fps) == (200, 150, 25.0)
        kinds = [type(message).__name__ for message in reader]
    assert kinds[:3] == ["Identity", "Setup", "Keyframe"]  # the face code's setup (the neutral face) first
    assert kinds.count("Frame") == 40
    assert writer.messages == len(kinds)

    stats = StatsMeter()
    shown = play_stream(path, Player(KeyframeRenderer(), FramesSink(tmp_path / "out"), stats))
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert shown == 40 and len(outputs) == 40 and stats.frames_out == 40
    assert all(cv2.imread(str(p)).shape == (150, 200, 3) for p in outputs[::13])
    assert stats.bytes_in == writer.bytes


def test_record_respects_max_frames_and_loop(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 5)
    path = tmp_path / "loop.fws"
    source = FrameSource(str(frames), CaptureOptions(loop=True, max_frames=12))
    record_stream(source, SyntheticAnalyzer(), path, None, coder=AMPLE())
    with StreamReader(path) as reader:
        seqs = [message.seq for message in reader if isinstance(message, m.Frame)]
    assert len(seqs) == 12 and seqs == sorted(seqs)


def test_frames_the_sender_skipped_repeat_the_picture_before_them(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 12, size=(64, 48))
    source = FrameSource(str(frames), CaptureOptions(fps=25.0, media_clock=True))
    coder, stream, gate = FrameCoder(), FeatureStream(FrameEncoder(["landmarks"])), Ceiling(10e6)
    analyzer, path = SyntheticAnalyzer(), tmp_path / "gaps.fws"
    header = StreamHeader(protocol=m.PROTOCOL_VERSION, width=64, height=48, fps=25.0, created_us=0, codes=["landmarks"])
    with StreamWriter(path, header) as writer:
        for frame in source:
            item = coder.code(analyzer, analyzer.analyze(frame))
            if frame.index in (3, 4, 5, 9):  # the link had no room for these
                continue
            for message in plan(stream, item, gate, frame.index / 25.0):
                writer.write(m.encode(message))
    shown = play_stream(path, Player(KeyframeRenderer(), FramesSink(tmp_path / "out"), StatsMeter()))
    assert shown == 12 and len(list((tmp_path / "out").glob("*.png"))) == 12
