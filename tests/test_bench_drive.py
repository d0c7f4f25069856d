"""bench/drive.py: a stream file's frames are handed to the renderer as the input frames they were captured from."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.drive import direct, recorded
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import Budget, FrameCoder
from facewire.sender.runner import record_stream
from facewire.sender.uplink import IdentityBook
from facewire.shared.types import CapturedFrame
from facewire.shared.wire import messages as m
from tests.wire_fixtures import SyntheticAnalyzer, write_frames


def _record(tmp_path: Path, count: int, bps: int) -> tuple[Path, list[tuple[np.ndarray, np.ndarray | None]]]:
    folder = write_frames(tmp_path / "in", count, size=(200, 150))
    path = tmp_path / "clip.fws"
    source = FrameSource(str(folder), CaptureOptions(fps=25.0, media_clock=True))
    coder = FrameCoder(codes=("landmarks",), budget=Budget.at_most(bps))
    record_stream(source, SyntheticAnalyzer(), path, IdentityBook([m.Identity(asset="self")]), coder=coder)
    analyzer = SyntheticAnalyzer()
    frames: list[tuple[np.ndarray, np.ndarray | None]] = []
    for index, file in enumerate(sorted(folder.glob("*.png"))):
        image = cv2.imread(str(file))
        face = analyzer.analyze(CapturedFrame(index, index * 40_000, image)).face
        frames.append((image, None if face is None else face.landmarks))
    return path, frames


def test_each_sent_frame_is_tied_to_the_input_frame_it_was_captured_from(tmp_path: Path) -> None:
    path, frames = _record(tmp_path, 60, 6_000)  # thin enough that the recorder leaves frames out
    steps = recorded(path, frames)
    indices = [i for i, _, _ in steps]
    assert 10 < len(steps) < len(frames) and indices == sorted(set(indices))
    assert steps[0][1] is not None and all(keyframe is None for _, keyframe, _ in steps[1:])
    for i, _, state in steps:  # the synthetic face moves with the frame index: the landmarks say which frame it is
        truth = frames[i][1]
        assert truth is not None and state.landmarks is not None
        assert float(np.abs(state.landmarks[:, 0] - truth[:, 0]).mean()) < 0.5


def test_direct_steps_are_the_tracked_frames_with_the_first_as_keyframe() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    lm = np.zeros((478, 3), np.float32)
    steps = direct([(image, None), (image, lm), (image, lm + 1)])
    assert [i for i, _, _ in steps] == [1, 2]
    assert steps[0][1] is not None and steps[0][1].image is image and steps[1][1] is None
