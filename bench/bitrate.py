"""Bitrate of facewire's link against x264 and SVT-AV1 on the same clips, in the same run.

    .venv/bin/python bench/bitrate.py --clips ../shared/data/clips/*.mp4 --frames 150

facewire: the clip is recorded with `facewire-send --record-stream` and every byte of every
message is counted (identity, keyframes, frames, msgpack headers), split by message type.
Codecs: the same frames encoded with PyAV's libx264 and libsvtav1 at several CRFs (yuv420p,
one thread each, preset as given); bytes are the encoded packets, PSNR is measured on the
decoded frames. facewire regenerates the picture, so PSNR is not comparable with it; what
compares is the rate at which each gives a watchable picture. Writes JSON (default
out/bench/bitrate.json).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from media import read_frames

from facewire.shared.process.scheduling import time_shared_threads
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader

CODECS = {"libx264": ("x264", ["18", "23", "28", "35"], {"preset": "medium"}),
          "libsvtav1": ("svt-av1", ["30", "40", "50", "58"], {"preset": "8"})}


def encode(frames: list[np.ndarray], fps: float, codec: str, crf: str, options: dict[str, str]) -> tuple[int, float]:
    """Bytes of the encoded stream and mean PSNR (dB, on BGR) of its decoded frames."""
    height, width = frames[0].shape[:2]
    context = cast(av.VideoCodecContext, av.VideoCodecContext.create(codec, "w"))
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, round(fps))
    context.framerate = Fraction(round(fps))
    context.thread_count = 1
    context.options = {"crf": crf, **options}
    context.open()
    time_shared_threads()  # SVT-AV1 as root goes real-time (shared/process/scheduling.py)
    packets: list[av.Packet] = []
    for index, frame in enumerate(frames):
        video = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
        video.pts = index
        packets += context.encode(video)
    packets += context.encode(None)
    size = sum(packet.size for packet in packets)
    decoder = cast(av.VideoCodecContext, av.VideoCodecContext.create("libdav1d" if codec == "libsvtav1" else "h264", "r"))
    if context.extradata:
        decoder.extradata = context.extradata
    decoded = []
    for packet in packets:
        decoded += [f.to_ndarray(format="bgr24") for f in decoder.decode(packet)]
    decoded += [f.to_ndarray(format="bgr24") for f in decoder.decode(None)]
    psnr = float(np.mean([cv2.PSNR(a, b) for a, b in zip(frames, decoded, strict=False)]))
    return size, psnr


def facewire(clip: Path, frames: int, matte: str, identity: str | None) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as work:
        stream = Path(work) / "clip.fws"
        command = [sys.executable, "-m", "facewire.sender.cli", "--input", str(clip), "--record-stream", str(stream),
                   "--max-frames", str(frames), "--matte", matte, "--log-level", "ERROR"]
        if identity:
            command += ["--identity", identity]
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        by_type: collections.Counter[str] = collections.Counter()
        with StreamReader(stream) as reader:
            for raw in reader.raw():
                by_type[type(m.decode(raw)).__name__] += len(raw)
    return dict(by_type)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", type=Path, default=sorted(Path("../shared/data/clips").glob("*.mp4")))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--matte", default="auto")
    parser.add_argument("--identity", help="avatar image (its one-time upload is counted)")
    parser.add_argument("--output", type=Path, default=Path("out/bench/bitrate.json"))
    args = parser.parse_args()
    results = []
    for clip in args.clips:
        frames, fps = read_frames(clip, args.frames)
        seconds = len(frames) / fps
        row: dict[str, object] = {"clip": clip.name, "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                                  "frames": len(frames), "fps": round(fps, 2)}
        sizes = facewire(clip, len(frames), args.matte, args.identity)
        row["facewire_kbps"] = round(sum(sizes.values()) * 8 / 1000 / seconds, 1)
        row["facewire_kbps_by_type"] = {k: round(v * 8 / 1000 / seconds, 1) for k, v in sorted(sizes.items())}
        for codec, (label, crfs, options) in CODECS.items():
            for crf in crfs:
                size, psnr = encode(frames, fps, codec, crf, options)
                row[f"{label}_crf{crf}"] = {"kbps": round(size * 8 / 1000 / seconds, 1), "psnr_db": round(psnr, 2)}
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "av": av.__version__},
        "settings": {"frames": args.frames, "matte": args.matte, "identity": args.identity,
                     "codecs": {k: {"crfs": v[1], **v[2], "pix_fmt": "yuv420p", "threads": 1} for k, v in CODECS.items()}},
        "clips": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
