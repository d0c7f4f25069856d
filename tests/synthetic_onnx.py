"""Tiny ONNX graphs with the exact input/output names, ranks and dtypes of the real pretrained models.

Each computes something simple and predictable from its inputs, so tests can check pre-processing,
name binding and post-processing end to end without the real weights. Also a manifest writer that
points a temporary registry at them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facewire.shared.models.onnx import SessionConfig

F32 = TensorProto.FLOAT
OPSET = [helper.make_opsetid("", 17)]

SCRFD_OUTPUTS = (("448", "451", "454"), ("471", "474", "477"), ("494", "497", "500"))  # per stride 8/16/32
SCRFD_BOX_DIST = 2.0  # every anchor predicts a box 2 strides each way
SCRFD_KPS = np.array([-1.0, -1.0, 1.0, -1.0, 0.0, 0.0, -0.8, 1.0, 0.8, 1.0], dtype=np.float32)  # in strides


def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "synthetic", inputs, outputs, initializer=inits or [])
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="facewire-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _c(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def scrfd_model() -> onnx.ModelProto:
    """det_10g signature. Score per anchor = brightness of its stride cell ((mean(R) + 1) / 2 after SCRFD
    normalisation); box distances and keypoints are constants (in stride units, before the decoder's *stride)."""
    nodes = [
        helper.make_node("Slice", ["input.1", "c0", "c1", "c_axis1"], ["red"]),
    ]
    inits = [_c("c0", np.array([0], np.int64)), _c("c1", np.array([1], np.int64)), _c("c_axis1", np.array([1], np.int64)),
             _c("one", np.array(1.0, np.float32)), _c("half", np.array(0.5, np.float32)),
             _c("flat", np.array([-1, 1], np.int64)),
             _c("box", np.full((1, 4), SCRFD_BOX_DIST, np.float32)), _c("kps", SCRFD_KPS.reshape(1, 10))]
    outputs = []
    for stride, (score, box, kps) in zip((8, 16, 32), SCRFD_OUTPUTS, strict=True):
        n = 640 // stride
        count = n * n * 2
        s = f"s{stride}"
        nodes += [
            helper.make_node("AveragePool", ["red"], [f"{s}_pool"], kernel_shape=[stride, stride], strides=[stride, stride]),
            helper.make_node("Reshape", [f"{s}_pool", "flat"], [f"{s}_col"]),
            helper.make_node("Concat", [f"{s}_col", f"{s}_col"], [f"{s}_pair"], axis=1),  # two anchors per cell
            helper.make_node("Reshape", [f"{s}_pair", "flat"], [f"{s}_raw"]),
            helper.make_node("Add", [f"{s}_raw", "one"], [f"{s}_p1"]),
            helper.make_node("Mul", [f"{s}_p1", "half"], [score]),
            helper.make_node("Mul", [f"{s}_raw", "zero"], [f"{s}_z"]),
            helper.make_node("Add", [f"{s}_z", "box"], [box]),
            helper.make_node("Add", [f"{s}_z", "kps"], [kps]),
        ]
        outputs.append((score, [count, 1], box, [count, 4], kps, [count, 10]))
    inits.append(_c("zero", np.array(0.0, np.float32)))
    outs = [helper.make_tensor_value_info(o[0], F32, o[1]) for o in outputs]
    outs += [helper.make_tensor_value_info(o[2], F32, o[3]) for o in outputs]
    outs += [helper.make_tensor_value_info(o[4], F32, o[5]) for o in outputs]
    inp = [helper.make_tensor_value_info("input.1", F32, [1, 3, "?", "?"])]
    return _model(nodes, inp, outs, inits)


def landmark106_layout() -> np.ndarray:
    """The constant 106 points (in [-1, 1] crop units) the synthetic 2d106det outputs."""
    rng = np.random.default_rng(106)
    return rng.uniform(-0.6, 0.6, size=(106, 2)).astype(np.float32)


def landmark106_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax1"], ["m2"]),
        helper.make_node("Mul", ["m2", "zero"], ["z"]),
        helper.make_node("Add", ["z", "layout"], ["fc1"]),
    ]
    inits = [_c("ax1", np.array([1], np.int64)), _c("zero", np.array(0.0, np.float32)),
             _c("layout", landmark106_layout().reshape(1, 212))]
    return _model(nodes, [helper.make_tensor_value_info("data", F32, ["None", 3, 192, 192])],
                  [helper.make_tensor_value_info("fc1", F32, ["None", 212])], inits)


def arcface_weights() -> np.ndarray:
    return np.random.default_rng(512).normal(size=(3, 512)).astype(np.float32)


def arcface_model() -> onnx.ModelProto:
    """w600k_r50 signature: embedding = mean colour of the normalised RGB crop @ fixed (3, 512) weights."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["683"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("input.1", F32, ["None", 3, 112, 112])],
                  [helper.make_tensor_value_info("683", F32, [1, 512])], [_c("w", arcface_weights())])


def inswapper_model(emap: np.ndarray) -> onnx.ModelProto:
    """inswapper_128 signature: output = clip(1 - target + source[0, 0], 0, 1) (an inverted face shifted by
    the first latent value), with `emap` stored as the graph's last initializer as in the real model."""
    nodes = [
        helper.make_node("Slice", ["source", "c0", "c1", "c_axis1"], ["s0"]),
        helper.make_node("Reshape", ["s0", "shape4"], ["s4"]),
        helper.make_node("Sub", ["one", "target"], ["inv"]),
        helper.make_node("Add", ["inv", "s4"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "zero", "one"], ["output"]),
    ]
    inits = [_c("c0", np.array([0], np.int64)), _c("c1", np.array([1], np.int64)), _c("c_axis1", np.array([1], np.int64)),
             _c("shape4", np.array([1, 1, 1, 1], np.int64)), _c("one", np.array(1.0, np.float32)),
             _c("zero", np.array(0.0, np.float32)), _c("emap", emap.astype(np.float32))]
    inputs = [helper.make_tensor_value_info("target", F32, [1, 3, 128, 128]),
              helper.make_tensor_value_info("source", F32, [1, 512])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("output", F32, [1, 3, 128, 128])], inits)


RVM_STEP = 0.1


def rvm_model() -> onnx.ModelProto:
    """RVM signature. pha = R/2 + 0.1 * r1i (r1i counts calls: r1o = r1i + 1); fgr = src; r2..r4 pass through
    (r4 also touches downsample_ratio so every input is used)."""
    dims = ["batch_size", "channels", "height", "width"]
    nodes = [
        helper.make_node("Slice", ["src", "c0", "c1", "c_axis1"], ["red"]),
        helper.make_node("Mul", ["red", "half"], ["red_half"]),
        helper.make_node("Mul", ["r1i", "step"], ["r1_step"]),
        helper.make_node("Add", ["red_half", "r1_step"], ["pha"]),
        helper.make_node("Identity", ["src"], ["fgr"]),
        helper.make_node("Add", ["r1i", "one"], ["r1o"]),
        helper.make_node("Identity", ["r2i"], ["r2o"]),
        helper.make_node("Identity", ["r3i"], ["r3o"]),
        helper.make_node("Mul", ["downsample_ratio", "zero"], ["dz"]),
        helper.make_node("Add", ["r4i", "dz"], ["r4o"]),
    ]
    inits = [_c("c0", np.array([0], np.int64)), _c("c1", np.array([1], np.int64)), _c("c_axis1", np.array([1], np.int64)),
             _c("half", np.array(0.5, np.float32)), _c("step", np.array(RVM_STEP, np.float32)),
             _c("one", np.array(1.0, np.float32)), _c("zero", np.array(0.0, np.float32))]
    inputs = [helper.make_tensor_value_info("src", F32, ["batch_size", 3, "height", "width"])]
    inputs += [helper.make_tensor_value_info(f"r{i}i", F32, dims) for i in range(1, 5)]
    inputs.append(helper.make_tensor_value_info("downsample_ratio", F32, [1]))
    outputs = [helper.make_tensor_value_info("fgr", F32, ["batch_size", 3, "height", "width"]),
               helper.make_tensor_value_info("pha", F32, ["batch_size", 1, "height", "width"])]
    outputs += [helper.make_tensor_value_info(f"r{i}o", F32, dims) for i in range(1, 5)]
    return _model(nodes, inputs, outputs, inits)


SIGNATURES = {
    "det_10g": ("det_10g.onnx", ["input.1"]),
    "2d106det": ("2d106det.onnx", ["data"]),
    "w600k_r50": ("w600k_r50.onnx", ["input.1"]),
    "inswapper_128": ("inswapper_128.onnx", ["target", "source"]),
    "rvm_mobilenetv3": ("rvm_mobilenetv3_fp32.onnx", ["src"]),
}


REAL_MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.toml"
CPU = SessionConfig(providers="cpu", threads=1)


def build_all(tmp: Path) -> tuple[Path, Path]:
    """Synthetic copies of every manifest model in tmp/models, and a manifest pinning their hashes."""
    models = tmp / "models"
    models.mkdir()
    built = {
        "det_10g": scrfd_model(), "2d106det": landmark106_model(), "w600k_r50": arcface_model(),
        "inswapper_128": inswapper_model(np.eye(512, dtype=np.float32)), "rvm_mobilenetv3": rvm_model(),
    }
    entries = {name: write_model(model, models / SIGNATURES[name][0]) for name, model in built.items()}
    return write_manifest(tmp / "manifest.toml", REAL_MANIFEST, entries), models


def write_model(model: onnx.ModelProto, path: Path) -> tuple[str, int]:
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def write_manifest(path: Path, real_manifest: Path, entries: dict[str, tuple[str, int]],
                   urls: dict[str, list[str]] | None = None) -> Path:
    """A copy of the real manifest with each named model's sha256/bytes/urls replaced by the synthetic file's.
    The real I/O signatures are kept, so the synthetic files are checked against the real ones."""
    import re

    text = real_manifest.read_text(encoding="utf-8")
    for name, (sha, size) in entries.items():
        section = re.search(rf"^\[models\.{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
        assert section is not None, name
        body = section.group(1)
        body = re.sub(r'^sha256 = ".*"$', f'sha256 = "{sha}"', body, count=1, flags=re.M)
        body = re.sub(r"^bytes = \d+$", f"bytes = {size}", body, count=1, flags=re.M)
        body = re.sub(r"^archive = .*\n", "", body, flags=re.M)
        new_urls = ", ".join(f'"{u}"' for u in (urls or {}).get(name, []))
        body = re.sub(r"^urls = \[.*?\]\n", f"urls = [{new_urls}]\n", body, count=1, flags=re.M | re.S)
        text = text[: section.start(1)] + body + text[section.end(1):]
    path.write_text(text, encoding="utf-8")
    return path
