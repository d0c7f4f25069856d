"""The model registry: manifest, verified loading (size, hash, signature), providers, name binding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import synthetic_onnx as so
from onnx import TensorProto, helper
from synthetic_onnx import CPU, REAL_MANIFEST, build_all

from facewire.shared.models.onnx import BoundSession, ProviderUnavailable, SessionConfig, create_session, resolve_providers
from facewire.shared.models.registry import (
    ManifestError,
    ModelIntegrityError,
    ModelNotInstalledError,
    ModelSignatureError,
    Registry,
    UnknownModelError,
    parse_manifest,
    user_models_dir,
)


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    manifest, models = build_all(tmp_path)
    return Registry(manifest, models)


def test_real_manifest_pins_published_hashes_and_says_the_licence() -> None:
    specs = parse_manifest(REAL_MANIFEST)
    assert set(specs) == {"det_10g", "2d106det", "w600k_r50", "inswapper_128", "rvm_mobilenetv3"}
    assert specs["inswapper_128"].sha256 == "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af"
    assert specs["inswapper_128"].bytes == 554253681
    for name in ("det_10g", "2d106det", "w600k_r50", "inswapper_128"):
        assert "NON-COMMERCIAL" in specs[name].licence
        assert specs[name].urls
    assert [t.name for t in specs["rvm_mobilenetv3"].inputs] == ["src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio"]
    assert specs["det_10g"].archive is not None and specs["det_10g"].archive.member == "det_10g.onnx"


def test_every_synthetic_model_loads_against_the_real_signatures(registry: Registry) -> None:
    for name in registry.names:
        loaded = registry.load(name, CPU)
        assert loaded.session.input_names == tuple(t.name for t in loaded.spec.inputs)
        assert set(loaded.session.output_names) == {t.name for t in loaded.spec.outputs}
        assert loaded.session.providers == ["CPUExecutionProvider"]


def test_missing_model_names_file_hash_and_how_to_get_it(tmp_path: Path) -> None:
    reg = Registry(REAL_MANIFEST, tmp_path)
    with pytest.raises(ModelNotInstalledError) as err:
        reg.load("inswapper_128", CPU)
    text = str(err.value)
    assert str(tmp_path / "inswapper_128.onnx") in text
    assert "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af" in text
    assert "facewire-models fetch inswapper_128" in text and "https://" in text


def test_hash_failure_is_refused(registry: Registry) -> None:
    path = registry.path("w600k_r50")
    registry.load("w600k_r50", CPU)  # leaves a .verified stamp that must not excuse a changed file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(ModelIntegrityError) as err:
        registry.load("w600k_r50", CPU)
    assert "sha256" in str(err.value) and str(path) in str(err.value)
    assert str(registry.spec("w600k_r50").sha256) in str(err.value)


def test_partial_file_is_refused_by_size(registry: Registry) -> None:
    path = registry.path("det_10g")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelIntegrityError, match="bytes"):
        registry.load("det_10g", CPU)


def _retarget(manifest: Path, name: str, model: onnx.ModelProto, models: Path) -> Registry:
    entry = so.write_model(model, models / so.SIGNATURES[name][0])
    return Registry(so.write_manifest(manifest.with_name("m2.toml"), manifest, {name: entry}), models)


def test_signature_mismatch_names_the_tensors(registry: Registry) -> None:
    # A valid model with the right hash in the manifest but another model's graph.
    reg = _retarget(registry.manifest_path, "inswapper_128", so.arcface_model(), registry.models_dir)
    with pytest.raises(ModelSignatureError) as err:
        reg.load("inswapper_128", CPU)
    text = str(err.value)
    assert "'target' missing" in text and "'source' missing" in text and "unexpected inputs ['input.1']" in text


def test_signature_checks_dtype_and_rank(registry: Registry) -> None:
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT16, ["None", 3, 112])
    y = helper.make_tensor_value_info("683", TensorProto.FLOAT16, [1, 512])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["input.1"], ["683"], axes=[2], keepdims=0)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=so.OPSET)
    model.ir_version = 8
    reg = _retarget(registry.manifest_path, "w600k_r50", model, registry.models_dir)
    with pytest.raises(ModelSignatureError) as err:
        reg.load("w600k_r50", CPU)
    assert "rank 3, expected 4" in str(err.value) and "dtype float16, expected float32" in str(err.value)


def test_garbage_file_with_matching_hash_is_a_clear_error(registry: Registry) -> None:
    garbage = registry.models_dir / "2d106det.onnx"
    garbage.write_bytes(b"not an onnx model at all")
    import hashlib

    entry = (hashlib.sha256(garbage.read_bytes()).hexdigest(), garbage.stat().st_size)
    reg = Registry(so.write_manifest(registry.manifest_path.with_name("g.toml"), registry.manifest_path,
                                     {"2d106det": entry}), registry.models_dir)
    with pytest.raises(ModelSignatureError, match="not a loadable ONNX model"):
        reg.load("2d106det", CPU)


def test_unknown_hash_is_reported_not_trusted(registry: Registry) -> None:
    text = registry.manifest_path.read_text()
    sha = registry.spec("rvm_mobilenetv3").sha256
    assert sha is not None
    manifest = registry.manifest_path.with_name("u.toml")
    manifest.write_text(text.replace(sha, "unknown"))
    reg = Registry(manifest, registry.models_dir)
    assert reg.check_file("rvm_mobilenetv3").status == "unverifiable"
    with pytest.raises(ModelIntegrityError, match="no published hash"):
        reg.load("rvm_mobilenetv3", CPU)
    assert reg.load("rvm_mobilenetv3", CPU, allow_unverified=True).session.input_names[0] == "src"


def test_unknown_model_and_bad_manifest(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="det_10g"):
        Registry(REAL_MANIFEST, tmp_path).spec("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\n[models.x]\nfile = "x.onnx"\nsha256 = "abc"\nlicence = "l"\nurls = []\n'
                   "inputs = []\noutputs = []\n")
    with pytest.raises(ManifestError, match=r"models\.x\.sha256"):
        parse_manifest(bad)
    bad.write_text("schema = 2\n")
    with pytest.raises(ManifestError, match="schema"):
        parse_manifest(bad)


def test_models_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEWIRE_MODELS", str(tmp_path / "m"))
    assert user_models_dir() == tmp_path / "m"
    monkeypatch.delenv("FACEWIRE_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname != "Darwin":
        assert user_models_dir() == tmp_path / "xdg" / "facewire" / "models"


def test_provider_resolution() -> None:
    assert resolve_providers(SessionConfig("auto"), ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    auto = resolve_providers(SessionConfig("auto"), gpu)
    assert isinstance(auto[0], tuple) and auto[0][0] == "CUDAExecutionProvider" and auto[-1] == "CPUExecutionProvider"
    trt = resolve_providers(SessionConfig("tensorrt", trt_cache_dir=Path("/tmp/fw-trt-test")), gpu)
    assert isinstance(trt[0], tuple) and trt[0][0] == "TensorrtExecutionProvider"
    assert trt[0][1]["trt_fp16_enable"] is True and trt[0][1]["trt_engine_cache_enable"] is True
    assert [p if isinstance(p, str) else p[0] for p in trt] == gpu
    assert resolve_providers(SessionConfig("coreml"), ["CoreMLExecutionProvider", "CPUExecutionProvider"]) == [
        "CoreMLExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ProviderUnavailable, match="onnxruntime-gpu"):
        resolve_providers(SessionConfig("cuda"), ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="--providers"):
        SessionConfig("vulkan")


def test_session_logs_the_provider_choice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="facewire.shared.models.onnx")
    create_session(so.arcface_model().SerializeToString(), CPU, label="w600k_r50")
    assert any("w600k_r50" in r.message and "CPUExecutionProvider" in r.message for r in caplog.records)


def test_inputs_are_bound_by_name() -> None:
    bound = BoundSession(create_session(so.inswapper_model(np.eye(512, dtype=np.float32)).SerializeToString(),
                                        CPU, "inswapper"), "inswapper")
    target = np.full((1, 3, 128, 128), 0.25, np.float32)
    source = np.zeros((1, 512), np.float32)
    source[0, 0] = 0.1
    # Feeding in either dict order gives the same answer: names decide, not positions.
    a = bound.run({"target": target, "source": source})["output"]
    b = bound.run({"source": source, "target": target})["output"]
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, 1.0 - 0.25 + 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        bound.run({"target": target})
    with pytest.raises(ValueError, match="unknown"):
        bound.run({"target": target, "source": source, "latent": source})
    with pytest.raises(ValueError, match="no outputs"):
        bound.run({"target": target, "source": source}, ["pha"])


def test_int8_and_fp16_variants_keep_signature_and_are_measured(registry: Registry) -> None:
    from facewire.shared.models.variants import load_variant, make_variant

    for kind in ("int8", "fp16"):
        path, fidelity = make_variant(registry, "w600k_r50", kind)
        assert path.name == f"w600k_r50.{kind}.onnx" and path.with_name(path.name + ".variant.json").is_file()
        assert [f.output for f in fidelity] == ["683"]
        # A 3x512 linear map: int8 weights and fp16 both stay close to fp32 on the photo's crop.
        assert fidelity[0].cosine > 0.999 and fidelity[0].keeps_quality
        loaded = load_variant(registry, "w600k_r50", kind, CPU)
        assert loaded.session.input_names == ("input.1",) and loaded.session.output_names == ("683",)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="corrupt"):
        load_variant(registry, "w600k_r50", "fp16", CPU)


def test_groups_expand_to_models() -> None:
    reg = Registry(REAL_MANIFEST, Path("/nonexistent"))
    assert reg.expand(["buffalo_l", "w600k_r50", "rvm_mobilenetv3"]) == ["det_10g", "2d106det", "w600k_r50",
                                                                           "rvm_mobilenetv3"]
    with pytest.raises(UnknownModelError):
        reg.expand(["buffalo_s"])


def test_unavailable_provider_is_not_mistaken_for_a_bad_model(registry: Registry) -> None:
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ProviderUnavailable):
        registry.load("w600k_r50", SessionConfig(providers="cuda"))


def test_cli_arguments_give_a_session_config() -> None:
    import argparse

    from facewire.shared.models.onnx import add_provider_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_provider_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--providers", "cpu", "--ort-threads", "2"]))
    assert cfg.providers == "cpu" and cfg.threads == 2
    assert config_from_args(parser.parse_args([])).providers == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--providers", "rocm"])
