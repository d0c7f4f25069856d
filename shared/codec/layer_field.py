"""The residual layer as a frame code (capability `residual-av1`, role `layer`; protocol.md 7.5).

* Preparer (the sender's closed loop, beside the analysing thread: sender/behind.py): at LAYER_FPS, the
  sender's replica of the receiver (facewire.shared.render.replica) draws the prediction of the frame from
  the keyframe chosen as its reference (the newest one built, or an earlier look) and the face code's decoded
  landmarks; the residual (camera - prediction, in the face box) is what the layer codes, tagged with that
  keyframe and the rate the budget leaves it. It goes with a later frame (the next one in a recording): the
  receiver applies a box to the frames after the one carrying it anyway, and no frame waits for its own.
* Encoder (send time): feeds the AV1 layer stream only with frames that are sent, and only when the
  receiver draws the frame from the keyframe the residual was computed against (`CodedFrame.drawn_from`,
  the frame's reference): while a new keyframe's parts are in transit the layer pauses (the receiver
  holds its last correction), and the first packet for a new keyframe is a key frame (a rate change
  rides on it).
* Decoder (receiver): one AV1 packet into the frame's box (`FrameDraft.layer`); the player holds it
  and applies it after the render (`replica.draw`). A damaged or hostile packet raises CodeError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facewire.shared.codec.layer import (
    LayerDecoder,
    LayerEncoder,
    Region,
    face_support,
    face_weight,
    residual_box,
    residual_region,
)
from facewire.shared.codec.seam import CodedFrame, FrameDraft, NoSetup, Prepared
from facewire.shared.face.topology import face_oval_ring
from facewire.shared.render.replica import LAYER_GEOMETRY, Replica, layer_transform
from facewire.shared.types import Affine, Alpha, FrameAnalysis, Image, KeyframeState, Landmarks

CAPABILITY = "residual-av1"
# A third of the camera's rate: the warp carries the motion between layer frames, and at a few kbps a
# packet every frame is too small to hold a face (helper R2: 1/3 beat every frame, 1/2 and 1/4 by 0.005-0.03).
LAYER_FPS = 10.0
RATE_STEP = 0.3  # between keyframes the layer's rate changes only when the budget moved this much (a restart costs a key frame)
KBPS_QUANTUM = 0.5


@dataclass(frozen=True)
class LayerValues:
    """One layer frame prepared on the analysing thread."""

    kf: int  # the keyframe the prediction was drawn from
    box: Image  # the residual box (facewire.shared.codec.layer.residual_box)
    kbps: float  # the layer's rate the budget allowed when it was prepared


def quantised_kbps(kbps: float) -> float:
    return max(KBPS_QUANTUM, round(kbps / KBPS_QUANTUM) * KBPS_QUANTUM)


@dataclass
class LayerPreparer(NoSetup):
    """The sender's replica drawing each layer frame's prediction and the residual against it."""

    fps: float = LAYER_FPS
    replica: Replica | None = None  # built on first use: only a sender that codes the layer loads the renderer
    _last_us: int | None = None

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        return None  # prepared by `prepare_layer`, which needs the face code's landmarks and the keyframe

    def prepare_layer(self, analysis: FrameAnalysis, landmarks: Landmarks | None, keyframe: KeyframeState | None,
                      kbps: float, body: Affine | None = None) -> Prepared | None:
        """This frame's residual, or None: not a layer frame, no face or keyframe, or no rate for the layer."""
        face = analysis.face
        if kbps <= 0 or keyframe is None or face is None or landmarks is None or not self.due(analysis.frame.ts_us):
            return None
        transform = layer_transform(landmarks)
        if transform is None:
            return None
        replica = self.replica = self.replica or Replica.mesh()
        replica.use(keyframe)
        frame = analysis.frame.image
        # Only what the residual reads: the box's region (a whole frame cost up to ~3x more), and there only about
        # the face: the residual is weighed by it (_on_face), 0 past its fade (a face filling the box made the
        # replica draw the whole frame; the same residual, ~2x less of the replica's CPU)
        region = face_support(landmarks[face_oval_ring()], frame.shape,
                              residual_region(transform, LAYER_GEOMETRY.size, frame.shape))
        prediction = replica.predict(replica.frame_state(landmarks, face.state, body=body), region)
        # Weighed by the receiver's own alpha (the keyframe's, warped), which the correction is shown with, not the
        # camera's matte: inside the face the two agree, so the layer needs no matte of its own (at 16 kbps the
        # matte was made for every third frame for this alone; d12's stream scored the same face SSIM without it)
        alpha = _on_face(prediction.alpha, landmarks, region)
        box = residual_box(frame, prediction.image, alpha, transform, LAYER_GEOMETRY.size)
        self._last_us = analysis.frame.ts_us
        return Prepared(landmarks=None, values=LayerValues(keyframe.kf, box, quantised_kbps(kbps)))

    def due(self, ts_us: int) -> bool:
        """Whether the frame captured at `ts_us` is a layer frame (LAYER_FPS since the last residual made)."""
        # a millisecond of slack: a 30 fps camera's third frame is 99.9 ms after the first
        return self._last_us is None or ts_us - self._last_us >= 1e6 / self.fps - 1000 or ts_us < self._last_us


def _on_face(alpha: Alpha, landmarks: Landmarks, region: Region) -> Alpha:
    """`alpha` weighed by the face (layer.face_weight) inside `region`, 0 elsewhere (the residual reads the region only)."""
    x0, y0, x1, y1 = region
    out = np.zeros_like(alpha)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = alpha[y0:y1, x0:x1] * face_weight(landmarks[face_oval_ring()], alpha.shape, region)
    return out


@dataclass
class LayerFieldEncoder(NoSetup):
    fps: float = LAYER_FPS
    coder: LayerEncoder | None = None
    _newest: int | None = None  # the newest keyframe the stream has corrected
    _key: bool = False  # the receiver lost the stream: the next packet is a key frame

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        prepared = frame.prepared.get(CAPABILITY)
        if prepared is None or not isinstance(prepared.values, LayerValues):
            return None
        values = prepared.values
        if frame.drawn_from != values.kf:
            return None  # the receiver draws this frame from another keyframe: the layer waits for it
        # A new keyframe starts the layer over with a key frame (its residual has little in common with the
        # last one), and a rate change rides on it; a return to an earlier reference is just another picture.
        new = self._newest is None or values.kf > self._newest
        coder = self.coder
        if coder is None:
            coder = self.coder = LayerEncoder(LAYER_GEOMETRY.size, values.kbps, self.fps)
        elif new or _moved(coder.kbps, values.kbps):
            coder.set_kbps(values.kbps)  # a restart (a key frame) when the rate changed
        if (new or self._key) and not coder.next_is_key:
            coder.force_key()
        self._newest, self._key = max(values.kf, self._newest or 0), False
        return coder.encode(values.box)

    def reset(self) -> None:
        self._key = True

    def close(self) -> None:
        if self.coder is not None:
            self.coder.close()


def _moved(current: float, wanted: float) -> bool:
    return abs(math.log(wanted / current)) > math.log1p(RATE_STEP)


@dataclass
class LayerFieldDecoder(NoSetup):
    decoder: LayerDecoder = field(default_factory=lambda: LayerDecoder(LAYER_GEOMETRY.size))

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        draft.layer = self.decoder.decode(payload)

    def reset(self) -> None:
        self.decoder.reset()
