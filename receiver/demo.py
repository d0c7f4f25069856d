"""facewire-demo: a sender and a receiver over loopback websockets on a sample made from wheel media.

The receiver runs here; the sender is the real `facewire-send`, started as a child process
(the receiver never imports the sender). The output video shows the astronaut's motion
worn by Grace Hopper's face, composited on a plain background.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from facewire.receiver.demo_sample import avatar_path, side_by_side, write_sample
from facewire.receiver.player import Player
from facewire.receiver.runtime import LiveReceiver
from facewire.receiver.sinks import FileSink
from facewire.receiver.stats import StatsMeter
from facewire.shared.render import make_renderer
from facewire.shared.types import Image

log = logging.getLogger("facewire.demo")
FPS = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewire-demo", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("facewire-demo.mp4"), help="video to write")
    parser.add_argument("--frames", type=int, default=150, help="sample length in frames at 30 fps (default 150)")
    parser.add_argument("--identity", default=None, help="avatar image, or 'self' (default: Grace Hopper)")
    parser.add_argument("--background", default="#2b4a6f", help="#RRGGBB or an image path")
    parser.add_argument("--matte", default="auto", help="sender matting mode (default auto)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cv2.setNumThreads(1)
    identity = args.identity or str(avatar_path())
    with tempfile.TemporaryDirectory(prefix="facewire-demo-") as work:
        sample = write_sample(Path(work) / "sample", args.frames)
        print(f"sample: {args.frames} frames of scikit-image's astronaut; identity: {identity}", flush=True)
        report = asyncio.run(_run(sample, identity, args))
        first = cv2.imread(str(sorted(sample.iterdir())[args.frames // 3]))
    picture = args.output.with_suffix(".png")
    if report.middle is not None:
        cv2.imwrite(str(picture), side_by_side(first, report.middle))
    print(f"wrote {args.output} ({report.frames} frames) and {picture} (input | output)")
    print(f"receiver: {report.fps:.1f} fps, showed {report.frames} of {report.received} frames received; wire: "
          f"{report.kbps:.1f} kbps ({report.bytes} bytes for {report.received} frames at {FPS:g} fps, every message "
          f"counted); sender exit code {report.sender_rc}")
    return 0 if report.frames > 0 and report.sender_rc == 0 else 1


async def _run(sample: Path, identity: str, args: argparse.Namespace) -> DemoReport:
    token = secrets.token_hex(16)
    report = DemoReport()
    stats = StatsMeter()
    player = Player(make_renderer("mesh"), FileSink(args.output, fps=FPS), stats, background=args.background,
                    on_picture=report.shown)
    report.keep_index = args.frames // 3
    receiver = LiveReceiver(player, token, steady_clock=False, once=True, backlog=round(FPS))
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(receiver.run("127.0.0.1", 0, ready=ready))
    port = await ready
    env = {**os.environ, "FACEWIRE_TOKEN": token, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "facewire.sender.cli", "--connect", f"ws://127.0.0.1:{port}", "--input", str(sample),
               "--realtime", "--fps", str(FPS), "--identity", identity, "--matte", args.matte, "--log-level", "WARNING"]
    process = await asyncio.create_subprocess_exec(*command, env=env)
    report.sender_rc = await process.wait()
    try:
        await asyncio.wait_for(asyncio.shield(serving), 10)
    except TimeoutError:
        receiver.stop()
        await serving
    report.bytes, report.received = stats.bytes_in, stats.frames_in
    return report


@dataclass
class DemoReport:
    frames: int = 0
    received: int = 0
    bytes: int = 0
    sender_rc: int | None = None
    keep_index: int = 0
    middle: Image | None = None
    first_at: float = 0.0
    last_at: float = 0.0

    def shown(self, picture: Image) -> None:
        now = time.monotonic()
        if self.frames == 0:
            self.first_at = now
        if self.frames <= self.keep_index:
            self.middle = picture
        self.frames += 1
        self.last_at = now

    @property
    def fps(self) -> float:
        return (self.frames - 1) / (self.last_at - self.first_at) if self.frames > 1 else 0.0

    @property
    def kbps(self) -> float:
        """Bitrate over the duration of the frames that crossed the link, every byte of every message counted."""
        return self.bytes * 8 / 1000 / (self.received / FPS) if self.received else 0.0


if __name__ == "__main__":
    sys.exit(main())
