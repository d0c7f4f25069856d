"""Running a sender: record a stream file offline, or stream live over the uplink."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from facewire.sender.analysis import analyse
from facewire.sender.capture import FrameSource, now_us
from facewire.sender.coding import FrameCoder, Outgoing
from facewire.sender.keyframes import RECORDING_SETTLE_S
from facewire.sender.pacing import PICK_STEP, STILL_SKIP_BELOW_BPS, FramePacer, FramePicker, StillFrames, drawn_landmarks
from facewire.sender.sending import FRAMING_BYTES, START_REPAY_WINDOW_S, Ceiling, parts, plan
from facewire.sender.stream import FeatureStream
from facewire.sender.timing import StageTimes
from facewire.sender.uplink import IdentityBook, Uplink, UplinkStats
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameEncoder
from facewire.shared.process.handoff import LatestBox, LatestSlot
from facewire.shared.types import Analyzer, CapturedFrame
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamHeader, StreamWriter

log = logging.getLogger(__name__)
# The most the analysing thread waits for a session's first keyframe before it analyses the next frame (a build
# takes ~60-100 ms at 640x480; a stalled one must not stop the frames for long).
FIRST_KEYFRAME_WAIT_S = 1.0

# The frames' cost the layer's rate is sized by, in a recording: the still-frame rule leaves out frames in runs, and
# an average over this long moves the layer's rate little enough that its encoder seldom restarts (a key frame of
# 200-900 bytes each time: averaged per frame by 0.1 and with every debt counted, d6 restarted 7 times in 10 s at
# 16 kbps; with this and the start's repayment alone, Ceiling.start_repay_bps, twice).
FRAME_COST_WINDOW_S = 2.0


def record_stream(source: FrameSource, analyzer: Analyzer, path: str | Path, identities: IdentityBook | None,
                  progress: Callable[[int, int], None] | None = None, cycle_frames: int | None = None,
                  coder: FrameCoder | None = None) -> StreamWriter:
    """Writes the messages the uplink would send for every frame, with no network (which frames go it may choose
    a frame ahead, as a camera cannot: FramePicker, StillFrames): the codes the
    coder offers (a receiver of this version decodes them all) under its budget's bitrate as a ceiling
    over the media clock (frames the budget cannot pay for are skipped; playback repeats the picture).

    With `cycle_frames`, the identity switches to the book's next one every that many frames,
    as `--identity-cycle` does live.
    """
    coder = coder or FrameCoder()
    codes = negotiate(coder.codes, list(FIELD_CODECS))
    pacer = FramePacer(coder.budget.ceiling_bps, source.fps)
    held_back: Outgoing | None = None  # a frame the pacer skipped that carries state: it goes with the next one
    # Features only, the pacer's positions are a choice among the frames beside them (FramePicker); the residual
    # layer's packet goes with the frame after the one it was prepared on, so with a layer the frames go as due.
    picker = FramePicker()
    # a receiver of this version unpacks packed frames: a recording is what a session with one carries
    stream, gate = FeatureStream(FrameEncoder(codes), packed=True, keyframe_av1=True), Ceiling(coder.budget.ceiling_bps)
    coder.budget.keyframe_av1 = True  # and takes keyframes without their AVIF containers
    with_layer = any(FIELD_CODECS[code].role == "layer" for code in codes)
    lookahead = not with_layer
    # A file of known length holds the ceiling over the whole of it, however short: the start is sized to it
    # (Budget.start_room) and repaid over the file, up to the ceiling's window. Features only, the frames get what the
    # repayment leaves, so they go evenly over the whole file (on `repay_s`, 6 s, the 6-kbps recordings sent every
    # 2.5th frame and then every 1.7th, leaving ~0.4 kbps of the ceiling unspent; a 3.1-s file went over). With the
    # layer the frames go at the input's rate whatever the repayment (the pacer leaves it to the layer's share), and
    # at least `repay_s` lets the layer start seconds sooner; the gate still has the start repaid by the file's end
    # for all but the frames.
    length = source.length
    # the frames before the first keyframe wait for it here, and are drawn from it: it may wait for a closed mouth
    # (in a file that goes on longer than the wait: a keyframe at its end would leave nothing to draw its frames from)
    if length is not None and length / source.fps > 2 * RECORDING_SETTLE_S:
        coder.policy.settle_s = RECORDING_SETTLE_S
    if length is not None:
        gate.end_s = length / source.fps  # the media clock starts at 0
        gate.start_repay_s = min(START_REPAY_WINDOW_S, gate.end_s)
        if with_layer:
            gate.start_repay_s = max(gate.repay_s, gate.start_repay_s)
    # With the layer, its rate is what this gate leaves it (Budget.gated): the frames' cost to the gate over the last
    # FRAME_COST_WINDOW_S (framing included, frames left out as nothing) and the start's repayment on its schedule.
    coder.budget.gated = with_layer
    still = StillFrames() if with_layer and coder.budget.ceiling_bps < STILL_SKIP_BELOW_BPS else None
    frame_costs: deque[int] = deque(maxlen=max(round(FRAME_COST_WINDOW_S * source.fps), 1))
    writer: StreamWriter | None = None
    last_skipped: Outgoing | None = None
    try:
        for frame in source:
            if writer is None and length is not None:
                coder.budget.ends(frame.ts_us, length, source.fps)
            item = coder.code(analyzer, analyse(analyzer, frame, coder.matte_every_frame, coder.coarse_every_frame))
            if writer is None:
                width, height = frame.size
                header = StreamHeader(protocol=m.PROTOCOL_VERSION, width=width, height=height, fps=source.fps,
                                      created_us=now_us(), agent="facewire-send", codes=codes)
                writer = StreamWriter(path, header)
                for message in identities.session_started([]) if identities is not None else []:
                    writer.write(m.encode(message, stream.packed))
            elif identities is not None and cycle_frames and frame.index % cycle_frames == 0:
                for message in identities.switch(identities.active + 1):
                    writer.write(m.encode(message, stream.packed))
            now = frame.index / source.fps  # the media clock, however frames were stamped
            if held_back is not None:
                item, held_back = Outgoing.merged(held_back, item), None
            still_skip = still is not None and still.skips(frame.index, drawn_landmarks(item))
            chosen = _choose(frame.index, item, stream, pacer, picker if lookahead else None, still_skip)
            if chosen is not None:
                sent = plan(stream, chosen[1], gate, now)
            else:  # not this frame: a keyframe on its way goes on crossing between frames
                sent, held_back = parts(stream, gate, now), item if item.carries_state or item.carries_layer else None
            for message in sent:
                writer.write(m.encode(message, stream.packed))
            went = chosen is not None and any(isinstance(message, m.Frame) for message in sent)
            last_skipped = item if not (went and chosen is not None and chosen[0] == frame.index) else None
            if went and chosen is not None:
                if still is not None:
                    still.sent(chosen[0], drawn_landmarks(chosen[1]))
                # the residual layer yields to the frames and to the repayment: with one, the debts are repaid out
                # of the layer's share, not the frames' (w1 at 16 kbps: every 2nd frame for 5 s, mouth 0.86 -> 0.64)
                pacer.repay_bps = 0.0 if with_layer else gate.repay_bps(now)
                pacer.keyframes(coder.own_keyframes(frame.ts_us))
                pacer.sent(chosen[0], stream.last_features_bytes + FRAMING_BYTES)
                picker.went(*chosen)
                # the choice closed here: the next one opens here, at a step that has the picker choose (reopened at any
                # step, windows held the frames to every 2nd: at 6 kbps ~1 kbps under what the pacer allowed)
                if chosen[0] != frame.index and lookahead and pacer.due(frame.index) and not picker.choosing \
                        and pacer.step >= PICK_STEP:
                    picker.due(frame.index, item, pacer.step)
            if with_layer:
                frame_costs.append(stream.last_features_bytes + FRAMING_BYTES if went else 0)
                coder.budget.features_bps = sum(frame_costs) * 8 * source.fps / len(frame_costs)
                coder.budget.repay_bps = gate.start_repay_bps(now)
            else:
                coder.budget.observe_frame(stream.last_features_bytes, pacer.rate)
            coder.held = stream.held
            if progress is not None:
                progress(frame.index + 1, writer.bytes)
        if writer is not None and (picked := picker.flush()) is not None:
            for message in plan(stream, picked[1], gate, now):
                writer.write(m.encode(message, stream.packed))
            last_skipped = None if picked[1] is last_skipped else last_skipped
        if writer is not None and last_skipped is not None and (frame_message := stream.frame(last_skipped)):
            writer.write(m.encode(frame_message, stream.packed))  # the last frame goes anyway: the playback then ends where the input does
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"input {source.spec!r} gave no frames")
    return writer


def _choose(index: int, item: Outgoing, stream: FeatureStream, pacer: FramePacer, picker: FramePicker | None,
            still: bool = False) -> tuple[int, Outgoing] | None:
    """The frame that goes now, if any, and its input index: `item` (input frame `index`) when the pacer has it due,
    or, with a `picker`, its choice among the frames near the pacer's position once it can judge them (a frame
    that carries state goes when it comes, the choice with it). Before the first keyframe every item goes to `plan`,
    which holds it. A `still` frame (StillFrames) is left out where it would have gone as due."""
    picked = picker.offer(index, item) if picker is not None else None
    if stream.current is None:
        return index, item
    if item.carries_state and (picked is not None or (picker is not None and picker.choosing) or pacer.due(index)):
        if picker is not None:
            picker.cancel()
        return index, item
    if picked is not None:
        return picked
    if (picker is not None and picker.choosing) or not pacer.due(index) or still:
        return None
    if picker is not None and pacer.step >= PICK_STEP:
        picker.due(index, item, pacer.step)
        return None
    return index, item


def _capture(source: FrameSource, frames: LatestBox[CapturedFrame], ready: tuple[threading.Event, ...],
             stop: threading.Event, errors: list[BaseException]) -> None:
    """The capture thread: reads the camera (or paces a file) on its own, so a slow analysis never
    makes a camera frame wait: the analysing thread takes the newest and older ones are skipped.
    A file read as fast as it goes waits for the analysis instead (it has no clock to keep up with), and
    a file starts only once all of `ready` are set (a receiver is connected, the analysis warmed up): none
    of it is spent before anyone can see it."""
    try:
        while not source.is_camera and not all(event.wait(0.2) for event in ready):
            if stop.is_set():
                return
        for frame in source:
            if stop.is_set():
                break
            frames.put(frame, wait=not source.paced)
    except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which re-raises it
        errors.append(exc)
    finally:
        frames.close()


def _analyse(frames: LatestBox[CapturedFrame], source_paced: bool, analyzer: Analyzer, coder: FrameCoder,
             slot: LatestSlot[Outgoing], receiving: threading.Event, warm_up: Callable[[], object],
             warmed: threading.Event, stop: threading.Event, errors: list[BaseException]) -> None:
    """The analysing thread: first runs `warm_up` (sender/warmup.py) and sets `warmed`, then analyses and codes
    (keyframe decision included) the newest frame and hands it over. While no receiver is connected it analyses
    nothing: a camera's frames are skipped meanwhile, a file that is not paced waits."""
    try:
        warm_up()
        warmed.set()
        while not stop.is_set():
            if not receiving.wait(0.2):
                if source_paced:
                    frames.get(0)  # keep no stale frame for when a receiver comes
                continue
            frame = frames.get(0.2)
            if frame is None:
                if frames.closed:
                    break
                continue
            start = now_us()
            analysis = analyse(analyzer, frame, coder.matte_every_frame, coder.coarse_every_frame)
            analysed = now_us()
            item = coder.code(analyzer, analysis)
            # a file read as fast as it goes loses no frame here either: it waits for the uplink to take the last
            slot.put(dataclasses.replace(item, times=StageTimes(frame.ts_us, start, analysed, now_us())),
                     wait=not source_paced)
            coder.await_first_keyframe(FIRST_KEYFRAME_WAIT_S)
    except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which re-raises it
        errors.append(exc)
    finally:
        frames.close()  # a capture waiting for us to take its frame stops waiting
        slot.close()


async def stream_live(source: FrameSource, analyzer: Analyzer, uplink: Uplink,
                      cycle_s: float | None = None, warm_up: Callable[[], object] = lambda: None) -> UplinkStats:
    """Capture, analysis and coding on a thread, the uplink on the event loop, joined by a latest-frame
    slot that never skips an item carrying state (a keyframe, a code's setup).

    With `cycle_s`, the identity switches to the book's next one every that many seconds. `warm_up` runs on the
    analysing thread while the uplink connects, before a file's first frame is read (sender/warmup.py).
    """
    loop = asyncio.get_running_loop()
    uplink.coder.background = True  # a camera waits for no keyframe's AVIF search and no closed loop
    slot: LatestSlot[Outgoing] = LatestSlot(loop, keep=lambda item: item.carries_state, merge=Outgoing.merged)
    frames: LatestBox[CapturedFrame] = LatestBox()
    cycler = asyncio.create_task(_cycle_identities(uplink, cycle_s)) if cycle_s else None
    stop = threading.Event()
    errors: list[BaseException] = []
    warmed = threading.Event()
    threads = [threading.Thread(target=_capture, args=(source, frames, (uplink.receiving, warmed), stop, errors),
                                name="capture", daemon=True),
               threading.Thread(target=_analyse, args=(frames, source.paced, analyzer, uplink.coder, slot,
                                                       uplink.receiving, warm_up, warmed, stop, errors),
                                name="analyse", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        stats = await uplink.run(slot)
    finally:
        stop.set()
        slot.close()  # an analysis waiting for room in the slot stops waiting
        if cycler is not None:
            cycler.cancel()
        for thread in threads:
            await asyncio.to_thread(thread.join, 5.0)
    if errors:
        raise errors[0]
    stats.dropped = slot.dropped + frames.dropped
    log.debug("frames dropped: %d captured while the analysis was busy, %d analysed while the uplink was", frames.dropped,
              slot.dropped)
    return stats


async def _cycle_identities(uplink: Uplink, period_s: float) -> None:
    while uplink.identities is not None:
        await asyncio.sleep(period_s)
        uplink.switch_identity(uplink.identities.active + 1)
