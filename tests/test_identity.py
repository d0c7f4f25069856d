from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.shared.face.identity import MIN_FACE_PX, IdentityError, is_self, load_identity, self_identity
from tests.render_fixtures import astronaut


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_identity_from_bytes_is_content_addressed_with_landmarks_on_the_face() -> None:
    data = _png(astronaut())
    identity = load_identity(data)
    assert identity.asset_id == hashlib.sha256(data).hexdigest()
    assert identity.image is not None and identity.image.shape == astronaut().shape
    lm = identity.landmarks
    assert lm is not None and lm.shape == (478, 3) and lm.dtype == np.float32
    # The astronaut's face sits around x 170-280, y 60-190; her right eye is image-left of her left eye.
    assert 170 < lm[:, 0].mean() < 280 and 60 < lm[:, 1].mean() < 190
    assert lm[468, 0] < lm[473, 0]
    assert lm[13, 1] > lm[468, 1]  # mouth below the eyes


def test_identity_from_path_matches_bytes(tmp_path: Path) -> None:
    data = _png(astronaut())
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert load_identity(path).asset_id == load_identity(data).asset_id


def test_unreadable_and_missing_images_raise_identity_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="not a readable image"):
        load_identity(b"this is not an image")
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity(tmp_path / "missing.jpg")


def test_no_face() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(IdentityError, match="no face"):
        load_identity(_png(cv2.GaussianBlur(noise, (9, 9), 0)))


def test_several_faces() -> None:
    crop = astronaut()[10:270, 120:330]
    two = cv2.copyMakeBorder(np.hstack([crop, crop[:, ::-1]]), 100, 100, 0, 0, cv2.BORDER_CONSTANT)
    with pytest.raises(IdentityError, match="2 faces"):
        load_identity(_png(two))


def test_face_too_small() -> None:
    small = cv2.resize(astronaut(), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    with pytest.raises(IdentityError, match=f"at least {MIN_FACE_PX} px"):
        load_identity(_png(small))


def test_self_identity() -> None:
    assert is_self(None) and is_self(self_identity())
    assert not is_self(load_identity(_png(astronaut())))
