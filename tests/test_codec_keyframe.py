"""The person-only keyframe: no room leaves, the AVIF fits its budget at the highest quality found, and
the decoder refuses an image whose declared size is not its box's before decoding it."""

from __future__ import annotations

import struct
import time

import cv2
import numpy as np
import pytest

from facewire.shared.codec.keyframe import (
    KeyframeTooLarge,
    PersonImage,
    decode_keyframe_alpha,
    decode_person,
    encode_keyframe_alpha,
    encode_person,
    encode_person_scaled,
    encode_person_search,
    person_box,
    person_only,
)
from facewire.shared.codec.predictive import CodeError

ROOM_A = (13, 250, 97)  # BGR colours no person pixel comes near
ROOM_B = (250, 20, 240)


def _person(width: int = 160, height: int = 120, ramp: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A textured head-and-shoulders shape and its matte, whose edge ramps from 0 to 1 over `ramp` pixels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    head = np.hypot((xx - width * 0.5) / (width * 0.2), (yy - height * 0.42) / (height * 0.3)) - 1.0
    body = np.hypot((xx - width * 0.5) / (width * 0.42), (yy - height * 1.15) / (height * 0.4)) - 1.0
    # signed distance in pixels, roughly: negative inside
    inside = np.minimum(head * width * 0.2, body * width * 0.42)
    alpha = np.clip(0.5 - inside / ramp, 0.0, 1.0).astype(np.float32)
    rng = np.random.default_rng(1)
    texture = cv2.resize(rng.integers(0, 60, (12, 16, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    person = np.clip(texture.astype(np.int16) + np.array([90, 110, 150], np.int16), 0, 255).astype(np.uint8)
    return person, alpha


def _over(person: np.ndarray, alpha: np.ndarray, room: tuple[int, int, int]) -> np.ndarray:
    a = alpha[..., None]
    return np.clip(person * a + np.array(room, np.float32) * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def test_person_box_holds_the_matte_with_even_sides() -> None:
    _, alpha = _person()
    x, y, w, h = person_box(alpha, pad=5)
    ys, xs = np.nonzero(alpha > 0.02)
    assert x <= xs.min() - 5 or x == 0
    assert y <= ys.min() - 5 or y == 0
    assert x + w >= min(xs.max() + 1 + 5, alpha.shape[1])
    assert y + h >= min(ys.max() + 1 + 5, alpha.shape[0])
    assert w % 2 == 0 and h % 2 == 0 and x + w <= alpha.shape[1] and y + h <= alpha.shape[0]
    with pytest.raises(ValueError):
        person_box(np.zeros_like(alpha), pad=5)


def test_no_room_survives_outside_the_matte() -> None:
    person, alpha = _person()
    a = person_only(_over(person, alpha, ROOM_A), alpha, pad=6, erode=2)
    b = person_only(_over(person, alpha, ROOM_B), alpha, pad=6, erode=2)
    # The room's colour changed and not one byte of the keyframe did: nothing of the room is in it.
    assert a.box == b.box
    assert np.array_equal(a.image, b.image)
    for room in (ROOM_A, ROOM_B):
        distance = np.abs(a.image.astype(np.int16) - np.array(room, np.int16)).max(axis=2)
        assert distance.min() > 60
    # Without the erosion the matte's soft edge keeps room colour, and the fill spreads it (R2's halo): the
    # same check fails, as it should.
    a0 = person_only(_over(person, alpha, ROOM_A), alpha, pad=6, erode=0)
    b0 = person_only(_over(person, alpha, ROOM_B), alpha, pad=6, erode=0)
    assert not np.array_equal(a0.image, b0.image)


def test_person_only_keeps_the_person() -> None:
    person, alpha = _person()
    out = person_only(_over(person, alpha, ROOM_A), alpha, pad=6)
    x, y, w, h = out.box
    core = cv2.erode((alpha > 0.99).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)[y:y + h, x:x + w]
    assert np.array_equal(out.image[core], person[y:y + h, x:x + w][core])
    assert out.frame_size == (160, 120)


@pytest.fixture(scope="module")
def keyframe() -> PersonImage:
    person, alpha = _person(192, 160)
    return person_only(_over(person, alpha, ROOM_A), alpha, pad=8)


def test_encode_fits_the_budget_at_the_highest_quality(keyframe: PersonImage) -> None:
    budget = 1500
    found = encode_person_search(keyframe, budget)
    assert len(found.data) <= budget and 2 <= found.encodes <= 5
    data, quality = encode_person(keyframe, budget)
    assert (data, quality) == (found.data, found.quality)
    # Two steps up no longer fits (the search stops at most one step short).
    if quality + 2 <= 95:
        with pytest.raises(KeyframeTooLarge):
            encode_person(keyframe, budget, min_quality=quality + 2, max_quality=quality + 2, max_encodes=2)


def test_encode_refuses_when_even_the_lowest_quality_does_not_fit(keyframe: PersonImage) -> None:
    with pytest.raises(KeyframeTooLarge, match="over the budget of 60"):
        encode_person(keyframe, 60)


def test_decode_places_the_person(keyframe: PersonImage) -> None:
    data, _ = encode_person(keyframe, 4000)
    x, y, w, h = keyframe.box
    fw, fh = keyframe.frame_size
    grey = decode_person(data, keyframe.box, keyframe.frame_size, (128, 128, 128))
    assert grey.shape == (fh, fw, 3) and grey.dtype == np.uint8
    err = np.abs(grey[y:y + h, x:x + w].astype(np.float32) - keyframe.image).mean()
    assert err < 6
    outside = np.ones((fh, fw), bool)
    outside[y:y + h, x:x + w] = False
    assert (grey[outside] == 128).all()
    replicated = decode_person(data, keyframe.box, keyframe.frame_size)
    assert np.array_equal(replicated[y:y + h, x:x + w], grey[y:y + h, x:x + w])
    background = np.full((fh, fw, 3), 7, np.uint8)
    over = decode_person(data, keyframe.box, keyframe.frame_size, background)
    assert (over[outside] == 7).all() and (background == 7).all()


def test_a_budget_too_thin_for_the_whole_picture_gets_a_coarser_one(keyframe: PersonImage) -> None:
    with pytest.raises(KeyframeTooLarge) as refused:
        encode_person(keyframe, 100)
    budget = int(refused.value.needed * 0.8)  # what the whole picture needs at the lowest quality, and less
    found = encode_person_scaled(keyframe, budget)
    assert found.scale > 1 and len(found.data) <= budget
    x, y, w, h = keyframe.box
    picture = decode_person(found.data, keyframe.box, keyframe.frame_size, (128, 128, 128), scale=found.scale)
    assert picture[y:y + h, x:x + w].shape == keyframe.image.shape
    assert np.abs(picture[y:y + h, x:x + w].astype(np.float32) - keyframe.image).mean() < 20
    with pytest.raises(CodeError):  # the declared size is the box's at that scale, no other
        decode_person(found.data, keyframe.box, keyframe.frame_size, scale=1)
    with pytest.raises(CodeError):
        decode_person(found.data, keyframe.box, keyframe.frame_size, scale=5)
    assert encode_person_scaled(keyframe, 4000).scale == 1  # room enough: full size


def test_a_picture_that_fits_only_at_the_lowest_qualities_goes_a_scale_coarser(keyframe: PersonImage) -> None:
    from facewire.shared.codec.keyframe import COARSER_BELOW_QUALITY, COARSER_GAIN, MIN_QUALITY, encode_person_search

    at_least = len(encode_person_search(keyframe, 10**6, start=MIN_QUALITY, max_quality=MIN_QUALITY).data)
    budget = int(at_least * 1.05)  # full size fits, but only about at the lowest quality
    fine = encode_person_search(keyframe, budget)
    assert fine.quality < COARSER_BELOW_QUALITY
    found = encode_person_scaled(keyframe, budget)
    assert found.scale == 2 and found.quality >= fine.quality + COARSER_GAIN and len(found.data) <= budget
    assert encode_person_scaled(keyframe, 4000).scale == 1  # a fine picture at a good quality stays fine


def _claim(data: bytes, width: int, height: int) -> bytes:
    """The AVIF with its image-spatial-extents property ('ispe': the declared size) rewritten."""
    at = data.index(b"ispe") + 8  # box type, then version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8:]


def test_decode_checks_the_declared_size_first(keyframe: PersonImage) -> None:
    data, _ = encode_person(keyframe, 4000)
    x, y, w, h = keyframe.box
    with pytest.raises(CodeError, match="declares"):
        decode_person(data, (x, y, w - 2, h), keyframe.frame_size)
    # A hostile file claiming 2^30 pixels is refused from its header, at once.
    start = time.perf_counter()
    with pytest.raises(CodeError):
        decode_person(_claim(data, 32768, 32768), keyframe.box, keyframe.frame_size)
    assert time.perf_counter() - start < 1.0
    # A claim that matches a legal box but not the coded picture: libavif follows the claim (measured), so the
    # most it costs is a box-sized picture, which the limits on boxes already allow.
    try:
        out = decode_person(_claim(data, 640, 480), (0, 0, 640, 480), (640, 480))
    except CodeError:
        pass
    else:
        assert out.shape == (480, 640, 3)


@pytest.mark.parametrize("data", [b"", b"garbage" * 10, cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()])
def test_decode_refuses_what_is_not_an_avif(data: bytes) -> None:
    with pytest.raises(CodeError):
        decode_person(data, (0, 0, 8, 8), (16, 16))


@pytest.mark.parametrize("box, size", [((0, 0, 20, 20), (16, 16)), ((-2, 0, 8, 8), (16, 16)), ((0, 0, 8, 8), (5000, 16)),
                                       ((0, 0, 0, 8), (16, 16))])
def test_decode_refuses_boxes_outside_the_frame(box: tuple[int, int, int, int], size: tuple[int, int]) -> None:
    with pytest.raises(CodeError):
        decode_person(b"whatever", box, size)


def test_keyframe_alpha_round_trip() -> None:
    _, alpha = _person(192, 160)
    box = person_box(alpha, 8)
    data = encode_keyframe_alpha(alpha, box)
    assert len(data) < 1500
    back = decode_keyframe_alpha(data, box, (192, 160))
    assert back.shape == alpha.shape and back.dtype == np.float32
    a, b = alpha > 0.5, back > 0.5
    assert (a & b).sum() / (a | b).sum() >= 0.95
    assert np.abs(back - alpha).mean() <= 0.03
    x, y, w, h = box
    outside = np.ones(alpha.shape, bool)
    outside[y:y + h, x:x + w] = False
    assert (back[outside] == 0).all()


def test_keyframe_alpha_refuses_bad_codes() -> None:
    _, alpha = _person(192, 160)
    box = person_box(alpha, 8)
    data = encode_keyframe_alpha(alpha, box)
    x, y, w, h = box
    with pytest.raises(CodeError):
        decode_keyframe_alpha(data, (x, y, w - 4, h), (192, 160))  # the AVIF declares another size
    with pytest.raises(CodeError):
        decode_keyframe_alpha(data[:2], box, (192, 160))
    with pytest.raises(CodeError):
        decode_keyframe_alpha(data[:40], box, (192, 160))
    with pytest.raises(CodeError):
        decode_keyframe_alpha(bytes([9]) + data[1:], box, (192, 160))  # unknown version
    with pytest.raises(CodeError):
        decode_keyframe_alpha(data[:2] + _claim(data[2:], 32768, 32768), box, (192, 160))
