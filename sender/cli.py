"""facewire-send: analyse a camera, video or image folder and send face features (or record them)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from facewire.sender.capture import CaptureError, CaptureOptions, FrameSource
from facewire.sender.coding import (
    ALPHA_FIX_CODES,
    DEFAULT_BITRATE_BPS,
    DEFAULT_CODES,
    LAYERS,
    MIN_RESIDUAL_CEILING_BPS,
    Budget,
    FrameCoder,
    codes_for,
)
from facewire.sender.identity import identity_messages, with_embedding
from facewire.sender.runner import record_stream, stream_live
from facewire.sender.uplink import IdentityBook, Uplink, UplinkError, UplinkStats
from facewire.shared.face.identity import IdentityError
from facewire.shared.models.onnx import add_provider_arguments
from facewire.shared.process.cliargs import add_common_arguments, apply_common_arguments, parse_size
from facewire.shared.types import Analyzer
from facewire.shared.wire import messages as m
from facewire.shared.wire.protocol import Limits

if TYPE_CHECKING:
    from facewire.sender.analysis import SenderAnalyzer

log = logging.getLogger("facewire.send")
MATTES = ("auto", "chroma", "learned", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewire-send", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--connect", metavar="URL", help="receiver address, ws://HOST:PORT or wss://HOST:PORT")
    target.add_argument("--record-stream", metavar="FILE", type=Path,
                        help="write the messages to a .fws stream file instead of sending them")
    parser.add_argument("--token", default=os.environ.get("FACEWIRE_TOKEN"),
                        help="the receiver's shared secret (default: $FACEWIRE_TOKEN)")
    parser.add_argument("--input", default="0", help="camera index, video file or image folder (default camera 0)")
    parser.add_argument("--loop", action="store_true", help="repeat a video file or folder")
    parser.add_argument("--realtime", action="store_true", help="pace a file at its fps (default: as fast as it goes)")
    parser.add_argument("--size", type=parse_size, help="scale capture to WxH, e.g. 640x480")
    parser.add_argument("--fps", type=float, help="camera fps to ask for / image-folder fps (default 30)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--identity", default="self", help="avatar image to appear as, or 'self' (default)")
    parser.add_argument("--identity-dir", type=Path,
                        help="more avatars to switch between live: type the number of one (0 = --identity) and Enter")
    parser.add_argument("--identity-cycle", type=float, metavar="S",
                        help="switch to the next identity every S seconds (of media time when recording)")
    parser.add_argument("--face-backend", choices=("mediapipe", "insightface"), default="mediapipe",
                        help="insightface (buffalo_l, downloaded with facewire-models) adds an identity embedding")
    parser.add_argument("--matte", choices=MATTES, default="auto", help="matting mode (default auto)")
    parser.add_argument("--bitrate", type=_kbps, metavar="KBPS",
                        help="ceiling on everything sent, in kbit/s over any 10 s (default 256; live, the rate control "
                             "finds the link's rate below it)")
    parser.add_argument("--layers", choices=LAYERS,
                        help="what is sent: features (keyframes and the face code) or features+residual (plus a "
                             "low-resolution video of the face box correcting the receiver's picture; self mode "
                             "only). Default: features+residual with --identity self when --bitrate is at least "
                             f"{MIN_RESIDUAL_CEILING_BPS / 1000:.0f} kbps, else features")
    parser.add_argument("--alpha-fix", choices=("on", "off"), default="off",
                        help="on: where the receiver's prediction of the alpha (the keyframe's, moved) is off, send "
                             "corrections of it (closer mattes, but held tiles show as square notches on a moving "
                             "head); off (default): the prediction alone")
    parser.add_argument("--cafile", type=Path, help="CA certificate (PEM) to trust for wss://")
    parser.add_argument("--stats", action="store_true", help="print link statistics once a second")
    add_common_arguments(parser)
    add_provider_arguments(parser)
    return parser


def make_analyzer(matte: str, providers: str) -> SenderAnalyzer:
    from facewire.sender.analysis import SenderAnalyzer
    from facewire.sender.matte import make_matter
    from facewire.sender.tracker import MediaPipeFaceTracker
    from facewire.shared.process.heap import reuse_heap_memory

    reuse_heap_memory()
    return SenderAnalyzer(MediaPipeFaceTracker(), make_matter(matte, providers=providers))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_common_arguments(args)
    if args.connect and not args.token:
        print("facewire-send: --connect needs --token or FACEWIRE_TOKEN", file=sys.stderr)
        return 2
    try:
        identities = IdentityBook(_identities(args))
        options = CaptureOptions(loop=args.loop, realtime=args.realtime, size=args.size,
                                 max_frames=args.max_frames, fps=args.fps,
                                 media_clock=args.record_stream is not None)
        source = FrameSource(args.input, options)
        analyzer = make_analyzer(args.matte, args.providers)
        try:
            ceiling = args.bitrate * 1000 if args.bitrate else DEFAULT_BITRATE_BPS
            self_mode = args.identity == "self" and args.identity_dir is None
            base = ALPHA_FIX_CODES if args.alpha_fix == "on" else DEFAULT_CODES
            coder = FrameCoder(codes_for(args.layers, ceiling, self_mode, base), budget=Budget.at_most(ceiling))
            log.info("sending %s", ", ".join(coder.codes))
            if not args.record_stream:
                _warn_slow_identities(identities.identities, ceiling)
            if args.record_stream:
                cycle = round(args.identity_cycle * source.fps) if args.identity_cycle else None
                return _record(source, analyzer, args.record_stream, identities, cycle, coder)
            return _stream(source, analyzer, args, identities, coder)
        finally:
            source.close()
            analyzer.close()
    except (CaptureError, IdentityError, UplinkError, OSError, ValueError) as exc:
        print(f"facewire-send: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _identities(args: argparse.Namespace) -> list[m.Identity]:
    messages = identity_messages(args.identity, args.identity_dir)
    if args.face_backend == "insightface":
        from facewire.sender.insightface_backend import load_insightface_backend

        backend = load_insightface_backend(providers=args.providers, threads=args.ort_threads)
        if backend is None:
            raise IdentityError("--face-backend insightface needs the buffalo_l models: run `facewire-models fetch buffalo_l`")
        messages = [with_embedding(message, backend.identity_embedding) for message in messages]
    for index, message in enumerate(messages):
        log.info("identity %d: %s", index, message.asset[:16])
    return messages


# An avatar image that needs longer than this at the link's ceiling is worth a word: nobody is shown until it is here.
SLOW_IDENTITY_S = 10.0


def _warn_slow_identities(identities: list[m.Identity], ceiling_bps: float) -> None:
    for index, identity in enumerate(identities):
        seconds = 0.0 if identity.image is None else len(identity.image) * 8 / ceiling_bps
        if seconds > SLOW_IDENTITY_S:
            log.warning("identity %d: its image is %d KB, at least %.0f s of a %g-kbps link before a receiver shows you "
                        "as it (once: a receiver keeps it); a smaller file (the face cropped, or compressed harder) "
                        "arrives sooner", index, len(identity.image or b"") // 1024, seconds, ceiling_bps / 1000)


def _kbps(text: str) -> float:
    value = float(text)
    if not 1.0 <= value <= 100_000.0:
        raise argparse.ArgumentTypeError(f"{text} kbps is out of range (1-100000)")
    return value


def _record(source: FrameSource, analyzer: Analyzer, path: Path, identities: IdentityBook, cycle: int | None,
            coder: FrameCoder) -> int:
    start = time.monotonic()

    def progress(frames: int, nbytes: int) -> None:
        if frames % 30 == 0:
            elapsed = time.monotonic() - start
            print(f"\r{frames} frames, {nbytes / 1024:.0f} KiB, {frames / elapsed:.1f} fps", end="", file=sys.stderr)

    writer = record_stream(source, analyzer, path, identities, progress, cycle, coder)
    elapsed = time.monotonic() - start
    print(f"\rwrote {path}: {writer.messages} messages, {writer.bytes} bytes in {elapsed:.1f} s", file=sys.stderr)
    return 0


def _stream(source: FrameSource, analyzer: SenderAnalyzer, args: argparse.Namespace, identities: IdentityBook,
            coder: FrameCoder) -> int:
    from facewire.sender.warmup import warm_up

    context = None
    if args.connect.startswith("wss://"):
        context = ssl.create_default_context(cafile=args.cafile)
    uplink = Uplink(args.connect, args.token, coder, identities, context, on_stats=_printer() if args.stats else None,
                    fps=source.fps, limits=Limits(dead_after_s=args.dead_after))
    stats = asyncio.run(_live(source, analyzer, uplink, args.identity_cycle, lambda: warm_up(analyzer, source.size)))
    log.info("sent %d frames (%d keyframes, %.0f KiB), dropped %d stale, %d kept off the link by the rate control, "
             "%d connection(s)", stats.frames_sent, stats.keyframes_sent, stats.bytes_sent / 1024, stats.dropped,
             stats.skipped, stats.connects)
    return 0


async def _live(source: FrameSource, analyzer: Analyzer, uplink: Uplink, cycle_s: float | None,
                warm: Callable[[], object]) -> UplinkStats:
    loop = asyncio.get_running_loop()
    if uplink.identities is not None and len(uplink.identities.identities) > 1 and sys.stdin.isatty():
        print("type an identity number and Enter to switch", file=sys.stderr)
        loop.add_reader(sys.stdin, _read_choice, uplink)
    return await stream_live(source, analyzer, uplink, cycle_s, warm)


def _read_choice(uplink: Uplink) -> None:
    line = sys.stdin.readline().strip()
    if line.isdigit():
        uplink.switch_identity(int(line))


def _printer() -> Callable[[UplinkStats], None]:
    last = [0.0, time.monotonic()]

    def show(stats: UplinkStats) -> None:
        now = time.monotonic()
        kbps = (stats.bytes_sent - last[0]) * 8 / 1000 / max(now - last[1], 1e-6)
        last[:] = [stats.bytes_sent, now]
        print(f"sent {stats.frames_sent} frames  {kbps:.1f} kbps  dropped {stats.dropped}", file=sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
