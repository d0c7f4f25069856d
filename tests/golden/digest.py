"""Digest of what facewire sends and shows for a fixed input: every message (timestamps aside) and every
output frame, as sha256. `tests/test_golden.py` compares today's code with a stored digest, so a change
that should not alter the stream (a restructuring) is proven not to.

It drives the command-line programs in subprocesses (`python -m PREFIX.sender.cli ...`), so the same
script digests code whose import names differ: `--prefix ''` for a tree before the `facewire.` names.

    python tests/golden/digest.py OUT.json [--prefix facewire.]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import msgspec
import numpy as np

FRAMES = 12
SIZE = "256x256"
TIMESTAMP_FIELDS = {"ts_us", "created_us"}


def write_input(directory: Path) -> Path:
    """The demo's moving astronaut, generated here so the digest does not depend on facewire's own code."""
    import math

    import skimage.data

    base = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    directory.mkdir(parents=True)
    for index in range(FRAMES):
        t = index / 30.0
        matrix = cv2.getRotationMatrix2D((256.0, 153.6), 6.0 * math.sin(2 * math.pi * t / 3.0), 1.0 + 0.05 * math.sin(t))
        matrix[0, 2] += 14.0 * math.sin(2 * math.pi * t / 2.5)
        cv2.imwrite(str(directory / f"{index:05d}.png"), cv2.warpAffine(base, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT))
    return directory


def records(path: Path) -> list[bytes]:
    """The messages of a stream file (magic, u16 version, u32 header length, header, then u32-prefixed records)."""
    data = path.read_bytes()
    _, _, head = struct.unpack_from("<4sHI", data)
    offset, out = 10 + head, []
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        out.append(data[offset + 4: offset + 4 + length])
        offset += 4 + length
    return out


def normalised(raw: bytes) -> dict[str, object] | list[object]:
    """A message with its wall-clock timestamps zeroed (stream messages, arrays, carry only relative times; a
    packed frame, protocol.md 2, whose head byte is 0b0110_0ffi, is taken whole)."""
    if raw[:1] and raw[0] & 0xF8 == 0x60:
        return ["f", raw.hex()]
    message = msgspec.msgpack.decode(raw)
    if isinstance(message, list):
        return message
    return {key: (0 if key in TIMESTAMP_FIELDS else value) for key, value in message.items()}


def digest(prefix: str, avatar: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = write_input(work / "in")
        stream, shown = work / "s.fws", work / "out"

        def run(module: str, *args: str) -> None:
            subprocess.run([sys.executable, "-m", f"{prefix}{module}", *args], check=True, capture_output=True,
                           env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})

        run("sender.cli", "--input", str(frames), "--record-stream", str(stream), "--size", SIZE, "--identity", avatar)
        run("receiver.cli", "--play-stream", str(stream), "--background", "#808080", "--sink", f"frames:{shown}")
        messages = [normalised(raw) for raw in records(stream)]
        pictures = [cv2.imread(str(p)) for p in sorted(shown.glob("*.png"))]
    return {
        "messages": [{"t": m[0] if isinstance(m, list) else m["t"], "sha256": hashlib.sha256(msgspec.msgpack.encode(m)).hexdigest()}
                     for m in messages],
        "frames": [{"sha256": hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest(), "mean": round(float(p.mean()), 3)}
                   for p in pictures],
    }


def avatar_sample() -> str:
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--prefix", default="facewire.")
    args = parser.parse_args()
    result = {"self": digest(args.prefix, "self"), "avatar": digest(args.prefix, avatar_sample())}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
