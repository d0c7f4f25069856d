"""Running a sender: record a stream file offline, or stream live over the uplink."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sender.capture import FrameSource
from sender.stream import FeatureStream
from sender.uplink import Uplink, UplinkStats
from shared import messages as m
from shared.handoff import LatestSlot
from shared.streamfile import StreamHeader, StreamWriter
from shared.types import Analyzer, FrameAnalysis

log = logging.getLogger(__name__)


def record_stream(source: FrameSource, analyzer: Analyzer, path: str | Path, identity: m.Identity | None,
                  progress: Callable[[int, int], None] | None = None) -> StreamWriter:
    """Writes exactly the messages the uplink would send for every frame, with no network."""
    stream = FeatureStream()
    writer: StreamWriter | None = None
    try:
        for frame in source:
            analysis = analyzer.analyze(frame)
            if writer is None:
                width, height = frame.size
                header = StreamHeader(protocol=m.PROTOCOL_VERSION, width=width, height=height, fps=source.fps,
                                      created_us=time.time_ns() // 1000, agent="facewire-send")
                writer = StreamWriter(path, header)
                if identity is not None:
                    writer.write(m.encode(identity))
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


def _produce(source: FrameSource, analyzer: Analyzer, slot: LatestSlot[FrameAnalysis], stop: threading.Event,
             errors: list[BaseException]) -> None:
    try:
        for frame in source:
            if stop.is_set():
                break
            slot.put(analyzer.analyze(frame))
    except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which re-raises it
        errors.append(exc)
    finally:
        slot.close()


async def stream_live(source: FrameSource, analyzer: Analyzer, uplink: Uplink) -> UplinkStats:
    """Capture and analysis on a thread, the uplink on the event loop, joined by a latest-frame slot."""
    slot: LatestSlot[FrameAnalysis] = LatestSlot(asyncio.get_running_loop())
    stop = threading.Event()
    errors: list[BaseException] = []
    producer = threading.Thread(target=_produce, args=(source, analyzer, slot, stop, errors),
                                name="capture", daemon=True)
    producer.start()
    try:
        stats = await uplink.run(slot)
    finally:
        stop.set()
        await asyncio.to_thread(producer.join, 5.0)
    if errors:
        raise errors[0]
    stats.dropped = slot.dropped
    return stats

