"""Argument parsers both command-line tools share."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480), for argparse `type=`."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH, e.g. 640x480") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range 16..4096")
    return width, height
