"""Build the expression basis (facewire.shared.codec.expression) from talking-head clips, recording
where it came from.

    .venv/bin/python bench/build_basis.py --out models/expression_basis.npz ../shared/data/clips/*.mp4

Each clip is tracked once with the sender's tracker (facewire.sender.tracker.MediaPipeFaceTracker,
its smoothed output: what the sender codes); the landmarks are cached under --cache by the clip's
and the tracker's sha256. Per clip, every tracked frame is put in the head-canonical frame with its
own pose, and the clip's neutral face (the online NeutralEstimator run over the whole clip) is
subtracted; what remains is expression (and MediaPipe's pose-dependent depth noise). The basis is
learnt in stages, each on what the stages before it leave: a PCA of the whole mesh, PCAs of the
eyelids and of the lips (each grown by a ring of mesh neighbours), then the irises as rigid shifts
(a learnt iris PCA damped extreme glances on clips it had not seen). Clips weigh equally whatever
their length.

The .npz records the clips (name, sha256, frames, fps, size), where they came from (--source, or the
"Sources:" paragraph of the README beside the clips' folder), the builder's and the tracker's sha256,
mediapipe's version and the settings; a sidecar <out>.json repeats them with the .npz's own sha256.
The file is byte-reproducible: the same clips, tracker and builder give the same sha256. A new basis
changes facewire.shared.codec.expression.basis.BASIS_SHA256 (and so every peer's basis id).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: BLAS threads only contend on small matrices
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facewire.shared.codec.expression.basis import ExpressionBasis, Steps
from facewire.shared.codec.expression.neutral import NeutralConfig, NeutralEstimator
from facewire.shared.face import topology as topo
from facewire.shared.face.pose import head_pose, to_canonical
from facewire.shared.types import HeadPose

F64 = npt.NDArray[np.float64]
STAGE_ORDER = ("global", "lids", "mouth", "irises")
LICENCE = ("MIT, as facewire. Derived data: statistics of tracked landmarks (no pixels) of the clips listed, whose "
           "licences and origin `source` gives; the rights of the people shown are not stated there.")


@dataclass(frozen=True)
class ClipTrack:
    name: str
    sha256: str
    fps: float
    width: int
    height: int
    landmarks: npt.NDArray[np.float32]  # (T, 478, 3), NaN where no face
    tracked: npt.NDArray[np.bool_]  # (T,) the tracker saw the face in this frame


@dataclass(frozen=True)
class BuildConfig:
    global_k: int = 24
    lid_k: int = 3
    mouth_k: int = 3
    iris_k: int = 4  # 4: the rigid shifts (x, y per eye); more: a PCA of what they leave
    lid_ring: int = 1
    mouth_ring: int = 1
    # one per STAGE_ORDER stage: coarse on the global stage (its rounding costs little error), fine on the irises
    steps: Steps = Steps(log_scale=0.003, coeff=(0.04, 0.02, 0.02, 0.01))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tracker_sha256() -> str:
    """The tracker's source (and its smoother's): a change to either re-tracks and is on the record."""
    import facewire.sender.smoothing
    import facewire.sender.tracker

    digest = hashlib.sha256()
    for module in (facewire.sender.tracker, facewire.sender.smoothing):
        assert module.__file__ is not None
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def track_clip(path: Path, cache_dir: Path, tracker_digest: str) -> ClipTrack:
    """The tracker's landmarks for every frame of a clip (cached by the clip's and the tracker's sha256)."""
    digest = sha256_file(path)
    cache = cache_dir / f"{path.stem}-{digest[:16]}-{tracker_digest[:12]}.npz"
    if not cache.exists():
        import cv2

        from facewire.sender.tracker import MediaPipeFaceTracker
        from facewire.shared.types import CapturedFrame

        cv2.setNumThreads(1)
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        tracker = MediaPipeFaceTracker()
        landmarks: list[npt.NDArray[np.float32]] = []
        tracked: list[bool] = []
        width = height = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            height, width = image.shape[:2]
            index = len(landmarks)
            frame = CapturedFrame(index=index, ts_us=int(round(index * 1e6 / fps)), image=np.asarray(image, np.uint8))
            face = tracker.track(frame)
            landmarks.append(np.full((topo.MESH_SIZE, 3), np.nan, np.float32) if face is None else face.landmarks.astype(np.float32))
            tracked.append(face is not None and face.state == "tracked")
        capture.release()
        tracker.close()
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, landmarks=np.stack(landmarks), tracked=np.array(tracked), fps=fps, width=width, height=height)
    with np.load(cache) as z:
        return ClipTrack(path.stem, digest, float(z["fps"]), int(z["width"]), int(z["height"]), z["landmarks"],
                         z["tracked"].astype(bool))


def clip_poses(track: ClipTrack) -> list[HeadPose]:
    return [head_pose(lm) for lm in track.landmarks[track.tracked]]


def clip_expression(track: ClipTrack) -> tuple[F64, F64, F64]:
    """(canonical meshes (T, 478, 3), the clip's neutral (478, 3), pose values (T, 6)) of the tracked frames."""
    poses = clip_poses(track)
    canonical = np.stack([to_canonical(lm, p) for lm, p in zip(track.landmarks[track.tracked], poses, strict=True)])
    canonical = canonical.astype(np.float64)
    config = replace(NeutralConfig(), buffer=len(canonical) + 1, stride=1)
    estimator = NeutralEstimator(None, config)  # no basis yet: a coordinate-wise median
    for mesh, pose in zip(canonical, poses, strict=True):
        estimator.observe(mesh, pose)
    neutral = estimator.estimate() if estimator.ready else None
    if neutral is None:
        neutral = np.median(canonical, axis=0)  # no frame looked neutral: the clip's median face
    values = np.array([[p.yaw, p.pitch, p.roll, p.tx, p.ty, np.log(p.scale)] for p in poses])
    return canonical, neutral, values


def _iris_shift_rows() -> F64:
    """Rigid shifts of each iris' five points in canonical x and y, per eye; orthonormal."""
    rows = np.zeros((4, topo.MESH_SIZE * 3))
    for j, (eye, axis) in enumerate((e, a) for e in (0, 1) for a in (0, 1)):
        for point in topo.IRIS_POINTS[5 * eye: 5 * eye + 5]:
            rows[j, 3 * point + axis] = 1.0 / np.sqrt(5.0)
    return rows


def _pca_rows(x: F64, k: int) -> F64:
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    rows = vt[:k]
    # a fixed sign per row (largest entry positive), so rebuilds give identical files
    signs = np.sign(rows[np.arange(len(rows)), np.argmax(np.abs(rows), axis=1)])
    return rows * signs[:, None]


def build(tracks: list[ClipTrack], config: BuildConfig, provenance: dict[str, object]) -> ExpressionBasis:
    """The staged basis of these clips (see the module docstring), with its statistics."""
    if 0 < config.iris_k < 4:
        raise ValueError("the rigid iris shifts take 4 rows (x, y per eye): iris_k must be 0 or >= 4")
    data = [clip_expression(t) for t in tracks]
    deltas = [(c - n).reshape(len(c), -1) for c, n, _ in data]
    weights = [1.0 / np.sqrt(len(d)) for d in deltas]  # every clip weighs the same
    stages: list[tuple[str, tuple[int, ...] | None, int]] = [
        ("global", None, config.global_k),
        ("lids", topo.eye_contour_points(config.lid_ring), config.lid_k),
        ("mouth", topo.lip_points(config.mouth_ring), config.mouth_k),
        ("irises", topo.IRIS_POINTS, config.iris_k),
    ]
    residual = [d.copy() for d in deltas]
    all_rows, sizes, names = [], [], []
    for name, points, k in stages:
        if k <= 0:
            continue
        cols = np.arange(topo.MESH_SIZE * 3) if points is None else (np.array(points)[:, None] * 3 + np.arange(3)).ravel()
        x = np.concatenate([r[:, cols] * w for r, w in zip(residual, weights, strict=True)])
        rows = np.zeros((k, topo.MESH_SIZE * 3))
        if name == "irises":
            rows[:4] = _iris_shift_rows()
            if k > 4:  # a PCA of what the shifts leave (the ring foreshortened by a sideways glance)
                left = x - (x @ rows[:4, cols].T) @ rows[:4, cols]
                rows[4:, cols] = _pca_rows(left, k - 4)
        else:
            rows[:, cols] = _pca_rows(x, k)
        residual = [r - (r @ rows.T) @ rows for r in residual]
        all_rows.append(rows)
        sizes.append(k)
        names.append(name)
    rows = np.concatenate(all_rows)
    # coefficients as the encoder takes them (stage after stage), for the entropy models' statistics
    coefficients = []
    for d in deltas:
        r, parts = d.copy(), []
        for sl in np.split(np.arange(len(rows)), np.cumsum(sizes)[:-1]):
            c = r @ rows[sl].T
            r = r - c @ rows[sl]
            parts.append(c)
        coefficients.append(np.concatenate(parts, axis=1))
    coeff_std = np.sqrt(np.mean([np.mean(c**2, axis=0) for c in coefficients], axis=0))
    coeff_delta = np.mean([np.mean(np.abs(np.diff(c, axis=0)), axis=0) for c in coefficients], axis=0)
    pose_values = [p for _, _, p in data]
    pose_std = np.sqrt(np.mean([np.mean((p - np.median(p, axis=0)) ** 2, axis=0) for p in pose_values], axis=0))
    pose_std[:3] = np.sqrt(np.mean([np.mean(p[:, :3] ** 2, axis=0) for p in pose_values], axis=0))  # angles about 0
    pose_delta = np.mean([np.mean(np.abs(np.diff(p, axis=0)), axis=0) for p in pose_values], axis=0)
    by_name = dict(zip(STAGE_ORDER, config.steps.coeff, strict=True))
    record = {
        **provenance,
        "clips": [{"name": t.name, "sha256": t.sha256, "frames": int(len(t.landmarks)), "tracked": int(t.tracked.sum()),
                   "fps": t.fps, "size": [t.width, t.height]} for t in tracks],
        "config": {"global_k": config.global_k, "lid_k": config.lid_k, "mouth_k": config.mouth_k,
                   "iris_k": config.iris_k, "lid_ring": config.lid_ring, "mouth_ring": config.mouth_ring},
        "neutral": NeutralConfig().__dict__,
    }
    return ExpressionBasis(
        rows=rows.astype(np.float32),
        stage_sizes=tuple(sizes),
        stage_names=tuple(names),
        mean_neutral=np.mean([n for _, n, _ in data], axis=0).astype(np.float32),
        coeff_std=coeff_std.astype(np.float32),
        coeff_delta=coeff_delta.astype(np.float32),
        pose_std=pose_std.astype(np.float32),
        pose_delta=pose_delta.astype(np.float32),
        mesh_parent=topo.spanning_tree(),
        default_steps=replace(config.steps, coeff=tuple(by_name[n] for n in names)),
        provenance=record,
    )


def readme_sources(clips: list[Path]) -> str:
    """The "Sources:" paragraph of the README beside the clips' folder, or "" when there is none."""
    readme = clips[0].resolve().parent.parent / "README.md"
    if not readme.exists():
        return ""
    paragraphs = readme.read_text().split("\n\n")
    found = next((p for p in paragraphs if p.startswith("Sources:")), "")
    return " ".join(found.split())


def provenance_of(clips: list[Path], source: str, tracker_digest: str) -> dict[str, object]:
    import mediapipe

    return {
        "source": source or readme_sources(clips),
        "builder_sha256": sha256_file(Path(__file__)),
        "tracker": f"facewire.sender.tracker.MediaPipeFaceTracker() defaults (One-Euro smoothed), mediapipe {mediapipe.__version__}",
        "tracker_sha256": tracker_digest,
    }


def write(basis: ExpressionBasis, out: Path) -> str:
    """The .npz and its sidecar .json; the .npz's sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = basis.save(out)
    side = {"file": out.name, "sha256": digest, "bytes": out.stat().st_size, "licence": LICENCE,
            **basis.provenance, "stage_sizes": list(basis.stage_sizes), "stage_names": list(basis.stage_names),
            "default_steps": basis.default_steps.to_json()}
    out.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
    return digest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", default="", help="where the clips come from (licence, repository, commit)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "facewire" / "tracks")
    parser.add_argument("--global-k", type=int, default=BuildConfig.global_k)
    parser.add_argument("--lid-k", type=int, default=BuildConfig.lid_k)
    parser.add_argument("--mouth-k", type=int, default=BuildConfig.mouth_k)
    parser.add_argument("--iris-k", type=int, default=BuildConfig.iris_k)
    parser.add_argument("--coeff-steps", default=",".join(map(str, BuildConfig.steps.coeff)),
                        help="coefficient steps per stage (global,lids,mouth,irises), canonical units")
    args = parser.parse_args(argv)
    clips = sorted(args.clips, key=lambda p: p.name)
    digest = tracker_sha256()
    tracks = [track_clip(p, args.cache, digest) for p in clips]
    steps = replace(BuildConfig.steps, coeff=tuple(float(v) for v in args.coeff_steps.split(",")))
    config = BuildConfig(args.global_k, args.lid_k, args.mouth_k, args.iris_k, steps=steps)
    basis = build(tracks, config, provenance_of(clips, args.source, digest))
    sha = write(basis, args.out)
    stages = dict(zip(basis.stage_names, basis.stage_sizes, strict=True))
    print(f"{args.out}: K={basis.size} stages={stages} sha256={sha}")


if __name__ == "__main__":
    main()
