"""Running a sender: record a stream file offline, or stream live over the uplink."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from facewire.sender.capture import FrameSource, now_us
from facewire.sender.stream import FeatureStream, KeyframePolicy, decide_keyframe
from facewire.sender.uplink import IdentityBook, Uplink, UplinkStats
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.types import Analyzer, FrameAnalysis
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamHeader, StreamWriter

log = logging.getLogger(__name__)


def record_stream(source: FrameSource, analyzer: Analyzer, path: str | Path, identities: IdentityBook | None,
                  progress: Callable[[int, int], None] | None = None, cycle_frames: int | None = None) -> StreamWriter:
    """Writes exactly the messages the uplink would send for every frame, with no network.

    With `cycle_frames`, the identity switches to the book's next one every that many frames,
    as `--identity-cycle` does live.
    """
    stream = FeatureStream()
    writer: StreamWriter | None = None
    try:
        for frame in source:
            analysis = decide_keyframe(analyzer, analyzer.analyze(frame), stream.policy)
            if writer is None:
                width, height = frame.size
                header = StreamHeader(protocol=m.PROTOCOL_VERSION, width=width, height=height, fps=source.fps,
                                      created_us=now_us(), agent="facewire-send", codes=list(stream.encoder.codes))
                writer = StreamWriter(path, header)
                for message in identities.session_started([]) if identities is not None else []:
                    writer.write(m.encode(message))
            elif identities is not None and cycle_frames and frame.index % cycle_frames == 0:
                for message in identities.switch(identities.active + 1):
                    writer.write(m.encode(message))
            for message in stream.encode(analysis):
                writer.write(m.encode(message))
            if progress is not None:
                progress(frame.index + 1, writer.bytes)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"input {source.spec!r} gave no frames")
    return writer


def _produce(source: FrameSource, analyzer: Analyzer, policy: KeyframePolicy, slot: LatestSlot[FrameAnalysis],
             stop: threading.Event, errors: list[BaseException]) -> None:
    """The capture thread: capture, analyse, take the keyframe decision, hand over."""
    try:
        for frame in source:
            if stop.is_set():
                break
            slot.put(decide_keyframe(analyzer, analyzer.analyze(frame), policy))
    except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which re-raises it
        errors.append(exc)
    finally:
        slot.close()


async def stream_live(source: FrameSource, analyzer: Analyzer, uplink: Uplink,
                      cycle_s: float | None = None) -> UplinkStats:
    """Capture and analysis on a thread, the uplink on the event loop, joined by a latest-frame slot.

    With `cycle_s`, the identity switches to the book's next one every that many seconds.
    """
    loop = asyncio.get_running_loop()
    slot: LatestSlot[FrameAnalysis] = LatestSlot(loop, keep=lambda analysis: analysis.keyframe)
    cycler = asyncio.create_task(_cycle_identities(uplink, cycle_s)) if cycle_s else None
    stop = threading.Event()
    errors: list[BaseException] = []
    producer = threading.Thread(target=_produce, args=(source, analyzer, uplink.stream.policy, slot, stop, errors),
                                name="capture", daemon=True)
    producer.start()
    try:
        stats = await uplink.run(slot)
    finally:
        stop.set()
        if cycler is not None:
            cycler.cancel()
        await asyncio.to_thread(producer.join, 5.0)
    if errors:
        raise errors[0]
    stats.dropped = slot.dropped
    return stats



async def _cycle_identities(uplink: Uplink, period_s: float) -> None:
    while uplink.identities is not None:
        await asyncio.sleep(period_s)
        uplink.switch_identity(uplink.identities.active + 1)
