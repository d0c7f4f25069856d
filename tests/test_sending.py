"""The send plan: setups first, nothing before the first keyframe (which goes whole), later keyframes in
parts between frames, frames skipped only when the gate has no room, the ceiling held over a recording."""

from __future__ import annotations

from pathlib import Path

from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import Budget, FrameCoder
from facewire.sender.keyframes import KeyframePolicy
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.frames import REFERENCES, FrameEncoder
from facewire.shared.wire import messages as m
from tests.wire_fixtures import SyntheticAnalyzer, write_frames


def _run(tmp_path: Path, kbps: float, frames: int = 90, interval_s: float = 1.0) -> list[tuple[float, m.Message]]:
    source = FrameSource(str(write_frames(tmp_path / "in", frames, size=(320, 240))),
                         CaptureOptions(fps=30.0, media_clock=True))
    coder = FrameCoder(budget=Budget.at_most(kbps * 1000), policy=KeyframePolicy(interval_s=interval_s))
    stream, gate, analyzer = FeatureStream(FrameEncoder(["landmarks"])), Ceiling(kbps * 1000), SyntheticAnalyzer()
    sent: list[tuple[float, m.Message]] = []
    start = None
    for frame in source:
        start = frame.ts_us if start is None else start
        now = (frame.ts_us - start) / 1e6
        item = coder.code(analyzer, analyzer.analyze(frame))
        sent += [(now, message) for message in plan(stream, item, gate, now)]
    return sent


def test_the_first_keyframe_goes_whole_before_any_frame_and_later_ones_in_parts_between_frames(tmp_path: Path) -> None:
    sent = _run(tmp_path, kbps=64.0)
    kinds = [type(message).__name__ for _, message in sent]
    assert kinds[0] == "Keyframe" and kinds[1] in ("KeyframePart", "Frame")
    first_frame = kinds.index("Frame")
    assert all(kind in ("Keyframe", "KeyframePart") for kind in kinds[:first_frame])
    heads = [i for i, kind in enumerate(kinds) if kind == "Keyframe"]
    assert len(heads) >= 2  # a keyframe a second
    later = kinds[heads[1]:]
    parts_then_frames = [kind for kind in later if kind in ("KeyframePart", "Frame")]
    # frames keep flowing while the second keyframe's parts go
    assert "Frame" in parts_then_frames[:parts_then_frames.index("KeyframePart") + 3] if "KeyframePart" in later else True
    parts: dict[int, int] = {}
    # every frame is drawn from a keyframe the receiver holds whole by then (one of the last REFERENCES)
    complete: list[int] = []
    for _, message in sent:
        if isinstance(message, m.Keyframe) and message.parts == 1 or (
                isinstance(message, m.KeyframePart) and message.part == parts[message.kf] - 1):
            complete = [*complete[-(REFERENCES - 1):], message.kf]
        elif isinstance(message, m.Keyframe):
            parts[message.kf] = message.parts
        elif isinstance(message, m.Frame):
            assert message.kf in complete


def test_a_recording_holds_its_ceiling(tmp_path: Path) -> None:
    kbps = 16.0
    sent = _run(tmp_path, kbps=kbps, frames=150, interval_s=10.0)
    seconds = 150 / 30.0
    total = sum(len(m.encode(message)) for _, message in sent)
    assert total * 8 / seconds / 1000 <= kbps * 1.1
    # the raw landmark code does not fit 16 kbps at 30 fps: frames are skipped, never queued
    assert 0 < sum(isinstance(message, m.Frame) for _, message in sent) < 150


def test_with_room_every_frame_goes(tmp_path: Path) -> None:
    sent = _run(tmp_path, kbps=2000.0, frames=60, interval_s=10.0)
    assert sum(isinstance(message, m.Frame) for _, message in sent) == 60
