"""Receiver speed per stage on one thread: feature decode, render, compose.

    .venv/bin/python bench/receiver_speed.py                      # d6 x s42 at 640x480
    .venv/bin/python bench/receiver_speed.py --save out/bench/ref  # also keep the pictures
    .venv/bin/python bench/receiver_speed.py --reference out/bench/ref  # and compare with kept ones
    .venv/bin/python bench/receiver_speed.py --set blend.eighth_scale_width=inf  # a renderer option changed
    .venv/bin/python bench/receiver_speed.py --steps  # also the render's and compose's own steps, per frame

The stream is recorded once through the real sender (`facewire-send --record-stream`, the
clip scaled to --size, --matte auto, --identity AVATAR) and kept next to the report, so later
runs time the receiver only. Every frame message then goes through the receiver's stages the
way facewire.receiver.session and facewire.receiver.player run them:

* parse: the wire bytes to a message (facewire.shared.wire.messages.decode);
* decode: shared.frame_codec.FrameDecoder.decode_frame (landmarks, alpha code, alpha upsample);
* render: facewire.shared.render MeshRenderer.render through replica.draw, as the player draws: in self mode
  with the residual layer's held correction (LayerHold.apply), then the alpha fix's corrections if sent;
* compose: receiver.compositor.Compositor.compose over an image background and over a colour.

Each stage is timed in wall time (perf_counter) and CPU time of this thread (thread_time); on a
shared machine the CPU time is the headline, wall time shows the contention. `receiver_ms` is
parse + decode + render + compose (image), the whole per-frame work before the sink.
--steps splits render and compose (image) into their steps (Steps: the renderer's and compositor's calls,
each step's thread time without the steps it calls), a frame at a time, so a change's gain shows where it is.
Writes JSON (default out/bench/receiver_speed.json).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facewire.receiver import compositor as compositor_module  # noqa: E402
from facewire.receiver.compositor import Compositor  # noqa: E402
from facewire.receiver.session import AssetStore  # noqa: E402
from facewire.shared.codec.alpha_fix import apply_fix  # noqa: E402
from facewire.shared.codec.frames import FrameDecoder  # noqa: E402
from facewire.shared.process.heap import reuse_heap_memory  # noqa: E402
from facewire.shared.render import blend, eyes_mouth, mesh  # noqa: E402
from facewire.shared.render.mesh import MeshOptions, MeshRenderer  # noqa: E402
from facewire.shared.render.replica import LayerHold, draw  # noqa: E402
from facewire.shared.types import FrameState, IdentityAsset, Image, KeyframeState, RenderedPerson  # noqa: E402
from facewire.shared.wire import messages as m  # noqa: E402
from facewire.shared.wire.streamfile import StreamReader  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEWIRE_DATA", ROOT.parent / "shared" / "data"))  # as bench/swap.py: a worktree elsewhere names it
STAGES = ("parse", "decode", "render", "compose_image", "compose_colour")


def record(clip: Path, avatar: Path | None, size: str, frames: int, matte: str, out: Path) -> None:
    """The stream the real sender would send for this clip (tracker, matte, encoders), as a file."""
    cmd = [sys.executable, "-m", "facewire.sender.cli", "--input", str(clip), "--record-stream", str(out), "--size", size,
           "--max-frames", str(frames), "--matte", matte, "--identity", str(avatar) if avatar else "self",
           "--log-level", "ERROR"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def mesh_options(settings: list[str]) -> MeshOptions:
    """MeshOptions with bench/swap.py's `group.field=value` overrides (loaded only when asked: it imports the tracker)."""
    if not settings:
        return MeshOptions()
    spec = importlib.util.spec_from_file_location("bench_swap", Path(__file__).with_name("swap.py"))
    assert spec is not None and spec.loader is not None
    swap = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = swap  # its dataclasses look their module up there
    spec.loader.exec_module(swap)
    options: MeshOptions = swap.parse_mesh_options(settings)
    return options


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Timer:
    """Wall and thread-CPU milliseconds per stage, one sample per call."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {s: [] for s in STAGES}
        self.cpu: dict[str, list[float]] = {s: [] for s in STAGES}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        w0, c0 = time.perf_counter(), time.thread_time()
        yield
        c1, w1 = time.thread_time(), time.perf_counter()
        self.wall[name].append((w1 - w0) * 1e3)
        self.cpu[name].append((c1 - c0) * 1e3)

    def keep_least(self, extra: int, first: Timer) -> None:
        """Fold the `extra` repeats of the last frame (and `first`'s run of it) into one sample: the least."""
        if extra <= 0:
            return
        for table, other in ((self.wall, first.wall), (self.cpu, first.cpu)):
            for stage in ("render", "compose_image", "compose_colour"):
                runs = table[stage][-extra:] + other[stage][-1:]
                del table[stage][-extra:]
                table[stage].append(min(runs))
            for stage in ("parse", "decode"):  # stateful decoding runs once: its one sample stands
                table[stage].append(other[stage][-1])

    def drop_first(self, n: int) -> None:
        for table in (self.wall, self.cpu):
            for stage in table:
                del table[stage][:n]


# The steps --steps times: (owner, attribute) as the renderer and compositor look them up (a module's global, a module
# attribute reached through its module, a class's method). A step called inside another counts in its own row only;
# names a build does not have are left out (one script times older and newer builds alike).
STEP_TARGETS: tuple[tuple[Any, str], ...] = (
    (MeshRenderer, "_keyframe_map"), (MeshRenderer, "_avatar_target"), (MeshRenderer, "_render_avatar"),
    (MeshRenderer, "_avatar_panels"), (MeshRenderer, "_keyframe_occluder"), (MeshRenderer, "_warp_reach"),
    (mesh, "remap"), (mesh, "_unpacked"), (mesh, "_inner_warp_map"), (mesh, "_warp_occluder"),
    (mesh, "_dense_keyframe_box"), (mesh, "close_lids"), (mesh, "draw_irises"), (mesh, "draw_glasses"),
    (mesh, "reveal_whites"), (mesh, "similarity_2d"),
    (blend, "match_shading"), (blend, "face_mask"), (blend, "swap_weight"), (blend, "blend"),
    (eyes_mouth, "extended_vertices"), (eyes_mouth, "lid_source_vertices"), (eyes_mouth, "composite_cavity"),
    (eyes_mouth, "shade_narrowed"), (eyes_mouth, "eye_closings"),
    (Compositor, "_edge_inputs"), (Compositor, "_edge_parts"), (Compositor, "_compose_part"),
    (compositor_module, "despilled"),
)


class Steps:
    """Thread time per step of the render and compose stages, a frame at a time (see STEP_TARGETS).

    Each target is wrapped where it is looked up; a call's time goes to its name, less what the steps it calls
    took (those go to theirs), and a step called by different steps is kept apart per caller (`remap in render`,
    the keyframe's; `remap in _render_avatar`, the avatar's face). Only calls while `counting` count: the
    first run of each frame, as the stages' headline. The wrappers cost ~1 us a call.
    """

    def __init__(self) -> None:
        self.counting = False
        self.frame: dict[str, float] = {}
        self.frames: list[dict[str, float]] = []
        self._stack: list[tuple[str, list[float]]] = []
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for owner, name in STEP_TARGETS:
            original = owner.__dict__.get(name)
            if original is None:
                continue
            self._saved.append((owner, name, original))
            setattr(owner, name, self._wrap(name, original))

    def remove(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.counting:
                return function(*args, **kwargs)
            label = f"{name} in {self._stack[-1][0]}" if self._stack else name
            inner = [0.0]
            self._stack.append((name, inner))
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                self._stack.pop()
                if self._stack:
                    self._stack[-1][1][0] += spent
                self.frame[label] = self.frame.get(label, 0.0) + (spent - inner[0]) * 1e3

        return timed

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Count the steps inside this stage; what the stage spends outside them goes to `name (own)`."""
        self.counting = True
        inner = [0.0]
        self._stack.append((name, inner))
        start = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - start
            self._stack.pop()
            self.counting = False
            self.frame[f"{name} (own)"] = self.frame.get(f"{name} (own)", 0.0) + (spent - inner[0]) * 1e3

    def end_frame(self) -> None:
        self.frames.append(self.frame)
        self.frame = {}

    def summary(self, drop: int) -> dict[str, dict[str, float]]:
        """Per step the median and mean over frames (0 in a frame that did not call it), slowest (mean) first."""
        frames = self.frames[drop:]
        labels = {label for frame in frames for label in frame}
        table = {label: summary([frame.get(label, 0.0) for frame in frames]) for label in labels}
        return dict(sorted(table.items(), key=lambda item: -item[1]["mean"]))


def render(renderer: MeshRenderer, frame: FrameState, keyframe: KeyframeState, hold: LayerHold | None) -> RenderedPerson:
    """What receiver.player.Player.draw does with one frame: the renderer, the layer's held correction (self
    mode), the alpha fix."""
    person = draw(renderer, frame, keyframe, hold)
    if frame.alpha_fix is None or frame.alpha is not None:
        return person
    return RenderedPerson(person.image, apply_fix(person.alpha, frame.alpha_fix))


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    a = np.asarray(samples)
    return {"median": round(float(np.median(a)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3)}


def background_image(size: tuple[int, int], work: Path) -> Path:
    """A real photograph as the background (skimage's coffee), scaled by the compositor like a user's file."""
    from skimage import data

    path = work / "background.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    return path


def compare(outputs: dict[str, list[Image]], reference: Path) -> dict[str, dict[str, float]]:
    """Grey-level differences of these pictures against ones saved by an earlier run (--save)."""
    result: dict[str, dict[str, float]] = {}
    for name, pictures in outputs.items():
        diffs, maxes, over = [], [], []
        for i, picture in enumerate(pictures):
            ref = cv2.imread(str(reference / f"{name}_{i:04d}.png"), cv2.IMREAD_COLOR)
            if ref is None or ref.shape != picture.shape:
                raise SystemExit(f"reference {reference / f'{name}_{i:04d}.png'} is missing or of another size")
            d = np.abs(picture.astype(np.int16) - ref.astype(np.int16))
            diffs.append(float(d.mean()))
            maxes.append(int(d.max()))
            over.append(float((d.max(axis=2) > 8).mean()))
        result[name] = {"frames": len(pictures), "mean_abs": round(float(np.mean(diffs)), 4),
                        "mean_abs_worst_frame": round(float(np.max(diffs)), 4), "max": int(np.max(maxes)),
                        "max_median_frame": float(np.median(maxes)),
                        "share_pixels_over_8": round(float(np.mean(over)), 6)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="d6", help="clip name under ../shared/data/clips or a path")
    parser.add_argument("--avatar", default="s42", help="avatar name under ../shared/data/avatars, a path, or 'self'")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=5, help="first frames left out of the statistics")
    parser.add_argument("--matte", default="auto")
    parser.add_argument("--stream", type=Path, help="an existing .fws to time instead of recording one")
    parser.add_argument("--rerecord", action="store_true", help="record the stream again even if it is kept")
    parser.add_argument("--save", type=Path, help="write the composed pictures here (PNG) for a later --reference")
    parser.add_argument("--reference", type=Path, help="compare the composed pictures with a --save directory")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="render and compose each frame N times and also report the least time per frame (a shared "
                             "machine's contention only ever adds time)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="renderer option for A/B runs, as in bench/swap.py (e.g. blend.eighth_scale_width=inf)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N slowest functions (cProfile, in this thread's CPU time)")
    parser.add_argument("--steps", action="store_true", help="also time the render's and compose's steps (Steps)")
    parser.add_argument("--no-heap-reuse", action="store_true", help="leave glibc's allocator as it is (the receiver's "
                        "entry points ask it to keep frame-sized buffers)")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench" / "receiver_speed.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    heap_reuse = False if args.no_heap_reuse else reuse_heap_memory()

    stream = args.stream
    if stream is None:
        clip = Path(args.clip) if args.clip.endswith(".mp4") else DATA / "clips" / f"{args.clip}.mp4"
        avatar = None if args.avatar == "self" else (
            Path(args.avatar) if args.avatar.endswith((".jpg", ".png")) else DATA / "avatars" / f"{args.avatar}.jpg")
        missing = [p for p in (clip, avatar) if p is not None and not p.is_file()]
        if missing:
            print(f"skipped: {', '.join(map(str, missing))} not found (the clips live in ../shared/data next to the repo)")
            return 0
        stream = args.output.parent / f"receiver_speed_{clip.stem}_{avatar.stem if avatar else 'self'}_{args.size}_{args.frames}.fws"
        if args.rerecord or not stream.is_file():
            stream.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            record(clip, avatar, args.size, args.frames, args.matte, stream)
            print(f"recorded {stream} in {time.perf_counter() - t0:.1f} s")

    with StreamReader(stream) as reader:
        header = reader.header
        raws = list(reader.raw())
    size = (header.width, header.height)
    work = Path(tempfile.mkdtemp(prefix="receiver_speed_"))
    compositors = {"compose_image": Compositor(str(background_image(size, work)), size),
                   "compose_colour": Compositor("#30343c", size)}
    decoder, assets, renderer = FrameDecoder(header.codes), AssetStore(), MeshRenderer(mesh_options(args.set))
    identity: IdentityAsset | None = None
    current: KeyframeState | None = None
    hold = LayerHold()  # the player's; with an avatar none (the layer corrects the sender's own face)
    timer = Timer()
    quiet = Timer()  # with --repeat: per frame the least time of all runs (what the work costs without contention)
    outputs: dict[str, list[Image]] = {"compose_image": [], "compose_colour": []}
    keep = args.save is not None or args.reference is not None
    profiler = cProfile.Profile(time.thread_time) if args.profile else None  # CPU time: the machine may be shared
    steps = Steps() if args.steps else None
    if steps is not None:
        steps.install()
    faces = 0
    for raw in raws:
        if profiler is not None:
            profiler.enable()
        with timer.stage("parse"):
            message = m.decode(raw)
        if not isinstance(message, m.Frame):  # keyframes and identities are rare: timed per frame message only
            timer.wall["parse"].pop()
            timer.cpu["parse"].pop()
        if isinstance(message, m.Identity) and message.image is not None:
            identity = assets.add(message)
            renderer.prepare_identity(identity)
        elif isinstance(message, m.Setup):
            decoder.setup(message)  # e.g. the expression code's neutral face
        elif isinstance(message, (m.Keyframe, m.KeyframePart)):
            keyframe = decoder.decode_keyframe(message) if isinstance(message, m.Keyframe) else decoder.decode_part(message)
            if keyframe is not None:  # its last part arrived
                renderer.prepare_keyframe(keyframe)
                current = keyframe
        elif isinstance(message, m.Frame):
            with timer.stage("decode"):
                frame = decoder.decode_frame(message)
            faces += frame.face != "lost"
            assert current is not None, "a frame before its keyframe"
            layer = hold if identity is None else None
            with timer.stage("render"), steps.stage("render") if steps is not None else nullcontext():
                person = render(renderer, frame, current, layer)
            for _ in range(args.repeat - 1):
                with quiet.stage("render"):
                    render(renderer, frame, current, layer)
            for name, compositor in compositors.items():
                counted = steps is not None and name == "compose_image"
                with timer.stage(name), steps.stage(name) if counted and steps is not None else nullcontext():
                    picture = compositor.compose(person)
                for _ in range(args.repeat - 1):
                    with quiet.stage(name):
                        compositor.compose(person)
                if keep:
                    outputs[name].append(picture)
            quiet.keep_least(args.repeat - 1, timer)
            if steps is not None:
                steps.end_frame()
        if profiler is not None:
            profiler.disable()
    if steps is not None:
        steps.remove()
    frames = len(timer.cpu["render"])
    warmup = min(args.warmup, max(0, frames - 1))
    timer.drop_first(warmup)
    quiet.drop_first(warmup)

    def per_frame(table: dict[str, list[float]]) -> list[float]:
        return [sum(v) for v in zip(*(table[s] for s in ("parse", "decode", "render", "compose_image")), strict=True)]

    report: dict[str, object] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                    "platform": platform.platform(), "python": platform.python_version(), "opencv": cv2.__version__,
                    "numpy": np.__version__},
        "settings": {"stream": str(stream), "size": list(size), "frames": frames, "warmup_frames_left_out": warmup,
                     "repeat": args.repeat,
                     "frames_with_face": faces, "renderer": renderer.name, "identity": identity.asset_id[:12] if identity else "self",
                     "heap_reuse": heap_reuse, "mesh_options_set": args.set,
                     "threads": {"opencv": cv2.getNumThreads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}},
        "cpu_ms": {s: summary(timer.cpu[s]) for s in STAGES} | {"receiver": summary(per_frame(timer.cpu))},
        "wall_ms": {s: summary(timer.wall[s]) for s in STAGES} | {"receiver": summary(per_frame(timer.wall))},
    }
    cpu_total = summary(per_frame(timer.cpu))
    wall_total = summary(per_frame(timer.wall))
    if args.repeat > 1:
        report["least_of_repeats_cpu_ms"] = {s: summary(quiet.cpu[s]) for s in STAGES} | {"receiver": summary(per_frame(quiet.cpu))}
        report["least_of_repeats_wall_ms"] = {s: summary(quiet.wall[s]) for s in STAGES} | {"receiver": summary(per_frame(quiet.wall))}
    if steps is not None:
        report["steps_cpu_ms"] = steps.summary(warmup)
    report["fps_equivalent"] = {"cpu_median": round(1e3 / cpu_total["median"], 1), "cpu_p95": round(1e3 / cpu_total["p95"], 1),
                                "wall_median": round(1e3 / wall_total["median"], 1), "target": 60}
    if args.repeat > 1:
        least = summary(per_frame(quiet.cpu))
        report["fps_equivalent"]["cpu_least_of_repeats_median"] = round(1e3 / least["median"], 1)  # type: ignore[index]
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, pictures in outputs.items():
            for i, picture in enumerate(pictures):
                cv2.imwrite(str(args.save / f"{name}_{i:04d}.png"), picture)
    if args.reference is not None:
        report["difference_from_reference"] = {"reference": str(args.reference)} | compare(outputs, args.reference)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.profile)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
