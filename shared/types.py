"""The typed hand-offs between pipeline stages, common to sender and receiver.

Conventions: images are HxWx3 uint8 BGR (OpenCV order); alpha mattes are HxW float32 in
[0, 1]; landmarks are (478, 3) float32 MediaPipe face-mesh points in pixels of the frame
(x right, y down, z towards the camera negative, in the same pixel units as x).
Timestamps are integer microseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Alpha = npt.NDArray[np.float32]
Landmarks = npt.NDArray[np.float32]
Affine = npt.NDArray[np.float64]  # 2x3, maps (x, y, 1) to (x', y')
FaceState = Literal["tracked", "held", "lost"]
MESH_POINTS = 478


@dataclass(frozen=True)
class CapturedFrame:
    index: int
    ts_us: int
    image: Image

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class HeadPose:
    """Head pose in the head-canonical frame of protocol.md ("Head pose").

    yaw, pitch, roll in degrees; (tx, ty) the image position in pixels of the canonical
    origin (between the eyes); scale in pixels per canonical unit.
    """

    yaw: float
    pitch: float
    roll: float
    tx: float
    ty: float
    scale: float

    def as_list(self) -> list[float]:
        return [self.yaw, self.pitch, self.roll, self.tx, self.ty, self.scale]

    @classmethod
    def from_list(cls, values: list[float]) -> HeadPose:
        return cls(*(float(v) for v in values))


@dataclass(frozen=True)
class FaceObservation:
    landmarks: Landmarks
    pose: HeadPose
    confidence: float
    state: FaceState = "tracked"
    # The tracker's landmarks before its smoothing, when they differ: where the face is in this very picture. The
    # smoothing lags a moving head by about half a frame's motion (3-5 px on a talking head), which a keyframe would
    # carry into every frame drawn from it.
    raw: Landmarks | None = None

    @property
    def unsmoothed(self) -> Landmarks:
        """The tracker's landmarks for this picture before any smoothing."""
        return self.landmarks if self.raw is None else self.raw


class FaceTracker(Protocol):
    def track(self, frame: CapturedFrame) -> FaceObservation | None:
        """The primary face in this frame, or None when there is none to report."""
        ...

    def reset(self) -> None:
        """Forget the tracked face and the smoothing (a new scene or a seek)."""
        ...

    def close(self) -> None: ...


class Matter(Protocol):
    name: str

    def matte(self, frame: CapturedFrame) -> Alpha:
        """Foreground alpha for the frame (HxW float32 in [0, 1]); the sender tracks the face meanwhile."""
        ...

    def foreground(self) -> Image | None:
        """The last frame's foreground colours with the backdrop's spill removed (a chroma key's
        despill), or None when the frame itself is the foreground. Costly: asked for keyframes only."""
        ...

    def reset(self) -> None:
        """Forget temporal state (a new scene or a seek)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CoarseMatte:
    """A learned matter's matte of a frame before its refinement, at the network's own size, and the frame reduced
    to that size: what a reader that needs the person's outline only at a low resolution (the body's motion) fits
    to, made where the full-size matte is left out."""

    image: Image
    alpha: Alpha


@dataclass(frozen=True)
class FrameAnalysis:
    """Everything the sender knows about one frame before encoding."""

    frame: CapturedFrame
    face: FaceObservation | None
    alpha: Alpha | None
    foreground: Image | None = None  # the frame with spill removed, when the matter computes it
    coarse: CoarseMatte | None = None  # when the matter makes one (a learned matter), asked for or with the matte

    @property
    def face_state(self) -> FaceState:
        return "lost" if self.face is None else self.face.state


class Analyzer(Protocol):
    def analyze(self, frame: CapturedFrame) -> FrameAnalysis: ...

    def foreground(self) -> Image | None:
        """The last analysed frame's despilled foreground (Matter.foreground), or None."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class MatteSkippingAnalyzer(Protocol):
    """An Analyzer that can leave out the matte of a frame nobody reads (`matte` False; the sender's
    FrameCoder.matte_every_frame says), and make it afterwards when it is read after all (`with_matte`). With
    `coarse`, a frame whose matte it leaves out still gets its CoarseMatte where the matter makes one (the
    sender's FrameCoder.coarse_every_frame)."""

    def analyze(self, frame: CapturedFrame, matte: bool = True, coarse: bool = False) -> FrameAnalysis: ...

    def with_matte(self, analysis: FrameAnalysis) -> FrameAnalysis: ...


@dataclass(frozen=True)
class IdentityAsset:
    """An identity the receiver can render: an avatar image and its landmarks, or `self`."""

    asset_id: str
    image: Image | None
    landmarks: Landmarks | None
    embedding: npt.NDArray[np.float16] | None = None


@dataclass(frozen=True)
class KeyframeState:
    kf: int
    image: Image
    alpha: Alpha | None
    landmarks: Landmarks | None


@dataclass(frozen=True, eq=False)
class AlphaFix:
    """The corrections of the predicted alpha a receiver holds (facewire.shared.codec.alpha_fix): which
    tiles (rows x columns of 32-px tiles) and the 1/8-size matte levels of their cells. Replaced whole,
    never changed, so a decoded frame keeps the corrections it was decoded with."""

    held: npt.NDArray[np.bool_]
    levels: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FrameState:
    """One decoded frame message at full geometry, as the renderer sees it."""

    seq: int
    ts_us: int
    face: FaceState
    landmarks: Landmarks | None
    alpha: Alpha | None
    layer: Image | None = None  # the residual layer's box decoded from this frame (facewire.shared.render.replica)
    body: Affine | None = None  # the body's motion, this frame to its keyframe (facewire.shared.codec.body)
    alpha_fix: AlphaFix | None = None  # the corrections of the predicted alpha held for this frame


@dataclass(frozen=True)
class RenderedPerson:
    image: Image
    alpha: Alpha


class Renderer(Protocol):
    """Turns identity + keyframe + frame features into the person at the sender's geometry.

    The renderer holds the current identity and keyframe: its owner tells it when either changes
    (prepare_*), so whatever is built from them once (textures, warp models) is built there.
    """

    name: str

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        """Appear as this identity from now on (None: the sender's own keyframe)."""
        ...

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        """Warp this keyframe from now on."""
        ...

    def render(self, frame: FrameState) -> RenderedPerson:
        """The person at this frame's geometry; prepare_keyframe must have been called."""
        ...
