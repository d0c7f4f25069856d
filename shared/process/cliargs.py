"""Argument parsers both command-line tools share."""

from __future__ import annotations

import argparse
import logging
import ssl
from pathlib import Path

import cv2


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480), for argparse `type=`."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH, e.g. 640x480") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range 16..4096")
    return width, height


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--dead-after", type=_dead_after, default=4.0, metavar="S",
                        help="declare the link dead when not a byte arrives from the peer for S seconds (default 4; "
                             "raise it for a peer on a machine so loaded that it stalls that long)")


def _dead_after(text: str) -> float:
    value = float(text)
    if not 2.0 <= value <= 120.0:  # the peer pings every second: below 2 s a pong's round trip could trip it
        raise argparse.ArgumentTypeError(f"--dead-after {text}: between 2 and 120 seconds")
    return value


def apply_common_arguments(args: argparse.Namespace) -> None:
    """Logging and OpenCV's thread count, set deliberately so sender and receiver don't fight over cores."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cv2.setNumThreads(args.threads)


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The context to serve wss:// with (--tls-cert/--tls-key), None for ws://."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_tls_context(url: str, cafile: Path | None) -> ssl.SSLContext | None:
    """For wss://: the system's trust store, or `cafile`'s certificate."""
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)
