"""Face tracker on skimage's astronaut: landmarks, head pose, hold, sticky primary face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from facewire.sender.tracker import MediaPipeFaceTracker, TrackerConfig, choose_primary, landmark_array
from facewire.shared.face.pose import from_canonical, head_pose, pose_rotation, to_canonical
from facewire.shared.types import MESH_POINTS, CapturedFrame, HeadPose


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def _frame(img: np.ndarray, i: int = 0, fps: float = 30.0) -> CapturedFrame:
    return CapturedFrame(index=i, ts_us=int(i * 1e6 / fps), image=img)


def test_tracks_astronaut_with_irises(astronaut: np.ndarray) -> None:
    tr = MediaPipeFaceTracker()
    try:
        obs = tr.track(_frame(astronaut))
    finally:
        tr.close()
    assert obs is not None and obs.state == "tracked"
    assert obs.landmarks.shape == (MESH_POINTS, 3) and obs.landmarks.dtype == np.float32
    assert 0.5 < obs.confidence <= 1.0
    # the face is in the upper middle of the picture; eyes above the nose tip
    assert 150 < obs.pose.tx < 300 and 50 < obs.pose.ty < 160
    assert obs.landmarks[468, 1] < obs.landmarks[1, 1]
    assert abs(obs.pose.yaw) < 15 and abs(obs.pose.roll) < 15


def test_roll_follows_an_image_rotation(astronaut: np.ndarray) -> None:
    rot = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512))
    poses = []
    for img in (astronaut, rot):
        tr = MediaPipeFaceTracker(TrackerConfig(smoothing=None))
        obs = tr.track(_frame(img))
        tr.close()
        assert obs is not None
        poses.append(obs.pose)
    # OpenCV's positive angle turns the picture counter-clockwise: roll grows by about 20 degrees
    assert poses[1].roll - poses[0].roll == pytest.approx(20.0, abs=4.0)


def test_mirror_flips_yaw_and_roll(astronaut: np.ndarray) -> None:
    tr = MediaPipeFaceTracker(TrackerConfig(smoothing=None))
    a = tr.track(_frame(astronaut))
    tr.reset()
    b = tr.track(_frame(np.ascontiguousarray(astronaut[:, ::-1])))
    tr.close()
    assert a is not None and b is not None
    assert b.pose.roll == pytest.approx(-a.pose.roll, abs=2.0)
    assert b.pose.yaw == pytest.approx(-a.pose.yaw, abs=4.0)
    assert b.pose.tx == pytest.approx(512 - a.pose.tx, abs=3.0)


def test_canonical_round_trip(astronaut: np.ndarray) -> None:
    tr = MediaPipeFaceTracker()
    obs = tr.track(_frame(astronaut))
    tr.close()
    assert obs is not None
    canon = to_canonical(obs.landmarks, obs.pose)
    # eye-corner midpoints one unit apart, symmetric about the origin; the nose tip points forward
    assert canon[1, 2] > 0.3
    assert canon[33, 0] < 0 < canon[263, 0]
    back = from_canonical(canon, obs.pose)
    assert np.abs(back[:, :2] - obs.landmarks[:, :2]).max() < 1e-2


@pytest.mark.parametrize("angles", [(10.0, -20.0, 5.0), (-40.0, 30.0, -60.0), (0.0, 0.0, 0.0)])
def test_pose_angles_round_trip(angles: tuple[float, float, float]) -> None:
    pose = HeadPose(*angles, tx=100.0, ty=50.0, scale=40.0)
    r = pose_rotation(pose)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9)
    canon = np.random.default_rng(1).normal(size=(478, 3))
    canon[[33, 133], :] = [[-0.6, 0, 0], [-0.4, 0, 0]]
    canon[[362, 263], :] = [[0.4, 0, 0], [0.6, 0, 0]]
    # forehead and nose points on the frame's tilted vertical, so the recovered axes are exact
    t = np.radians(17.3)
    up = np.array([0, np.cos(t), -np.sin(t)])
    canon[[8, 9, 10]] = [u * up for u in (1.0, 1.2, 1.5)]
    canon[[1, 2, 4, 5]] = [u * up for u in (-1.0, -1.1, -0.9, -0.8)]
    px = from_canonical(canon, pose)
    got = head_pose(px)
    assert got.yaw == pytest.approx(pose.yaw, abs=1e-3)
    assert got.pitch == pytest.approx(pose.pitch, abs=1e-3)
    assert got.roll == pytest.approx(pose.roll, abs=1e-3)
    assert got.scale == pytest.approx(40.0, rel=1e-4)


def test_hold_then_lost(astronaut: np.ndarray) -> None:
    tr = MediaPipeFaceTracker(TrackerConfig(hold_s=0.2))
    blank = np.full_like(astronaut, 90)
    try:
        first = tr.track(_frame(astronaut, 0))
        held = tr.track(_frame(blank, 3))  # 0.1 s later
        gone = tr.track(_frame(blank, 9))  # 0.3 s later
    finally:
        tr.close()
    assert first is not None
    assert held is not None and held.state == "held"
    assert np.array_equal(held.landmarks, first.landmarks)
    assert held.confidence < first.confidence
    assert gone is None


def test_sticky_primary_face(astronaut: np.ndarray) -> None:
    face = astronaut[30:290, 110:370]
    big = cv2.resize(face, (300, 300))
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[80:380, 10:310] = big  # the larger (nearer) face: picked first when no face is tracked
    canvas[110:370, 360:620] = face[:, ::-1]
    right_only = canvas.copy()
    right_only[:, :330] = 128
    tr = MediaPipeFaceTracker(TrackerConfig(max_faces=2))
    try:
        fresh = MediaPipeFaceTracker(TrackerConfig(max_faces=2))
        both = fresh.track(_frame(canvas, 0))
        fresh.close()
        a = tr.track(_frame(right_only, 0))
        b = tr.track(_frame(canvas, 1))  # a second, larger face comes into view: keep the first
        c = tr.track(_frame(canvas, 2))
    finally:
        tr.close()
    assert both is not None and both.pose.tx < 320  # without history the larger face wins
    assert a is not None and b is not None and c is not None
    assert a.pose.tx > 330 and b.pose.tx > 330 and c.pose.tx > 330


def test_reacquires_the_held_face_not_another(astronaut: np.ndarray) -> None:
    face = astronaut[30:290, 110:370]
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[80:380, 10:310] = cv2.resize(face, (300, 300))  # larger: MediaPipe's own first pick
    canvas[110:370, 360:620] = face[:, ::-1]
    right_only = canvas.copy()
    right_only[:, :330] = 128
    blank = np.full_like(canvas, 128)
    tr = MediaPipeFaceTracker(TrackerConfig(max_faces=1, hold_s=0.5))
    try:
        a = tr.track(_frame(right_only, 0))
        held = tr.track(_frame(blank, 1))  # the face is lost for a moment...
        back = tr.track(_frame(canvas, 2))  # ...and comes back while another is in view
        after = tr.track(_frame(canvas, 3))
        tr.reset()
        fresh = tr.track(_frame(canvas, 10))
    finally:
        tr.close()
    assert a is not None and a.pose.tx > 330
    assert held is not None and held.state == "held"
    assert back is not None and back.state == "tracked" and back.pose.tx > 330
    assert after is not None and after.pose.tx > 330
    assert fresh is not None and fresh.pose.tx < 320  # no history: the other face may be chosen


def test_choose_primary_prefers_nearest_then_largest() -> None:
    base = np.zeros((478, 3), np.float32)
    base[[33, 133]] = [[0, 0, 0], [10, 0, 0]]
    base[[362, 263]] = [[30, 0, 0], [40, 0, 0]]
    base[[8, 9, 10]] = [[20, -20, 0], [20, -25, 0], [20, -30, 0]]
    base[[1, 2, 4, 5]] = [[20, 20, -5], [20, 22, -3], [20, 18, -6], [20, 15, -5]]
    small = base.copy()
    big = base * 2 + np.array([300, 0, 0], np.float32)
    assert choose_primary([small, big], None) == 1
    assert choose_primary([small, big], small + 3) == 0
    with pytest.raises(ValueError):
        choose_primary([], None)


def test_bad_input_rejected() -> None:
    tr = MediaPipeFaceTracker()
    with pytest.raises(ValueError):
        tr.track(CapturedFrame(0, 0, np.zeros((10, 10), np.uint8)))
    tr.close()
    with pytest.raises(ValueError):
        TrackerConfig(max_faces=0)


def _fields(landmarks: object) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32).reshape(-1, 3)  # type: ignore[attr-defined]


def test_the_landmarks_read_from_their_bytes_are_the_fields_bit_for_bit(astronaut: np.ndarray) -> None:
    """landmark_array reads MediaPipe's mesh from its serialized bytes: the same float32s as its fields, and a list laid
    out otherwise (a landmark with its visibility, one with a field left out) is read field by field."""
    from mediapipe.framework.formats import landmark_pb2

    tr = MediaPipeFaceTracker()
    try:
        tr.track(_frame(astronaut))
        mesh = tr._graph.process({"image": np.ascontiguousarray(astronaut[:, :, ::-1])}).multi_face_landmarks[0]  # type: ignore[attr-defined]  # noqa: SLF001
    finally:
        tr.close()
    read = landmark_array(mesh)
    assert read.shape == (MESH_POINTS, 3) and read.dtype == np.float32
    assert np.array_equal(read.view(np.uint32), _fields(mesh).view(np.uint32))
    other = landmark_pb2.NormalizedLandmarkList()
    for index in range(4):
        point = other.landmark.add()
        point.x, point.y, point.z = 0.1 * index, -0.25, 1e-3 * index
    other.landmark[1].visibility = 0.5
    unset = other.landmark.add()
    unset.x, unset.y = 0.5, 0.5
    assert np.array_equal(landmark_array(other), _fields(other))
    assert landmark_array(landmark_pb2.NormalizedLandmarkList()).shape == (0, 3)


def test_process_image_gives_what_the_solutions_process_gives(astronaut: np.ndarray) -> None:
    """sender.graph.process_image runs SolutionBase.process's steps without its namedtuple: the same outputs, frame
    after frame (the timestamps step alike), for the face mesh and the segmentation."""
    import mediapipe as mp

    from facewire.sender.graph import process_image

    rgb = np.ascontiguousarray(astronaut[:, :, ::-1])
    moved = np.ascontiguousarray(np.roll(rgb, 9, axis=1))
    for make in (lambda: mp.solutions.face_mesh.FaceMesh(refine_landmarks=True),
                 lambda: mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)):
        theirs, ours = make(), make()
        try:
            for image in (rgb, moved, rgb):
                expected, got = theirs.process(image), process_image(ours, image)
                assert set(got) == set(expected._fields)
                for name in expected._fields:
                    value, mine = getattr(expected, name), got[name]
                    if isinstance(value, np.ndarray):
                        assert np.array_equal(value, mine)
                    else:
                        assert [v.SerializeToString() for v in value or []] == [v.SerializeToString() for v in mine or []]
        finally:
            theirs.close()
            ours.close()
    with pytest.raises(ValueError, match="three channel"):
        process_image(object(), rgb[:, :, 0])
