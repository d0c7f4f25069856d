"""Matting: chroma key (any screen colour, uneven light, despill), learned, auto, the factory."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from facewire.sender.analysis import SenderAnalyzer
from facewire.sender.matte import make_matter
from facewire.sender.matte.auto import AutoConfig, AutoMatter, screen_score
from facewire.sender.matte.chroma import ChromaConfig, ChromaMatter, estimate_screen, push_pull_fill
from facewire.sender.matte.learned import LearnedConfig, LearnedMatter
from facewire.shared.types import CapturedFrame, CoarseMatte, FaceObservation, HeadPose

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"
H, W = 240, 320


def _frame(img: np.ndarray, i: int = 0) -> CapturedFrame:
    return CapturedFrame(index=i, ts_us=i * 33_333, image=img)


def _scene(
    screen_bgr: tuple[float, float, float], seed: int = 0, shift: int = 0, falloff: float = 0.4, fg_out: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A 'person' (skin-coloured head, dark hair, grey shirt, soft outline) over an unevenly lit
    screen of the given colour, with sensor noise. Returns (image, true alpha)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    mask = np.zeros((H, W), np.float32)
    cv2.ellipse(mask, (160 + shift, 100), (50, 62), 0, 0, 360, (1.0,), -1)
    cv2.rectangle(mask, (80 + shift, 170), (240 + shift, H), (1.0,), -1)
    alpha = cv2.GaussianBlur(mask, (0, 0), 1.5)
    fg = np.empty((H, W, 3), np.float32)
    fg[:] = (120, 150, 200)  # skin
    fg[yy < 75] = (35, 40, 45)  # hair
    fg[yy >= 165] = (110, 110, 105)  # shirt
    if fg_out is not None:
        fg_out.append(fg)
    light = (1.0 + 0.75 * falloff * (xx / W - 0.5) - falloff * ((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2))[:, :, None]
    bg = np.array(screen_bgr, np.float32)[None, None, :] * light
    img = alpha[:, :, None] * fg + (1 - alpha[:, :, None]) * bg + rng.normal(0, 2.0, (H, W, 3))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), alpha


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a > 0.5) & (b > 0.5)).sum() / ((a > 0.5) | (b > 0.5)).sum())


@pytest.mark.parametrize("screen", [(70, 170, 60), (180, 80, 40), (105, 152, 68)], ids=["green", "blue", "dull-green"])
def test_chroma_key_matches_truth(screen: tuple[float, float, float]) -> None:
    m = ChromaMatter()
    for i in range(3):
        img, truth = _scene(screen, seed=i)
        a = m.matte(_frame(img, i))
    assert a.shape == (H, W) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert _mad(a, truth) < 0.012
    assert _iou(a, truth) > 0.97
    # the dim corners of the unevenly lit screen stay background
    assert a[:20, :20].max() < 0.02 and a[:20, -20:].max() < 0.02


def test_screen_colour_is_estimated() -> None:
    img, _ = _scene((180, 80, 40))
    est = estimate_screen(img)
    assert np.allclose(est.bgr, (180, 80, 40), atol=25)
    assert est.coverage > 0.6 and est.saturation > 50


def test_grey_backdrop_uses_difference_key() -> None:
    img, truth = _scene((225, 225, 225), falloff=0.15)  # a plain pale wall, fairly evenly lit
    m = ChromaMatter()
    a = m.matte(_frame(img))
    assert m.screen is not None and m.screen.saturation < ChromaConfig().min_saturation
    assert _iou(a, truth) > 0.93


def test_no_green_fringe_over_magenta() -> None:
    true_fg: list[np.ndarray] = []
    img, truth = _scene((70, 170, 60), fg_out=true_fg)
    m = ChromaMatter()
    a = m.matte(_frame(img))
    fg = m.foreground()
    assert fg is not None and fg.shape == img.shape and fg.dtype == np.uint8
    edge = (truth > 0.05) & (truth < 0.95)

    def green_fringe(colours: np.ndarray) -> float:
        # over magenta (no green) the composite's green is alpha * the colour's green: compare it
        # with the same alpha times the true foreground's green, so only the colours are judged
        extra = a[:, :, None] * (colours.astype(np.float32) - true_fg[0])
        return float(np.mean(extra[edge][:, 1]))

    assert green_fringe(img) > 5  # the frame's own colours do fringe: the check can fail
    assert green_fringe(fg) < 2.0  # no more green than the true foreground has


def test_clean_plate_follows_uneven_light() -> None:
    img, _ = _scene((70, 170, 60))
    m = ChromaMatter()
    m.matte(_frame(img))
    plate = m.plate()
    assert plate is not None
    # corner-to-centre brightness difference of the screen is reproduced by the plate
    assert abs(int(plate[5, 5, 1]) - int(img[5:10, 5:10, 1].mean())) < 8
    assert abs(int(plate[120, 5, 1]) - int(img[118:123, 3:8, 1].mean())) < 8


def test_push_pull_fills_holes_smoothly() -> None:
    vals = np.tile(np.linspace(0, 100, 32, dtype=np.float32), (32, 1))
    w = np.ones((32, 32), np.float32)
    w[8:24, 8:24] = 0
    out = push_pull_fill(vals * w, w)
    assert np.allclose(out[w > 0], vals[w > 0], atol=1e-3)
    assert np.abs(out[8:24, 8:24] - vals[8:24, 8:24]).max() < 15


def test_learned_matte_on_astronaut() -> None:
    img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    m = LearnedMatter()
    try:
        raw = m.raw_mask(_frame(img))
        a = m.matte(_frame(img))
    finally:
        m.close()
    assert a.shape == img.shape[:2] and a.dtype == np.float32
    assert a[120:160, 200:240].mean() > 0.9  # her face
    assert a[10:60, 450:500].mean() < 0.1  # the backdrop at the top right
    # refinement only inside the uncertain band: sure values are exactly 0 or 1 (a few pixels from
    # it: the band is found and refined at the reduced frame's size, then upsampled)
    far_bg = cv2.erode((raw < 0.005).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    far_fg = cv2.erode((raw > 0.995).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert far_bg.mean() > 0.2 and far_fg.mean() > 0.2
    assert np.all(a[far_bg] == 0.0) and np.all(a[far_fg] == 1.0)


def test_auto_switches_with_hysteresis() -> None:
    green, _ = _scene((70, 170, 60))
    plain = np.ascontiguousarray(cv2.resize(data.astronaut()[:, :, ::-1], (W, H)))
    assert screen_score(green) > 0.6 and screen_score(plain) == 0.0
    auto = AutoMatter(ChromaMatter(), LearnedMatter(), AutoConfig(confirm=2, check_every=1))
    try:
        auto.matte(_frame(green, 0))
        assert auto.active == "chroma"
        fg = auto.foreground()
        assert fg is not None and fg.shape == green.shape
        auto.matte(_frame(plain, 1))
        assert auto.active == "chroma"  # one frame is not a new scene
        auto.matte(_frame(green, 2))
        auto.matte(_frame(plain, 3))
        assert auto.active == "chroma"
        auto.matte(_frame(plain, 4))
        assert auto.active == "learned"
        fg = auto.foreground()  # the learned matter's: the frame with its soft edge decontaminated
        assert fg is not None and fg.shape == plain.shape
    finally:
        auto.close()


def test_factory_modes() -> None:
    assert make_matter("none") is None
    assert isinstance(make_matter("chroma"), ChromaMatter)
    assert isinstance(make_matter("auto"), AutoMatter)
    assert make_matter("learned") is not None
    with pytest.raises(ValueError, match="chroma"):
        make_matter("hsv")


def test_bad_input_rejected() -> None:
    with pytest.raises(ValueError):
        ChromaMatter().matte(_frame(np.zeros((H, W), np.uint8)))
    with pytest.raises(ValueError):
        ChromaConfig(clip_black=0.9, clip_white=0.1)


class _NoFace:
    def track(self, frame: CapturedFrame) -> FaceObservation | None:
        return None

    def close(self) -> None:
        pass


def test_analyzer_combines_stages() -> None:
    img, truth = _scene((70, 170, 60))
    an = SenderAnalyzer(_NoFace(), ChromaMatter())
    res = an.analyze(_frame(img))
    assert res.face_state == "lost" and res.alpha is not None
    assert _iou(res.alpha, truth) > 0.97
    assert set(an.last_timings_ms) == {"track", "matte"}
    assert SenderAnalyzer(_NoFace(), None).analyze(_frame(img)).alpha is None


class _MatterStub:
    """What a Matter does besides `matte`, for the test doubles: nothing."""

    def foreground(self) -> None:
        return None

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Rendezvous(_MatterStub):
    """A tracker and a matter that each wait (up to 5 s) for the other to have started: both finish only when
    the analyzer runs them side by side; run one after the other, each would time out."""

    name = "rendezvous"

    def __init__(self) -> None:
        self.tracking, self.matting = threading.Event(), threading.Event()
        self.overlapped: list[bool] = []
        self.face = FaceObservation(np.zeros((478, 3), np.float32), HeadPose(0, 0, 0, 320, 240, 100), 1.0)

    def track(self, frame: CapturedFrame) -> FaceObservation | None:
        self.tracking.set()
        self.overlapped.append(self.matting.wait(5.0))
        return self.face

    def matte(self, frame: CapturedFrame) -> np.ndarray:
        self.matting.set()
        self.overlapped.append(self.tracking.wait(5.0))
        return np.ones(frame.image.shape[:2], np.float32)


def test_analyzer_tracks_while_the_matter_works() -> None:
    both = _Rendezvous()
    analysis = SenderAnalyzer(both, both).analyze(_frame(np.zeros((48, 64, 3), np.uint8)))
    assert both.overlapped == [True, True]
    assert analysis.face is both.face and analysis.alpha is not None


@pytest.mark.skipif(not (CLIPS / "d0.mp4").exists(), reason="needs ../shared/data/clips/d0.mp4 (real green screen)")
def test_real_green_screen_clip() -> None:
    cap = cv2.VideoCapture(str(CLIPS / "d0.mp4"))
    m = ChromaMatter()
    a = img = None
    for i in range(10):
        ok, img = cap.read()
        assert ok
        a = m.matte(_frame(img, i))
    cap.release()
    assert a is not None and img is not None
    assert a[:60, :60].max() < 0.05 and a[:60, -60:].max() < 0.05  # screen corners
    assert a[230:300, 220:290].min() > 0.95  # the face
    fg = m.foreground()
    assert fg is not None
    edge = (a > 0.1) & (a < 0.9)
    comp = a[:, :, None] * fg.astype(np.float32) + (1 - a[:, :, None]) * np.array([255, 0, 255], np.float32)
    b, g, r = comp[edge].T
    assert float(np.mean(g - np.maximum(b, r))) < 0.0


def test_learned_matte_of_a_frame_does_not_depend_on_the_frames_before() -> None:
    # what lets the analyser leave out the mattes nobody reads (SkippingMatter): the same frame after other
    # frames, or none, gets the same matte to the bit
    img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    other = np.ascontiguousarray(cv2.flip(cv2.resize(img, None, fx=0.8, fy=0.8), 1))
    other = cv2.copyMakeBorder(other, 0, img.shape[0] - other.shape[0], 0, img.shape[1] - other.shape[1],
                               cv2.BORDER_REFLECT)
    fresh, used = LearnedMatter(), LearnedMatter()
    try:
        for i in range(3):
            used.matte(_frame(other, i))
        assert used.optional_matte(_frame(img, 3)) is None
        assert np.array_equal(used.late_matte(_frame(img, 3)), fresh.matte(_frame(img, 0)))
    finally:
        fresh.close()
        used.close()


def test_a_learned_matte_made_late_from_the_coarse_one_is_the_matte() -> None:
    # the body's motion asks for the coarse matte of every frame (optional_matte with `coarse`); a keyframe decided on
    # one then refines that segmentation: the matte it gets is the one matte() makes, to the bit
    img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    fresh, lazy = LearnedMatter(), LearnedMatter()
    try:
        frame = _frame(img, 0)
        assert lazy.optional_matte(frame, coarse=True) is None
        coarse = lazy.coarse(frame)
        assert coarse is not None and coarse.alpha.shape == coarse.image.shape[:2]
        assert coarse.image.shape[1] == LearnedConfig().seg_width and coarse.alpha.dtype == np.float32
        assert lazy.coarse(_frame(img, 0)) is None  # another frame's (even of the same picture): not this one's
        assert lazy.optional_matte(_frame(img, 1)) is None and lazy.coarse(frame) is coarse  # not asked: none made
        matte = fresh.matte(frame)
        assert np.array_equal(lazy.late_matte(frame), matte)
        assert np.array_equal(coarse.alpha, fresh.coarse(frame).alpha)  # type: ignore[union-attr]  # made with it
    finally:
        fresh.close()
        lazy.close()


class _Counting(_MatterStub):
    """A matter that counts its mattes; `skips`: it is a SkippingMatter that leaves out what it may."""

    name = "counting"

    def __init__(self) -> None:
        self.mattes = 0

    def matte(self, frame: CapturedFrame) -> np.ndarray:
        self.mattes += 1
        return np.full(frame.image.shape[:2], self.mattes, np.float32)


class _Skipping(_Counting):
    """A SkippingMatter whose coarse matte, when asked for, is a frame of 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self._coarse: tuple[CapturedFrame, CoarseMatte] | None = None

    def optional_matte(self, frame: CapturedFrame, coarse: bool = False) -> None:
        if coarse:
            self._coarse = (frame, CoarseMatte(frame.image[::2, ::2], np.full(frame.image.shape[:2], 0.5, np.float32)[::2, ::2]))
        return None

    def late_matte(self, frame: CapturedFrame) -> np.ndarray:
        return self.matte(frame)

    def coarse(self, frame: CapturedFrame) -> CoarseMatte | None:
        return self._coarse[1] if self._coarse is not None and self._coarse[0] is frame else None


def test_analyzer_leaves_out_the_mattes_nobody_reads_and_makes_one_late() -> None:
    img = np.zeros((H, W, 3), np.uint8)
    matter = _Skipping()
    an = SenderAnalyzer(_NoFace(), matter)
    first = an.analyze(_frame(img, 0), matte=False)
    assert first.alpha is None and matter.mattes == 0
    second = an.analyze(_frame(img, 1), matte=False)
    assert an.with_matte(first) is first  # only the last frame analysed can be matted late
    late = an.with_matte(second)
    assert late.alpha is not None and matter.mattes == 1 and late.frame is second.frame
    assert an.with_matte(late) is late and matter.mattes == 1
    assert an.analyze(_frame(img, 2)).alpha is not None and matter.mattes == 2  # asked for: made beside the tracker
    # a matter whose state follows every frame (not a SkippingMatter) mattes them all
    every = _Counting()
    assert SenderAnalyzer(_NoFace(), every).analyze(_frame(img, 0), matte=False).alpha is not None
    assert every.mattes == 1


def test_analyzer_gives_the_coarse_matte_where_asked_and_keeps_it_on_a_late_matte() -> None:
    img = np.zeros((H, W, 3), np.uint8)
    matter = _Skipping()
    an = SenderAnalyzer(_NoFace(), matter)
    assert an.analyze(_frame(img, 0), matte=False).coarse is None  # not asked for
    rough = an.analyze(_frame(img, 1), matte=False, coarse=True)
    assert rough.alpha is None and rough.coarse is not None and matter.mattes == 0
    late = an.with_matte(rough)
    assert late.alpha is not None and late.coarse is rough.coarse
    # a matter that makes none: no coarse matte, the matte as before
    every = SenderAnalyzer(_NoFace(), _Counting()).analyze(_frame(img, 0), matte=False, coarse=True)
    assert every.alpha is not None and every.coarse is None


def test_auto_matter_checks_the_screen_on_the_same_frames_when_mattes_are_left_out() -> None:
    green, _ = _scene((70, 170, 60))
    plain = np.ascontiguousarray(cv2.resize(data.astronaut()[:, :, ::-1], (W, H)))
    frames = [green, plain, plain, plain, plain, green, plain]
    config = AutoConfig(confirm=2, check_every=2)
    every, lazy = (AutoMatter(ChromaMatter(), _Skipping(), config) for _ in range(2))
    for i, img in enumerate(frames):
        every.matte(_frame(img, i))
        alpha = lazy.optional_matte(_frame(img, i))
        assert lazy.active == every.active
        assert (alpha is None) == (lazy.active == "learned")  # the chroma key's plate follows every frame
    assert lazy.active == "learned"
    assert lazy.late_matte(_frame(plain, 7)) is not None and lazy.active == "learned"
