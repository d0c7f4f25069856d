"""insightface buffalo_l on ONNX Runtime directly (not through the insightface package).

SCRFD-10GF detects faces and 5 keypoints, 2d106det refines 106 landmarks, ArcFace w600k_r50 turns
the template-aligned 112x112 crop into a 512-d embedding, which the identity message carries as fp16.
Every session is fed by input name. The models are non-commercial-research-only (see the manifest).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face.arcface import encode_embedding, five_from_106, norm_crop, normalize_embedding
from facewire.shared.models.onnx import BoundSession, SessionConfig, default_threads
from facewire.shared.models.registry import ModelNotInstalledError, Registry
from facewire.shared.models.variants import load_model
from facewire.shared.types import Image

log = logging.getLogger(__name__)

DETECTOR, LANDMARKS, RECOGNISER = "det_10g", "2d106det", "w600k_r50"
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
# det_10g's heads by name: scores, boxes, keypoints for strides 8, 16, 32 (models/manifest.toml).
SCRFD_OUTPUT_NAMES = ("448", "471", "494", "451", "474", "497", "454", "477", "500")
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Detection:
    bbox: FloatArray  # x0, y0, x1, y1 in frame pixels
    score: float
    kps: FloatArray  # (5, 2): image-left eye, image-right eye, nose, image-left / image-right mouth corner


@dataclass(frozen=True)
class FaceResult:
    detection: Detection
    landmarks106: FloatArray | None
    embedding: FloatArray  # (512,) L2-normalised


def blob(image: Image, mean: float, std: float) -> FloatArray:
    """BGR uint8 HxWx3 -> (1, 3, H, W) float32 RGB, (x - mean) / std."""
    rgb = image[:, :, ::-1].astype(np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1)[None].copy()


def letterbox(image: Image, size: int) -> tuple[Image, float]:
    """Scale the longer side to `size`, paste at the top-left of a black size x size canvas."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale


def anchor_centers(height: int, width: int, stride: int) -> FloatArray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1) * stride  # row-major over the grid
    return np.repeat(grid, ANCHORS_PER_CELL, axis=0)


def decode_scrfd(
    outputs: list[FloatArray], input_hw: tuple[int, int], threshold: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """SCRFD heads (scores x3, boxes x3, kps x3 by stride) -> boxes (N, 4), scores (N,), kps (N, 5, 2)."""
    boxes, scores, kpss = [], [], []
    for i, stride in enumerate(STRIDES):
        score = outputs[i].reshape(-1)
        dist = outputs[i + 3].reshape(-1, 4) * stride
        kp = outputs[i + 6].reshape(-1, 10) * stride
        centers = anchor_centers(input_hw[0] // stride, input_hw[1] // stride, stride)
        if centers.shape[0] != score.shape[0]:
            raise ValueError(f"stride {stride}: {score.shape[0]} scores for {centers.shape[0]} anchors")
        keep = np.nonzero(score >= threshold)[0]
        c = centers[keep]
        boxes.append(np.concatenate([c - dist[keep, :2], c + dist[keep, 2:]], axis=1))
        kpss.append((np.tile(c, 5) + kp[keep]).reshape(-1, 5, 2))
        scores.append(score[keep])
    return (np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
            np.concatenate(kpss).astype(np.float32))


def nms(boxes: FloatArray, scores: FloatArray, iou: float, top_k: int = 500) -> list[int]:
    """Indices kept by NMS, best first. Only the `top_k` best candidates enter it: a real detector
    passes a few dozen anchors per face, and NMS is quadratic when something floods it."""
    if boxes.shape[0] == 0:
        return []
    order = np.argsort(-scores, kind="stable")[:top_k]
    xywh = np.concatenate([boxes[order, :2], boxes[order, 2:] - boxes[order, :2]], axis=1).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh, scores[order].astype(np.float32), 0.0, iou)
    picked = [int(order[int(k)]) for k in np.asarray(keep).reshape(-1)]
    return sorted(picked, key=lambda k: -float(scores[k]))


class ScrfdDetector:
    def __init__(self, session: BoundSession, size: int = 640, threshold: float = 0.5, iou: float = 0.4) -> None:
        if size % 32:
            raise ValueError(f"SCRFD input size must be a multiple of 32, got {size}")
        self.session, self.size, self.threshold, self.iou = session, size, threshold, iou
        self.input = session.input_names[0]
        if set(SCRFD_OUTPUT_NAMES) <= set(session.output_names):
            self.outputs: tuple[str, ...] = SCRFD_OUTPUT_NAMES
        elif len(session.output_names) == 9:  # another SCRFD export: its heads come in the same order
            self.outputs = session.output_names
        else:
            raise ValueError(f"SCRFD with keypoints has 9 outputs, this model has {list(session.output_names)}")

    def detect(self, image: Image) -> list[Detection]:
        canvas, scale = letterbox(image, self.size)
        out = self.session.run({self.input: blob(canvas, 127.5, 128.0)}, self.outputs)
        boxes, scores, kps = decode_scrfd([out[n] for n in self.outputs], (self.size, self.size), self.threshold)
        return [Detection(boxes[k] / scale, float(scores[k]), kps[k] / scale) for k in nms(boxes, scores, self.iou)]


class Landmarker106:
    SIZE = 192

    def __init__(self, session: BoundSession) -> None:
        self.session = session

    def crop_matrix(self, bbox: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Frame -> 192x192 crop centred on the box, side 1.5 x its longer edge (insightface's recipe)."""
        x0, y0, x1, y1 = (float(v) for v in np.asarray(bbox).reshape(4))
        scale = self.SIZE / (max(x1 - x0, y1 - y0) * 1.5)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return np.array([[scale, 0, self.SIZE / 2 - cx * scale], [0, scale, self.SIZE / 2 - cy * scale]])

    def landmarks(self, image: Image, bbox: npt.ArrayLike) -> FloatArray:
        m = self.crop_matrix(bbox)
        crop = cv2.warpAffine(image, m, (self.SIZE, self.SIZE), flags=cv2.INTER_LINEAR)
        pred = self.session.run({"data": blob(np.asarray(crop, np.uint8), 0.0, 1.0)}, ["fc1"])["fc1"]
        pts = (pred.reshape(-1, 2)[-106:] + 1.0) * (self.SIZE // 2)
        inv = cv2.invertAffineTransform(m)
        return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


class ArcFaceEncoder:
    SIZE = 112

    def __init__(self, session: BoundSession) -> None:
        self.session = session
        self.input = session.input_names[0]
        self.output = session.output_names[0]

    def embed(self, image: Image, kps5: npt.ArrayLike) -> FloatArray:
        crop, _ = norm_crop(image, kps5, self.SIZE)
        out = self.session.run({self.input: blob(crop, 127.5, 127.5)}, [self.output])[self.output]
        return normalize_embedding(out.reshape(-1))


class InsightFaceBackend:
    """buffalo_l: detect the primary face, optionally 106 landmarks, and its ArcFace embedding."""

    def __init__(self, detector: ScrfdDetector, encoder: ArcFaceEncoder, landmarker: Landmarker106 | None,
                 align_with_106: bool = False) -> None:
        self.detector, self.encoder, self.landmarker = detector, encoder, landmarker
        self.align_with_106 = align_with_106 and landmarker is not None

    def analyze(self, image: Image) -> FaceResult | None:
        faces = self.detector.detect(image)
        if not faces:
            return None
        face = max(faces, key=lambda d: float((d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])))
        lm106 = self.landmarker.landmarks(image, face.bbox) if self.landmarker is not None else None
        kps = five_from_106(lm106) if self.align_with_106 and lm106 is not None else face.kps
        return FaceResult(face, lm106, self.encoder.embed(image, kps))

    def identity_embedding(self, image: Image) -> bytes | None:
        """The identity message's `embedding` field (512 fp16, 1024 bytes) for the image's main face."""
        result = self.analyze(image)
        return None if result is None else encode_embedding(result.embedding)


def load_insightface_backend(
    models_dir: Path | str | None = None, providers: str = "auto", *, manifest: Path | str | None = None,
    with_landmarks: bool = True, align_with_106: bool = False, det_size: int = 640, threads: int | None = None,
    variant: str | None = None,
) -> InsightFaceBackend | None:
    """The backend, or None (logged) when buffalo_l is not installed; a corrupt file raises ModelError.
    `variant` ("int8" | "fp16") uses variants made by `facewire-models variant` for all three models."""
    registry = Registry(manifest, models_dir)
    config = SessionConfig(providers=providers, threads=default_threads() if threads is None else threads)
    needed = [DETECTOR, RECOGNISER] + ([LANDMARKS] if with_landmarks else [])
    try:
        loaded = {name: load_model(registry, name, config, variant) for name in needed}
    except ModelNotInstalledError as exc:
        log.warning("insightface backend unavailable: %s", exc)
        return None
    landmarker = Landmarker106(loaded[LANDMARKS].session) if with_landmarks else None
    return InsightFaceBackend(ScrfdDetector(loaded[DETECTOR].session, size=det_size),
                              ArcFaceEncoder(loaded[RECOGNISER].session), landmarker, align_with_106)
