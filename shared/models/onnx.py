"""ONNX Runtime sessions: execution-provider choice, thread counts, and inputs bound by name.

`--providers auto|cpu|cuda|tensorrt|coreml|dml` picks the provider list for every ONNX stage; the
choice and what ONNX Runtime actually enabled are logged once per session. CUDA and TensorRT get
their fast options (fp16, a TensorRT engine cache) when `onnxruntime-gpu` provides them.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt", "coreml", "dml")

_ORT_NAME = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
# `auto` prefers a GPU provider; TensorRT only when asked for, because its first run builds engines
# for minutes.
_AUTO_ORDER = ("cuda", "coreml", "dml")

_INSTALL_HINT = {
    "cuda": "install the GPU build: pip install 'facewire[gpu]' (onnxruntime-gpu, which replaces onnxruntime)",
    "tensorrt": "install onnxruntime-gpu built with TensorRT and the TensorRT libraries",
    "coreml": "CoreML comes with the onnxruntime wheel on macOS only",
    "dml": "install onnxruntime-directml (Windows)",
    "cpu": "",
}

ProviderEntry = str | tuple[str, dict[str, Any]]


class ProviderUnavailable(RuntimeError):
    """The requested execution provider is not in this onnxruntime build."""


@dataclass(frozen=True)
class SessionConfig:
    """How to build sessions. threads: intra-op threads per session (0 lets ORT use every core)."""

    providers: str = "auto"
    threads: int = 1
    fp16: bool = True
    trt_cache_dir: Path | None = None
    device_id: int = 0
    extra_session_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.providers not in PROVIDER_CHOICES:
            raise ValueError(f"--providers must be one of {', '.join(PROVIDER_CHOICES)}, got {self.providers!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


def default_threads() -> int:
    """FACEWIRE_ORT_THREADS, else 1: stages run concurrently, so one ORT thread each avoids oversubscription."""
    raw = os.environ.get("FACEWIRE_ORT_THREADS", "1")
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"FACEWIRE_ORT_THREADS must be an integer, got {raw!r}") from exc
    return max(0, value)


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    """`--providers` and `--ort-threads`, the same on every CLI that runs ONNX models."""
    parser.add_argument("--providers", choices=PROVIDER_CHOICES, default="auto",
                        help="ONNX Runtime execution provider for the optional models (default: auto)")
    parser.add_argument("--ort-threads", type=int, default=None, metavar="N",
                        help="intra-op threads per ONNX session (default: FACEWIRE_ORT_THREADS or 1)")


def config_from_args(args: argparse.Namespace) -> SessionConfig:
    threads = args.ort_threads if args.ort_threads is not None else default_threads()
    return SessionConfig(providers=args.providers, threads=threads)


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def resolve_providers(config: SessionConfig, available: Sequence[str] | None = None) -> list[ProviderEntry]:
    """The provider list for `config`, CPU always last as the fallback for unsupported nodes."""
    have = set(available_providers() if available is None else available)
    choice = config.providers
    if choice == "auto":
        picked = next((p for p in _AUTO_ORDER if _ORT_NAME[p] in have), "cpu")
    else:
        picked = choice
        if _ORT_NAME[picked] not in have:
            hint = _INSTALL_HINT[picked]
            raise ProviderUnavailable(
                f"execution provider {picked!r} ({_ORT_NAME[picked]}) is not available in this onnxruntime "
                f"(available: {', '.join(sorted(have)) or 'none'}); {hint}"
            )
    entries: list[ProviderEntry] = []
    if picked == "tensorrt":
        entries.append((_ORT_NAME["tensorrt"], _tensorrt_options(config)))
        if _ORT_NAME["cuda"] in have:
            entries.append((_ORT_NAME["cuda"], _cuda_options(config)))
    elif picked == "cuda":
        entries.append((_ORT_NAME["cuda"], _cuda_options(config)))
    elif picked != "cpu":
        entries.append(_ORT_NAME[picked])
    entries.append(_ORT_NAME["cpu"])
    return entries


def _cuda_options(config: SessionConfig) -> dict[str, Any]:
    # HEURISTIC avoids cuDNN's exhaustive search, which stalls the first frames for seconds.
    return {"device_id": config.device_id, "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True}


def _tensorrt_options(config: SessionConfig) -> dict[str, Any]:
    cache = config.trt_cache_dir or (Path.home() / ".cache" / "facewire" / "trt")
    cache.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": config.device_id,
        "trt_fp16_enable": config.fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }


def session_options(config: SessionConfig) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = config.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Spinning threads burn the shared cores that capture, tracking and encoding also need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in config.extra_session_options.items():
        so.add_session_config_entry(key, value)
    return so


def create_session(model: Path | bytes, config: SessionConfig, label: str) -> ort.InferenceSession:
    """An InferenceSession with the configured providers; logs requested and enabled providers."""
    providers = resolve_providers(config)
    names = [p if isinstance(p, str) else p[0] for p in providers]
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=session_options(config), providers=providers)
    enabled = session.get_providers()
    log.info("%s: --providers %s -> requested %s, enabled %s, %d thread(s)",
             label, config.providers, names, enabled, config.threads)
    if names[0] not in enabled:
        log.warning("%s: %s could not be enabled, running on %s", label, names[0], enabled[0])
    return session


_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def ort_dtype(type_string: str) -> str:
    """numpy dtype name for an ORT type string such as 'tensor(float)'."""
    return _ORT_DTYPES.get(type_string, type_string)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


class BoundSession:
    """A session whose inputs are fed by name, never by position, and whose outputs come back by name."""

    def __init__(self, session: ort.InferenceSession, label: str) -> None:
        self.session = session
        self.label = label
        self.inputs = tuple(TensorInfo(i.name, tuple(i.shape), ort_dtype(i.type)) for i in session.get_inputs())
        self.outputs = tuple(TensorInfo(o.name, tuple(o.shape), ort_dtype(o.type)) for o in session.get_outputs())
        self.input_names = tuple(i.name for i in self.inputs)
        self.output_names = tuple(o.name for o in self.outputs)
        self._input_dtypes = {i.name: i.dtype for i in self.inputs}

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def input_dtype(self, name: str) -> np.dtype[Any]:
        return np.dtype(self._input_dtypes[name])

    def run(self, feeds: Mapping[str, npt.ArrayLike], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self._input_dtypes]
        if missing or unknown:
            raise ValueError(
                f"{self.label}: inputs are bound by name; missing {missing}, unknown {unknown}, "
                f"model inputs {list(self.input_names)}"
            )
        want = list(self.output_names if outputs is None else outputs)
        bad = [n for n in want if n not in self.output_names]
        if bad:
            raise ValueError(f"{self.label}: no outputs {bad}; model outputs {list(self.output_names)}")
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=self.input_dtype(n)) for n in self.input_names}
        results = self.session.run(want, arrays)
        return {n: np.asarray(r) for n, r in zip(want, results, strict=True)}
