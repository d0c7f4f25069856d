from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.receiver import compositor
from facewire.receiver.compositor import BackgroundError, Compositor, EdgeOptions, despill, despilled
from facewire.shared.types import RenderedPerson
from tests.render_fixtures import astronaut

SIZE = (64, 48)
PLAIN = EdgeOptions(despill=False, light_wrap=0.0)


def _person(value: tuple[int, int, int], alpha: float | np.ndarray) -> RenderedPerson:
    image = np.full((SIZE[1], SIZE[0], 3), value, np.uint8)
    a = alpha if isinstance(alpha, np.ndarray) else np.full((SIZE[1], SIZE[0]), alpha, np.float32)
    return RenderedPerson(image, a.astype(np.float32))


def _disc_alpha() -> np.ndarray:
    alpha = np.zeros((SIZE[1], SIZE[0]), np.float32)
    cv2.circle(alpha, (32, 24), 16, 1.0, -1)
    return cv2.GaussianBlur(alpha, (5, 5), 0)


def test_colour_background_and_alpha() -> None:
    comp = Compositor("#ff0000", SIZE, edges=PLAIN)
    out = comp.compose(_person((0, 255, 0), 0.0))
    assert out.shape == (48, 64, 3) and np.all(out == (0, 0, 255))  # BGR red
    out = comp.compose(_person((0, 255, 0), 1.0))
    assert np.all(out == (0, 255, 0))
    out = comp.compose(_person((0, 200, 0), 0.5))
    assert np.allclose(out[0, 0], (0, 100, 128), atol=1)


def test_person_of_another_size_is_scaled() -> None:
    comp = Compositor("#000000", SIZE, edges=PLAIN)
    big = RenderedPerson(np.full((96, 128, 3), 200, np.uint8), np.ones((96, 128), np.float32))
    assert comp.compose(big).shape == (48, 64, 3)


def test_image_background_is_filled_not_stretched(tmp_path: Path) -> None:
    bg = np.zeros((100, 100, 3), np.uint8)
    bg[:, :50] = (255, 0, 0)
    bg[:, 50:] = (0, 0, 255)
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), bg)
    out = Compositor(str(path), SIZE, edges=PLAIN).compose(_person((0, 0, 0), 0.0))
    assert np.all(out[:, :30] == (255, 0, 0)) and np.all(out[:, 34:] == (0, 0, 255))


def test_video_background_loops(tmp_path: Path) -> None:
    path = tmp_path / "bg.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    colours = [(0, 0, 250), (0, 250, 0), (250, 0, 0)]
    for c in colours:
        writer.write(np.full((SIZE[1], SIZE[0], 3), c, np.uint8))
    writer.release()
    comp = Compositor(str(path), SIZE, edges=PLAIN)
    seen = [int(np.argmax(comp.compose(_person((0, 0, 0), 0.0)).reshape(-1, 3).mean(0))) for _ in range(7)]
    assert seen == [2, 1, 0, 2, 1, 0, 2]
    comp.close()


def test_bad_backgrounds_raise(tmp_path: Path) -> None:
    with pytest.raises(BackgroundError):
        Compositor("#12345", SIZE)
    with pytest.raises(BackgroundError):
        Compositor(str(tmp_path / "missing.png"), SIZE)
    with pytest.raises(BackgroundError):
        Compositor(str(tmp_path / "missing.mp4"), SIZE)


def test_mirror_flips_the_output() -> None:
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    image[:, :10] = 255
    person = RenderedPerson(image, np.ones((SIZE[1], SIZE[0]), np.float32))
    out = Compositor("#000000", SIZE, mirror=True, edges=PLAIN).compose(person)
    assert np.all(out[:, -10:] == 255) and np.all(out[:, :-10] == 0)


def test_despill_removes_green_only_at_soft_edges() -> None:
    alpha = _disc_alpha()
    # Greenish everywhere; over black the output is the (despilled) person times alpha.
    out = Compositor("#000000", SIZE, edges=EdgeOptions(despill=True, light_wrap=0.0)).compose(
        _person((90, 200, 120), alpha)).astype(np.float32)
    edge = (alpha > 0.2) & (alpha < 0.8)
    assert np.all(out[edge][:, 1] <= alpha[edge] * 0.5 * (90 + 120) + 1.0)
    assert np.array_equal(out[24, 32], [90, 200, 120])  # the solid middle keeps its colour


def test_despill_limits_green_and_only_clear_blue() -> None:
    pixels = np.array([[90, 200, 120], [220, 100, 90], [150, 120, 160]], np.float32)
    out = despill(pixels)
    assert out[0, 1] == 105 and out[1, 0] == 95 and np.array_equal(out[2], pixels[2])


def test_light_wrap_brightens_edges_towards_a_bright_background() -> None:
    alpha = _disc_alpha()
    wrap = Compositor("#ffffff", SIZE, edges=EdgeOptions(despill=False, light_wrap=0.5))
    plain = Compositor("#ffffff", SIZE, edges=PLAIN)
    a, b = wrap.compose(_person((20, 20, 20), alpha)), plain.compose(_person((20, 20, 20), alpha))
    edge = (alpha > 0.5) & (alpha < 0.95)
    assert a[edge].mean() > b[edge].mean() + 5
    assert abs(int(a[24, 32, 0]) - int(b[24, 32, 0])) <= 2


def test_blur_background_uses_the_persons_surroundings() -> None:
    image = cv2.resize(astronaut(), SIZE)
    alpha = np.zeros((SIZE[1], SIZE[0]), np.float32)
    out = Compositor("blur", SIZE, edges=PLAIN).compose(RenderedPerson(image, alpha))
    assert abs(float(out.mean()) - float(image.mean())) < 10
    assert float(np.abs(np.diff(out.astype(float), axis=1)).mean()) < float(np.abs(np.diff(image.astype(float), axis=1)).mean())


def test_light_wrap_on_a_large_frame_matches_the_full_frame_light() -> None:
    """A 1280x720 person with a long edge: more edge pixels than one OpenCV remap row can hold."""
    size = (1280, 720)
    alpha = np.zeros((size[1], size[0]), np.float32)
    cv2.circle(alpha, (640, 360), 300, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 20)
    person = RenderedPerson(np.full((size[1], size[0], 3), 20, np.uint8), alpha)
    wrap = Compositor("#ffffff", size, edges=EdgeOptions(despill=False, light_wrap=0.5)).compose(person)
    plain = Compositor("#ffffff", size, edges=PLAIN).compose(person)
    edge = (alpha > 0.5) & (alpha < 0.95)
    assert edge.sum() > 32767 and wrap[edge].mean() > plain[edge].mean() + 5


def _reference_compose(image: np.ndarray, alpha: np.ndarray, background: np.ndarray, edges: EdgeOptions) -> np.ndarray:
    """The compositor's definition on the whole frame in float64: despill on the dilated soft band, light wrap, alpha over."""
    h, w = alpha.shape
    small = (max(1, w // 4), max(1, h // 4))
    sigma = max(0.8, edges.wrap_radius * float(np.hypot(w, h)) / 4)
    fg = image.astype(np.float64)
    if edges.despill:
        soft = ((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8)
        band = cv2.dilate(soft, np.ones((5, 5), np.uint8)).astype(bool)
        fg[band] = despill(fg[band].astype(np.float32))
    if edges.light_wrap > 0:
        outside = cv2.GaussianBlur(cv2.resize(1.0 - alpha, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
        weight = cv2.resize(outside, (w, h), interpolation=cv2.INTER_LINEAR) * alpha * edges.light_wrap
        weight[weight <= 1e-3] = 0.0
        bg_small = cv2.resize(background, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        visible = 1.0 - cv2.resize(alpha, small, interpolation=cv2.INTER_AREA)
        light = cv2.GaussianBlur(bg_small * visible[..., None], (0, 0), sigma) / np.maximum(outside, 1e-3)[..., None]
        light = cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
        fg = fg + (light - fg) * weight[..., None]
    a = alpha[..., None].astype(np.float64)
    return np.clip(np.rint(background * (1 - a) + fg * a), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(64, 48), (130, 98), (640, 480)])
@pytest.mark.parametrize("edges", [EdgeOptions(), EdgeOptions(despill=False), EdgeOptions(light_wrap=0.0), PLAIN])
def test_compose_matches_the_whole_frame_definition(size: tuple[int, int], edges: EdgeOptions) -> None:
    """The box-limited OpenCV passes give the whole-frame result within one grey level (sizes off the 1/4 grid too)."""
    w, h = size
    rng = np.random.default_rng(size[0])
    image = cv2.resize(astronaut(), size)
    image[: h // 3] = (40, 200, 60)  # a green top: despill has something to do at the soft edge there
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2 + h // 8), (w // 4, h // 3), 10, 0, 360, 1.0, -1)
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), max(1.0, w / 100)) + rng.normal(0, 0.01, alpha.shape).astype(np.float32), 0, 1)
    alpha[alpha < 0.01] = 0.0
    background = cv2.resize(astronaut()[::-1], size)
    path_image = background.copy()
    comp = Compositor("#000000", size, edges=edges)
    comp._still = path_image  # the picture itself: a file would round-trip through PNG identically
    got = comp.compose(RenderedPerson(image, alpha)).astype(int)
    want = _reference_compose(image, alpha, background, edges).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - want).mean() < 0.05
    mirrored = Compositor("#000000", size, mirror=True, edges=edges)
    mirrored._still = path_image
    assert np.array_equal(mirrored.compose(RenderedPerson(image, alpha)), got[:, ::-1].astype(np.uint8))


@pytest.mark.parametrize("size", [(64, 48), (640, 480), (1280, 720)])
def test_a_one_colour_background_wraps_its_colour_as_the_blur_would(size: tuple[int, int]) -> None:
    """A background of one colour lends the wrap that colour without blurring it: the whole-frame definition
    (which blurs) within one grey level, and a picture of that one colour (no longer seen as one) the same."""
    w, h = size
    image = cv2.resize(astronaut(), size)
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2 + h // 8), (w // 4, h // 3), 10, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, w / 100))
    alpha[alpha < 0.01] = 0.0
    comp = Compositor("#f0e0c0", size)
    assert comp._wrap_light(np.zeros((h // 4, w // 4), np.float32), comp._background(image),
                            np.ones((h // 4, w // 4), np.float32)) == (192.0, 224.0, 240.0, 0.0)
    got = comp.compose(RenderedPerson(image, alpha)).astype(int)
    background = np.full_like(image, (192, 224, 240))
    want = _reference_compose(image, alpha, background, EdgeOptions()).astype(int)
    assert np.abs(got - want).max() <= 1 and np.abs(got - want).mean() < 0.01
    blurred = Compositor("#000000", size)
    blurred._still = background.copy()
    blurred._still[0, 0, 0] += 1  # one pixel off: the light is blurred
    light = blurred._wrap_light(np.zeros((h // 4, w // 4), np.float32), blurred._still, np.ones((h // 4, w // 4), np.float32))
    assert isinstance(light[0], np.ndarray)  # planes, not one colour
    lit = blurred.compose(RenderedPerson(image, alpha)).astype(int)
    assert np.abs(lit - got)[1:, 1:].max() <= 1


def test_despilled_is_despill_on_the_band() -> None:
    rng = np.random.default_rng(3)
    # every blue against every green (the clear-blue test's edge at b = 1.15 max(r, g) included), red random
    b, g = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    image = np.dstack([b, g, rng.integers(0, 256, b.shape)]).astype(np.uint8)
    band = (rng.random(b.shape) < 0.7).astype(np.uint8) * 255
    band[:, :40] = 0
    want = image.astype(np.float32)
    want[band > 0] = despill(want[band > 0])
    assert not np.array_equal(want, image.astype(np.float32))
    assert np.array_equal(cv2.merge(despilled(image, band)), want)
    view = (slice(17, 200), slice(3, 251))  # a part of a picture: rows apart in memory
    assert np.array_equal(cv2.merge(despilled(image[view], band[view])), want[view])
    assert np.array_equal(cv2.merge(despilled(image, np.zeros_like(band))), image.astype(np.float32))


def test_person_outside_the_frame_box_leaves_the_background_untouched() -> None:
    """Zero alpha everywhere: the background exactly, whatever the person's colours."""
    comp = Compositor("#102030", SIZE)
    out = comp.compose(_person((0, 255, 0), 0.0))
    assert np.all(out == (0x30, 0x20, 0x10))
    alpha = np.zeros((SIZE[1], SIZE[0]), np.float32)
    alpha[10:14, 20:23] = 1.0
    out = comp.compose(_person((0, 255, 0), alpha))
    assert np.all(out[:8] == (0x30, 0x20, 0x10)) and np.all(out[11, 21] != (0x30, 0x20, 0x10))


def test_alpha_outside_zero_one_is_clipped() -> None:
    alpha = _disc_alpha()
    comp = Compositor("#40a060", SIZE)
    steep = alpha * 1.5 - 0.25
    out = comp.compose(_person((90, 30, 200), steep))
    assert np.array_equal(out, comp.compose(_person((90, 30, 200), np.clip(steep, 0, 1))))
    assert out.dtype == np.uint8 and out.shape == (SIZE[1], SIZE[0], 3)


def _head_and_shoulders(size: tuple[int, int], seed: int) -> RenderedPerson:
    """An opaque person with a soft matte edge (a head over shoulders), green-tinted near the top, a little
    noise in the matte and a few pixels a hair off 0 and 1 (what a warped or upsampled matte holds)."""
    w, h = size
    rng = np.random.default_rng(seed)
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 3), (w // 7, h // 4), 0, 0, 360, 1.0, -1)
    cv2.ellipse(alpha, (w // 2, h), (w // 3, h // 3), 0, 180, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, w / 150))
    alpha[alpha > 0.999] = 1.0
    alpha[alpha < 0.001] = 0.0
    alpha[(alpha == 1.0) & (rng.random(alpha.shape) < 0.0005)] = np.float32(1.0 - 2.0**-20)
    alpha[(alpha > 0) & (rng.random(alpha.shape) < 0.0005)] = np.float32(2.0**-30)
    image = cv2.resize(astronaut(), size)
    image[: h // 4] = (50, 190, 70)
    return RenderedPerson(image, alpha)


@pytest.mark.parametrize("size", [(256, 192), (640, 480), (1280, 720)])
@pytest.mark.parametrize("edges", [EdgeOptions(), EdgeOptions(despill=False), EdgeOptions(light_wrap=0.0), PLAIN])
def test_compose_on_the_edge_ring_alone_matches_the_whole_box(size: tuple[int, int], edges: EdgeOptions,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The float passes run only where the person's edge needs them; the bytes are those of running them on
    the whole box (a bright background, so the light wrap reaches well into the person)."""
    monkeypatch.setattr(compositor, "_PARTS_FROM", 0)  # in parts at every size
    person = _head_and_shoulders(size, size[0])
    background = np.ascontiguousarray(cv2.resize(astronaut()[::-1], size) // 2 + 120)
    comp = Compositor("#000000", size, edges=edges)
    comp._still = background
    small = cv2.resize(person.alpha, (size[0] // 4, size[1] // 4), interpolation=cv2.INTER_AREA)
    box = comp._person_box(small)
    assert box is not None
    edges_in = comp._edge_inputs(person.alpha, small, background, box)
    parts = comp._edge_parts(small, box, edges_in)
    assert parts is not None
    covered = sum((p[0].stop - p[0].start) * (p[1].stop - p[1].start) for p in parts)
    assert covered < 0.8 * (box[0].stop - box[0].start) * (box[1].stop - box[1].start)  # the interior is left out
    whole = Compositor("#000000", size, edges=edges)
    whole._still = background
    monkeypatch.setattr(whole, "_edge_parts", lambda *args: None)
    want = whole.compose(person)
    # every block left out composes to the background's pixel or the person's, as the whole box has it
    blocks = comp._edge_blocks(small, box, edges_in)
    assert blocks is not None
    plain = np.where(person.alpha[..., None] >= 1.0, person.image, background)[box]
    left_out = np.repeat(np.repeat(~blocks, 4, axis=0), 4, axis=1)
    assert np.array_equal(plain[left_out], want[box][left_out])
    assert np.array_equal(comp.compose(person), want)


@pytest.mark.parametrize("edges", [EdgeOptions(), EdgeOptions(despill=False), EdgeOptions(light_wrap=0.0), PLAIN])
def test_a_one_colour_background_blends_as_its_picture_would(edges: EdgeOptions, monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge's blend over one colour takes it as a scalar: the bytes of blending over the picture of that colour."""
    size = (640, 480)
    person = _head_and_shoulders(size, 7)
    got = Compositor("#30343c", size, edges=edges).compose(person)
    whole = Compositor("#30343c", size, edges=edges)
    colour = whole._still_colour(whole._background(person.image))
    assert colour is not None
    monkeypatch.setattr(whole, "_still_colour", lambda background: None)  # the frame-sized float copy, read per part
    monkeypatch.setattr(whole, "_wrap_light", lambda *args: colour)  # the same light as the one-colour path
    assert np.array_equal(got, whole.compose(person))
