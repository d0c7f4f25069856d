"""Warming up before the first frame (sender/warmup.py, receiver/warmup.py): the first real frame is
analysed, coded and drawn exactly as without it, and the warm-up itself shows and keeps nothing."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data

from facewire.receiver.player import Player
from facewire.receiver.session import RenderJob
from facewire.receiver.sinks import NullSink
from facewire.receiver.stats import StatsMeter
from facewire.receiver.warmup import sample_keyframe
from facewire.receiver.warmup import warm_up as warm_receiver
from facewire.sender.analysis import SenderAnalyzer
from facewire.sender.matte import make_matter
from facewire.sender.tracker import MediaPipeFaceTracker
from facewire.sender.warmup import sample_face
from facewire.sender.warmup import warm_up as warm_sender
from facewire.shared.render import make_renderer
from facewire.shared.types import CapturedFrame, FrameState

SIZE = (320, 240)


def _frames() -> list[CapturedFrame]:
    """A head moving a little across three frames, at SIZE."""
    base = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), (240, 240), interpolation=cv2.INTER_AREA)
    frames = []
    for index in range(3):
        image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        image[:, 30 + 4 * index:270 + 4 * index] = base
        frames.append(CapturedFrame(index=index, ts_us=index * 33_333, image=image))
    return frames


def _analyzer() -> SenderAnalyzer:
    return SenderAnalyzer(MediaPipeFaceTracker(), make_matter("learned", providers="cpu"))


def test_a_warmed_up_analyzer_sees_the_first_frames_as_a_fresh_one_does() -> None:
    fresh, warmed = _analyzer(), _analyzer()
    try:
        warm_sender(warmed, SIZE)
        for frame in _frames():
            a, b = fresh.analyze(frame), warmed.analyze(frame)
            assert a.face is not None and b.face is not None
            assert np.allclose(a.face.landmarks, b.face.landmarks, atol=1e-3)
            assert a.face.state == b.face.state
            assert a.alpha is not None and b.alpha is not None
            assert np.abs(a.alpha - b.alpha).max() < 1e-4
    finally:
        fresh.close()
        warmed.close()


def test_the_tracker_keeps_its_graph_over_a_reset_only_when_the_graph_remembers_no_face() -> None:
    tracker = MediaPipeFaceTracker()
    face = CapturedFrame(index=0, ts_us=0, image=sample_face(SIZE))
    empty = CapturedFrame(index=1, ts_us=33_333, image=np.zeros_like(face.image))
    try:
        assert tracker.track(face) is not None
        built = tracker._graph
        tracker.reset()  # the graph would track the astronaut's face from where it was: built again
        assert tracker._graph is None
        tracker.track(face)
        tracker.track(empty)
        built = tracker._graph
        tracker.reset()
        assert tracker._graph is built and built is not None
        assert tracker.track(CapturedFrame(index=2, ts_us=66_666, image=face.image)) is not None
    finally:
        tracker.close()


def test_pillow_decodes_and_encodes_the_protocols_images_without_loading_every_plugin() -> None:
    # Image.init() imports all of Pillow's plugins (~100 ms on the first keyframe's path); _initialized is 2 once it ran.
    script = (
        "import numpy as np; from PIL import Image\n"
        "from facewire.shared.codec import images, keyframe\n"
        "data = keyframe._avif(np.zeros((32, 32, 3), np.uint8), 50, 9)\n"
        "images.decode_image(data, 'avif', 'image')\n"
        "print(Image._initialized)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert int(out.stdout.strip()) < 2


def test_the_receivers_rehearsal_shows_nothing_and_the_first_keyframe_is_drawn_as_without_it() -> None:
    pictures: list[np.ndarray] = []
    player = Player(make_renderer("mesh"), NullSink(), StatsMeter(), background="#000000", on_picture=pictures.append)
    warm_receiver(player, SIZE)
    assert pictures == [] and player.stats.frames_out == 0
    # the session's keyframe: the same face on a lighter picture, as another keyframe number
    sample = sample_keyframe(SIZE)
    keyframe = type(sample)(kf=1, image=np.full_like(sample.image, 200), alpha=sample.alpha, landmarks=sample.landmarks)
    frame = FrameState(seq=1, ts_us=0, face="tracked", landmarks=sample.landmarks, alpha=None)
    picture = player.show(RenderJob(frame=frame, keyframe=keyframe, identity=None), 1 / 30)
    assert pictures and player.stats.frames_out == 1
    centre = picture[SIZE[1] // 2 - 5:SIZE[1] // 2 + 5, SIZE[0] // 2 - 5:SIZE[0] // 2 + 5]
    assert abs(float(centre.mean()) - 200) < 12, "the sample's keyframe was drawn instead of the session's"


@pytest.mark.parametrize("size", [(640, 480), (480, 640)])
def test_the_sample_face_fills_the_frame_it_is_made_for(size: tuple[int, int]) -> None:
    frame = sample_face(size)
    assert frame.shape == (size[1], size[0], 3)
    assert frame.mean() > 40
