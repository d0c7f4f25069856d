"""How a frame is drawn in self mode with the residual layer, shared by the receiver's player and the
sender's replica of it, so the two cannot drift.

* `draw(renderer, frame, keyframe, hold)`: the renderer's prediction (the keyframe warped to the frame's
  decoded landmarks), then, with a `LayerHold`, the layer's held correction applied in the face box
  (`facewire.shared.codec.layer.apply_residual`, integer and bit-exact). The receiver's player calls it
  for every frame; the sender's `Replica` calls it without a hold for the prediction the layer codes
  against (`predict(frame, region)`: only the part the residual reads, drawn by the renderer's
  `render_region` exactly as the whole frame would be there), and with one to see exactly what the
  receiver shows.
* `LayerHold`: the last decoded layer box, valid for the frames drawn from one keyframe (a correction
  is a difference against that keyframe's warp, so a keyframe change clears it), with what the fusion
  takes of it whatever the frame (`layer.hold_box`), made once for all the frames it is held for.
* `layer_transform(landmarks)`: the face box of a frame, from the head pose of its decoded landmarks,
  which both sides hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from facewire.shared.codec.layer import Affine, HeldBox, Region, apply_held, hold_box

# the layer's box and constants live in layer_box (mesh.py needs them, and this module loads mesh); named here too
from facewire.shared.render.layer_box import LAYER_BLUR as LAYER_BLUR
from facewire.shared.render.layer_box import LAYER_DETAIL as LAYER_DETAIL
from facewire.shared.render.layer_box import LAYER_GEOMETRY as LAYER_GEOMETRY
from facewire.shared.render.layer_box import layer_transform as layer_transform
from facewire.shared.render.warp import Region as WarpRegion
from facewire.shared.types import (
    Alpha,
    FaceState,
    FrameState,
    Image,
    KeyframeState,
    Landmarks,
    RenderedPerson,
    Renderer,
)


@dataclass
class LayerHold:
    """The layer's last decoded box for the keyframe frames are drawn from (one owner: a player or a replica)."""

    kf: int | None = None
    box: Image | None = None
    _held: HeldBox | None = field(default=None, repr=False)  # the box's frame-independent part, made on first use

    def update(self, kf: int, box: Image | None) -> None:
        """A frame drawn from keyframe `kf` arrived, carrying a new box or none (hold the last)."""
        if kf != self.kf:
            self.kf, self.box, self._held = kf, None, None
        if box is not None:
            self.box, self._held = box, None

    def clear(self) -> None:
        self.kf, self.box, self._held = None, None, None

    def apply(self, person: RenderedPerson, frame: FrameState, in_place: bool = False) -> RenderedPerson:
        """The held correction applied to `person` (layer.apply_residual's bytes); `in_place`: into `person.image`
        itself (its owner's to change), which saves copying the whole frame."""
        if self.box is None or frame.face == "lost":
            return person
        transform = layer_transform(frame.landmarks)
        if transform is None:
            return person
        if self._held is None:
            self._held = hold_box(self.box, LAYER_DETAIL, LAYER_BLUR)
        out = person.image if in_place else None
        image = apply_held(person.image, self._held, transform, out)
        return RenderedPerson(image, person.alpha)


def draw(renderer: Renderer, frame: FrameState, keyframe: KeyframeState, hold: LayerHold | None) -> RenderedPerson:
    """The person as the receiver shows it for `frame`, drawn from `keyframe` (which the renderer was
    prepared with); `hold` None: the prediction alone (an avatar, or a sender without the layer)."""
    person = renderer.render(frame)
    if hold is None:
        return person
    hold.update(keyframe.kf, frame.layer)
    # A renderer draws into a new picture, but where it has nothing to warp it hands back the keyframe's own,
    # which later frames are drawn from: that one is never written into.
    return hold.apply(person, frame, in_place=not np.may_share_memory(person.image, keyframe.image))


@runtime_checkable
class RegionRenderer(Protocol):
    """A renderer that can draw a part of the frame exactly as its whole-frame render would (MeshRenderer)."""

    def render_region(self, frame: FrameState, region: WarpRegion) -> RenderedPerson: ...


@dataclass
class Replica:
    """The sender's replica of the receiver's self-mode drawing: the same renderer, prepared with the
    keyframe state the receiver decodes (`build_keyframe` returns it), drawing from the landmarks the
    receiver decodes (the face code's `Prepared.landmarks`)."""

    renderer: Renderer
    hold: LayerHold = field(default_factory=LayerHold)
    _keyframe: KeyframeState | None = None

    def __post_init__(self) -> None:
        self.renderer.prepare_identity(None)

    @classmethod
    def mesh(cls) -> Replica:
        from facewire.shared.render.mesh import MeshRenderer  # heavy: only a sender with the layer loads it

        return cls(MeshRenderer())

    @property
    def keyframe(self) -> KeyframeState | None:
        return self._keyframe

    def use(self, keyframe: KeyframeState) -> None:
        """Draw from this keyframe from now on (as the receiver does once it holds it)."""
        if keyframe is not self._keyframe:
            self.renderer.prepare_keyframe(keyframe)
            self._keyframe = keyframe

    def frame_state(self, landmarks: Landmarks | None, face: FaceState, alpha: Alpha | None = None,
                    layer: Image | None = None, seq: int = 0, ts_us: int = 0, body: Affine | None = None) -> FrameState:
        return FrameState(seq=seq, ts_us=ts_us, face=face, landmarks=landmarks, alpha=alpha, layer=layer, body=body)

    def predict(self, frame: FrameState, region: Region | None = None) -> RenderedPerson:
        """The receiver's prediction of this frame (before any layer correction); with a `region` (x0, y0,
        x1, y1), exact there only, when the renderer can draw a part (the layer's residual reads its box)."""
        assert self._keyframe is not None, "Replica.predict before use(keyframe)"
        if region is not None and isinstance(self.renderer, RegionRenderer):
            x0, y0, x1, y1 = region
            return self.renderer.render_region(frame, WarpRegion(x0, y0, x1 - x0, y1 - y0))
        return draw(self.renderer, frame, self._keyframe, None)

    def show(self, frame: FrameState) -> RenderedPerson:
        """What the receiver shows for this frame, the layer's held correction included."""
        assert self._keyframe is not None, "Replica.show before use(keyframe)"
        return draw(self.renderer, frame, self._keyframe, self.hold)

