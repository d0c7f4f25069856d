"""What the receiver's renderer is given for a clip, for bench/swap.py: the tracker's own output, or a stream file.

`direct` hands the renderer the clip's first tracked frame as the keyframe and the tracker's landmarks, as
they are on the sender's machine. `recorded` runs the real sender over the clip (`facewire-send
--record-stream` at a bitrate) and decodes the file the way the receiver does (facewire.shared.codec.frames):
the keyframes as they arrive (compressed, replaced when the sender sends another), the face code's landmarks
after quantisation. Each step is tied to the input frame it was captured from, which stays the truth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.types import FrameState, Image, KeyframeState, Landmarks
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader

ROOT = Path(__file__).resolve().parent.parent
# A recording's budget is planned over its length: shorter than a call's first seconds, its keyframe would be
# starved or padded in ways a call's is not.
MIN_RECORDED_FRAMES = 300

Step = tuple[int, KeyframeState | None, FrameState]  # input frame index, a keyframe to prepare first (or None), the frame
Tracked = list[tuple[Image, Landmarks | None]]


def direct(frames: Tracked) -> list[Step]:
    """The tracker's landmarks on every tracked frame; the first tracked frame, uncompressed, as the keyframe."""
    tracked = [(i, lm) for i, (_, lm) in enumerate(frames) if lm is not None]
    if not tracked:
        return []
    key, key_lm = tracked[0]
    keyframe = KeyframeState(0, frames[key][0], None, key_lm)
    return [(i, keyframe if i == key else None, FrameState(i, i * 33_333, "tracked", lm, None)) for i, lm in tracked]


def record(clip: Path, frames: int, kbps: float, identity: Path, out: Path) -> None:
    """The real sender's stream of the clip's first `frames` frames (at least MIN_RECORDED_FRAMES) at `kbps`, as an
    avatar sender sends it (`--identity`: the face code without the self-mode residual layer)."""
    cmd = [sys.executable, "-m", "facewire.sender.cli", "--input", str(clip), "--record-stream", str(out),
           "--max-frames", str(max(frames, MIN_RECORDED_FRAMES)), "--bitrate", f"{kbps:g}", "--identity", str(identity),
           "--log-level", "ERROR"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def recorded(stream: Path, frames: Tracked) -> list[Step]:
    """The steps a receiver plays from `stream`, for the input `frames` it was recorded from (the same clip, from its
    first frame, at its own size). Frames the sender did not send, or sent without a face, have no step."""
    with StreamReader(stream) as reader:
        header, raws = reader.header, list(reader.raw())
    height, width = frames[0][0].shape[:2]
    if (header.width, header.height) != (width, height):
        raise ValueError(f"{stream}: recorded at {header.width}x{header.height}, the clip is {width}x{height}")
    first = next((i for i, (_, lm) in enumerate(frames) if lm is not None), None)
    decoder = FrameDecoder(header.codes)
    steps: list[Step] = []
    pending: KeyframeState | None = None
    start_us: int | None = None
    for raw in raws:
        message = m.decode(raw)
        if isinstance(message, m.Setup):
            decoder.setup(message)
        elif isinstance(message, (m.Keyframe, m.KeyframePart)):
            keyframe = decoder.decode_keyframe(message) if isinstance(message, m.Keyframe) else decoder.decode_part(message)
            pending = keyframe or pending  # None until a keyframe's last part arrives
        elif isinstance(message, m.Frame):
            state = decoder.decode_frame(message)
            # The sender's first frame is its first tracked capture, as the bench's tracker finds it.
            start_us = state.ts_us if start_us is None else start_us
            index = (first or 0) + round((state.ts_us - start_us) * header.fps / 1e6)
            if index >= len(frames):
                break
            if state.landmarks is not None and state.face != "lost":
                steps.append((index, pending, state))
                pending = None
    return steps
