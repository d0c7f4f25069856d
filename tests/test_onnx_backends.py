"""The optional ONNX backends end to end on synthetic models with the real signatures:
insightface (SCRFD decode, 106 landmarks, ArcFace embedding), inswapper paste-back, RVM state."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import synthetic_onnx as so
from skimage import data as skdata
from synthetic_onnx import CPU, REAL_MANIFEST, build_all

from facewire.sender.insightface_backend import (
    ArcFaceEncoder,
    InsightFaceBackend,
    Landmarker106,
    ScrfdDetector,
    load_insightface_backend,
)
from facewire.sender.matte.rvm import RvmMatter, auto_downsample_ratio, load_rvm_matter
from facewire.shared.face.arcface import (
    arcface_template,
    decode_embedding,
    encode_embedding,
    estimate_norm,
    five_from_106,
    five_from_mesh,
    norm_crop,
)
from facewire.shared.models.registry import Registry
from facewire.shared.models.variants import load_model
from facewire.shared.render import make_renderer
from facewire.shared.render.inswapper import InswapperRenderer, identity_latent, load_emap
from facewire.shared.types import CapturedFrame, FrameState, IdentityAsset, KeyframeState, RenderedPerson
from tests.render_fixtures import draw
from tests.wire_fixtures import KeyframeRenderer

# Astronaut (skimage) face, measured once with MediaPipe face mesh: iris centres, nose tip, mouth corners.
ASTRO_KPS = np.array([[203.5, 101.1], [246.6, 103.5], [223.4, 130.0], [201.8, 139.2], [245.0, 141.0]], np.float32)
ASTRO_MOUTH_CENTER = (223.3, 146.6)  # between the inner-lip midpoints 13 and 14


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    manifest, models_dir = build_all(tmp_path_factory.mktemp("backends"))
    return Registry(manifest, models_dir)


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[:, :, ::-1])


@pytest.fixture(scope="module")
def astro_mesh() -> np.ndarray:
    """The astronaut's real 478-point face mesh (MediaPipe, as the sender computes it)."""
    from facewire.shared.face.identity import detect_faces

    faces = detect_faces(astronaut_bgr(), max_faces=1)
    assert len(faces) == 1
    return faces[0].landmarks


def synthetic_mesh() -> np.ndarray:
    """Only the five ArcFace points placed (for five_from_mesh); the rest at the face centre."""
    lm = np.zeros((478, 3), np.float32)
    lm[:, :2] = (224.0, 125.0)
    lm[468, :2], lm[473, :2], lm[1, :2], lm[61, :2], lm[291, :2] = ASTRO_KPS
    return lm


# ---------------------------------------------------------------- ArcFace geometry, wire format


def test_template_alignment_maps_keypoints_onto_the_template() -> None:
    a, s = np.deg2rad(17.0), 2.3  # the template seen rotated, scaled and shifted in a frame
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    for size in (112, 128):
        kps = arcface_template(size) @ rot.T + (310.0, 95.0)
        m = estimate_norm(kps, size)
        np.testing.assert_allclose(kps @ m[:, :2].T + m[:, 2], arcface_template(size), atol=1e-3)
    m = estimate_norm(ASTRO_KPS, 112)  # a real face fits the template to within a few pixels
    assert np.abs(ASTRO_KPS @ m[:, :2].T + m[:, 2] - arcface_template(112)).max() < 8.0
    assert arcface_template(128)[0, 0] == pytest.approx(38.2946 + 8.0)
    with pytest.raises(ValueError, match="multiple"):
        arcface_template(100)
    with pytest.raises(ValueError, match="degenerate|5 finite"):
        estimate_norm(np.zeros((5, 2)), 112)


def test_five_points_from_106_and_from_mesh() -> None:
    lm106 = np.zeros((106, 2), np.float32)
    lm106[33:43] = (10, 20)
    lm106[87:97] = (30, 20)
    lm106[77:85] = (20, 30)
    lm106[52], lm106[61] = (12, 40), (28, 40)
    np.testing.assert_allclose(five_from_106(lm106), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    np.testing.assert_allclose(five_from_mesh(synthetic_mesh()), ASTRO_KPS)
    with pytest.raises(ValueError):
        five_from_106(np.zeros((68, 2)))


def test_embedding_wire_format_round_trip() -> None:
    e = np.random.default_rng(1).normal(size=512)
    wire = encode_embedding(e)
    assert len(wire) == 1024
    back = decode_embedding(wire)
    assert back.dtype == np.float16
    np.testing.assert_allclose(back.astype(np.float32), e / np.linalg.norm(e), atol=1e-3)
    with pytest.raises(ValueError):
        decode_embedding(wire[:-2])
    with pytest.raises(ValueError):
        encode_embedding(np.zeros(512))


# ---------------------------------------------------------------- insightface backend


def test_scrfd_detects_the_bright_square_and_rescales(models: Registry) -> None:
    img = np.zeros((960, 1280, 3), np.uint8)  # letterboxed to 640 at scale 0.5
    img[400:640, 560:800] = (0, 0, 255)  # red in BGR: the synthetic detector scores the R channel
    det = ScrfdDetector(models.load("det_10g", CPU).session)
    faces = det.detect(img)
    assert faces
    for f in faces:
        cx, cy = (f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2
        half = (f.bbox[2] - f.bbox[0]) / 2  # box = anchor centre +- 2 strides, back in frame pixels
        stride = half / so.SCRFD_BOX_DIST * 0.5
        assert stride in (8, 16, 32)
        reach = stride / 0.5  # an anchor sits at its cell's top-left corner, so it may lead the square by a cell
        assert 560 - reach <= cx < 800 and 400 - reach <= cy < 640
        np.testing.assert_allclose(f.kps, np.array([cx, cy]) + so.SCRFD_KPS.reshape(5, 2) * stride / 0.5, atol=1e-3)
        assert f.score >= 0.5
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return float(w * h / (area(a) + area(b) - w * h))

    assert max(iou(a.bbox, b.bbox) for i, a in enumerate(faces) for b in faces[i + 1:]) <= 0.4  # NMS at 0.4
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_landmarks_106_map_back_through_the_crop(models: Registry) -> None:
    lmk = Landmarker106(models.load("2d106det", CPU).session)
    bbox = np.array([180.0, 70.0, 270.0, 180.0])
    pts = lmk.landmarks(astronaut_bgr(), bbox)
    scale = 192 / (110 * 1.5)
    in_crop = (so.landmark106_layout() + 1) * 96
    expected = (in_crop - 96) / scale + ((180 + 270) / 2, (70 + 180) / 2)
    np.testing.assert_allclose(pts, expected, atol=1e-3)


def test_arcface_embedding_uses_rgb_and_arcface_normalisation(models: Registry) -> None:
    enc = ArcFaceEncoder(models.load("w600k_r50", CPU).session)
    img = astronaut_bgr()
    emb = enc.embed(img, ASTRO_KPS)
    crop, _ = norm_crop(img, ASTRO_KPS, 112)
    rgb_mean = crop[:, :, ::-1].reshape(-1, 3).astype(np.float64).mean(axis=0)
    want = ((rgb_mean - 127.5) / 127.5) @ so.arcface_weights()
    np.testing.assert_allclose(emb, want / np.linalg.norm(want), atol=1e-4)
    bgr_mean = crop.reshape(-1, 3).astype(np.float64).mean(axis=0)
    wrong = ((bgr_mean - 127.5) / 127.5) @ so.arcface_weights()
    assert np.abs(emb - wrong / np.linalg.norm(wrong)).max() > 1e-2  # channel order matters


def test_backend_identity_embedding_bytes(models: Registry) -> None:
    backend = load_insightface_backend(models.models_dir, "cpu", manifest=models.manifest_path, det_size=640)
    assert isinstance(backend, InsightFaceBackend)
    img = np.zeros((480, 640, 3), np.uint8)
    img[100:300, 200:400] = (60, 90, 250)
    result = backend.analyze(img)
    assert result is not None and result.landmarks106 is not None and result.embedding.shape == (512,)
    wire = backend.identity_embedding(img)
    assert wire is not None and len(wire) == 1024
    np.testing.assert_allclose(decode_embedding(wire), result.embedding, atol=1e-3)
    assert backend.identity_embedding(np.zeros((480, 640, 3), np.uint8)) is None


def test_backend_is_none_when_not_installed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_insightface_backend(tmp_path, "cpu", manifest=REAL_MANIFEST) is None
    assert "facewire-models fetch" in caplog.text


# ---------------------------------------------------------------- inswapper renderer


class PassThrough(KeyframeRenderer):
    """Stands in for the mesh renderer: the keyframe image as it is."""

    name = "mesh"

    def render(self, frame: FrameState) -> RenderedPerson:
        assert self.keyframe is not None
        return RenderedPerson(self.keyframe.image.copy(), np.ones(self.keyframe.image.shape[:2], np.float32))


def _inputs(embedding: np.ndarray | None, mesh: np.ndarray) -> tuple[IdentityAsset, KeyframeState, FrameState]:
    img = astronaut_bgr()
    identity = IdentityAsset("a" * 64, None, None, None if embedding is None else embedding.astype(np.float16))
    kf = KeyframeState(0, img, None, mesh)
    fs = FrameState(1, 0, "tracked", mesh, None)
    return identity, kf, fs


def _swap_setup(tmp_path: Path, keep_mouth: bool) -> tuple[InswapperRenderer, np.ndarray, float]:
    emap = np.roll(np.eye(512, dtype=np.float32), 5, axis=0)  # latent[0] = embedding[5]: proves emap is applied
    path = tmp_path / "inswapper_128.onnx"
    so.write_model(so.inswapper_model(emap), path)
    loaded_emap = load_emap(path)
    np.testing.assert_array_equal(loaded_emap, emap)
    emb = np.full(512, 0.02, np.float32)
    emb[5] = 0.05  # latent[0] about 0.11: a visible shift that leaves most pixels unclipped
    latent = identity_latent(emb, loaded_emap)
    e16 = emb.astype(np.float16).astype(np.float32)
    assert latent[0, 0] == pytest.approx(e16[5] / np.linalg.norm(e16), rel=1e-3)
    from facewire.shared.models.onnx import BoundSession, create_session

    session = BoundSession(create_session(path, CPU, "inswapper_128"), "inswapper_128")
    return InswapperRenderer(session, loaded_emap, PassThrough(), keep_mouth=keep_mouth), emb, float(latent[0, 0])


def _patch(img: np.ndarray, x: float, y: float, r: int = 3) -> np.ndarray:
    return img[int(y) - r:int(y) + r + 1, int(x) - r:int(x) + r + 1].reshape(-1, 3).astype(np.float64).mean(axis=0)


def test_inswapper_swaps_inside_the_face_and_leaves_the_rest(tmp_path: Path, astro_mesh: np.ndarray) -> None:
    renderer, emb, shift = _swap_setup(tmp_path, keep_mouth=False)
    identity, kf, fs = _inputs(emb, astro_mesh)
    out = draw(renderer, identity, kf, fs)
    base = kf.image
    cv2.imwrite(str(tmp_path / "inswapper_side_by_side.png"), np.hstack([base, out.image]))
    assert out.image.shape == base.shape and out.image.dtype == np.uint8
    np.testing.assert_array_equal(out.alpha, 1.0)
    # The cheek under the eye: the synthetic swapper inverts and brightens by the latent's first value.
    for x, y in ((210, 118), (236, 118), ASTRO_MOUTH_CENTER):
        want = np.clip(255.0 - _patch(base, x, y) + shift * 255.0, 0, 255)
        assert np.abs(_patch(out.image, x, y) - want).max() < 14, (x, y)
    # Far from the face nothing moves, exactly.
    np.testing.assert_array_equal(out.image[300:, :], base[300:, :])
    np.testing.assert_array_equal(out.image[:, 350:], base[:, 350:])
    # The seam is feathered: along a row through the face the blend weight ramps from 0 to 1.
    row = base[118, 100:224].astype(np.float64)
    full = np.clip(255.0 - row + shift * 255.0, 0, 255)
    moved = out.image[118, 100:224].astype(np.float64) - row
    usable = np.abs(full - row).min(axis=1) > 40  # pixels where a swap is visible in every channel
    weight = (moved / (full - row)).mean(axis=1)[usable]
    xs = np.arange(100, 224)[usable]
    assert weight[0] < 0.05 and weight[-1] > 0.85
    ramp = xs[(weight > 0.1) & (weight < 0.9)]
    assert ramp.size >= 3 and ramp.max() - ramp.min() >= 4  # a soft edge several pixels wide, not a cut


def test_keep_mouth_keeps_the_targets_mouth(tmp_path: Path, astro_mesh: np.ndarray) -> None:
    renderer, emb, _ = _swap_setup(tmp_path, keep_mouth=True)
    identity, kf, fs = _inputs(emb, astro_mesh)
    out = draw(renderer, identity, kf, fs).image
    assert np.abs(_patch(out, *ASTRO_MOUTH_CENTER, r=2) - _patch(kf.image, *ASTRO_MOUTH_CENTER, r=2)).max() < 3
    assert np.abs(_patch(out, 210, 118) - _patch(kf.image, 210, 118)).max() > 40  # the rest is still swapped


def test_inswapper_without_embedding_or_face_returns_the_base(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, astro_mesh: np.ndarray
) -> None:
    renderer, emb, _ = _swap_setup(tmp_path, keep_mouth=False)
    identity, kf, fs = _inputs(None, astro_mesh)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            np.testing.assert_array_equal(draw(renderer, identity, kf, fs).image, kf.image)
    assert sum("no embedding" in r.message for r in caplog.records) == 1  # said once
    zero, kf, fs = _inputs(np.zeros(512, np.float32), astro_mesh)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            np.testing.assert_array_equal(draw(renderer, zero, kf, fs).image, kf.image)
    assert sum("unusable identity embedding" in r.message for r in caplog.records) == 1
    identity, kf, fs = _inputs(emb, astro_mesh)
    lost = FrameState(2, 0, "lost", None, None)
    np.testing.assert_array_equal(draw(renderer, identity, kf, lost).image, kf.image)


def test_make_renderer_falls_back_to_mesh_once(tmp_path: Path, models: Registry,
                                               caplog: pytest.LogCaptureFixture) -> None:
    mesh = PassThrough()
    with caplog.at_level(logging.WARNING):
        r = make_renderer("inswapper", mesh_factory=lambda: mesh, models_dir=tmp_path, manifest=REAL_MANIFEST)
    assert r is mesh
    assert sum("inswapper unavailable" in rec.message for rec in caplog.records) == 1
    assert "facewire-models fetch inswapper_128" in caplog.text
    r = make_renderer("inswapper", mesh_factory=lambda: mesh, models_dir=models.models_dir,
                      manifest=models.manifest_path, providers="cpu", keep_mouth=True)
    assert isinstance(r, InswapperRenderer) and r.keep_mouth and r.base is mesh
    sha = models.spec("inswapper_128").sha256
    assert sha is not None
    cached = models.path("inswapper_128").with_name(f"inswapper_128.onnx.emap-{sha[:16]}.npy")
    assert cached.is_file()  # the next start reads the small cache, not the whole graph
    np.testing.assert_array_equal(load_emap(models.path("inswapper_128"), sha), r.emap)
    assert make_renderer("mesh", mesh_factory=lambda: mesh) is mesh
    with pytest.raises(ValueError, match="--renderer"):
        make_renderer("gan", mesh_factory=lambda: mesh)


# ---------------------------------------------------------------- RVM


def test_rvm_carries_recurrent_state_and_resets(models: Registry) -> None:
    matter = RvmMatter(models.load("rvm_mobilenetv3", CPU).session)
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :, 2] = 200  # R in BGR
    frame = CapturedFrame(0, 0, img)
    red_half = 200 / 255 / 2
    got = [float(matter.matte(frame).mean()) for _ in range(3)]
    np.testing.assert_allclose(got, [red_half + so.RVM_STEP * k for k in range(3)], atol=1e-5)
    alpha = matter.matte(frame)
    assert alpha.shape == (48, 64) and alpha.dtype == np.float32
    matter.reset()
    assert float(matter.matte(frame).mean()) == pytest.approx(red_half, abs=1e-5)
    matter.matte(frame)
    # A new frame size starts from a fresh state too.
    assert float(matter.matte(CapturedFrame(1, 0, np.ascontiguousarray(img[:32, :32]))).mean()) == pytest.approx(
        red_half, abs=1e-5)
    with pytest.raises(ValueError):
        matter.matte(CapturedFrame(2, 0, np.zeros((4, 4), np.uint8)))


def test_rvm_loader(models: Registry, tmp_path: Path) -> None:
    assert auto_downsample_ratio(1080, 1920) == pytest.approx(512 / 1920)
    assert auto_downsample_ratio(240, 320) == 1.0
    matter = load_rvm_matter(models.models_dir, "cpu", manifest=models.manifest_path)
    assert matter is not None and matter.name == "rvm"
    assert load_rvm_matter(tmp_path, "cpu", manifest=REAL_MANIFEST) is None


def test_environment_threads_are_deliberate(monkeypatch: pytest.MonkeyPatch) -> None:
    from facewire.shared.models.onnx import default_threads

    monkeypatch.setenv("FACEWIRE_ORT_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("FACEWIRE_ORT_THREADS", "x")
    with pytest.raises(ValueError, match="FACEWIRE_ORT_THREADS"):
        default_threads()
    monkeypatch.delenv("FACEWIRE_ORT_THREADS")
    assert default_threads() == 1
    assert os.environ.get("FACEWIRE_ORT_THREADS") is None


def test_renderer_and_matter_use_variants(tmp_path: Path) -> None:
    from facewire.shared.models.registry import ModelError
    from facewire.shared.models.variants import make_variant

    manifest, models_dir = build_all(tmp_path)
    reg = Registry(manifest, models_dir)
    make_variant(reg, "inswapper_128", "fp16")
    make_variant(reg, "rvm_mobilenetv3", "int8")
    r = make_renderer("inswapper", mesh_factory=PassThrough, models_dir=models_dir, manifest=manifest,
                      providers="cpu", variant="fp16")
    assert isinstance(r, InswapperRenderer)
    np.testing.assert_array_equal(r.emap, load_emap(reg.path("inswapper_128")))
    matter = load_rvm_matter(models_dir, "cpu", manifest=manifest, variant="int8")
    assert isinstance(matter, RvmMatter) and matter.session.label == "rvm_mobilenetv3.int8"
    with pytest.raises(ModelError, match="variant"):
        load_model(reg, "rvm_mobilenetv3", CPU, "int4")


def test_inswapper_over_the_real_mesh_renderer(tmp_path: Path, models: Registry) -> None:
    """make_renderer's default base is the mesh renderer: the swap lands on its output, inside the face."""
    from facewire.shared.render.mesh import MeshRenderer
    from tests.render_fixtures import astronaut, astronaut_landmarks, open_mouth

    lm = astronaut_landmarks()
    kf = KeyframeState(0, astronaut(), None, lm)
    moved = open_mouth(lm, 8.0)
    frame = FrameState(1, 0, "tracked", moved, None)
    emb = np.random.default_rng(3).normal(size=512).astype(np.float16)
    me = IdentityAsset("self", None, None, emb)
    mesh_only = draw(MeshRenderer(), me, kf, frame).image
    results = {}
    for keep in (False, True):
        r = make_renderer("inswapper", models_dir=models.models_dir, manifest=models.manifest_path,
                          providers="cpu", keep_mouth=keep)
        assert isinstance(r, InswapperRenderer) and isinstance(r.base, MeshRenderer)
        results[keep] = draw(r, me, kf, frame).image
    changed = np.abs(results[False].astype(int) - mesh_only.astype(int)).max(axis=2) > 30
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 2000  # the face is swapped...
    oval = lm[:, :2]
    assert xs.min() >= oval[:, 0].min() - 2 and xs.max() <= oval[:, 0].max() + 2  # ...and only the face
    assert ys.min() >= oval[:, 1].min() - 2 and ys.max() <= oval[:, 1].max() + 12
    mouth = tuple(int(v) for v in moved[[13, 14], :2].mean(axis=0))
    y, x = mouth[1], mouth[0]
    assert np.abs(results[True][y - 1:y + 2, x - 1:x + 2].astype(int) - mesh_only[y - 1:y + 2, x - 1:x + 2]).max() < 4
    cv2.imwrite(str(tmp_path / "mesh_vs_inswapper.png"), np.hstack([mesh_only, results[False], results[True]]))


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    from facewire.sender.insightface_backend import nms

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.7, 0.5], np.float32)
    assert nms(boxes, scores, 0.4) == [1, 2]
    assert nms(boxes, scores, 0.4, top_k=1) == [1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4) == []


def test_available_renderers(tmp_path: Path, models: Registry) -> None:
    from facewire.shared.render import available_renderers

    assert available_renderers(tmp_path, REAL_MANIFEST) == ["mesh"]
    assert available_renderers(models.models_dir, models.manifest_path) == ["mesh", "inswapper"]
