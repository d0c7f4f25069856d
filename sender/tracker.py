"""Face tracking: MediaPipe's 478-point face mesh (with irises), head pose, smoothing, hold.

The head pose is measured in the head-canonical frame of facewire.shared.face.pose (protocol.md 6.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from facewire.sender.graph import process_image
from facewire.sender.smoothing import OneEuroFilter, OneEuroParams
from facewire.shared.face.pose import head_frame, head_pose
from facewire.shared.types import MESH_POINTS, CapturedFrame, FaceObservation, HeadPose, Landmarks

_FACE_MESH_GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
_DETECTION_SCORE_PARAM = (
    "facedetectionshortrangecpu__facedetectionshortrange__facedetection__TensorsToDetectionsCalculator.min_score_thresh"
)
_TRACKING_SCORE_PARAM = "facelandmarkcpu__ThresholdingCalculator.threshold"


@dataclass(frozen=True)
class TrackerConfig:
    """The primary face is sticky: while it is tracked MediaPipe follows it from frame to frame
    (its region comes from the last mesh), and while it is held after a loss the detector only
    sees a window around where it was (search_window face widths wide), so a face that merely
    comes back is picked up again in preference to another one in view; once the hold expires
    the whole frame is searched. The detector runs only when tracking is lost. max_faces > 1
    also tracks other faces and keeps the one nearest the last (MediaPipe then runs its detector
    on every frame that shows fewer than max_faces faces, ~2 ms more). hold_s: how long the last
    observation is repeated (state "held", fading confidence) after the face disappears."""

    max_faces: int = 1
    hold_s: float = 0.5
    search_window: float = 3.0
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smoothing: OneEuroParams | None = field(default_factory=OneEuroParams)

    def __post_init__(self) -> None:
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.hold_s < 0:
            raise ValueError(f"hold_s must be >= 0, got {self.hold_s}")
        if self.search_window <= 0:
            raise ValueError(f"search_window must be > 0, got {self.search_window}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")


def choose_primary(candidates: list[Landmarks], previous: Landmarks | None) -> int:
    """Index of the primary face: the one whose eye midpoint is nearest the previous primary's,
    or the largest (nearest the camera) when there is no previous face."""
    if not candidates:
        raise ValueError("no candidate faces")
    if len(candidates) == 1:
        return 0
    frames = [head_frame(c) for c in candidates]
    if previous is None:
        return int(np.argmax([f[2] for f in frames]))
    _, prev_origin, _ = head_frame(previous)
    d = [float(np.linalg.norm(f[1][:2] - prev_origin[:2])) for f in frames]
    return int(np.argmin(d))


def search_window(image: npt.NDArray[np.uint8], pose: HeadPose, widths: float) -> npt.NDArray[np.uint8]:
    """A copy of the frame with everything outside a square around the pose's face filled with
    the frame's mean colour; the square's side is `widths` face widths (2 inter-eye units each)."""
    h, w = image.shape[:2]
    half = max(16.0, widths * pose.scale)  # widths * 2 units / 2
    x0, x1 = max(0, int(pose.tx - half)), min(w, int(pose.tx + half))
    y0, y1 = max(0, int(pose.ty - half)), min(h, int(pose.ty + half))
    out = np.empty_like(image)
    out[:] = np.asarray(cv2.mean(image)[:3], dtype=np.float64).round().astype(np.uint8)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return out


# A NormalizedLandmark with x, y and z set and nothing else, serialized: its field tag (1, length-delimited) and length,
# then three tagged fixed32 floats (fields 1-3). MediaPipe's face mesh sets exactly those.
_LANDMARK_RECORD = np.dtype([("head", "u1", 3), ("x", "<f4"), ("y_tag", "u1"), ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_LANDMARK_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)
_Y_TAG, _Z_TAG = 0x15, 0x1D


def landmark_array(landmarks: Any) -> npt.NDArray[np.float32]:
    """A NormalizedLandmarkList's (x, y, z) as float32 rows, the same floats as reading each landmark's fields. Read from
    its serialized bytes where every landmark is laid out as _LANDMARK_RECORD (~0.06 ms for the 478 of a face, where the
    fields read one by one took ~0.5-0.7 ms of the tracker's thread a frame, on the frame's critical path), else field by
    field."""
    data = landmarks.SerializeToString()
    count = len(landmarks.landmark)
    if len(data) == count * _LANDMARK_RECORD.itemsize:
        records = np.frombuffer(data, _LANDMARK_RECORD)
        if (records["head"] == _LANDMARK_HEAD).all() and (records["y_tag"] == _Y_TAG).all() \
                and (records["z_tag"] == _Z_TAG).all():
            return np.stack([records["x"], records["y"], records["z"]], axis=1).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32).reshape(count, 3)


def in_frame_fraction(landmarks: Landmarks, width: int, height: int) -> float:
    x, y = landmarks[:, 0], landmarks[:, 1]
    return float(np.mean((x >= 0) & (x < width) & (y >= 0) & (y < height)))


class MediaPipeFaceTracker:
    """facewire.shared.types.FaceTracker on MediaPipe's face mesh (legacy solutions graph, bundled weights).

    The graph runs in video mode: the mesh of the previous frame gives the region for the next,
    and the face detector runs only when that tracking is lost (or, with max_faces > 1, when
    fewer faces than max_faces are being tracked). Confidence is the face detector's score for
    the tracked face (kept from its last detection while the mesh tracks) times the fraction of
    mesh points inside the frame; MediaPipe itself drops a face whose landmark presence score
    falls under min_tracking_confidence.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._graph: object | None = None
        self._size: tuple[int, int] | None = None
        self._smoother = OneEuroFilter(self.config.smoothing) if self.config.smoothing else None
        self._last: FaceObservation | None = None
        self._last_raw: Landmarks | None = None
        self._last_ts: int | None = None
        # The smoother sees seconds since the first frame: epoch seconds as float64 round each frame's dt
        # differently from run to run, so the same recording would smooth differently.
        self._origin_us: int | None = None
        self._det_score = 1.0
        self._last_seen_lost = False
        self._last_raw_origin: npt.NDArray[np.float64] | None = None

    def _make_graph(self) -> object:
        from mediapipe.python.solution_base import SolutionBase

        c = self.config
        return SolutionBase(
            binary_graph_path=_FACE_MESH_GRAPH,
            side_inputs={"num_faces": c.max_faces, "with_attention": True, "use_prev_landmarks": True},
            calculator_params={
                _DETECTION_SCORE_PARAM: c.min_detection_confidence,
                _TRACKING_SCORE_PARAM: c.min_tracking_confidence,
            },
            outputs=["multi_face_landmarks", "face_detections"],
        )

    def reset(self) -> None:
        """Forget the tracked face (a new scene or a seek). The graph remembers the last frame's face to track
        from; one whose last frame held none remembers nothing and is kept (building it again costs ~100 ms)."""
        if not self._last_seen_lost:
            self._close_graph()
        self._size = None
        self._last = self._last_raw = None
        self._last_raw_origin = None
        self._last_ts = None
        self._last_seen_lost = False
        if self._smoother:
            self._smoother.reset()

    def _close_graph(self) -> None:
        if self._graph is not None:
            self._graph.close()  # type: ignore[attr-defined]
            self._graph = None

    def close(self) -> None:
        self._close_graph()

    def _run(self, image: npt.NDArray[np.uint8]) -> tuple[list[Landmarks], list[tuple[float, float, float]]]:
        h, w = image.shape[:2]
        if self._graph is None or self._size != (w, h):
            self._close_graph()
            self._graph = self._make_graph()
            self._size = (w, h)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        res = process_image(self._graph, rgb)
        faces: list[Landmarks] = []
        for fl in res["multi_face_landmarks"] or []:
            arr = landmark_array(fl)
            if arr.shape[0] != MESH_POINTS:
                raise RuntimeError(f"MediaPipe returned {arr.shape[0]} landmarks, expected {MESH_POINTS}")
            arr *= np.array([w, h, w], dtype=np.float32)
            faces.append(arr)
        dets: list[tuple[float, float, float]] = []
        for d in res["face_detections"] or []:
            box = d.location_data.relative_bounding_box
            cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
            dets.append((float(d.score[0]), cx, cy))
        return faces, dets

    def track(self, frame: CapturedFrame) -> FaceObservation | None:
        img = frame.image
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {img.shape} {img.dtype}")
        if self._last_ts is not None and frame.ts_us < self._last_ts:
            self.reset()  # time went backwards: a seek or a new source
        if self._last is not None and self._last_seen_lost:
            # re-acquiring during a hold: let the detector see only where the face was
            faces, dets = self._run(search_window(img, self._last.pose, self.config.search_window))
        else:
            faces, dets = self._run(img)
        self._last_seen_lost = not faces
        if not faces:
            return self._hold(frame.ts_us)

        idx = choose_primary(faces, self._last_raw)
        raw = faces[idx]
        _, origin, scale = head_frame(raw)
        prev = self._last_raw_origin
        switched = prev is not None and float(np.hypot(prev[0] - origin[0], prev[1] - origin[1])) > scale
        if self._last is None or switched:
            self._det_score = 1.0 if not dets else 0.0
            if self._smoother:
                self._smoother.reset()
        if dets:
            # the detection nearest the face (MediaPipe ran its detector on this frame)
            near = min(dets, key=lambda d: (d[1] - origin[0]) ** 2 + (d[2] - origin[1]) ** 2)
            if math.hypot(near[1] - origin[0], near[2] - origin[1]) < 1.5 * scale:
                self._det_score = near[0]
        h, w = img.shape[:2]
        confidence = float(np.clip(self._det_score * in_frame_fraction(raw, w, h), 0.0, 1.0))

        smooth = raw
        if self._smoother is not None:
            if self._origin_us is None:
                self._origin_us = frame.ts_us
            smooth = self._smoother(raw, (frame.ts_us - self._origin_us) * 1e-6, scale=max(scale, 1.0))
        obs = FaceObservation(landmarks=smooth, pose=head_pose(smooth), confidence=confidence, state="tracked",
                              raw=raw if smooth is not raw else None)
        self._last, self._last_raw, self._last_ts = obs, raw, frame.ts_us
        self._last_raw_origin = origin
        return obs

    def _hold(self, ts_us: int) -> FaceObservation | None:
        if self._last is None or self._last_ts is None:
            return None
        hold_us = self.config.hold_s * 1e6
        elapsed = ts_us - self._last_ts
        if elapsed > hold_us or hold_us <= 0:
            self._last = self._last_raw = None
            self._last_raw_origin = None
            self._last_ts = None
            if self._smoother:
                self._smoother.reset()
            return None
        fade = 1.0 - elapsed / hold_us
        return FaceObservation(
            landmarks=self._last.landmarks,
            pose=self._last.pose,
            confidence=float(self._last.confidence * fade),
            state="held",
        )
