"""Identity assets: an avatar image, content-addressed by sha256, with its face-mesh landmarks.

Both sides load identities the same way: the sender to validate `--identity IMAGE` before it
sends anything, the receiver to recompute landmarks when an asset arrives without them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

from facewire.shared.types import MESH_POINTS, IdentityAsset, Image, Landmarks

SELF_ID = "self"
MIN_FACE_PX = 80
# Large avatars are detected on a downscaled copy: FaceMesh works on 192 px crops anyway.
_DETECT_MAX_SIDE = 1280


class IdentityError(ValueError):
    """An image that cannot serve as an identity; the message says why and what to use instead."""


@dataclass(frozen=True)
class DetectedFace:
    landmarks: Landmarks
    width_px: float


def detect_faces(image: Image, max_faces: int = 2, min_confidence: float = 0.5) -> list[DetectedFace]:
    """Face-mesh landmarks (478 points, frame pixels, refined irises) of up to `max_faces` faces."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise IdentityError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}")
    height, width = image.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(height, width))
    small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=max_faces,
        refine_landmarks=True,
        min_detection_confidence=min_confidence,
    ) as mesh:
        result = mesh.process(rgb)
    faces: list[DetectedFace] = []
    for face in result.multi_face_landmarks or []:
        points = np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)
        # MediaPipe z is normalised by image width, like x; the project keeps all three in pixels.
        points *= np.array([width, height, width], np.float32)
        span = points[:, 0].max() - points[:, 0].min()
        faces.append(DetectedFace(points, float(span)))
    return faces


def _read(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "<bytes>"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise IdentityError(f"cannot read identity image {path}: {exc.strerror or exc}") from exc


def decode_image(data: bytes, name: str = "<bytes>") -> Image:
    array = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR) if array.size else None
    if image is None:
        raise IdentityError(f"{name} is not a readable image (JPEG, PNG, WebP, ...)")
    return image


def asset_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def identity_from_image(image: Image, asset_id: str, name: str = "<image>") -> IdentityAsset:
    """Validate an avatar image and attach its landmarks; raises IdentityError when it is unusable."""
    faces = detect_faces(image, max_faces=2)
    if not faces:
        raise IdentityError(f"{name}: no face found; use a clear, well-lit photo or painting of one face")
    if len(faces) > 1:
        raise IdentityError(f"{name}: {len(faces)} faces found; crop the image to the one face you want")
    face = faces[0]
    if face.width_px < MIN_FACE_PX:
        raise IdentityError(f"{name}: the face is only {face.width_px:.0f} px wide; use an image where it is at least {MIN_FACE_PX} px")
    if face.landmarks.shape != (MESH_POINTS, 3):
        raise IdentityError(f"{name}: face mesh returned {face.landmarks.shape[0]} points, expected {MESH_POINTS}")
    return IdentityAsset(asset_id=asset_id, image=image, landmarks=face.landmarks)


def load_identity(source: str | Path | bytes) -> IdentityAsset:
    """An identity from an image file or its bytes; asset_id is the sha256 of the file bytes."""
    data, name = _read(source)
    image = decode_image(data, name)
    return identity_from_image(image, asset_id_of(data), name)


def self_identity() -> IdentityAsset:
    return IdentityAsset(asset_id=SELF_ID, image=None, landmarks=None)


def is_self(identity: IdentityAsset | None) -> bool:
    return identity is None or identity.asset_id == SELF_ID or identity.image is None
