"""ArcFace geometry and the identity-embedding wire format, shared by sender and receiver.

The sender aligns faces to the ArcFace 5-point template to compute an embedding; the receiver's
inswapper renderer aligns its target crop to the same template at 128 px. Both must agree exactly,
as must the byte layout of the embedding in the `identity` message.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
from skimage.transform import SimilarityTransform

from facewire.shared.face import topology as topo
from facewire.shared.types import Image

EMBEDDING_DIM = 512
EMBEDDING_DTYPE = np.dtype("<f2")  # little-endian fp16 on the wire

# Where ArcFace expects (image-left eye, image-right eye, nose tip, image-left mouth corner,
# image-right mouth corner) in its 112x112 input (insightface face_align.arcface_dst).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# 5 points from insightface's 106-point markup: eye contour centroids, nose centroid, mouth corners.
LM106_TO_5: tuple[tuple[int, ...], ...] = (
    tuple(range(33, 43)),
    tuple(range(87, 97)),
    tuple(range(77, 85)),
    (52,),
    (61,),
)

# 5 points from the MediaPipe 478-point mesh (image-left = the subject's right for an unmirrored face):
# iris centres when the mesh has them, nose tip, mouth corners.


def arcface_template(size: int) -> npt.NDArray[np.float32]:
    """The template for a square crop of `size`: 112 multiples scale it, 128 multiples also shift x by 8."""
    if size % 112 == 0:
        ratio, dx = size / 112.0, 0.0
    elif size % 128 == 0:
        ratio = size / 128.0
        dx = 8.0 * ratio
    else:
        raise ValueError(f"ArcFace crop size must be a multiple of 112 or 128, got {size}")
    dst = ARCFACE_TEMPLATE_112 * ratio
    dst[:, 0] += dx
    return dst.astype(np.float32)


def estimate_norm(kps5: npt.ArrayLike, size: int) -> npt.NDArray[np.float64]:
    """2x3 similarity transform taking the 5 keypoints (frame pixels) onto the template of `size`."""
    src = np.asarray(kps5, dtype=np.float64).reshape(-1, 2)
    if src.shape != (5, 2) or not np.all(np.isfinite(src)):
        raise ValueError(f"need 5 finite (x, y) keypoints, got shape {src.shape}")
    return _similarity(src, arcface_template(size).astype(np.float64))


def _similarity(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Least-squares (Umeyama) similarity src -> dst as 2x3; skimage >= 0.26 renamed the estimator."""
    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:  # scikit-image < 0.26
        tform = SimilarityTransform()
        ok = bool(tform.estimate(src, dst))
    if not ok or not np.all(np.isfinite(tform.params)):
        raise ValueError("degenerate keypoints: no similarity transform fits them")
    return np.asarray(tform.params[0:2, :], dtype=np.float64)


def norm_crop(image: Image, kps5: npt.ArrayLike, size: int) -> tuple[Image, npt.NDArray[np.float64]]:
    """The template-aligned crop and the 2x3 matrix that made it."""
    m = estimate_norm(kps5, size)
    crop = np.asarray(cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR), dtype=np.uint8)
    return crop, m


def five_from_106(landmarks: npt.ArrayLike) -> npt.NDArray[np.float32]:
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] != 106 or lm.shape[1] < 2:
        raise ValueError(f"need (106, 2) landmarks, got {lm.shape}")
    return np.stack([lm[list(idx), :2].mean(axis=0) for idx in LM106_TO_5]).astype(np.float32)


def five_from_mesh(landmarks: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """5 ArcFace keypoints from MediaPipe mesh landmarks (468 or 478 points, x/y used)."""
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"need (468|478, >=2) mesh landmarks, got {lm.shape}")
    if lm.shape[0] >= 478:
        eye_r, eye_l = lm[topo.RIGHT_IRIS_CENTER, :2], lm[topo.LEFT_IRIS_CENTER, :2]
    else:
        eye_r, eye_l = lm[list(topo.RIGHT_EYE_CORNERS), :2].mean(axis=0), lm[list(topo.LEFT_EYE_CORNERS), :2].mean(axis=0)
    return np.stack(
        [eye_r, eye_l, lm[topo.NOSE_TIP, :2], lm[topo.MOUTH_OUTER_CORNERS[0], :2], lm[topo.MOUTH_OUTER_CORNERS[1], :2]]
    ).astype(np.float32)


def normalize_embedding(embedding: npt.ArrayLike) -> npt.NDArray[np.float32]:
    e = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if e.shape != (EMBEDDING_DIM,):
        raise ValueError(f"an identity embedding has {EMBEDDING_DIM} values, got {e.size}")
    n = float(np.linalg.norm(e))
    if not np.isfinite(n) or n == 0.0:
        raise ValueError("identity embedding is zero or not finite")
    return (e / n).astype(np.float32)


def encode_embedding(embedding: npt.ArrayLike) -> bytes:
    """L2-normalised embedding as 512 little-endian fp16 values (1024 bytes) for the identity message."""
    return normalize_embedding(embedding).astype(EMBEDDING_DTYPE).tobytes()


def decode_embedding(data: bytes) -> npt.NDArray[np.float16]:
    if len(data) != EMBEDDING_DIM * EMBEDDING_DTYPE.itemsize:
        raise ValueError(f"identity embedding must be {EMBEDDING_DIM * 2} bytes, got {len(data)}")
    e = np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float16)
    if not np.all(np.isfinite(e)):
        raise ValueError("identity embedding holds non-finite values")
    return e
