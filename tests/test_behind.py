"""The closed loop off the frame's latency path (sender/behind.py): a layer residual goes with a later frame,
exactly the next one in a recording, and live the analysing thread never waits for it."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from facewire.sender.behind import BACKGROUND_NICE, Behind, background_worker
from facewire.sender.coding import FrameCoder
from facewire.shared.codec.layer_field import CAPABILITY, LayerPreparer, LayerValues
from facewire.shared.codec.seam import Prepared
from facewire.shared.types import Affine, CapturedFrame, FrameAnalysis, KeyframeState, Landmarks
from tests.wire_fixtures import SyntheticAnalyzer

FRAME_US = 33_333


def test_in_line_the_result_goes_to_the_next_take_once() -> None:
    behind: Behind[int] = Behind()
    assert behind.take() is None and behind.idle
    behind.start(lambda: 7)
    assert not behind.idle
    with pytest.raises(RuntimeError):
        behind.start(lambda: 8)  # one job at a time
    assert behind.take() == 7
    assert behind.take() is None and behind.idle


def test_a_failed_job_raises_where_its_result_is_taken() -> None:
    behind: Behind[int] = Behind()

    def fail() -> int:
        raise ValueError("replica failed")

    behind.start(fail)
    with pytest.raises(ValueError, match="replica failed"):
        behind.take()
    assert behind.idle


def test_in_the_background_the_job_runs_on_its_own_thread_and_nothing_waits_for_it() -> None:
    behind: Behind[int] = Behind(background=True)
    release, ran_on = threading.Event(), []

    def work() -> int:
        ran_on.append(threading.get_ident())
        assert release.wait(10)
        return 3

    behind.start(work)
    assert behind.take() is None and not behind.idle  # still running: take does not wait
    release.set()
    for _ in range(1000):
        if (result := behind.take()) is not None:
            break
        threading.Event().wait(0.01)
    assert result == 3 and ran_on and ran_on[0] != threading.get_ident()


@dataclass
class _StubLayer(LayerPreparer):
    """A layer preparer whose residual names the frame it was drawn against (its box holds the frame index)."""

    release: threading.Event | None = None
    drawn: list[int] = field(default_factory=list)

    def prepare_layer(self, analysis: FrameAnalysis, landmarks: Landmarks | None, keyframe: KeyframeState | None,
                      kbps: float, body: Affine | None = None) -> Prepared | None:
        if self.release is not None:
            assert self.release.wait(10)
        self._last_us = analysis.frame.ts_us
        self.drawn.append(analysis.frame.index)
        box = np.full((2, 2, 3), analysis.frame.index, np.uint8)
        return Prepared(landmarks=None, values=LayerValues(1, box, kbps))


def _coder(stub: _StubLayer, background: bool) -> FrameCoder:
    coder = FrameCoder(codes=("expression", "landmarks", CAPABILITY), background=background)
    coder._preparers[CAPABILITY] = stub  # noqa: SLF001
    return coder


def _carried(item_prepared: dict[str, Prepared]) -> int | None:
    value = item_prepared.get(CAPABILITY)
    return None if value is None or not isinstance(value.values, LayerValues) else int(value.values.box[0, 0, 0])


def test_a_recording_carries_each_residual_on_the_frame_after_the_one_it_was_drawn_against() -> None:
    analyzer, stub = SyntheticAnalyzer(), _StubLayer()
    coder = _coder(stub, background=False)
    image = np.zeros((120, 160, 3), np.uint8)
    carried = []
    for index in range(10):
        item = coder.code(analyzer, analyzer.analyze(CapturedFrame(index, index * FRAME_US, image)))
        carried.append(_carried(item.frame.prepared))
    assert stub.drawn == [0, 3, 6, 9]  # LAYER_FPS at a 30 fps input: every third frame
    assert carried == [None, 0, None, None, 3, None, None, 6, None, None]


def test_live_the_analysing_thread_never_waits_for_the_loop_and_a_later_frame_carries_it() -> None:
    analyzer, stub = SyntheticAnalyzer(), _StubLayer(release=threading.Event())
    coder = _coder(stub, background=True)
    image = np.zeros((120, 160, 3), np.uint8)

    def code(index: int) -> int | None:
        return _carried(coder.code(analyzer, analyzer.analyze(CapturedFrame(index, index * FRAME_US, image))).frame.prepared)

    # frame 0 starts the loop, which is held: the frames after it are coded meanwhile and carry nothing,
    # and no second job starts while it runs (frames 3 and 6 were due)
    assert [code(index) for index in range(8)] == [None] * 8
    assert stub.release is not None
    stub.release.set()
    carried = None
    for index in range(8, 1000):
        if (carried := code(index)) is not None:
            break
        threading.Event().wait(0.01)
    assert carried == 0 and stub.drawn[0] == 0


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_work_off_the_frames_path_runs_at_a_lower_priority_than_the_frames() -> None:
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = nice()
    behind: Behind[int] = Behind(background=True)
    behind.start(nice)
    with background_worker("keyframe") as keyframes:
        theirs = keyframes.submit(nice).result()
    while (result := behind.take()) is None:
        threading.Event().wait(0.01)
    assert result == theirs == min(mine + BACKGROUND_NICE, 19)
    assert nice() == mine  # the frames' thread keeps its own
