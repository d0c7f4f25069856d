"""facewire against real video codecs at matched *real* bitrates, every clip of a folder in one run.

    python bench/codec.py ../shared/data/clips [--clips d3,w0] [--frames 300] [--rates 6,8,12,16,24,32,48,64]

facewire is a black box driven through its command line (a list of named configs, each a list of
extra sender arguments):

    facewire-send --input CLIP --identity self --max-frames N --record-stream OUT.fws [--bitrate K] ARGS
    facewire-receive --play-stream OUT.fws --background '#808080' --sink frames:DIR

Its real rate is every byte of the stream file after the header (each record is one message as it
would cross the link, plus its 4-byte length, about what a WebSocket frame header costs) over the
clip's duration. When the sender does not accept --bitrate it runs once per config without a rate;
configs whose flags the sender does not know are skipped (and, when none is left, facewire runs
once with no extra flags); the JSON's `facewire_plan` says which happened.

Codecs (PyAV, one thread, yuv420p, the clip's own size and fps, one pass, no lookahead, a key
frame every --gop-seconds): x264 veryfast/zerolatency, VP9 realtime cpu-used 8 lag 0, SVT-AV1 in
RTC low-delay CBR. Their rate is the bytes of the encoded packets; encoders miss their targets at
these rates, so each codec's rate-distortion curve (over real kbps, interpolated linearly in log
rate, never extrapolated) is read at facewire's real kbps. Frames an encoder drops are shown as
the last decoded one, as a live receiver would.

Quality (bench/quality.py) against the original frames: face-oval SSIM/PSNR on luma, SSIM over the
landmark box, foreground SSIM/PSNR over a #808080 composite (reference alpha: the sender's
`make_matter('auto')` on the original), MediaPipe landmarks re-detected on the decoded frames
(mean px, share of frames with no face), mouth/eye-openness correlation. The originals' landmarks
and alphas are cached per clip in OUT/cache.

Writes OUT/codec.json, OUT/rd_<clip>.png, OUT/rd_all.png, OUT/sbs_<clip>_f<frame>.png (full size)
and OUT/tiles_<clip>.png (face crops), and prints a summary table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder otherwise

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import quality as q  # noqa: E402
from media import read_frames  # noqa: E402
from wstap import packed_frame_head  # noqa: E402

from facewire.shared.process.scheduling import time_shared_threads  # noqa: E402

Image = q.Image
START = time.perf_counter()


@dataclass(frozen=True)
class CodecSpec:
    encoder: str
    decoder: str
    options: dict[str, str]
    scale: float = 1.0  # encode at this share of the clip's size, upscale the decoded frames (what RTC stacks do on thin links)


CODECS: dict[str, CodecSpec] = {
    "x264": CodecSpec("libx264", "h264", {"preset": "veryfast", "tune": "zerolatency"}),
    "vp9": CodecSpec("libvpx-vp9", "libvpx-vp9",
                     {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "row-mt": "0"}),
    # SVT-AV1 allows only CBR in low delay; rtc=1 is its real-time mode (no TPL, no lookahead)
    "svt-av1": CodecSpec("libsvtav1", "libdav1d", {"preset": "10", "svtav1-params": "rtc=1:rc=2:pred-struct=1:lookahead=0"}),
}
# At the clip's own size the encoders cannot go below ~15-60 kbps (their highest quantiser still
# costs ~100-250 B a frame); a real-time stack on a thin link halves the resolution instead, so
# SVT-AV1 at half size (upscaled for judging) is compared too.
CODECS["svt-av1-half"] = replace(CODECS["svt-av1"], scale=0.5)
DEFAULT_CODECS = ("x264", "vp9", "svt-av1", "svt-av1-half")
FACEWIRE_CONFIGS: dict[str, list[str]] = {
    "features": ["--layers", "features"],
    "features+residual": ["--layers", "features+residual"],
}
STREAM_PREFIX = struct.Struct("<4sHI")  # protocol.md §9: magic, version, header length
RECORD_LENGTH = struct.Struct("<I")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- clips and their reference


@dataclass
class Clip:
    name: str
    path: Path
    frames: list[Image]
    fps: float
    points: list[q.Points | None]  # landmarks of the original frames
    alphas: npt.NDArray[np.uint8]  # reference alpha x 255, (N, H, W)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def alpha(self, index: int) -> npt.NDArray[np.float32]:
        return self.alphas[index].astype(np.float32) / 255.0


def load_matter() -> tuple[object, type, str]:
    """The sender's `make_matter('auto')` and its CapturedFrame: the reference matte is the sender's own."""
    from facewire.sender.matte import make_matter
    from facewire.shared.types import CapturedFrame

    return make_matter("auto"), CapturedFrame, "facewire.sender.matte"


def reference(path: Path, frames: list[Image], fps: float, cache_dir: Path) -> tuple[list[q.Points | None], npt.NDArray[np.uint8], str]:
    """Landmarks and reference alphas of the original frames, cached (MediaPipe is the slow part)."""
    import mediapipe

    stat = path.stat()
    key = hashlib.sha1(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{len(frames)}:{mediapipe.__version__}".encode()).hexdigest()[:12]
    cached = cache_dir / f"{path.stem}-{key}.npz"
    if cached.exists():
        data = np.load(cached)
        return [None if np.isnan(p).any() else p for p in data["points"]], data["alphas"], str(data["matte"])
    log(f"{path.stem}: landmarks and reference matte of {len(frames)} original frames (cached after)")
    matter, captured_frame, matte_mod = load_matter()
    points: list[q.Points | None] = []
    alphas = np.empty((len(frames), *frames[0].shape[:2]), np.uint8)
    with q.FaceMesher() as mesher:
        for i, frame in enumerate(frames):
            points.append(mesher.detect(frame))
            alpha = matter.matte(captured_frame(i, round(i * 1e6 / fps), frame))  # type: ignore[attr-defined]
            alphas[i] = np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stacked = np.stack([p if p is not None else np.full((478, 3), np.nan, np.float32) for p in points])
    np.savez_compressed(cached, points=stacked, alphas=alphas, matte=matte_mod)
    return points, alphas, matte_mod


# ---------------------------------------------------------------- systems under test


@dataclass
class Run:
    """One system at one setting on one clip: its real rate and its quality summary."""

    clip: str
    system: str  # "x264", "vp9", "svt-av1" or "facewire:<config>"
    target_kbps: float | None
    real_kbps: float
    ms_per_frame: float  # codecs: encode calls only; facewire: sender process wall time
    metrics: dict[str, float]
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Encoded:
    packets: list[av.Packet]
    extradata: bytes | None  # codec configuration some decoders need before the first packet
    ms_per_frame: float


def encode(frames: list[Image], fps: float, spec: CodecSpec, kbps: float, gop_seconds: float) -> Encoded:
    """One single-pass encode at a target rate (the encoder's own rate control, no lookahead)."""
    height, width = frames[0].shape[:2]
    context = cast(av.VideoCodecContext, av.VideoCodecContext.create(spec.encoder, "w"))
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    rate = Fraction(fps).limit_denominator(1001)
    context.time_base, context.framerate = 1 / rate, rate
    context.thread_count = 1
    context.bit_rate = round(kbps * 1000)
    context.gop_size = max(1, round(gop_seconds * fps))
    context.options = dict(spec.options)
    context.open()
    time_shared_threads()  # SVT-AV1 as root goes real-time and would starve the facewire processes timed beside it
    packets: list[av.Packet] = []
    spent = 0.0
    for index, frame in enumerate(frames):
        video = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
        video.pts = index
        t0 = time.perf_counter()
        packets += context.encode(video)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    packets += context.encode(None)
    spent += time.perf_counter() - t0
    return Encoded(packets, context.extradata, spent * 1000 / len(frames))


def decode(packets: list[av.Packet], extradata: bytes | None, decoder: str, count: int, shape: tuple[int, ...]) -> Iterator[Image]:
    """`count` frames in input order; a frame the encoder dropped repeats the last one decoded."""
    context = cast(av.VideoCodecContext, av.VideoCodecContext.create(decoder, "r"))
    if extradata:
        context.extradata = extradata
    last = np.full(shape, 128, np.uint8)
    emitted = 0
    for packet in [*packets, None]:
        for frame in context.decode(packet):
            pts = frame.pts if frame.pts is not None else emitted
            while emitted < min(pts, count):
                yield last
                emitted += 1
            last = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
            if emitted < count:
                yield last
                emitted += 1
    while emitted < count:
        yield last
        emitted += 1


def judge(clip: Clip, decoded: Iterator[Image], composited: bool, keep: list[int]) -> tuple[dict[str, float], dict[int, Image]]:
    """Quality summary of a decoded sequence, and the frames at the `keep` indices."""
    scores: list[q.FrameScore] = []
    kept: dict[int, Image] = {}
    first_face = next((i for i, p in enumerate(clip.points) if p is not None), -1)
    with q.FaceMesher() as mesher:
        for i, (original, image) in enumerate(zip(clip.frames, decoded, strict=True)):
            if image.shape != original.shape:
                raise ValueError(f"{clip.name}: decoded frame {i} is {image.shape}, original {original.shape}")
            found = mesher.detect(image) if clip.points[i] is not None else None
            scores.append(q.score_frame(original, image, clip.points[i], clip.alpha(i), found, composited, verify=i == first_face))
            if i in keep:
                kept[i] = image
    return q.summarise(scores, clip.points), kept


def resize(image: Image, size: tuple[int, int]) -> Image:
    """To (width, height); area averaging down, bicubic up."""
    if image.shape[1::-1] == size:
        return image
    shrink = size[0] < image.shape[1]
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC), np.uint8)


def run_codec(clip: Clip, name: str, kbps: float, gop_seconds: float, keep: list[int]) -> tuple[Run, dict[int, Image]]:
    spec = CODECS[name]
    height, width = clip.frames[0].shape[:2]
    coded = (2 * round(width * spec.scale / 2), 2 * round(height * spec.scale / 2))  # yuv420p wants even sides
    encoded = encode([resize(f, coded) for f in clip.frames], clip.fps, spec, kbps, gop_seconds)
    size = sum(p.size for p in encoded.packets)
    decoded = decode(encoded.packets, encoded.extradata, spec.decoder, len(clip.frames), (coded[1], coded[0], 3))
    frames = (resize(f, (width, height)) for f in decoded)
    metrics, kept = judge(clip, frames, composited=False, keep=keep)
    real = size * 8 / 1000 / clip.seconds
    return Run(clip.name, name, kbps, real, encoded.ms_per_frame, metrics, {"bytes": size, "packets": len(encoded.packets)}), kept


@dataclass(frozen=True)
class FacewireCli:
    send: list[str]
    receive: list[str]


@dataclass(frozen=True)
class FacewireJob:
    config: str
    args: list[str]
    kbps: float | None


def plan_facewire(help_text: str, configs: dict[str, list[str]], rates: list[float],
                  base_args: list[str] | None = None) -> tuple[list[FacewireJob], list[str]]:
    """The facewire runs the sender's --help allows, and notes on what had to be left out.
    base_args go before every config's (flags the sender does not know are dropped, noted)."""
    def known(flag: str) -> bool:
        return f"{flag} " in help_text or f"{flag}\n" in help_text or f"{flag}=" in help_text or f"{flag}," in help_text

    notes: list[str] = []
    base = list(base_args or [])
    unknown_base = [a for a in base if a.startswith("--") and not known(a)]
    if unknown_base:  # all of them: a flag's value cannot be told from a flag-less argument
        notes.append(f"base sender args {' '.join(base)!r} dropped: the sender does not accept {' '.join(unknown_base)}")
        base = []
    usable = {}
    for name, args in configs.items():
        missing = [a for a in args if a.startswith("--") and not known(a)]
        if missing:
            notes.append(f"config {name!r} skipped: the sender does not accept {' '.join(missing)}")
        else:
            usable[name] = args
    if not usable:
        usable = {"default": []}
        notes.append("no config usable: facewire runs once with no extra flags ('default')")
    if known("--bitrate"):
        return [FacewireJob(n, base + a, r) for n, a in usable.items() for r in rates], notes
    notes.append("the sender has no --bitrate: one run per config at its own rate")
    return [FacewireJob(n, base + a, None) for n, a in usable.items()], notes


@dataclass(frozen=True)
class StreamSize:
    link: int  # bytes after the header: the messages and their 4-byte lengths
    messages: int  # the messages alone
    records: int
    by_type: dict[str, int]  # message bytes per protocol message type (the map's key "t")


def stream_size(path: Path) -> StreamSize:
    """The bytes of a .fws stream file's records (protocol.md §9; every record one msgpack map)."""
    import msgspec

    data = path.read_bytes()
    magic, _version, head_len = STREAM_PREFIX.unpack_from(data)
    if magic != b"FWS\x00":
        raise ValueError(f"{path}: not a facewire stream file")
    offset = STREAM_PREFIX.size + head_len
    link, by_type = len(data) - offset, dict[str, int]()
    records = 0
    while offset < len(data):
        (length,) = RECORD_LENGTH.unpack_from(data, offset)
        record = data[offset + RECORD_LENGTH.size:offset + RECORD_LENGTH.size + length]
        if packed_frame_head(record) is not None:  # a packed frame (protocol.md 2)
            kind = "f"
        else:
            value = msgspec.msgpack.decode(record)
            kind = str(value[0] if isinstance(value, list) else value.get("t", "?"))  # stream messages are arrays
        by_type[kind] = by_type.get(kind, 0) + length
        offset += RECORD_LENGTH.size + length
        records += 1
    return StreamSize(link, sum(by_type.values()), records, by_type)


def run_facewire(clip: Clip, cli: FacewireCli, job: FacewireJob, keep: list[int], env: dict[str, str]) -> tuple[Run, dict[int, Image]]:
    with tempfile.TemporaryDirectory(prefix="fw-bench-") as work:
        stream, frames_dir = Path(work) / "clip.fws", Path(work) / "frames"
        rate = ["--bitrate", f"{job.kbps:g}"] if job.kbps is not None else []
        send = [*cli.send, "--input", str(clip.path), "--identity", "self", "--max-frames", str(len(clip.frames)),
                "--record-stream", str(stream), "--log-level", "ERROR", *rate, *job.args]
        t0 = time.perf_counter()
        subprocess.run(send, check=True, capture_output=True, env=env)
        wall_ms = (time.perf_counter() - t0) * 1000 / len(clip.frames)
        subprocess.run([*cli.receive, "--play-stream", str(stream), "--background", "#808080",
                        "--sink", f"frames:{frames_dir}", "--log-level", "ERROR"], check=True, capture_output=True, env=env)
        size = stream_size(stream)
        pngs = sorted(frames_dir.glob("*.png"))
        if len(pngs) != len(clip.frames):
            raise RuntimeError(f"{clip.name}: facewire wrote {len(pngs)} frames for {len(clip.frames)} input frames")
        decoded = (np.asarray(cv2.imread(str(p), cv2.IMREAD_COLOR), np.uint8) for p in pngs)
        metrics, kept = judge(clip, decoded, composited=True, keep=keep)
    kbps = 8 / 1000 / clip.seconds
    real = size.link * kbps
    extra = {"bytes": size.link, "message_bytes": size.messages, "records": size.records,
             "kbps_by_type": {k: round(v * kbps, 2) for k, v in sorted(size.by_type.items())}}
    return Run(clip.name, f"facewire:{job.config}", job.kbps, real, wall_ms, metrics, extra), kept


# ---------------------------------------------------------------- comparison


def curve(runs: list[Run], clip: str, system: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(real kbps, face SSIM) of one codec on one clip, sorted by rate."""
    pts = sorted((r.real_kbps, r.metrics["face_ssim"]) for r in runs if r.clip == clip and r.system == system)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def interpolate(kbps: npt.NDArray[np.float64], ssim: npt.NDArray[np.float64], at: float) -> float | None:
    """SSIM at `at` kbps, linear in log rate; None outside the measured range (no extrapolation)."""
    if len(kbps) == 0 or not kbps[0] <= at <= kbps[-1]:
        return None
    return float(np.interp(math.log(at), np.log(kbps), ssim))


def verdict(fw_kbps: float, fw_ssim: float, kbps: npt.NDArray[np.float64], ssim: npt.NDArray[np.float64]) -> str:
    """facewire against one codec's curve: better/worse at equal rate, or what the range allows."""
    at = interpolate(kbps, ssim, fw_kbps)
    if at is not None:
        return "better" if fw_ssim > at else "worse"
    if len(kbps) and fw_kbps < kbps[0]:
        return "better (below codec's range)" if fw_ssim >= ssim[0] else "n/a (below codec's range)"
    if len(kbps) and fw_ssim <= ssim.max():
        return "worse (codec is better at a lower rate)"
    return "n/a (above codec's range)"


def comparisons(runs: list[Run], codecs: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for fw in (r for r in runs if r.system.startswith("facewire")):
        row: dict[str, object] = {"clip": fw.clip, "facewire": fw.system, "target_kbps": fw.target_kbps,
                                  "real_kbps": round(fw.real_kbps, 2), "face_ssim": round(fw.metrics["face_ssim"], 4)}
        for name in codecs:
            kbps, ssim = curve(runs, fw.clip, name)
            at = interpolate(kbps, ssim, fw.real_kbps)
            row[f"{name}_ssim"] = None if at is None else round(at, 4)
            row[f"{name}_verdict"] = verdict(fw.real_kbps, fw.metrics["face_ssim"], kbps, ssim)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, object]], codecs: list[str]) -> None:
    """facewire's points against each codec's SSIM at the same real rate ('-': outside its range)."""
    def cell(value: object, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    if not rows:
        print("no facewire runs to compare")
        return
    print(f"{'clip':8} {'facewire':24} {'target':>6} {'kbps':>7} {'SSIM':>6} " + " ".join(f"{c + '@kbps':>13}" for c in codecs)
          + "  verdict per codec")
    for r in rows:
        cells = " ".join(f"{cell(r[f'{c}_ssim'], '.4f'):>13}" for c in codecs)
        verdicts = "; ".join(f"{c}: {r[f'{c}_verdict']}" for c in codecs)
        print(f"{r['clip']!s:8} {r['facewire']!s:24} {cell(r['target_kbps'], 'g'):>6} {cell(r['real_kbps'], '.1f'):>7} "
              f"{cell(r['face_ssim'], '.4f'):>6} {cells}  {verdicts}")


# ---------------------------------------------------------------- pictures


def label(image: Image, text: str, scale: float = 0.6) -> Image:
    out = image.copy()
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (6, int(22 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
    return out


def face_crop(image: Image, points: q.Points, side: int = 160) -> Image:
    """A square of `side` px around the face (its landmark box plus 20% each side)."""
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.7
    s = side / (2 * half)
    matrix = np.array([[s, 0, side / 2 - s * centre[0]], [0, s, side / 2 - s * centre[1]]])
    return np.asarray(cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderValue=(0, 0, 0)), np.uint8)


def nearest_runs(runs: list[Run], clip: str, kbps: float) -> list[Run]:
    """Per system, the run whose real rate is nearest `kbps` (in log rate)."""
    best: dict[str, Run] = {}
    for r in (r for r in runs if r.clip == clip):
        if r.system not in best or abs(math.log(r.real_kbps / kbps)) < abs(math.log(best[r.system].real_kbps / kbps)):
            best[r.system] = r
    return sorted(best.values(), key=lambda r: (r.system.startswith("facewire"), r.system))


def write_pictures(clip: Clip, runs: list[Run], kept: dict[tuple[str, float | None], dict[int, Image]], show: list[int],
                   kbps: float, out: Path) -> list[str]:
    chosen = nearest_runs(runs, clip.name, kbps)
    written: list[str] = []
    tiles = []
    for i in show:
        panels = [label(clip.frames[i], "original")] + [
            label(kept[(r.system, r.target_kbps)][i], f"{r.system} {r.real_kbps:.1f} kbps") for r in chosen]
        path = out / f"sbs_{clip.name}_f{i:04d}.png"
        cv2.imwrite(str(path), np.hstack(panels))
        written.append(path.name)
        points = clip.points[i]
        if points is not None:
            crops = [face_crop(clip.frames[i], points)] + [face_crop(kept[(r.system, r.target_kbps)][i], points) for r in chosen]
            tiles.append(np.hstack(crops))
    if tiles:
        names = ["original"] + [f"{r.system.replace('facewire:', 'fw:')} {r.real_kbps:.0f}k" for r in chosen]
        header = np.hstack([label(np.zeros((28, 160, 3), np.uint8), n, 0.4) for n in names])
        path = out / f"tiles_{clip.name}.png"
        cv2.imwrite(str(path), np.vstack([header, *tiles]))
        written.append(path.name)
    return written


def plot_rd(runs: list[Run], clips: list[str], codecs: list[str], path: Path, title: str, floor: float | None = None) -> None:
    """Face SSIM against real kbps: a line per codec, facewire's points marked. With several clips,
    codecs are the mean of their per-clip curves (on rates every clip covers), facewire the mean point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name in codecs:
        curves = [curve(runs, c, name) for c in clips]
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        if len(curves) == 1:
            x, y = curves[0]
        else:
            lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
            if lo >= hi:
                continue
            x = np.geomspace(lo, hi, 40)
            y = np.asarray(np.mean([np.interp(np.log(x), np.log(c[0]), c[1]) for c in curves], axis=0))
        ax.plot(x, y, marker="o" if len(curves) == 1 else None, label=name)
    systems = sorted({r.system for r in runs if r.system.startswith("facewire")})
    for system in systems:
        groups: dict[float | None, list[Run]] = {}
        for r in runs:
            if r.system == system and r.clip in clips:
                groups.setdefault(r.target_kbps, []).append(r)
        xs = [float(np.mean([r.real_kbps for r in g])) for g in groups.values()]
        ys = [float(np.mean([r.metrics["face_ssim"] for r in g])) for g in groups.values()]
        ax.scatter(xs, ys, marker="*", s=160, zorder=5, label=system)
        for px, py, target in zip(xs, ys, groups, strict=True):
            note = f"{px:.0f}k" if target is None else f"@{target:g}k"
            ax.annotate(note, (px, py), textcoords="offset points", xytext=(6, -10), fontsize=8)
    if floor is not None and math.isfinite(floor):
        ax.axhline(floor, color="grey", linestyle=":", label=f"flat grey picture ({floor:.2f})")
    ax.set_xscale("log")
    ax.set_xlabel("real kbps (log)")
    ax.set_ylabel("face-region SSIM (luma)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- one clip, the run


@dataclass(frozen=True)
class Settings:
    frames: int
    rates: list[float]
    codecs: list[str]
    facewire_jobs: list[FacewireJob]
    cli: FacewireCli
    gop_seconds: float
    show_kbps: float
    show_frames: int
    out: Path
    cache: Path | None = None  # the originals' landmarks and alphas (default OUT/cache)
    codec_runs: list[Run] = field(default_factory=list)  # codec runs reused from an earlier codec.json

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.out / "cache"


def load_codec_runs(path: Path, frames: int) -> list[Run]:
    """The codec runs of an earlier codec.json (its facewire runs are left out), refused when it scored
    another number of frames: a curve is only comparable on the same frames."""
    report = json.loads(path.read_text())
    if report["settings"]["frames"] != frames:
        raise ValueError(f"{path} scored {report['settings']['frames']} frames per clip, this run {frames}")
    return [Run(**r) for r in report["runs"] if not str(r["system"]).startswith("facewire")]


def flat_floor(clip: Clip) -> float:
    """Face SSIM of a plain #808080 picture: smooth skin forgives a lot, so this is where 'no face at all' scores."""
    shape = (clip.frames[0].shape[0], clip.frames[0].shape[1])
    flat = np.full(shape, q.GREY)
    scores = [q.region_score(q.luma(f), flat, q.face_oval_mask(p, shape)) for f, p in zip(clip.frames, clip.points, strict=True)
              if p is not None]
    return float(np.mean([s.ssim for s in scores if s is not None])) if scores else float("nan")


def show_indices(points: list[q.Points | None], count: int) -> list[int]:
    """`count` frames spread over the clip, each with a face on the original."""
    with_face = [i for i, p in enumerate(points) if p is not None]
    if not with_face:
        return []
    picks = np.linspace(0, len(with_face) - 1, count + 2)[1:-1]
    return sorted({with_face[round(p)] for p in picks})


def run_clip(path: Path, settings: Settings) -> tuple[list[Run], dict[str, object]]:
    cv2.setNumThreads(1)
    frames, fps = read_frames(path, settings.frames)
    points, alphas, matte_mod = reference(path, frames, fps, settings.cache_dir)
    clip = Clip(path.stem, path, frames, fps, points, alphas)
    show = show_indices(points, settings.show_frames)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs: list[Run] = []
    kept: dict[tuple[str, float | None], dict[int, Image]] = {}

    def done(run: Run, frames_kept: dict[int, Image]) -> None:
        runs.append(run)
        kept[(run.system, run.target_kbps)] = frames_kept
        target = "own rate" if run.target_kbps is None else f"{run.target_kbps:g} kbps"
        log(f"{clip.name} {run.system} {target}: real {run.real_kbps:.1f} kbps, face SSIM {run.metrics['face_ssim']:.4f}, "
            f"{run.ms_per_frame:.1f} ms/frame")

    for job in settings.facewire_jobs:
        log(f"{clip.name} facewire:{job.config} {'own rate' if job.kbps is None else f'{job.kbps:g} kbps'} ...")
        done(*run_facewire(clip, settings.cli, job, show, env))
    reused = {(r.system, r.target_kbps): r for r in settings.codec_runs if r.clip == clip.name}
    for name in settings.codecs:
        for kbps in settings.rates:
            if (name, kbps) in reused:
                runs.append(reused[(name, kbps)])
                continue
            log(f"{clip.name} {name} {kbps:g} kbps ...")
            done(*run_codec(clip, name, kbps, settings.gop_seconds, show))
    for run in nearest_runs(runs, clip.name, settings.show_kbps):
        if (run.system, run.target_kbps) not in kept and run.target_kbps is not None:  # a reused run: its pictures again
            kept[(run.system, run.target_kbps)] = run_codec(clip, run.system, run.target_kbps, settings.gop_seconds, show)[1]
    pictures = write_pictures(clip, runs, kept, show, settings.show_kbps, settings.out)
    floor = flat_floor(clip)
    plot_rd(runs, [clip.name], settings.codecs, settings.out / f"rd_{clip.name}.png",
            f"{clip.name}: {frames[0].shape[1]}x{frames[0].shape[0]}, {len(frames)} frames at {fps:.2f} fps", floor)
    mouth, eyes = zip(*[q.openness(p) for p in points if p is not None], strict=True) if any(p is not None for p in points) else ((), ())
    info = {"clip": clip.name, "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "frames": len(frames), "fps": fps,
            "frames_with_face": sum(p is not None for p in points), "reference_matte": matte_mod,
            "flat_face_ssim": floor,
            # correlations mean little when the original hardly moves: these are its spreads
            "mouth_openness_std": float(np.std(mouth)) if mouth else None, "eye_openness_std": float(np.std(eyes)) if eyes else None,
            "pictures": pictures, "rd_plot": f"rd_{clip.name}.png"}
    return runs, info


def machine() -> dict[str, object]:
    from importlib.metadata import version

    def long_name(name: str, mode: Literal["r", "w"]) -> str:
        return f"{name}:{mode} " + av.codec.Codec(name, mode).long_name

    codecs = [long_name(s.encoder, "w") for s in CODECS.values()] + [long_name(s.decoder, "r") for s in CODECS.values()]
    packages = ("av", "numpy", "opencv-contrib-python", "mediapipe", "scikit-image", "matplotlib")
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in packages}, "cv2": cv2.__version__,
            "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "codecs": codecs, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def default_cli(name: str) -> list[str]:
    beside = Path(sys.executable).parent / name
    return [str(beside)] if beside.exists() else [shutil.which(name) or name]


def parse_config(text: str) -> tuple[str, list[str]]:
    name, _, args = text.partition("=")
    return name, shlex.split(args)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="?", default=Path("../shared/data/clips"), help="folder of clips (*.mp4)")
    parser.add_argument("--clips", default="", help="comma-separated clip names in DIR (default: all)")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip from the start (whole clip up to this cap)")
    parser.add_argument("--rates", type=floats, default=floats("6,8,12,16,24,32,48,64"), help="codec target kbps")
    parser.add_argument("--facewire-rates", type=floats, default=floats("4,8,16,32"), help="facewire --bitrate values")
    parser.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help=f"any of {','.join(CODECS)}")
    parser.add_argument("--facewire-config", action="append", metavar="NAME=ARGS",
                        help="a facewire config: extra sender args (repeatable; default: "
                             + "; ".join(f"{k}={' '.join(v)}" for k, v in FACEWIRE_CONFIGS.items()) + ")")
    parser.add_argument("--send-cmd", type=shlex.split, default=default_cli("facewire-send"), help="sender command line")
    parser.add_argument("--receive-cmd", type=shlex.split, default=default_cli("facewire-receive"), help="receiver command line")
    parser.add_argument("--send-args", type=shlex.split, default=[], help="sender args before every config's")
    parser.add_argument("--no-facewire", action="store_true", help="codecs only")
    parser.add_argument("--gop-seconds", type=float, default=10.0, help="codec key-frame interval")
    parser.add_argument("--show-kbps", type=float, default=16.0, help="rate of the side-by-side pictures")
    parser.add_argument("--show-frames", type=int, default=3, help="side-by-side frames per clip")
    parser.add_argument("--out", type=Path, default=Path("out/bench/codec"))
    parser.add_argument("--cache", type=Path, help="the originals' landmarks and alphas (default OUT/cache)")
    parser.add_argument("--codec-runs", type=Path, metavar="CODEC_JSON",
                        help="reuse the codec runs of an earlier codec.json (same --frames); only missing ones are run")
    parser.add_argument("--jobs", type=int, default=1, help="clips in parallel (the machine has 2 cores)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)

    wanted = set(args.clips.split(",")) - {""}
    paths = sorted(p for p in args.dir.glob("*.mp4") if not wanted or p.stem in wanted)
    if not paths:
        parser.error(f"no clips in {args.dir}" + (f" named {sorted(wanted)}" if wanted else ""))
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = set(codecs) - set(CODECS)
    if unknown:
        parser.error(f"unknown codecs {sorted(unknown)}")
    cli = FacewireCli(args.send_cmd, args.receive_cmd)
    configs = dict(parse_config(c) for c in args.facewire_config) if args.facewire_config else FACEWIRE_CONFIGS
    notes: list[str] = []
    jobs: list[FacewireJob] = []
    if not args.no_facewire:
        help_text = subprocess.run([*cli.send, "--help"], capture_output=True, text=True, check=True).stdout
        jobs, notes = plan_facewire(help_text, configs, args.facewire_rates, args.send_args)
        for note in notes:
            log(f"facewire: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    reused = load_codec_runs(args.codec_runs, args.frames) if args.codec_runs else []
    settings = Settings(args.frames, args.rates, codecs, jobs, cli, args.gop_seconds, args.show_kbps, args.show_frames, args.out,
                        args.cache, reused)

    runs: list[Run] = []
    infos: list[dict[str, object]] = []
    report: dict[str, object] = {}

    def save() -> None:
        report.update({
            "machine": machine(),
            "settings": {"dir": str(args.dir), "frames": args.frames, "rates": args.rates, "gop_seconds": args.gop_seconds,
                         "codecs": {c: {**asdict(CODECS[c]), "pix_fmt": "yuv420p", "threads": 1, "rate_control": "bit_rate=target"}
                                    for c in codecs},
                         "codec_runs_from": None if args.codec_runs is None else str(args.codec_runs),
                         "facewire_cli": asdict(cli), "facewire_send_args": args.send_args,
                         "facewire_configs": configs, "facewire_rates": args.facewire_rates,
                         "facewire_plan": {"runs": [asdict(j) for j in jobs], "notes": notes},
                         "real_kbps": "codecs: packet bytes; facewire: stream file bytes after its header (messages + 4-byte lengths)",
                         "quality": "bench/quality.py (module docstring)"},
            "clips": infos, "runs": [asdict(r) for r in runs], "comparison": comparisons(runs, codecs)})
        (args.out / "codec.json").write_text(json.dumps(report, indent=1, default=float))

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for clip_runs, info in pool.map(run_clip, paths, [settings] * len(paths)):
                runs += clip_runs
                infos.append(info)
                save()
    else:
        for path in paths:
            clip_runs, info = run_clip(path, settings)
            runs += clip_runs
            infos.append(info)
            save()
    floors = [float(i["flat_face_ssim"]) for i in infos]  # type: ignore[arg-type]
    plot_rd(runs, [str(i["clip"]) for i in infos], codecs, args.out / "rd_all.png", f"{len(infos)} clips: mean face SSIM",
            float(np.mean(floors)))
    save()
    print_table(report["comparison"], codecs)  # type: ignore[arg-type]
    log(f"wrote {args.out / 'codec.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
