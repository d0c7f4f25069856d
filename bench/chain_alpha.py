"""Alpha through the whole chain on a green-screen clip, against an independent clean-plate key.

    .venv/bin/python bench/chain_alpha.py --clip ../shared/data/clips/d0.mp4

Records the clip with `facewire-send --matte chroma` (or --matte), plays the stream twice with
`facewire-receive` over black and over white, recovers the alpha that reached the receiver
(alpha = 1 - (C_white - C_black) / 255) and compares it with a reference key computed here
from the original frames by a different method (a per-pixel clean plate from the frames'
green pixels, then a colour-difference key against it). Also composites over magenta and
measures green spill on the edge band. Writes JSON and a PNG sheet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from media import read_frames

F32 = npt.NDArray[np.float32]


def reference_keys(frames: list[npt.NDArray[np.uint8]]) -> list[F32]:
    """Clean-plate colour-difference key, independent of facewire's keyer."""
    stack = np.stack(frames).astype(np.float32)
    b, g, r = stack[..., 0], stack[..., 1], stack[..., 2]
    screen = g - np.maximum(r, b)
    confident = screen > 0.6 * np.percentile(screen, 95)
    plate = np.where(confident[..., None], stack, np.nan)
    plate = np.nanmedian(plate, axis=0)
    missing = np.isnan(plate[..., 0])
    if missing.any():
        # Fill plate holes (always covered by the person) from the nearest known plate pixels.
        fill = cv2.inpaint(np.nan_to_num(plate).clip(0, 255).astype(np.uint8), missing.astype(np.uint8), 15,
                           cv2.INPAINT_TELEA).astype(np.float32)
        plate[missing] = fill[missing]
    plate_diff = np.maximum(plate[..., 1] - np.maximum(plate[..., 0], plate[..., 2]), 1.0)
    keys = []
    for frame in stack:
        diff = frame[..., 1] - np.maximum(frame[..., 0], frame[..., 2])
        keys.append(np.clip(1.0 - diff / plate_diff, 0.0, 1.0).astype(np.float32))
    return keys


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def chain(clip: Path, frames: int, matte: str, work: Path, send_args: list[str]) -> tuple[list[F32], list[npt.NDArray[np.uint8]]]:
    stream = work / "clip.fws"
    run([sys.executable, "-m", "facewire.sender.cli", "--input", str(clip), "--record-stream", str(stream),
         "--max-frames", str(frames), "--matte", matte, "--log-level", "ERROR", *send_args])
    outputs = {}
    for name, colour in (("black", "#000000"), ("white", "#ffffff"), ("magenta", "#ff00ff")):
        run([sys.executable, "-m", "facewire.receiver.cli", "--play-stream", str(stream), "--sink", f"frames:{work / name}",
             "--background", colour, "--log-level", "ERROR"])
        outputs[name] = [cv2.imread(str(p)) for p in sorted((work / name).glob("*.png"))]
    alphas = [np.clip(1.0 - (w.astype(np.float32) - k.astype(np.float32)).mean(axis=2) / 255.0, 0, 1)
              for w, k in zip(outputs["white"], outputs["black"], strict=True)]
    return alphas, outputs["magenta"]


def spill(over_magenta: npt.NDArray[np.uint8], alpha: F32) -> float:
    """Mean green excess (G - max(R, B), 0..255) on the soft edge band of a composite over magenta."""
    band = (alpha > 0.05) & (alpha < 0.95)
    if not band.any():
        return 0.0
    pixels = over_magenta[band].astype(np.float32)
    return float(np.clip(pixels[:, 1] - np.maximum(pixels[:, 0], pixels[:, 2]), 0, None).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/clips/d0.mp4"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--matte", default="chroma")
    parser.add_argument("--output", type=Path, default=Path("out/bench/chain_alpha.json"))
    parser.add_argument("--send-args", type=shlex.split, default=[], help="more sender arguments, e.g. '--bitrate 16'")
    args = parser.parse_args()
    originals, _ = read_frames(args.clip, args.frames)
    references = reference_keys(originals)
    with tempfile.TemporaryDirectory() as work:
        received, magenta = chain(args.clip, args.frames, args.matte, Path(work), args.send_args)
    ious, mads, spills = [], [], []
    for reference, alpha, composite in zip(references, received, magenta, strict=True):
        ref_mask, got_mask = reference > 0.5, alpha > 0.5
        ious.append(float((ref_mask & got_mask).sum() / max((ref_mask | got_mask).sum(), 1)))
        mads.append(float(np.abs(reference - alpha).mean()))
        spills.append(spill(composite, alpha))
    report: dict[str, object] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"clip": str(args.clip), "frames": len(received), "matte": args.matte, "send_args": args.send_args},
        "iou_mean": round(float(np.mean(ious)), 4), "iou_min": round(float(np.min(ious)), 4),
        "mad_mean": round(float(np.mean(mads)), 4), "mad_max": round(float(np.max(mads)), 4),
        "edge_green_excess_mean": round(float(np.mean(spills)), 2),
        "targets": {"iou": 0.93, "mad": 0.04},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    middle = len(received) // 2
    sheet = np.hstack([originals[middle], cv2.cvtColor((references[middle] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR),
                       cv2.cvtColor((received[middle] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), magenta[middle]])
    cv2.imwrite(str(args.output.with_suffix(".png")), sheet)
    print(json.dumps(report, indent=2))
    return 0 if float(np.mean(ious)) >= 0.93 and float(np.mean(mads)) <= 0.04 else 1


if __name__ == "__main__":
    sys.exit(main())
