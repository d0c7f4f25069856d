"""facewire-relay: rooms where senders publish and receivers join, at ws://HOST:PORT/rooms/NAME.

    facewire-relay --listen 0.0.0.0:8766 --token SECRET [--redis redis://127.0.0.1:6379/0]
    facewire-send --connect ws://relay:8766/rooms/call?name=alice --token SECRET ...
    facewire-receive --join ws://relay:8766/rooms/call --show alice --token SECRET ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from pathlib import Path

from facewire.relay.access import Access, AccessError
from facewire.relay.server import Bridge, RelayServer
from facewire.shared.process.cliargs import tls_context

log = logging.getLogger("facewire.relay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewire-relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", metavar="HOST:PORT", required=True, help="address to serve, e.g. 0.0.0.0:8766")
    access = parser.add_mutually_exclusive_group()
    access.add_argument("--token", default=None, help="one secret that opens every room (default: $FACEWIRE_TOKEN)")
    access.add_argument("--rooms", type=Path, metavar="FILE",
                        help="TOML file: [rooms.NAME] publish = TOKEN, subscribe = TOKEN (only these rooms exist)")
    parser.add_argument("--redis", metavar="URL", help="share rooms with other relays through Redis, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--tls-cert", type=Path, help="certificate (PEM) to serve wss://")
    parser.add_argument("--tls-key", type=Path, help="private key (PEM) for --tls-cert")
    parser.add_argument("--max-rooms-per-token", type=int, default=64, help="rooms one token may hold open (default 64)")
    parser.add_argument("--max-receivers", type=int, default=256, help="receivers per room on this relay (default 256)")
    parser.add_argument("--max-senders", type=int, default=16, help="senders per room on this relay (default 16)")
    parser.add_argument("--stats-json", type=Path, metavar="FILE", help="append one JSON line of counters a second")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = args.token or (None if args.rooms else os.environ.get("FACEWIRE_TOKEN"))
    try:
        if args.rooms is not None:
            access = Access.from_file(args.rooms, max_rooms_per_token=args.max_rooms_per_token)
        elif token:
            access = Access(shared=token, max_rooms_per_token=args.max_rooms_per_token)
        else:
            print("facewire-relay: needs --token (or FACEWIRE_TOKEN) or --rooms FILE", file=sys.stderr)
            return 2
        host, _, port = args.listen.rpartition(":")
        context = tls_context(args.tls_cert, args.tls_key)
        asyncio.run(run(access, host or "127.0.0.1", int(port), context, args))
        return 0
    except (AccessError, OSError, ValueError) as exc:
        print(f"facewire-relay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def run(access: Access, host: str, port: int, context: ssl.SSLContext | None, args: argparse.Namespace) -> None:
    bridge: Bridge = Bridge()
    server = RelayServer(access, max_receivers_per_room=args.max_receivers, max_senders_per_room=args.max_senders)
    if args.redis:
        from facewire.relay.bridge import RedisBridge

        bridge = await RedisBridge.connect(args.redis, server)
    server.bridge = bridge
    listener = await server.start(host, port, context)
    bound = next(iter(listener.sockets)).getsockname()[1]
    log.info("relay %s listening on %s:%d (%s%s)", server.relay_id, host, bound, "wss" if context else "ws",
             ", rooms shared through Redis" if args.redis else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if args.stats_json is not None:  # every second, and once more when stopping
                with args.stats_json.open("a") as out:
                    out.write(json.dumps({"t": time.time(), **server.stats.as_dict(server.rooms),
                                          "rooms": len(server.rooms)}) + "\n")
    finally:
        await server.shutdown(listener)
        await bridge.close()



if __name__ == "__main__":
    sys.exit(main())
