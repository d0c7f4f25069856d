"""The sender's replica draws only the residual layer's box (MeshRenderer.render_region), and there it is the
receiver's whole-frame drawing bit for bit: blinks (the lids' smoothing reads around the eyes), an open
mouth (the cavity), the body's coded motion, a face at the frame's edge, regions much smaller than the face.
And the layer's correction goes into the renderer's new picture, never into the keyframe's."""

from __future__ import annotations

import numpy as np
import pytest

from facewire.shared.codec.layer import GREY, apply_residual, residual_region
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.render.replica import LAYER_BLUR, LAYER_DETAIL, LAYER_GEOMETRY, LayerHold, Replica, draw, layer_transform
from facewire.shared.render.warp import Region
from facewire.shared.types import FrameState, IdentityAsset, KeyframeState, Landmarks, RenderedPerson
from tests.render_fixtures import astronaut, astronaut_landmarks, close_eyes, open_mouth, transform


def _keyframe() -> KeyframeState:
    image = astronaut()
    alpha = np.zeros(image.shape[:2], np.float32)
    alpha[40:, 100:420] = 1.0  # a person's box: the alpha channel is warped too
    return KeyframeState(1, image, alpha, astronaut_landmarks().astype(np.float32))


def _frames() -> list[tuple[str, Landmarks, np.ndarray | None]]:
    lm = astronaut_landmarks().astype(np.float32)
    centre = (float(lm[:, 0].mean()), float(lm[:, 1].mean()))
    body = np.array([[1.0, 0.01, 3.0], [-0.01, 1.0, -2.0]])
    return [
        ("turned", transform(lm, 7.0, (12.0, -6.0), centre), None),
        ("blink", close_eyes(transform(lm, -4.0, (-5.0, 4.0), centre)), None),
        ("mouth open", open_mouth(lm, 14.0), body),
        ("blink, mouth open, body", open_mouth(close_eyes(lm), 9.0), body),
        ("at the left edge", transform(lm, 0.0, (-float(lm[:, 0].min()) - 30.0, 0.0), centre), None),
        ("at the bottom edge", transform(lm, 3.0, (0.0, 512.0 - float(lm[:, 1].max()) + 25.0), centre), body),
    ]


@pytest.mark.parametrize("index", range(6))
def test_the_box_is_drawn_as_the_whole_frame_draws_it(index: int) -> None:
    name, lm, body = _frames()[index]
    renderer = MeshRenderer()
    renderer.prepare_identity(None)
    renderer.prepare_keyframe(_keyframe())
    frame = FrameState(seq=index, ts_us=0, face="tracked", landmarks=lm, alpha=None, body=body)
    whole = renderer.render(frame)
    h, w = whole.image.shape[:2]
    transform_ = layer_transform(lm)
    assert transform_ is not None
    x0, y0, x1, y1 = residual_region(transform_, LAYER_GEOMETRY.size, whole.image.shape)
    eye = lm[[33, 133], :2].mean(axis=0).astype(int)
    mouth = lm[[13, 14], :2].mean(axis=0).astype(int)
    regions = [
        Region(x0, y0, x1 - x0, y1 - y0),  # what the layer reads
        Region(int(eye[0]) - 3, int(eye[1]) - 3, 6, 6),  # a corner of one eye: the lids read around it
        Region(int(mouth[0]) - 4, int(mouth[1]) - 2, 8, 4),  # inside the mouth: the cavity reads the lips around it
        Region(0, 0, 20, 20),  # far from the face
        Region(w - 50, h - 40, 50, 40),  # a corner of the frame
    ]
    for region in regions:
        part = renderer.render_region(frame, region)
        ys = slice(max(0, region.y0), max(0, min(h, region.y0 + region.height)))
        xs = slice(max(0, region.x0), max(0, min(w, region.x0 + region.width)))
        assert np.array_equal(part.image[ys, xs], whole.image[ys, xs]), f"{name}: the picture differs in {region}"
        assert np.array_equal(part.alpha[ys, xs], whole.alpha[ys, xs]), f"{name}: the alpha differs in {region}"


def test_the_replica_predicts_the_box_only_and_the_same_pixels_there() -> None:
    replica = Replica(MeshRenderer())
    replica.use(_keyframe())
    name, lm, body = _frames()[1]
    frame = replica.frame_state(lm, "tracked", body=body)
    whole = replica.predict(frame)
    transform_ = layer_transform(lm)
    assert transform_ is not None
    x0, y0, x1, y1 = residual_region(transform_, LAYER_GEOMETRY.size, whole.image.shape)
    part = replica.predict(frame, (x0, y0, x1, y1))
    assert np.array_equal(part.image[y0:y1, x0:x1], whole.image[y0:y1, x0:x1])
    # the box is a part of this frame: a test where it covered everything would prove nothing about cropping
    assert (x1 - x0) * (y1 - y0) < 0.7 * whole.image.shape[0] * whole.image.shape[1]
    # and outside what it draws, nothing was warped (the keyframe's picture is left there)
    assert not np.array_equal(part.image, whole.image)


class _ShowsTheKeyframe:
    """A renderer with nothing to warp: it hands back the keyframe's own picture (as MeshRenderer does for a
    face it cannot use)."""

    name = "keyframe"

    def __init__(self) -> None:
        self.keyframe: KeyframeState | None = None

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        pass

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        self.keyframe = keyframe

    def render(self, frame: FrameState) -> RenderedPerson:
        assert self.keyframe is not None
        return RenderedPerson(self.keyframe.image, np.ones(self.keyframe.image.shape[:2], np.float32))


def test_the_layer_corrects_the_renderers_new_picture_in_place_and_never_the_keyframes() -> None:
    keyframe = _keyframe()
    keyframe = KeyframeState(keyframe.kf, keyframe.image.copy(), keyframe.alpha, keyframe.landmarks)
    before = keyframe.image.copy()
    _, lm, _ = _frames()[0]
    box = np.full((LAYER_GEOMETRY.size, LAYER_GEOMETRY.size, 3), GREY + 40, np.uint8)  # a correction everywhere
    frame = FrameState(seq=1, ts_us=0, face="tracked", landmarks=lm, alpha=None, layer=box)
    transform_ = layer_transform(lm)
    assert transform_ is not None
    mesh = MeshRenderer()
    mesh.prepare_identity(None)
    mesh.prepare_keyframe(keyframe)
    prediction = mesh.render(frame).image
    want = apply_residual(prediction, box, transform_, LAYER_DETAIL, LAYER_BLUR)
    assert not np.array_equal(want, prediction)
    assert np.array_equal(draw(mesh, frame, keyframe, LayerHold()).image, want)
    stub = _ShowsTheKeyframe()
    stub.prepare_keyframe(keyframe)
    shown = draw(stub, frame, keyframe, LayerHold())
    assert np.array_equal(shown.image, apply_residual(before, box, transform_, LAYER_DETAIL, LAYER_BLUR))
    assert np.array_equal(keyframe.image, before), "the keyframe's picture was written into"


def test_the_hold_fuses_the_box_it_holds_on_every_frame() -> None:
    """The hold makes the box's own part of the fusion once (layer.hold_box) and applies it to each frame it holds
    the box for, with that frame's pose: apply_residual's bytes; a new box, or a new keyframe, replaces it."""
    rng = np.random.default_rng(7)
    image = astronaut()
    size = LAYER_GEOMETRY.size
    boxes = [rng.integers(GREY - 30, GREY + 30, (size, size, 3)).astype(np.uint8) for _ in range(2)]
    hold = LayerHold()
    for kf, box in ((1, boxes[0]), (1, boxes[1]), (2, boxes[0])):
        hold.update(kf, box)
        for _, lm, _ in _frames()[:3]:
            frame = FrameState(seq=0, ts_us=0, face="tracked", landmarks=lm, alpha=None)
            transform_ = layer_transform(lm)
            assert transform_ is not None
            shown = hold.apply(RenderedPerson(image, np.ones(image.shape[:2], np.float32)), frame).image
            assert np.array_equal(shown, apply_residual(image, box, transform_, LAYER_DETAIL, LAYER_BLUR))
            hold.update(kf, None)  # frames without a box hold the last
