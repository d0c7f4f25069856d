"""facewire-receive: serve one sender (or play a stream file) into a sink."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from facewire.receiver.compositor import BackgroundError
from facewire.receiver.player import Player
from facewire.receiver.runtime import LiveReceiver, play_stream
from facewire.receiver.sink_spec import open_sink
from facewire.receiver.sinks import SinkError
from facewire.receiver.stats import StatsMeter
from facewire.shared.models.onnx import add_provider_arguments
from facewire.shared.process.cliargs import add_common_arguments, apply_common_arguments, client_tls_context, parse_size, tls_context
from facewire.shared.render import RENDERERS, available_renderers, make_renderer
from facewire.shared.wire.errors import StreamFileError
from facewire.shared.wire.protocol import Limits
from facewire.shared.wire.streamfile import StreamReader

log = logging.getLogger("facewire.receive")
STEADY_SINKS = ("virtualcam", "window", "http")
RECORDING_SINKS = ("frames", "file")  # every frame is a picture: a burst waits for the renderer (about a second of it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewire-receive", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--listen", metavar="HOST:PORT", help="serve senders on this address, e.g. 0.0.0.0:8765")
    source.add_argument("--play-stream", metavar="FILE", type=Path, help="decode a recorded .fws stream file")
    source.add_argument("--join", metavar="URL", help="join a relay's room, ws://HOST:PORT/rooms/NAME (facewire-relay)")
    parser.add_argument("--show", metavar="NAME", help="with --join: the sender to show (default: the room's newest)")
    parser.add_argument("--cafile", type=Path, help="with --join: CA certificate (PEM) to trust for wss://")
    parser.add_argument("--token", default=os.environ.get("FACEWIRE_TOKEN"),
                        help="shared secret senders must present (default: $FACEWIRE_TOKEN)")
    parser.add_argument("--tls-cert", type=Path, help="certificate (PEM) to serve wss://")
    parser.add_argument("--tls-key", type=Path, help="private key (PEM) for --tls-cert")
    parser.add_argument("--sink", default="virtualcam",
                        help="frames:DIR | file:PATH | virtualcam | window | http:PORT | null (default virtualcam)")
    parser.add_argument("--device", help="virtual camera device, e.g. /dev/video10")
    parser.add_argument("--camera-format", choices=("bgr", "rgb"), default="bgr",
                        help="pixel format handed to the virtual camera (default bgr)")
    parser.add_argument("--background", help="#RRGGBB or an image path (default dark grey #30343c)")
    parser.add_argument("--mirror", action="store_true", help="flip the output left-right")
    parser.add_argument("--size", type=parse_size, help="output size WxH (default the sender's)")
    parser.add_argument("--fps", type=float, default=30.0, help="output frame rate of a live receiver (default 30)")
    parser.add_argument("--renderer", choices=RENDERERS, default="mesh", help="face renderer (default mesh)")
    parser.add_argument("--keep-mouth", action="store_true", help="inswapper: keep the sender's mouth")
    parser.add_argument("--once", action="store_true", help="exit when the first sender's session ends")
    parser.add_argument("--stats", action="store_true", help="print statistics once a second")
    parser.add_argument("--stats-json", type=Path, metavar="FILE", help="append one JSON line of statistics a second")
    add_common_arguments(parser)
    add_provider_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_common_arguments(args)
    if (args.listen or args.join) and not args.token:
        print("facewire-receive: --listen and --join need --token or FACEWIRE_TOKEN", file=sys.stderr)
        return 2
    if (args.listen or args.join) and not _is_utf8(args.token):
        print("facewire-receive: the token must be valid UTF-8 text", file=sys.stderr)
        return 2
    try:
        if args.play_stream:
            with StreamReader(args.play_stream) as reader:
                fps = reader.header.fps
            frames = play_stream(args.play_stream, make_player(args, fps))
            log.info("played %d frames from %s", frames, args.play_stream)
            return 0
        receiver = LiveReceiver(make_player(args, args.fps), args.token, fps=args.fps, once=args.once,
                                renderers=available_renderers(), limits=Limits(dead_after_s=args.dead_after),
                                join=args.join, show=args.show,
                                steady_clock=args.sink.split(":")[0] in STEADY_SINKS,
                                backlog=max(1, round(args.fps)) if args.sink.split(":")[0] in RECORDING_SINKS else 1)
        if args.join:
            asyncio.run(receiver.run("", 0, client_tls_context(args.join, args.cafile)))
            return 0
        host, _, port = args.listen.rpartition(":")
        asyncio.run(receiver.run(host or "127.0.0.1", int(port), tls_context(args.tls_cert, args.tls_key)))
        return 0
    except (SinkError, BackgroundError, StreamFileError, OSError, ValueError) as exc:
        print(f"facewire-receive: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def make_player(args: argparse.Namespace, fps: float) -> Player:
    renderer = make_renderer(args.renderer, keep_mouth=args.keep_mouth, providers=args.providers,
                             threads=args.ort_threads)
    stats = StatsMeter(print_lines=args.stats, json_path=args.stats_json)
    sink = open_sink(args.sink, fps, device=args.device, pixel_format=args.camera_format)
    return Player(renderer=renderer, sink=sink, stats=stats, background=args.background,
                  output_size=args.size, mirror=args.mirror)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True



if __name__ == "__main__":
    sys.exit(main())
