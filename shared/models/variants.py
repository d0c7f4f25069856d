"""INT8 / FP16 variants of a verified model, made with ONNX Runtime's own tools, and how close they stay.

int8: `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantised at run time).
fp16: `onnxruntime.transformers.float16.convert_float_to_float16` with fp32 inputs/outputs kept, so the
variant has the base model's exact signature (fp16 pays off on GPUs; on CPUs it is usually slower).

A variant lives next to its base as `<stem>.<kind>.onnx` with a `.variant.json` record holding its own
sha256, the base's sha256 and the fidelity measured when it was made. It loads only if both hashes
still hold and its signature matches the manifest's; whether it "keeps quality" is decided by the
fidelity numbers, measured on the base model's own outputs for the same inputs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from facewire.shared.models.onnx import BoundSession, SessionConfig, create_session
from facewire.shared.models.registry import LoadedModel, ModelError, ModelIntegrityError, ModelSpec, Registry, check_signature, file_sha256

log = logging.getLogger(__name__)

Kind = Literal["int8", "fp16"]
KINDS: tuple[Kind, ...] = ("int8", "fp16")
# A variant "keeps quality" when every output stays this close to the fp32 model's.
MIN_COSINE = 0.999
MAX_REL_RMSE = 0.03
_DEFAULT_DIM = 256


@dataclass(frozen=True)
class Fidelity:
    output: str
    cosine: float  # of the flattened outputs
    rel_rmse: float  # RMSE / std of the base output
    max_abs: float

    @property
    def keeps_quality(self) -> bool:
        return self.cosine >= MIN_COSINE and self.rel_rmse <= MAX_REL_RMSE


def variant_path(registry: Registry, name: str, kind: Kind) -> Path:
    base = registry.path(name)
    return base.with_name(f"{base.stem}.{kind}.onnx")


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".variant.json")


def _sample_image(height: int, width: int) -> npt.NDArray[np.uint8]:
    """A real face photo (skimage's astronaut, from the wheel) when the input is image-like."""
    import cv2
    from skimage import data

    rgb = np.asarray(data.astronaut(), dtype=np.uint8)[30:286, 100:356]  # roughly face-centred
    return np.asarray(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def sample_feeds(spec: ModelSpec, session: BoundSession, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible inputs: image-like tensors from a real photo normalised per the manifest, state tensors
    zero, ratios 0.5, and unit-norm random vectors for everything else."""
    rng = np.random.default_rng(seed)
    mean = float(spec.normalisation.get("mean", 0.0))
    std = float(spec.normalisation.get("std", 1.0))
    feeds: dict[str, np.ndarray] = {}
    for t in session.inputs:
        dims = [d if isinstance(d, int) and d > 0 else None for d in t.shape]
        dtype = np.dtype(t.dtype)
        if len(dims) == 4 and dims[1] == 3:
            h, w = dims[2] or _DEFAULT_DIM, dims[3] or _DEFAULT_DIM
            img = _sample_image(h, w).astype(np.float32)  # RGB
            feeds[t.name] = ((img - mean) / std).transpose(2, 0, 1)[None].astype(dtype)
        elif len(dims) == 4:
            feeds[t.name] = np.zeros((1, 1, 1, 1), dtype)  # recurrent state at the start
        elif len(dims) == 1 and dims[0] == 1:
            feeds[t.name] = np.array([0.5], dtype)
        else:
            shape = [d or 1 for d in dims]
            v = rng.normal(size=shape)
            feeds[t.name] = (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(dtype)
    return feeds


def compare(base: BoundSession, variant: BoundSession, feeds: dict[str, np.ndarray]) -> list[Fidelity]:
    want = base.run(feeds)
    got = variant.run(feeds)
    result = []
    for name, ref in want.items():
        a = ref.astype(np.float64).ravel()
        b = got[name].astype(np.float64).ravel()
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b / denom) if denom > 0 else float(np.allclose(a, b))
        rmse = float(np.sqrt(np.mean((a - b) ** 2)))
        spread = float(a.std())
        result.append(Fidelity(name, cosine, rmse / spread if spread > 0 else rmse, float(np.abs(a - b).max())))
    return result


def _convert(src: Path, dst: Path, kind: Kind) -> None:
    if kind == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    elif kind == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    else:
        raise ValueError(f"variant kind must be one of {KINDS}, got {kind!r}")


def make_variant(registry: Registry, name: str, kind: Kind, config: SessionConfig | None = None) -> tuple[Path, list[Fidelity]]:
    """Write the variant of a verified model, measure it against the base, record both hashes."""
    cfg = config or SessionConfig(providers="cpu", threads=1)
    base = registry.load(name, cfg)
    out = variant_path(registry, name, kind)
    tmp = out.with_name(out.name + ".part")
    _convert(base.path, tmp, kind)
    variant = BoundSession(create_session(tmp, cfg, f"{name}.{kind}"), f"{name}.{kind}")
    check_signature(base.spec, variant, tmp)
    fidelity = compare(base.session, variant, sample_feeds(base.spec, base.session))
    tmp.replace(out)
    record = {
        "base": name, "kind": kind, "base_sha256": base.spec.sha256, "sha256": file_sha256(out),
        "bytes": out.stat().st_size, "fidelity": [asdict(f) | {"keeps_quality": f.keeps_quality} for f in fidelity],
    }
    _record_path(out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out, fidelity


def load_variant(registry: Registry, name: str, kind: Kind, config: SessionConfig | None = None) -> LoadedModel:
    """A variant made by make_variant, refused if it or its base changed since."""
    spec = registry.spec(name)
    path = variant_path(registry, name, kind)
    record_path = _record_path(path)
    if not path.is_file() or not record_path.is_file():
        raise ModelError(f"no {kind} variant of {name!r} at {path}; make it with `facewire-models variant {name} {kind}`")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("base_sha256") != spec.sha256:
        raise ModelIntegrityError(f"{path} was made from another {name!r} (base sha256 {record.get('base_sha256')}, "
                                  f"manifest {spec.sha256}); make it again")
    actual = file_sha256(path)
    if actual != record.get("sha256"):
        raise ModelIntegrityError(f"{path} has sha256 {actual}, recorded {record.get('sha256')}: corrupt; make it again")
    cfg = config or SessionConfig()
    session = BoundSession(create_session(path, cfg, f"{name}.{kind}"), f"{name}.{kind}")
    check_signature(spec, session, path)
    return LoadedModel(spec, path, session)


def load_model(registry: Registry, name: str, config: SessionConfig | None = None, variant: str | None = None) -> LoadedModel:
    """The verified model, or its int8/fp16 variant when `variant` is given."""
    if variant is None:
        return registry.load(name, config)
    if variant not in KINDS:
        raise ModelError(f"model variant must be one of {', '.join(KINDS)}, got {variant!r}")
    registry.require_file(name)  # the base stays the reference: a variant of a missing base is not used
    return load_variant(registry, name, variant, config)
