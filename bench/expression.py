"""The expression code measured: through the real path, and held out.

    .venv/bin/python bench/expression.py [--clips ../shared/data/clips] [--bitrate 16] [--loo]

Real path (every clip in --clips): `facewire-send --input CLIP --identity self --bitrate KBPS
--record-stream`, then the stream file read back and decoded with the receiver's FrameDecoder. For
each frame the sender sent: the face code's bytes (its payload, header byte included) and the whole
`frame` message's; the decoded landmarks against the tracker's own for that input frame (the
sender's tracker run here the same way, cached by bench/build_basis.py), mean 2-D distance over the
478 points scaled to a 512-px frame (mean and p95 over frames); eye and mouth openness correlation
(facewire.shared.face.measures); setups and keyframe codes. The same accuracy `as_shown`: at every
input frame from the first decoded, what the player shows (a skipped frame holds the one before), so
the frames the rate control skipped count too. The shipped basis was built on the project's clips, so
on them these figures are *in-sample*.

CPU: the preparer (neutral estimate, quantisation), the send-time encoder and the decoder, timed per
frame in this process on the tracker's landmarks of every frame (one thread).

--loo: the held-out figures. For each clip a basis is built on the other clips (bench/build_basis.py's
build, same settings) and the clip's every frame runs through preparer -> encoder -> decoder in this
process (an intra frame every 150, nothing skipped), as R1's leave-one-out evaluation did.

Writes JSON (machine, settings, commit, per clip and summary) to --out.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from build_basis import BuildConfig, ClipTrack, build, provenance_of, track_clip, tracker_sha256

from facewire.shared.codec.expression.basis import ExpressionBasis, shipped_basis
from facewire.shared.codec.expression.field import CAPABILITY, ExpressionDecoder, ExpressionEncoder, ExpressionPreparer
from facewire.shared.codec.frames import FrameDecoder
from facewire.shared.codec.seam import CodedFrame, FrameDraft
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio
from facewire.shared.face.pose import head_pose
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader

F64 = npt.NDArray[np.float64]
ROOT = Path(__file__).resolve().parent.parent
INTRA_EVERY = 150
_IMAGE = np.zeros((2, 2, 3), np.uint8)


@dataclass
class Decoded:
    """What the receiver drew for the frames the sender sent: input frame index -> landmarks."""

    landmarks: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)
    code_bytes: list[int] = field(default_factory=list)
    frame_bytes: list[int] = field(default_factory=list)
    intra: int = 0
    setup_bytes: list[int] = field(default_factory=list)
    keyframe_code_bytes: list[int] = field(default_factory=list)
    file_bytes: int = 0
    seconds: float = 0.0
    decode_ms: list[float] = field(default_factory=list)  # the receiver's FrameDecoder.decode_frame


def record(clip: Path, out: Path, kbps: float) -> None:
    command = [str(ROOT / ".venv" / "bin" / "facewire-send"), "--input", str(clip), "--identity", "self",
               "--bitrate", f"{kbps:g}", "--record-stream", str(out), "--log-level", "WARNING"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def read_stream(path: Path) -> Decoded:
    out = Decoded(file_bytes=path.stat().st_size)
    with StreamReader(path) as reader:
        codes = list(reader.header.codes)
        if CAPABILITY not in codes:
            raise SystemExit(f"{path}: the stream uses {codes}, not the expression code")
        face = codes.index(CAPABILITY)
        fps = reader.header.fps
        decoder = FrameDecoder(codes)
        start: int | None = None
        keyframe_ts: dict[int, int] = {}
        last = 0
        for raw in reader.raw():
            message = m.decode(raw)
            if isinstance(message, m.Setup):
                decoder.setup(message)
                out.setup_bytes.append(len(message.payload))
            elif isinstance(message, m.Keyframe):
                keyframe_ts[message.kf] = message.ts_us
                start = message.ts_us if start is None else start
                if message.landmarks is not None:
                    out.keyframe_code_bytes.append(len(message.landmarks))
                decoder.decode_keyframe(message)
            elif isinstance(message, m.KeyframePart):
                decoder.decode_part(message)
            elif isinstance(message, m.Frame):
                t0 = time.perf_counter()
                state = decoder.decode_frame(message)
                out.decode_ms.append((time.perf_counter() - t0) * 1e3)
                payload = message.codes[face]
                assert start is not None and payload is not None and state.landmarks is not None
                index = round((keyframe_ts[message.kf] + message.dt_ms * 1000 - start) * fps / 1e6)
                out.landmarks[index] = state.landmarks
                out.code_bytes.append(len(payload))
                out.frame_bytes.append(len(raw))
                out.intra += bool(payload[0] & 0x10)
                last = max(last, index)
        out.seconds = (last + 1) / fps
    return out


def _corr(a: F64, b: F64) -> float | None:
    return None if np.std(a) < 1e-9 or np.std(b) < 1e-9 else float(np.corrcoef(a, b)[0, 1])


def signals(points: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    p = points.astype(np.float64)
    return eye_open_ratio(p, "right"), eye_open_ratio(p, "left"), mouth_ratio(p)


def accuracy(track: ClipTrack, decoded: dict[int, npt.NDArray[np.float32]]) -> dict[str, Any]:
    """Decoded against the tracker's landmarks of the same input frames, at a 512-px frame."""
    frames = [i for i in sorted(decoded) if track.tracked[i]]
    scale = 512.0 / max(track.width, track.height)
    errors = np.array([np.linalg.norm(decoded[i][:, :2] - track.landmarks[i][:, :2], axis=1).mean() for i in frames]) * scale
    ours = np.array([signals(decoded[i]) for i in frames])
    theirs = np.array([signals(track.landmarks[i]) for i in frames])
    return {
        "frames": len(frames),
        "error_px_512": float(errors.mean()),
        "error_px_512_p95": float(np.percentile(errors, 95)),
        "eye_corr_right": _corr(ours[:, 0], theirs[:, 0]),
        "eye_corr_left": _corr(ours[:, 1], theirs[:, 1]),
        "mouth_corr": _corr(ours[:, 2], theirs[:, 2]),
    }


def run_codec(track: ClipTrack, basis: ExpressionBasis) -> dict[str, Any]:
    """Every tracked frame through preparer -> encoder -> decoder in this process: bytes, accuracy, CPU."""
    preparer, encoder, decoder = ExpressionPreparer(basis), ExpressionEncoder(basis), ExpressionDecoder(basis)
    decoded: dict[int, npt.NDArray[np.float32]] = {}
    sizes, setups, prepare_ms, encode_ms, decode_ms = [], [], [], [], []
    for n, index in enumerate(np.flatnonzero(track.tracked)):
        lm = track.landmarks[index]
        frame = FrameAnalysis(CapturedFrame(int(index), 0, _IMAGE), FaceObservation(lm, head_pose(lm), 1.0), None)
        t0 = time.perf_counter()
        prepared = preparer.prepare(frame)
        setup = preparer.take_setup()
        t1 = time.perf_counter()
        if prepared is None:
            continue
        if setup is not None:
            encoder.setup(setup)
            decoder.setup(setup)
            setups.append(len(setup))
        t2 = time.perf_counter()
        payload = encoder.encode(CodedFrame(frame, {CAPABILITY: prepared}), intra=n % INTRA_EVERY == 0)
        t3 = time.perf_counter()
        assert payload is not None
        draft = FrameDraft((track.width, track.height))
        decoder.decode(payload, draft)
        t4 = time.perf_counter()
        assert draft.landmarks is not None and np.array_equal(draft.landmarks, prepared.landmarks)
        decoded[int(index)] = draft.landmarks
        sizes.append(len(payload))
        prepare_ms.append((t1 - t0) * 1e3)
        encode_ms.append((t3 - t2) * 1e3)
        decode_ms.append((t4 - t3) * 1e3)
    return {
        "bytes_per_frame": float(np.mean(sizes)), "bytes_p95": float(np.percentile(sizes, 95)),
        "setups": len(setups), "setup_bytes": setups,
        **accuracy(track, decoded),
        "ms_prepare_median": float(np.median(prepare_ms)), "ms_prepare_p95": float(np.percentile(prepare_ms, 95)),
        "ms_prepare_max": float(np.max(prepare_ms)),
        "ms_encode_median": float(np.median(encode_ms)), "ms_encode_p95": float(np.percentile(encode_ms, 95)),
        "ms_decode_median": float(np.median(decode_ms)), "ms_decode_p95": float(np.percentile(decode_ms, 95)),
    }


def as_shown(decoded: dict[int, npt.NDArray[np.float32]], frames: int) -> dict[int, npt.NDArray[np.float32]]:
    """What the receiver shows at every input frame from the first it decoded: a frame the sender skipped
    shows the one before it (the player holds the picture)."""
    out, last = {}, None
    for index in range(frames):
        last = decoded.get(index, last)
        if last is not None:
            out[index] = last
    return out


def real_path(clip: Path, track: ClipTrack, kbps: float, work: Path) -> dict[str, Any]:
    stream = work / f"{clip.stem}.fws"
    t0 = time.perf_counter()
    record(clip, stream, kbps)
    seconds = time.perf_counter() - t0
    decoded = read_stream(stream)
    kbps_code = sum(decoded.code_bytes) * 8 / decoded.seconds / 1000
    return {
        "frames_in": int(len(track.landmarks)), "frames_sent": len(decoded.code_bytes), "intra_frames": decoded.intra,
        "code_bytes_per_frame": float(np.mean(decoded.code_bytes)), "code_bytes_p95": float(np.percentile(decoded.code_bytes, 95)),
        "frame_message_bytes": float(np.mean(decoded.frame_bytes)),
        "code_kbps_sent": kbps_code,
        "setups": len(decoded.setup_bytes), "setup_bytes": decoded.setup_bytes,
        "keyframe_code_bytes": decoded.keyframe_code_bytes,
        "stream_kbps": decoded.file_bytes * 8 / decoded.seconds / 1000, "record_s": seconds,
        "ms_decode_frame_median": float(np.median(decoded.decode_ms)),
        "ms_decode_frame_p95": float(np.percentile(decoded.decode_ms, 95)),
        **accuracy(track, decoded.landmarks),
        "as_shown": accuracy(track, as_shown(decoded.landmarks, len(track.landmarks))),
    }


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summary(rows: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rows.values() if r.get(key) is not None]
        if values:
            lower_is_better = any(word in key for word in ("error", "ms", "bytes", "kbps"))
            out[key] = {"mean": float(np.mean(values)), "worst": float(max(values) if lower_is_better else min(values))}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "clips")
    parser.add_argument("--bitrate", type=float, default=16.0, help="facewire-send --bitrate (kbit/s)")
    parser.add_argument("--loo", action="store_true", help="also the held-out figures (a basis per clip, built on the others)")
    parser.add_argument("--no-record", action="store_true", help="skip the real path (only the in-process codec)")
    parser.add_argument("--only-record", action="store_true", help="only the real path")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facewire" / "tracks")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "expression.json")
    args = parser.parse_args(argv)
    clips = sorted(args.clips.glob("*.mp4"), key=lambda p: p.name)
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    digest = tracker_sha256()
    tracks = {p.stem: track_clip(p, args.cache, digest) for p in clips}
    result: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load": os.getloadavg()},
        "commit": _commit(), "bitrate_kbps": args.bitrate, "basis_sha256": shipped_basis().sha256,
        "clips": [p.name for p in clips],
    }
    if not args.no_record:
        with tempfile.TemporaryDirectory(prefix="facewire-expression-") as work:
            real = {p.stem: real_path(p, tracks[p.stem], args.bitrate, Path(work)) for p in clips}
        result["real_path_in_sample"] = {"clips": real, "summary": summary(real, [
            "code_bytes_per_frame", "code_bytes_p95", "frame_message_bytes", "code_kbps_sent", "stream_kbps",
            "error_px_512", "error_px_512_p95", "eye_corr_right", "eye_corr_left", "mouth_corr", "ms_decode_frame_median"])}
    keys = ["bytes_per_frame", "bytes_p95", "error_px_512", "error_px_512_p95", "eye_corr_right", "eye_corr_left",
            "mouth_corr", "ms_prepare_median", "ms_encode_median", "ms_decode_median"]
    if not args.only_record:
        codec = {name: run_codec(track, shipped_basis()) for name, track in tracks.items()}
        result["codec_in_sample"] = {"clips": codec, "summary": summary(codec, keys)}
    if args.loo and not args.only_record:
        held: dict[str, dict[str, Any]] = {}
        for name, track in tracks.items():
            others = [t for n, t in tracks.items() if n != name]
            basis = build(others, BuildConfig(), provenance_of([c for c in clips if c.stem != name], "", digest))
            held[name] = run_codec(track, replace_sha(basis))
        result["codec_held_out"] = {"clips": held, "summary": summary(held, keys)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v["summary"] for k, v in result.items() if isinstance(v, dict) and "summary" in v}, indent=1))


def replace_sha(basis: ExpressionBasis) -> ExpressionBasis:
    """A basis built in memory has no file: give it an id of its own for the setups."""
    from dataclasses import replace

    return replace(basis, sha256="00" * 32)


if __name__ == "__main__":
    main()
