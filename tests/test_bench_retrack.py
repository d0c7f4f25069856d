"""bench/swap.py's identity check searches each judged picture alone, and never judges a held (stale) face.

Tracking on from one judged frame to the next (`stride` frames apart), the re-detecting tracker lost d12's head
where it moved far and held the last face where it had been: the descriptor was taken beside the face, and
frame 36 read as nobody for 32 of 37 avatars.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bench.swap as sw
from facewire.shared.types import CapturedFrame, FaceObservation, FrameState, KeyframeState, RenderedPerson
from tests.render_fixtures import astronaut_landmarks


class _Tracker:
    """Records the frames it is shown; 'loses' the face (held) on frames listed in `held`."""

    def __init__(self, seen: list[int], held: set[int]) -> None:
        self.seen, self.held = seen, held
        self.fresh = False

    def reset(self) -> None:
        self.fresh = True

    def track(self, frame: CapturedFrame) -> FaceObservation:
        self.seen.append(frame.index if self.fresh else -1)  # -1: tracked on from an earlier picture
        self.fresh = False
        lm = astronaut_landmarks()
        pose = sw.head_pose(lm)
        return FaceObservation(lm, pose, 0.9, "held" if frame.index in self.held else "tracked")

    def close(self) -> None:
        pass


class _Renderer:
    def prepare_identity(self, identity: Any) -> None:
        pass

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        pass

    def render(self, state: FrameState) -> RenderedPerson | None:
        return None  # on_scene is stubbed: the scene itself is the drawn frame


class _Recogniser:
    def descriptor(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return np.zeros(128)


def _run(monkeypatch: pytest.MonkeyPatch, held: set[int]) -> tuple[sw.PairResult, list[int]]:
    seen: list[int] = []
    monkeypatch.setattr(sw, "MediaPipeFaceTracker", lambda config: _Tracker(seen, held))
    monkeypatch.setattr(sw, "make_renderer", lambda name, mesh_factory: _Renderer())
    monkeypatch.setattr(sw, "on_scene", lambda person, scene: scene)
    lm = astronaut_landmarks()
    image = np.zeros((512, 512, 3), np.uint8)
    frames: list[tuple[np.ndarray, np.ndarray | None]] = [(image, lm)] * 9
    steps = sw.direct(frames)
    result, _ = sw.run_pair("c", frames, steps, "a", None, np.zeros(128), _Recogniser(), "mesh", 100, sw.MeshOptions(), stride=4)  # type: ignore[arg-type]
    return result, seen


def test_each_judged_picture_is_searched_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    result, seen = _run(monkeypatch, set())
    assert seen == [0, 4, 8]  # each after a reset
    assert result.face_found == 1.0 and result.as_avatar == 1.0


def test_a_held_face_is_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = _run(monkeypatch, {4})
    assert result.face_found == pytest.approx(2 / 3)  # frames 0, 4, 8 judged; 4 held
