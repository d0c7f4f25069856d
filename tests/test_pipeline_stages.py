"""The real-time pipeline's joints: drop-oldest hand-offs between threads, sinks written off the render
path, analysis paused without a receiver, and the per-stage latency report."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facewire.receiver.sinks import BackgroundWriter, FramesSink, NullSink
from facewire.receiver.stats import StatsMeter
from facewire.sender.coding import FrameCoder, Outgoing
from facewire.sender.runner import _analyse
from facewire.sender.timing import StageMeter, StageTimes
from facewire.shared.process.handoff import LatestBox, LatestSlot
from facewire.shared.types import CapturedFrame, FrameAnalysis, Image
from facewire.shared.wire.messages import SENDER_STAGES


def test_latest_box_keeps_the_newest_and_counts_the_rest() -> None:
    box: LatestBox[int] = LatestBox()
    for item in range(5):
        box.put(item)
    assert box.get(0) == 4 and box.dropped == 4
    assert box.get(0.01) is None and not box.closed
    box.put(7)
    box.close()
    assert box.get() == 7 and box.get() is None


def test_latest_box_waiting_producer_loses_nothing() -> None:
    box: LatestBox[int] = LatestBox()
    got: list[int] = []

    def consume() -> None:
        while (item := box.get()) is not None:
            time.sleep(0.002)  # slower than the producer
            got.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for item in range(50):
        box.put(item, wait=True)
    box.close()
    consumer.join(5)
    assert got == list(range(50)) and box.dropped == 0


def test_latest_slot_waiting_producer_loses_nothing_even_behind_kept_items() -> None:
    async def run() -> tuple[list[int], int]:
        # every 7th item is kept (it carries state): without waiting, it would supersede the items before it
        slot: LatestSlot[int] = LatestSlot(asyncio.get_running_loop(), keep=lambda item: item % 7 == 0)
        producer = threading.Thread(target=lambda: [slot.put(item, wait=True) for item in range(60)] and None)
        producer.start()
        got = []
        while len(got) < 60 and (item := await slot.get()) is not None:
            await asyncio.sleep(0.001)  # slower than the producer
            got.append(item)
        producer.join(5)
        return got, slot.dropped

    got, dropped = asyncio.run(run())
    assert got == list(range(60)) and dropped == 0


def test_latest_slot_close_releases_a_waiting_producer() -> None:
    async def run() -> bool:
        slot: LatestSlot[int] = LatestSlot(asyncio.get_running_loop())
        slot.put(0)
        producer = threading.Thread(target=slot.put, args=(1,), kwargs={"wait": True})
        producer.start()
        await asyncio.sleep(0.05)
        waiting = producer.is_alive()
        slot.close()
        await asyncio.to_thread(producer.join, 5)
        return waiting and not producer.is_alive()

    assert asyncio.run(run())


class _SlowSink(NullSink):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def write(self, image: Image, ts_us: int) -> None:
        time.sleep(0.01)
        self.seen.append(ts_us)


def test_background_writer_keeps_order_and_every_picture_without_blocking_the_caller() -> None:
    slow = _SlowSink()
    writer = BackgroundWriter(slow, depth=64)
    start = time.monotonic()
    for ts in range(20):
        writer.write(np.zeros((4, 4, 3), np.uint8), ts)
    handed_over_s = time.monotonic() - start
    writer.close()
    assert slow.seen == list(range(20))
    assert handed_over_s < 20 * 0.01  # the caller did not wait for each write


def test_background_writer_raises_the_sinks_failure_on_the_callers_thread(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    writer = BackgroundWriter(FramesSink(tmp_path / "frames"))
    (tmp_path / "frames").rename(blocker)  # the folder is gone: cv2.imwrite fails
    writer.write(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(Exception, match="cannot write"):
        writer.close()


class _CountingAnalyzer:
    def __init__(self) -> None:
        self.calls = 0

    def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
        self.calls += 1
        return FrameAnalysis(frame, None, None)

    def foreground(self) -> Image | None:
        return None


class _Collect:
    def __init__(self) -> None:
        self.items: list[Outgoing] = []
        self.closed = False

    def put(self, item: Outgoing, wait: bool = False) -> None:
        self.items.append(item)

    def close(self) -> None:
        self.closed = True


def test_analysis_waits_for_a_receiver_and_skips_camera_frames_meanwhile() -> None:
    frames: LatestBox[CapturedFrame] = LatestBox()
    analyzer, out = _CountingAnalyzer(), _Collect()
    receiving, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    warmed = threading.Event()
    worker = threading.Thread(target=_analyse, args=(frames, True, analyzer, FrameCoder(), out, receiving, lambda: None,
                                                     warmed, stop, errors))
    worker.start()
    image = np.zeros((8, 8, 3), np.uint8)
    for index in range(5):
        frames.put(CapturedFrame(index, index, image))
        time.sleep(0.05)
    assert analyzer.calls == 0 and warmed.is_set()  # warmed up, but nobody to send to: no analysis
    receiving.set()
    frames.put(CapturedFrame(9, 9_000, image))
    deadline = time.monotonic() + 5
    while not out.items and time.monotonic() < deadline:
        time.sleep(0.01)
    frames.close()
    worker.join(5)
    assert not errors and out.closed
    assert [item.frame.analysis.frame.index for item in out.items] == [9]  # stale camera frames were skipped
    times = out.items[0].times
    assert times is not None and times.captured_us == 9_000 <= times.analysis_start_us <= times.coded_us


def test_stage_meter_reports_medians_per_sender_stage() -> None:
    meter = StageMeter()
    meter.sent(StageTimes(0, 1_000, 11_000, 12_000), sent_us=14_000)
    meter.sent(StageTimes(0, 3_000, 13_000, 14_000), sent_us=16_000)
    assert meter.take() == [2.0, 10.0, 1.0, 2.0] and len(SENDER_STAGES) == 4
    assert meter.take() == []


def test_receiver_report_splits_the_latency_into_stages() -> None:
    stats = StatsMeter()
    stats.sender_stages_ms = (5.0, 20.0, 1.0, 2.0)
    for _ in range(3):
        stats.stages({"upstream": 40_000, "decode": 500, "wait": 1_000, "render": 8_000, "compose": 3_000, "sink": 200})
    report = stats.tick(force=True)
    assert report is not None
    assert report["stages_ms"] == {"sender_capture": 5.0, "sender_analysis": 20.0, "sender_coding": 1.0,
                                   "sender_queue": 2.0, "link": 12.0, "decode": 0.5, "wait": 1.0, "render": 8.0,
                                   "compose": 3.0, "sink": 0.2}


def test_receiver_report_says_where_the_slowest_frames_time_went() -> None:
    stats = StatsMeter()
    for render_us in [8_000] * 19 + [30_000]:
        stats.stages({"upstream": 20_000, "decode": 500, "wait": 0, "render": render_us, "compose": 3_000, "sink": 0})
    stats.stages({"upstream": 45_000, "decode": 500, "wait": 0, "render": 8_000, "compose": 3_000, "sink": 0})
    report = stats.tick(force=True)
    assert report is not None
    # the two slowest of 21 frames: one late from upstream, one slow to render
    assert report["stages_ms_slowest"] == {"upstream": 32.5, "decode": 0.5, "wait": 0.0, "render": 19.0,
                                           "compose": 3.0, "sink": 0.0}
    assert report["stages_ms"]["render"] == 8.0


def test_live_keyframes_are_built_off_the_analysing_thread_and_go_with_a_later_frame() -> None:
    from tests.wire_fixtures import SyntheticAnalyzer

    analyzer = SyntheticAnalyzer()
    image = np.random.default_rng(2).integers(0, 255, (240, 320, 3), np.uint8)
    coder = FrameCoder(background=True)
    coder.restart()
    items = []
    deadline = time.monotonic() + 20
    while not any(item.keyframe for item in items) and time.monotonic() < deadline:
        frame = CapturedFrame(len(items), len(items) * 33_333, image)
        items.append(coder.code(analyzer, analyzer.analyze(frame)))
        time.sleep(0.01)
    with_keyframe = [item for item in items if item.keyframe is not None]
    assert len(with_keyframe) == 1 and items[0].keyframe is None  # the first frame did not wait for the build
    keyframe = with_keyframe[0].keyframe
    assert keyframe is not None and keyframe.kf == 1 and keyframe.ts_us == 0  # the picture of the frame that asked
    first = items.index(with_keyframe[0])
    assert any(item.setups for item in items[:first + 1])  # the setups in use went no later than the keyframe


class _OverlapPlayer:
    """Draws and emits with a rendezvous: emitting frame 1 waits (up to 5 s) for frame 2's drawing to start."""

    def __init__(self) -> None:
        self.stats = StatsMeter()
        self.drawing_second = threading.Event()
        self.overlapped: list[bool] = []
        self.emitted: list[int] = []

    def draw(self, job: int, dt_s: float) -> int:
        if job == 2:
            self.drawing_second.set()
        return job

    def emit(self, drawn: int) -> Image:
        if drawn == 1:
            self.overlapped.append(self.drawing_second.wait(5.0))
        self.emitted.append(drawn)
        return np.zeros((2, 2, 3), np.uint8)


def test_the_receiver_draws_the_next_frame_while_the_last_one_is_composited() -> None:
    from facewire.receiver.runtime import LiveReceiver

    async def run() -> _OverlapPlayer:
        player = _OverlapPlayer()
        receiver = LiveReceiver(player, "token", steady_clock=False)  # type: ignore[arg-type]
        slot: LatestSlot[int] = LatestSlot(asyncio.get_running_loop(), depth=2)
        slot.put(1)
        slot.put(2)
        slot.close()
        await receiver._render(slot)  # type: ignore[arg-type]
        return player

    player = asyncio.run(run())
    assert player.overlapped == [True]  # frame 2 was being drawn while frame 1 was composited
    assert player.emitted == [1, 2]  # every picture, in order, all composited before _render returned
