"""A recording of a file whose length is known holds `--bitrate` over the whole file, however short: the
session's start (first keyframe, setups) is sized to the file and its debt repaid before the end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import Budget, FrameCoder
from facewire.sender.runner import record_stream
from facewire.sender.sending import Ceiling
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader
from tests.wire_fixtures import SyntheticAnalyzer, write_frames

FPS = 10.0
CEILING_BPS = 48_000.0


class _EndlessSource(FrameSource):
    """The same frames, from a source that does not say how many it holds (a pipe, a camera)."""

    @property
    def length(self) -> int | None:
        return None


def _textured_frames(directory: Path, count: int) -> Path:
    """Frames whose person is fine noise: its keyframe takes whatever budget it is given."""
    directory.mkdir(parents=True, exist_ok=True)
    texture = np.random.default_rng(5).integers(0, 255, (240, 320, 3), np.uint8)
    for index in range(count):
        cv2.imwrite(str(directory / f"{index:04d}.png"), np.roll(texture, index, axis=1))
    return directory


def _record(source: FrameSource, path: Path) -> tuple[float, list[int]]:
    """(real kbps over the clip: every record and its 4-byte length, as bench/codec.py counts; the frames' times)."""
    coder = FrameCoder(codes=("landmarks",), budget=Budget.at_most(CEILING_BPS))
    record_stream(source, SyntheticAnalyzer(), path, None, coder=coder)
    with StreamReader(path) as reader:
        sizes = [len(raw) + 4 for raw in reader.raw()]
    with StreamReader(path) as reader:
        times = [message.dt_ms for message in reader if isinstance(message, m.Frame)]
    return sum(sizes) * 8 / 1000 / (15 / FPS), times


def test_a_short_file_holds_the_ceiling_over_its_whole_length(tmp_path: Path) -> None:
    frames = _textured_frames(tmp_path / "in", 15)  # 1.5 s
    options = CaptureOptions(fps=FPS, media_clock=True)
    known, sent = _record(FrameSource(str(frames), options), tmp_path / "known.fws")
    unknown, _ = _record(_EndlessSource(str(frames), options), tmp_path / "unknown.fws")
    ceiling_kbps = CEILING_BPS / 1000
    assert unknown > 1.3 * ceiling_kbps  # the start sized for a 10-s window is not repaid within 1.5 s
    assert known <= 1.1 * ceiling_kbps, known
    assert max(np.diff(sent)) <= 500, sent  # and the picture still moves all along


def test_folder_lengths(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 12)
    assert FrameSource(str(frames), CaptureOptions()).length == 12
    assert FrameSource(str(frames), CaptureOptions(max_frames=5)).length == 5
    assert FrameSource(str(frames), CaptureOptions(max_frames=50)).length == 12
    assert FrameSource(str(frames), CaptureOptions(loop=True)).length is None  # a loop ends only at --max-frames
    assert FrameSource(str(frames), CaptureOptions(loop=True, max_frames=50)).length == 50


def test_a_known_end_sizes_the_first_keyframe_and_spares_late_setups() -> None:
    budget = Budget.at_most(16_000)
    assert budget.start_room(0, 500) is None and budget.remaining_s(0) == float("inf")
    budget.ends(1_000_000, 78, 25.0)  # a 3.1-s file
    room = budget.start_room(1_000_000, 500)
    assert room is not None and 2_000 < room < 16_000 * 3.12 / 8 - 500
    assert abs(budget.remaining_s(3_000_000) - 1.12) < 1e-9 and budget.remaining_s(5_000_000) == 0.0


def test_what_is_not_a_frame_waits_for_what_the_file_can_repay_before_its_end() -> None:
    """The layer and keyframe parts may use the room the start's repayment schedule leaves; a file that ends
    before the schedule does leaves them less, while the frames keep the schedule."""
    open_ended, short = Ceiling(16_000), Ceiling(16_000, end_s=2.0)
    for gate in (open_ended, short):
        gate.on_send_uncontrolled(6_000, 0.0)  # the start: 3 s of the ceiling
        gate.on_send(1, 30, 0.0)
    # at 1.5 s: 3000 B refilled, 6030 B charged; the 6-s schedule still allows 4500 B of debt, a 2-s file 1500
    assert open_ended.may_send(600, 1.5) and not short.may_send(600, 1.5)
    assert short.may_send(30, 1.5, essential=True)
