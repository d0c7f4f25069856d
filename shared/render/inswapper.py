"""inswapper_128 renderer: swaps the identity of the base renderer's face using an ArcFace embedding.

The base renderer (the mesh renderer) puts the sender's face at the current pose and expression; this
stage aligns that face to the ArcFace template at 128 px, runs inswapper with the identity latent
(normalize(embedding @ emap), emap being the 512x512 initializer stored in the model's graph), and
pastes the result back with the mesh renderer's blending: its feathered face-outline mask (hairline
and jaw stay the sender's), weakened where the matte is unsure, times the feathered crop square.
With `keep_mouth` the mouth region stays the base's, so lip shapes and teeth follow the sender exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.face.arcface import five_from_mesh, norm_crop, normalize_embedding
from facewire.shared.models.onnx import BoundSession
from facewire.shared.render.blend import BlendOptions, face_mask, swap_weight
from facewire.shared.render.warp import Region
from facewire.shared.types import Alpha, FrameState, IdentityAsset, Image, KeyframeState, RenderedPerson, Renderer

log = logging.getLogger(__name__)

CROP = 128
TARGET_INPUT, SOURCE_INPUT, OUTPUT = "target", "source", "output"
# MediaPipe outer-lip ring, in order around the mouth.

FloatArray = npt.NDArray[np.float32]


def load_emap(path: Path, cache_key: str | None = None) -> FloatArray:
    """The embedding map: the last initializer of inswapper's graph (512x512).

    Parsing the 554 MB graph takes seconds and a lot of memory, so with `cache_key` (the verified
    model's sha256) the map is kept beside the model as a small .npy named after that hash.
    """
    cache = path.with_name(f"{path.name}.emap-{cache_key[:16]}.npy") if cache_key else None
    if cache is not None and cache.is_file():
        cached = np.load(cache, allow_pickle=False)
        if cached.shape == (512, 512) and cached.dtype == np.float32:
            return np.asarray(cached, dtype=np.float32)
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a dependency of the inswapper extra
        raise RuntimeError("the inswapper renderer needs the `onnx` package to read the model's emap") from exc
    graph = onnx.load(str(path)).graph
    if not graph.initializer:
        raise ValueError(f"{path}: the graph has no initializers, so no emap")
    emap = np.asarray(numpy_helper.to_array(graph.initializer[-1]), dtype=np.float32)
    if emap.shape != (512, 512):
        raise ValueError(f"{path}: last initializer has shape {emap.shape}, expected the (512, 512) emap")
    if cache is not None:
        tmp = cache.with_name(cache.name + ".part")
        try:
            with tmp.open("wb") as fh:
                np.save(fh, emap, allow_pickle=False)
            tmp.replace(cache)
        except OSError:
            log.debug("could not cache the emap at %s", cache)
    return emap


def identity_latent(embedding: npt.ArrayLike, emap: FloatArray) -> FloatArray:
    """(1, 512) latent for inswapper's `source` input."""
    latent = normalize_embedding(embedding).reshape(1, -1) @ emap
    norm = float(np.linalg.norm(latent))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("identity latent is zero or not finite")
    return (latent / norm).astype(np.float32)


def swap_crop(
    session: BoundSession, image: Image, kps5: npt.ArrayLike, latent: FloatArray
) -> tuple[Image, npt.NDArray[np.float64]]:
    """The swapped 128x128 BGR crop and the 2x3 frame->crop matrix."""
    crop, m = norm_crop(image, kps5, CROP)
    blob = crop[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0  # RGB, 0..1, NCHW
    out = session.run({TARGET_INPUT: blob, SOURCE_INPUT: latent}, [OUTPUT])[OUTPUT]
    rgb = np.clip(out[0].transpose(1, 2, 0) * 255.0, 0, 255)
    return np.ascontiguousarray(rgb[:, :, ::-1]).astype(np.uint8), m


def _invert(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(cv2.invertAffineTransform(m), dtype=np.float64)


def _roi(m: npt.NDArray[np.float64], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Frame bbox (x0, y0, x1, y1) covered by the crop, clipped to the frame."""
    inv = _invert(m)
    corners = np.array([[0, 0], [CROP, 0], [0, CROP], [CROP, CROP]], dtype=np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    h, w = shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    return None if x1 - x0 < 2 or y1 - y0 < 2 else (x0, y0, x1, y1)


def feather_mask(m: npt.NDArray[np.float64], roi: tuple[int, int, int, int]) -> FloatArray:
    """The crop square warped into the ROI, eroded and blurred so the seam fades (insightface's recipe)."""
    x0, y0, x1, y1 = roi
    inv = _invert(m)
    inv[:, 2] -= (x0, y0)
    white = np.full((CROP, CROP), 255, dtype=np.float32)
    mask = np.asarray(cv2.warpAffine(white, inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR), dtype=np.float32)
    mask[mask > 20] = 255
    ys, xs = np.nonzero(mask == 255)
    if ys.size == 0:
        return np.zeros_like(mask)
    size = int(np.sqrt(max(int(ys.max() - ys.min()), 1) * max(int(xs.max() - xs.min()), 1)))
    k = max(size // 10, 10)
    eroded = cv2.erode(mask, np.ones((k, k), np.uint8), iterations=1)
    k = max(size // 20, 5)
    blurred = np.asarray(cv2.GaussianBlur(eroded, (2 * k + 1, 2 * k + 1), 0), dtype=np.float32)
    return (blurred / 255.0).astype(np.float32)


def mouth_mask(landmarks: npt.ArrayLike, roi: tuple[int, int, int, int]) -> FloatArray:
    """1 inside the (slightly grown, feathered) outer-lip polygon, in ROI coordinates."""
    x0, y0, x1, y1 = roi
    lm = np.asarray(landmarks, dtype=np.float32)
    ring = lm[list(topo.MOUTH_OUTER), :2] - (x0, y0)
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(ring).astype(np.int32)], (255,), lineType=cv2.LINE_AA)
    width = float(np.linalg.norm(ring[0] - ring[10]))
    grow = max(int(width * 0.12), 2)
    grown = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    blur = 2 * max(grow, 2) + 1
    return (np.asarray(cv2.GaussianBlur(grown, (blur, blur), 0), dtype=np.float32) / 255.0).astype(np.float32)


def paste_back(
    target: Image, fake: Image, m: npt.NDArray[np.float64], weight: FloatArray | None = None,
    roi: tuple[int, int, int, int] | None = None,
) -> Image:
    """Blend the swapped crop into `target` through the feathered crop mask times `weight` (ROI-sized)."""
    roi = roi or _roi(m, target.shape[:2])
    if roi is None:
        return target.copy()
    x0, y0, x1, y1 = roi
    inv = _invert(m)
    inv[:, 2] -= (x0, y0)
    warped = np.asarray(
        cv2.warpAffine(fake, inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.float32,
    )
    alpha = feather_mask(m, roi)
    if weight is not None:
        alpha *= weight
    out = target.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[:, :, None]
    out[y0:y1, x0:x1] = np.clip(a * warped + (1.0 - a) * region + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass
class InswapperRenderer:
    """Renderer: base renderer output with the face swapped to the identity's embedding."""

    session: BoundSession
    emap: FloatArray
    base: Renderer
    keep_mouth: bool = False
    blend_options: BlendOptions = BlendOptions()
    name: str = "inswapper"

    def __post_init__(self) -> None:
        missing = {TARGET_INPUT, SOURCE_INPUT} - set(self.session.input_names)
        if missing or OUTPUT not in self.session.output_names:
            raise ValueError(f"inswapper session lacks inputs {sorted(missing)} or output {OUTPUT!r}")
        self._latent_for: tuple[bytes, FloatArray] | None = None
        self._identity: IdentityAsset | None = None
        self._warned_no_embedding = False
        self._warned_bad_embedding = False

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        self._identity = identity
        self.base.prepare_identity(identity)

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        self.base.prepare_keyframe(keyframe)

    def _latent(self, embedding: npt.ArrayLike) -> FloatArray:
        key = np.asarray(embedding, dtype=np.float32).tobytes()
        if self._latent_for is None or self._latent_for[0] != key:
            self._latent_for = (key, identity_latent(embedding, self.emap))
        return self._latent_for[1]

    def render(self, frame: FrameState) -> RenderedPerson:
        person = self.base.render(frame)
        identity = self._identity
        if identity is None or identity.embedding is None:
            if not self._warned_no_embedding:
                log.warning("inswapper: the identity has no embedding (sender without the insightface backend); "
                            "showing the base renderer's face")
                self._warned_no_embedding = True
            return person
        if frame.landmarks is None or frame.face == "lost":
            return person
        return RenderedPerson(self.swap(person.image, frame.landmarks, identity.embedding, person.alpha), person.alpha)

    def swap(self, image: Image, landmarks: npt.ArrayLike, embedding: npt.ArrayLike, alpha: Alpha | None = None) -> Image:
        try:
            latent = self._latent(embedding)
        except ValueError as exc:  # a zero or non-finite embedding: it stays bad until the identity changes
            if not self._warned_bad_embedding:
                log.warning("inswapper: unusable identity embedding (%s); showing the base renderer's face", exc)
                self._warned_bad_embedding = True
            return image
        try:
            fake, m = swap_crop(self.session, image, five_from_mesh(landmarks), latent)
        except ValueError as exc:  # degenerate landmarks for this frame: show the base face
            log.debug("inswapper: skipped a frame: %s", exc)
            return image
        roi = _roi(m, image.shape[:2])
        if roi is None:
            return image
        x0, y0, x1, y1 = roi
        lm = np.asarray(landmarks, dtype=np.float32)
        weight = face_mask(lm, Region(x0, y0, x1 - x0, y1 - y0), self.blend_options)
        weight = swap_weight(weight, None if alpha is None else alpha[y0:y1, x0:x1], None)
        if self.keep_mouth:
            weight = weight * (1.0 - mouth_mask(lm, roi))
        return paste_back(image, fake, m, weight, roi)
