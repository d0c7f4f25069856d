"""The residual layer: a packet per box at once, a lost packet noticed, rate changes through a key frame,
the box following the head, nothing of the room in the residual, and a fusion that gives the same bytes
for the same inputs."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from facewire.shared.codec.layer import (
    GREY,
    TRUST_FROM,
    TRUST_FULL,
    BoxGeometry,
    LayerDecoder,
    LayerEncoder,
    apply_held,
    apply_residual,
    box_region,
    face_box_transform,
    face_support,
    face_weight,
    from_box,
    hold_box,
    largest_channel,
    packet_is_key,
    residual_box,
    to_box,
)
from facewire.shared.codec.predictive import CodeError
from facewire.shared.types import HeadPose

SIZE = 96


def _pattern(index: int, size: int = SIZE) -> np.ndarray:
    """A smooth colour pattern drifting a few pixels a frame (what a face box looks like to the codec)."""
    rng = np.random.default_rng(7)
    base = cv2.resize(rng.integers(30, 225, (8, 8, 3), dtype=np.uint8), (2 * size, 2 * size), interpolation=cv2.INTER_CUBIC)
    x = int(size / 2 + size / 4 * math.sin(index / 6))
    y = int(size / 2 + size / 4 * math.cos(index / 9))
    return np.ascontiguousarray(base[y:y + size, x:x + size])


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    encoder = LayerEncoder(SIZE, kbps=6.0, fps=10.0)
    packets = [encoder.encode(_pattern(i)) for i in range(30)]
    encoder.close()
    return packets


def test_packets_decode_in_order_at_once(stream: list[bytes]) -> None:
    assert packet_is_key(stream[0]) and not any(packet_is_key(p) for p in stream[1:])
    decoder = LayerDecoder(SIZE)
    errors = []
    for i, packet in enumerate(stream):
        box = decoder.decode(packet)  # a picture for every packet, at once: no frame held back on either side
        assert box.shape == (SIZE, SIZE, 3) and box.dtype == np.uint8
        errors.append(np.abs(box.astype(np.int16) - _pattern(i)).mean())
    assert np.mean(errors[5:]) < 8
    # 6 kbps at 10 packets a second is 75 bytes a packet; the codec lands near it (it is not exact).
    assert 30 < np.mean([len(p) for p in stream[1:]]) < 150


def test_a_lost_packet_raises_until_a_key_frame(stream: list[bytes]) -> None:
    decoder = LayerDecoder(SIZE)
    for packet in stream[:5]:
        decoder.decode(packet)
    with pytest.raises(CodeError, match="lost"):
        decoder.decode(stream[6])
    assert decoder.needs_key
    with pytest.raises(CodeError):
        decoder.decode(stream[7])  # and every predicted packet after it
    fresh = LayerDecoder(SIZE)
    with pytest.raises(CodeError, match="key"):
        fresh.decode(stream[3])  # a decoder that never saw the key frame


def test_force_key_recovers_a_decoder() -> None:
    encoder = LayerEncoder(SIZE, kbps=6.0, fps=10.0)
    decoder = LayerDecoder(SIZE)
    decoder.decode(encoder.encode(_pattern(0)))
    encoder.encode(_pattern(1))  # lost
    with pytest.raises(CodeError):
        decoder.decode(encoder.encode(_pattern(2)))
    encoder.force_key()
    assert encoder.next_is_key
    key = encoder.encode(_pattern(3))
    assert packet_is_key(key) and not encoder.next_is_key and encoder.restarts == 0
    decoder.decode(key)
    for i in range(4, 8):
        decoder.decode(encoder.encode(_pattern(i)))
    assert not decoder.needs_key


def test_rate_change_restarts_with_a_key_frame() -> None:
    encoder = LayerEncoder(SIZE, kbps=3.0, fps=10.0)
    decoder = LayerDecoder(SIZE)
    low = [encoder.encode(_pattern(i)) for i in range(20)]
    encoder.set_kbps(3.0)  # the same rate: nothing happens
    assert not encoder.next_is_key and encoder.restarts == 0
    encoder.set_kbps(24.0)
    assert encoder.next_is_key and encoder.kbps == 24.0
    high = [encoder.encode(_pattern(i)) for i in range(20, 40)]
    assert packet_is_key(high[0]) and encoder.restarts == 1 and encoder.last_key_bytes == len(high[0])
    for packet in low + high:
        decoder.decode(packet)  # the key frame of the restart resets the decoder: the stream goes on
    assert np.mean([len(p) for p in high[1:]]) > 2 * np.mean([len(p) for p in low[1:]])
    assert encoder.bytes_out == sum(len(p) for p in low + high)


def test_decoder_checks_sizes_and_headers(stream: list[bytes]) -> None:
    with pytest.raises(CodeError, match="declares"):
        LayerDecoder(64).decode(stream[0])
    big = LayerEncoder(128, kbps=6.0, fps=10.0).encode(_pattern(0, 128))
    with pytest.raises(CodeError):
        LayerDecoder(SIZE).decode(big)
    # The header lies about the side: dav1d is held to the decoder's size and refuses the larger sequence.
    lying = bytes([big[0], big[1], SIZE // 2]) + big[3:]
    decoder = LayerDecoder(SIZE)
    with pytest.raises(CodeError):
        decoder.decode(lying)
    assert decoder.needs_key
    for bad in (b"", stream[0][:3], bytes([0x7E | 1]) + stream[0][1:], stream[0][:3] + b"\x00" * 40, b"\x03" * 70000):
        with pytest.raises(CodeError):
            LayerDecoder(SIZE).decode(bad)


def test_encoder_refuses_the_wrong_box() -> None:
    encoder = LayerEncoder(SIZE)
    with pytest.raises(ValueError):
        encoder.encode(np.zeros((SIZE, SIZE + 2, 3), np.uint8))
    with pytest.raises(ValueError):
        LayerEncoder(95)
    with pytest.raises(ValueError):
        encoder.set_kbps(0.0)


# ---------------------------------------------------------------------------------------------- geometry
def test_face_box_follows_the_head() -> None:
    geometry = BoxGeometry(size=SIZE, span=4.0, drop=0.5)
    pose = HeadPose(yaw=10.0, pitch=-5.0, roll=0.0, tx=300.0, ty=200.0, scale=50.0)
    t = face_box_transform(pose, geometry)
    # the box centre is `drop` units below the eyes; one unit is size / span box pixels
    centre = t[:, :2] @ np.array([300.0, 225.0]) + t[:, 2]
    assert np.allclose(centre, [SIZE / 2, SIZE / 2], atol=1e-3)
    assert math.isclose(math.hypot(t[0, 0], t[0, 1]), SIZE / (4.0 * 50.0), rel_tol=1e-5)
    # translation and scale move the box with the head; yaw and pitch do not
    moved = face_box_transform(HeadPose(-20.0, 8.0, 0.0, 340.0, 180.0, 100.0), geometry)
    assert np.allclose(moved[:, :2] @ np.array([340.0, 230.0]) + moved[:, 2], [SIZE / 2, SIZE / 2], atol=1e-3)
    assert math.isclose(math.hypot(moved[0, 0], moved[0, 1]), SIZE / 400.0, rel_tol=1e-5)
    # roll: the head's own "down" direction maps to the box's down
    rolled = face_box_transform(HeadPose(0.0, 0.0, 30.0, 300.0, 200.0, 50.0), geometry)
    down = np.array([math.sin(math.radians(30.0)), math.cos(math.radians(30.0))])
    step = rolled[:, :2] @ down
    assert step[0] == pytest.approx(0.0, abs=1e-4) and step[1] > 0
    with pytest.raises(ValueError):
        face_box_transform(HeadPose(0.0, 0.0, 0.0, float("nan"), 0.0, 50.0), geometry)
    with pytest.raises(ValueError):
        face_box_transform(HeadPose(0.0, 0.0, 0.0, 10.0, 0.0, 0.0), geometry)


def _scene(width: int = 320, height: int = 240) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.dstack([120 + 60 * np.sin(xx / 23), 110 + 50 * np.cos(yy / 19), 140 + 40 * np.sin((xx + yy) / 31)])
    return np.clip(image, 0, 255).astype(np.uint8), np.clip(1.5 - np.hypot(xx - 160, yy - 130) / 60, 0, 1).astype(np.float32)


def test_to_box_and_from_box_are_inverse_on_smooth_pictures() -> None:
    image, _ = _scene()
    t = face_box_transform(HeadPose(0.0, 0.0, 12.0, 160.0, 110.0, 40.0))
    box = to_box(image, t, SIZE)
    back, cover = from_box(box, t, image.shape[:2])
    inside = cover > 0.99
    assert inside.sum() > 5000
    assert np.abs(back.astype(np.int16) - image)[inside].mean() < 3
    x0, y0, x1, y1 = box_region(t, SIZE, image.shape)
    assert not (cover[:, :x0] > 0).any() and not (cover[:y0] > 0).any()
    assert not (cover[:, x1:] > 0).any() and not (cover[y1:] > 0).any()


# ---------------------------------------------------------------------------------------- sender/receiver
def test_residual_is_neutral_where_nothing_differs_and_blind_to_the_room() -> None:
    image, alpha = _scene()
    t = face_box_transform(HeadPose(0.0, 0.0, 0.0, 160.0, 110.0, 40.0))
    assert (residual_box(image, image, alpha, t, SIZE) == GREY).all()
    other = image.copy()
    other[alpha == 0] = (13, 250, 97)  # another room: the residual does not change
    prediction = cv2.GaussianBlur(image, (0, 0), 3)
    assert np.array_equal(residual_box(image, prediction, alpha, t, SIZE), residual_box(other, prediction, alpha, t, SIZE))
    assert not (residual_box(image, prediction, alpha, t, SIZE) == GREY).all()


def _oval(cx: float, cy: float, rx: float, ry: float, n: int = 36) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def test_the_face_weight_is_whole_on_the_face_and_fades_to_nothing_past_it() -> None:
    oval = _oval(160, 120, 50, 65)
    region = (40, 20, 290, 230)
    weight = face_weight(oval, (240, 320), region)
    assert weight.shape == (210, 250) and weight.dtype == np.float32
    assert weight.min() >= 0.0 and weight.max() <= 1.0

    def at(x: int, y: int) -> float:
        return float(weight[y - region[1], x - region[0]])

    assert at(160, 120) == 1.0 and at(160 + 48, 120) > 0.95  # inside, right up to the oval's edge
    assert at(160 + 50 + 6, 120) > 0.3  # a fade a few pixels past it (FACE_FADE of the face's 100-px width)
    assert at(160 + 50 + 25, 120) < 0.02 and at(45, 25) == 0.0  # hair, ears, the room's edge: nothing
    assert at(160 + 55, 120) > at(160 + 60, 120) > at(160 + 65, 120)  # monotone outwards
    # a region elsewhere in the frame reads the same weight at the same frame pixels
    other = face_weight(oval, (240, 320), (150, 100, 230, 140))
    assert np.allclose(other, weight[100 - 20:140 - 20, 150 - 40:230 - 40], atol=1e-6)
    # it is 0 outside its support (where the sender's replica need not draw), which fits the region
    x0, y0, x1, y1 = face_support(oval, (240, 320), region)
    assert region[0] <= x0 < x1 <= region[2] and region[1] <= y0 < y1 <= region[3]
    inside = np.zeros_like(weight, bool)
    inside[y0 - region[1]:y1 - region[1], x0 - region[0]:x1 - region[0]] = True
    assert (weight[~inside] == 0).all() and (weight[inside] > 0).mean() > 0.5
    assert face_support(oval, (240, 320), (0, 0, 40, 40))[2] <= face_support(oval, (240, 320), (0, 0, 40, 40))[0]


def test_a_face_weighed_residual_leaves_what_differs_past_the_face_uncorrected() -> None:
    frame, alpha = _scene()
    alpha[:] = 1.0
    oval = _oval(160, 120, 30, 40)
    prediction = frame.copy()
    prediction[:, :100] = np.clip(frame[:, :100].astype(np.int16) - 60, 0, 255).astype(np.uint8)  # off past the face
    t = face_box_transform(HeadPose(0.0, 0.0, 0.0, 160.0, 110.0, 40.0))
    weighed = alpha.copy()
    weighed[:] = face_weight(oval, alpha.shape, (0, 0, alpha.shape[1], alpha.shape[0]))
    assert not (residual_box(frame, prediction, alpha, t, SIZE) == GREY).all()
    assert (residual_box(frame, prediction, weighed, t, SIZE) == GREY).all()
    prediction[110:130, 150:170] = 0  # and wrong on the face: that is corrected
    assert not (residual_box(frame, prediction, weighed, t, SIZE) == GREY).all()


def test_fusion_moves_the_prediction_towards_the_frame() -> None:
    frame, alpha = _scene()
    alpha[:] = 1.0
    prediction = np.clip(frame.astype(np.int16) - 25, 0, 255).astype(np.uint8)  # the warp got the light wrong
    t = face_box_transform(HeadPose(0.0, 0.0, 8.0, 160.0, 100.0, 40.0))
    box = residual_box(frame, prediction, alpha, t, SIZE)
    fused = apply_residual(prediction, box, t, detail=1.0)
    _, cover = from_box(box, t, frame.shape[:2])
    inner = cover > 0.99
    before = np.abs(prediction.astype(np.int16) - frame)[inner].mean()
    after = np.abs(fused.astype(np.int16) - frame)[inner].mean()
    assert before > 20 and after < 3
    outside = cover == 0
    assert np.array_equal(fused[outside], prediction[outside])


def _reference(prediction: np.ndarray, box: np.ndarray, t: np.ndarray, detail: float, blur: float) -> np.ndarray:
    """The fusion's formula in float, with one full-size warp: what apply_residual approximates in integers."""
    size = box.shape[0]
    d = (cv2.GaussianBlur(box, (0, 0), blur).astype(np.float64) - GREY) / 2
    small = to_box(prediction, t, size).astype(np.float64)
    i = np.arange(size, dtype=np.float64)
    ramp = np.clip(np.minimum(i + 0.5, size - 0.5 - i) / (size / 8.0), 0.0, 1.0)
    c = np.outer(ramp, ramp)[..., None]
    h, w = prediction.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    # the layer's trust: 1 - detail where it corrects little, 1 where it corrects much (TRUST_FROM..TRUST_FULL)
    blurred = cv2.GaussianBlur(box, (0, 0), blur)
    magnitude = cv2.GaussianBlur(np.abs(blurred.astype(np.int16) - GREY).max(axis=2).astype(np.uint8), (0, 0), 1.5)
    ramp = np.clip((magnitude / 2.0 - TRUST_FROM) / (TRUST_FULL - TRUST_FROM), 0.0, 1.0)[..., None]
    trust = (1 - detail) + detail * ramp
    m = cv2.warpAffine((c * (d + trust * small)).astype(np.float32), t, (w, h), flags=flags)
    ct = cv2.warpAffine(np.repeat(c * trust, 3, axis=2).astype(np.float32), t, (w, h), flags=flags)
    return np.clip(prediction + m - ct * prediction + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("detail", [0.0, 0.5, 1.0])
def test_fusion_matches_its_formula(detail: float) -> None:
    frame, alpha = _scene()
    prediction = cv2.GaussianBlur(frame, (0, 0), 2)
    prediction[100:140, 140:180] //= 2  # something the layer must correct
    t = face_box_transform(HeadPose(0.0, 0.0, -15.0, 160.0, 105.0, 35.0))
    box = residual_box(frame, prediction, alpha, t, SIZE)
    got = apply_residual(prediction, box, t, detail=detail)
    want = _reference(prediction, box, t, detail, 0.8)
    diff = np.abs(got.astype(np.int16) - want)
    assert diff.mean() < 0.3 and diff.max() <= 4
    if detail == 1.0:
        assert np.array_equal(apply_residual(prediction, np.full_like(box, GREY), t, detail=1.0), prediction)


_SCRIPT = """
import hashlib, sys
import cv2
import numpy as np
sys.path.insert(0, {tests!r})
from test_codec_layer import _fused_case
cv2.setNumThreads({threads})
print(hashlib.sha256(_fused_case().tobytes()).hexdigest())
"""


def _fused_case() -> np.ndarray:
    frame, alpha = _scene()
    prediction = cv2.GaussianBlur(frame, (0, 0), 2)
    t = face_box_transform(HeadPose(3.0, -2.0, 21.0, 150.0, 100.0, 37.0))
    box = residual_box(frame, prediction, alpha, t, SIZE)
    return apply_residual(prediction, box, t, detail=0.5)


def test_fusion_is_bit_identical_for_identical_inputs() -> None:
    frame, alpha = _scene()
    prediction = cv2.GaussianBlur(frame, (0, 0), 2)
    t = face_box_transform(HeadPose(3.0, -2.0, 21.0, 150.0, 100.0, 37.0))
    box = residual_box(frame, prediction, alpha, t, SIZE)
    first = apply_residual(prediction, box, t)
    in_place = prediction.copy()
    apply_residual(in_place, box, t, out=in_place)
    assert np.array_equal(first, apply_residual(prediction, box, t)) and np.array_equal(first, in_place)
    # ... in another process, with OpenCV on one thread or four (it splits warps and resizes into stripes)
    here = hashlib.sha256(_fused_case().tobytes()).hexdigest()
    tests = str(__import__("pathlib").Path(__file__).resolve().parent)
    for threads in (1, 4):
        out = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests, threads=threads)], capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == here


def test_where_the_layer_corrects_much_the_warps_detail_gives_way_to_it() -> None:
    """Teeth drawn over pressed lips: a large correction means the warp is wrong there, so its detail goes;
    a small one keeps `detail` of it."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    # a fine texture: the box's prefiltered shrink of it is flat, so what is left of it is the warp's kept detail
    prediction = np.repeat(np.where((xx + yy) % 2 == 0, 100, 160).astype(np.uint8)[..., None], 3, axis=2)
    t = face_box_transform(HeadPose(0.0, 0.0, 0.0, 160.0, 100.0, 50.0))
    box = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    box[SIZE // 2 - 20:SIZE // 2 + 20, SIZE // 2 - 20:SIZE // 2 + 20] = GREY + 2 * (TRUST_FULL + 10)  # a large correction
    fused = apply_residual(prediction, box, t, detail=0.5)
    centre = fused[127 - 10:127 + 10, 160 - 10:160 + 10].astype(np.float64)
    x0, y0, x1, y1 = box_region(t, SIZE, prediction.shape)
    quiet = fused[y0 + 28:y0 + 44, (x0 + x1) // 2 - 8:(x0 + x1) // 2 + 8].astype(np.float64)  # inside the box, no correction
    assert centre.std() < 3.0 < quiet.std() < 0.6 * prediction.astype(np.float64).std()


def test_largest_channel_is_the_per_pixel_maximum_of_three() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (33, 17, 3), dtype=np.uint8)
    largest = largest_channel(image)
    assert largest.dtype == np.uint8
    assert np.array_equal(largest, image.max(axis=2))


def test_a_held_box_fuses_every_frame_as_the_box_itself() -> None:
    """hold_box's part made once and applied to frames of other poses gives apply_residual's bytes, and stays as it was."""
    frame, alpha = _scene()
    prediction = cv2.GaussianBlur(frame, (0, 0), 2)
    box = residual_box(frame, prediction, alpha, face_box_transform(HeadPose(3.0, -2.0, 21.0, 150.0, 100.0, 37.0)), SIZE)
    held = hold_box(box, 0.5, 0.8)
    kept = held.low_weight.copy(), held.held.copy()
    for roll, tx, scale in ((3.0, 150.0, 37.0), (-8.0, 120.0, 30.0), (15.0, 170.0, 45.0), (0.0, 100.0, 8.0)):
        t = face_box_transform(HeadPose(roll, -2.0, 21.0, tx, 100.0, scale))
        assert np.array_equal(apply_held(prediction, held, t), apply_residual(prediction, box, t, 0.5, 0.8))
    assert held.trusted and np.array_equal(held.low_weight, kept[0]) and np.array_equal(held.held, kept[1])
    # nothing of the prediction's detail replaced (all of it kept, a flat box): the fusion leaves the prediction
    flat = hold_box(np.full_like(box, GREY), 1.0, 0.8)
    assert not flat.trusted and np.array_equal(apply_held(prediction, flat, t), prediction)
