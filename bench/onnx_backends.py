"""Per-stage speed of the optional ONNX backends: insightface analysis, RVM matting, inswapper swap.

With the real models installed (`facewire-models fetch buffalo_l inswapper_128 rvm_mobilenetv3`) this
is the number to quote for them on this machine and provider. With `--synthetic` it times the same
code on the test suite's tiny stand-in models, which measures only facewire's own pre/post-processing
(alignment, letterbox, paste-back), never the networks.

Run: .venv/bin/python bench/onnx_backends.py [--providers cpu] [--frames 30] [--synthetic] [--json out.json]
Timing on a shared machine is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facewire.sender.insightface_backend import load_insightface_backend  # noqa: E402
from facewire.sender.matte.rvm import load_rvm_matter  # noqa: E402
from facewire.shared.face.identity import detect_faces  # noqa: E402
from facewire.shared.models.onnx import PROVIDER_CHOICES  # noqa: E402
from facewire.shared.models.registry import Registry  # noqa: E402
from facewire.shared.render import make_renderer  # noqa: E402
from facewire.shared.types import (  # noqa: E402
    CapturedFrame,
    FrameState,
    IdentityAsset,
    KeyframeState,
    RenderedPerson,
    Renderer,
)


class _Identity:
    """Base renderer for timing the swap alone: the keyframe as it is."""

    name = "identity"
    keyframe: KeyframeState | None = None

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        return None

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        self.keyframe = keyframe

    def render(self, frame: FrameState) -> RenderedPerson:
        assert self.keyframe is not None
        return RenderedPerson(self.keyframe.image, np.ones(self.keyframe.image.shape[:2], np.float32))


def _time(fn: Callable[[], object], frames: int) -> float:
    fn()  # warm-up: first runs allocate and, on GPUs, build kernels
    start = time.perf_counter()
    for _ in range(frames):
        fn()
    return (time.perf_counter() - start) / frames * 1000.0


def _frame() -> np.ndarray:
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 64:576] = cv2.resize(face, (512, 480))
    return frame


def _synthetic_models(root: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import synthetic_onnx  # the test suite's stand-ins, same signatures as the real models

    return synthetic_onnx.build_all(root)


def run(manifest: Path | None, models_dir: Path | None, providers: str, frames: int, label: str) -> list[dict]:
    cv2.setNumThreads(1)
    img = _frame()
    results: list[dict] = []
    registry = Registry(manifest, models_dir)

    def record(stage: str, ms: float, **extra: object) -> None:
        row = {"stage": stage, "models": label, "providers": providers, "ms_per_frame": round(ms, 2),
               "fps": round(1000.0 / ms, 1), **extra}
        results.append(row)
        print(json.dumps(row))

    backend = load_insightface_backend(registry.models_dir, providers, manifest=registry.manifest_path)
    if backend is not None:
        record("insightface analyze (detect 640 + 106 + arcface)", _time(lambda: backend.analyze(img), frames))
        record("insightface detect only", _time(lambda: backend.detector.detect(img), frames))
    matter = load_rvm_matter(registry.models_dir, providers, manifest=registry.manifest_path)
    if matter is not None:
        cf = CapturedFrame(0, 0, img)
        record("rvm matte 640x480", _time(lambda: matter.matte(cf), frames))
    faces = detect_faces(img, max_faces=1)
    if faces and registry.installed("inswapper_128"):
        lm = faces[0].landmarks
        kf = KeyframeState(0, img, None, lm)
        fs = FrameState(1, 0, "tracked", lm, None)
        emb = np.random.default_rng(0).normal(size=512).astype(np.float16)
        who = IdentityAsset("bench", None, None, emb)
        for keep in (False, True):
            r = make_renderer("inswapper", mesh_factory=_Identity, keep_mouth=keep, providers=providers,
                              models_dir=registry.models_dir, manifest=registry.manifest_path)
            if r.name != "inswapper":
                break
            renderer = r

            renderer.prepare_identity(who)
            renderer.prepare_keyframe(kf)

            def swap(renderer: Renderer = renderer) -> object:
                return renderer.render(fs)

            record(f"inswapper swap+paste (keep_mouth={keep})", _time(swap, frames))
    missing = [n for n in registry.names if not registry.installed(n)]
    if missing:
        print(f"not installed (not measured): {', '.join(missing)}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", choices=PROVIDER_CHOICES, default="cpu")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--synthetic", action="store_true", help="time facewire's own code on stand-in models")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            manifest, models_dir = _synthetic_models(Path(tmp))
            rows = run(manifest, models_dir, args.providers, args.frames, "synthetic stand-ins (not the networks)")
    else:
        rows = run(None, args.models_dir, args.providers, args.frames, "installed models")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
