"""A recording of a file whose length is known holds `--bitrate` over the whole file, however short: the
session's start (first keyframe, setups) is sized to the file and its debt repaid before the end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import (
    FRAME_BYTES_PRIOR,
    FRAMES_SHARE,
    KEYFRAME_ALPHA_PRIOR,
    MIN_KEYFRAME_BYTES,
    MIN_SHORT_PICTURE_BYTES,
    SHORT_FILE_STEP,
    START_OTHER_BYTES,
    THIN_ALPHA_FACTOR,
    THIN_ALPHA_PRIOR,
    THIN_ALPHA_QUALITY,
    TINY_ALPHA_FACTOR,
    TINY_ALPHA_PRIOR,
    Budget,
    FrameCoder,
    first_keyframe_plan,
)
from facewire.sender.runner import record_stream
from facewire.sender.sending import Ceiling
from facewire.shared.codec.keyframe import ALPHA_FACTOR, ALPHA_QUALITY
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


def test_a_start_the_length_holds_tight_takes_the_thin_alpha_and_gives_the_picture_what_it_saves() -> None:
    usual, thin = (ALPHA_FACTOR, ALPHA_QUALITY), (THIN_ALPHA_FACTOR, THIN_ALPHA_QUALITY)
    # a live session, or a keyframe after the first: as it wants, the usual alpha
    assert first_keyframe_plan(1875, None) == (1875, None, usual)
    # a long file: its room does not bind
    assert first_keyframe_plan(1875, 9_000) == (1875, 9_000, usual)
    # a 3-s file at 16 kbps (room ~3.3 KB): the usual alpha would be ~40% of it
    assert first_keyframe_plan(4_000, 3_300) == (3_300 - THIN_ALPHA_PRIOR, 3_300, thin)
    assert first_keyframe_plan(2_300, 3_300) == (2_300, 3_300, thin)  # never more than it wanted
    # a room that binds, but where the usual alpha is a small share: it stays
    assert first_keyframe_plan(8_000, 6_000) == (6_000 - KEYFRAME_ALPHA_PRIOR, 6_000, usual)
    # a thin ceiling's file whose room holds the picture's floor and the thin alpha: the floor and the thin alpha
    assert first_keyframe_plan(1200, 2_000) == (MIN_KEYFRAME_BYTES, None, thin)


def test_a_file_too_short_for_the_floor_takes_a_smaller_picture_and_the_smallest_alpha() -> None:
    tiny = (TINY_ALPHA_FACTOR, THIN_ALPHA_QUALITY)
    # d0 at 6 kbps (3.1 s, room ~930 B once the frames give up their share): below the floor, within the room
    assert first_keyframe_plan(1200, 930) == (930 - TINY_ALPHA_PRIOR, 930, tiny)
    # a room too small even for the smaller picture: that picture, over the room (no limit on the whole)
    assert first_keyframe_plan(1200, 500) == (MIN_SHORT_PICTURE_BYTES, None, tiny)


def test_a_file_too_short_for_the_frames_share_and_the_floor_holds_the_ceiling_with_fewer_frames() -> None:
    budget = Budget.at_most(6_000)
    budget.ends(0, 78, 25.0)  # d0: 3.12 s, 2340 B at 6 kbps
    room = budget.start_room(0, 500)
    assert room is not None
    frames_at_share = FRAMES_SHARE * 2340
    assert room > 2340 - frames_at_share - 500  # the frames gave up some of their share...
    # ... down to every SHORT_FILE_STEP-th frame, and never beyond the floor the keyframe needs
    assert room == int(2340 - FRAME_BYTES_PRIOR * 78 / SHORT_FILE_STEP - 500 - START_OTHER_BYTES)
    assert room < MIN_KEYFRAME_BYTES + THIN_ALPHA_PRIOR
    long_file = Budget.at_most(6_000)
    long_file.ends(0, 300, 30.0)
    assert long_file.start_room(0, 500) == int(7500 - FRAMES_SHARE * 7500 - 500 - START_OTHER_BYTES)  # as before


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


def test_with_the_layer_a_file_repays_its_start_over_its_length_up_to_the_window() -> None:
    """A start repaid over a 10-s file instead of 6 s leaves the layer room seconds sooner; the frames keep at least
    what they had, and a file's end still bounds what else goes."""
    six, file_long, ends_sooner = Ceiling(16_000), Ceiling(16_000, end_s=10.0, start_repay_s=10.0), \
        Ceiling(16_000, end_s=8.0, start_repay_s=10.0)
    for gate in (six, file_long, ends_sooner):
        gate.on_send_uncontrolled(6_000, 0.0)
        gate.on_send(1, 30, 0.0)
    # at 1.1 s: 2200 B refilled, 6030 charged (-3830); the 6-s schedule allows 4900 B of debt, 10 s 5340, 8 s 5175:
    # a layer packet as large as the bucket (1000 B), with the 200-B reserve, fits only the two longer schedules
    assert not six.may_send(1_000, 1.1)
    assert file_long.may_send(1_000, 1.1) and ends_sooner.may_send(1_000, 1.1)
    assert all(gate.may_send(30, 1.1, essential=True) for gate in (six, file_long, ends_sooner))


def test_a_recordings_first_keyframe_goes_whole_and_later_ones_in_parts() -> None:
    """Before the first frame the start goes whole anyway: parts would only add their headers."""
    gate = Ceiling(6_000)
    assert gate.chunk_bytes() >= m.MAX_IMAGE_BYTES
    gate.on_send_uncontrolled(2_000, 0.0)
    assert gate.chunk_bytes() >= m.MAX_IMAGE_BYTES  # the start is still going
    gate.on_send(1, 30, 0.0)
    assert gate.chunk_bytes() < 1_000  # a later keyframe crosses between frames


def test_the_start_takes_the_ceiling_flat_on_the_schedule_the_layer_keeps() -> None:
    """What the layer's rate leaves for the start: its debt over the schedule of what is not a frame (the file's
    end when that comes first), flat, then nothing; later state's debts are not part of it (the repayment of all
    debts, which the frames' pacer is given, is)."""
    gate = Ceiling(16_000, end_s=8.0, start_repay_s=10.0)
    assert gate.start_repay_bps(0.0) == 0.0  # nothing went yet
    gate.on_send_uncontrolled(6_000, 0.0)
    gate.on_send(1, 30, 0.0)
    assert gate.start_repay_bps(0.5) == gate.start_repay_bps(7.5) == pytest.approx(6_000 * 8 / 8.0)
    assert gate.repay_bps(0.5) == pytest.approx(6_000 * 8 / 10.0)  # the frames' own schedule is the longer one
    gate.on_send_uncontrolled(5_000, 4.0)  # state the bucket and the schedule cannot hold: a later debt
    assert gate.repay_bps(4.0) > 6_000 * 8 / 10.0 and gate.start_repay_bps(4.0) == pytest.approx(6_000 * 8 / 8.0)
    assert gate.start_repay_bps(8.0) == 0.0
