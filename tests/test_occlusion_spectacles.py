"""Spectacle frames found by their shape: clear and dark rims kept in front of an avatar when asked (OcclusionOptions.glasses),
nothing on a bare face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.shared.render.occlusion import OcclusionOptions, SpectacleMemory, occluder_mask
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks

CLIPS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clips"
LIGHT = (-1, -1, -1)  # clear plastic: the skin behind it, lighter (see _colour)
DARK = (40, 40, 40)
KEEP = OcclusionOptions(glasses=True)  # the sender's glasses kept in front of the avatar (off by default)
OFF = OcclusionOptions(glasses=True, spectacles=False)


def _large_astronaut(scale: int = 3) -> tuple[Image, Landmarks]:
    """The astronaut three times larger: her face is then ~270 px wide, a keyframe's size."""
    image = cv2.resize(astronaut(), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    lm = astronaut_landmarks().copy()
    lm[:, :2] = (lm[:, :2] + 0.5) * scale - 0.5
    return image, lm


def _colour(image: Image, lm: Landmarks, colour: tuple[int, int, int]) -> tuple[int, int, int]:
    if colour != LIGHT:
        return colour
    x, y = np.round(lm[50, :2]).astype(int)  # her cheek
    skin = np.median(image[y - 5 : y + 6, x - 5 : x + 6].reshape(-1, 3), axis=0)
    r, g, b = (int(v) for v in 0.6 * skin + 0.4 * 255)
    return (r, g, b)


def _with_glasses(
    image: Image, lm: Landmarks, colour: tuple[int, int, int], arc: tuple[int, int] = (0, 360), bridge: bool = False
) -> tuple[Image, np.ndarray]:
    """Thin oval rims round both eyes (only the `arc` of each, in degrees), a bridge if asked, and where they are."""
    out = image.copy()
    colour = _colour(image, lm, colour)
    rims = np.zeros(image.shape[:2], np.uint8)
    ends = []
    for outer, inner in ((33, 133), (263, 362)):
        o, i = lm[outer, :2].astype(np.float64), lm[inner, :2].astype(np.float64)
        width = float(np.linalg.norm(o - i))
        centre = (o + i) / 2 + np.array([0.1 * (o - i)[0], 0.2 * width])
        angle = float(np.degrees(np.arctan2((o - i)[1], (o - i)[0])))
        axes = (int(round(0.85 * width)), int(round(0.62 * width)))
        at = (int(round(centre[0])), int(round(centre[1])))
        cv2.ellipse(out, at, axes, angle, arc[0], arc[1], colour, 3, cv2.LINE_AA)
        cv2.ellipse(rims, at, axes, angle, arc[0], arc[1], 255, 3, cv2.LINE_8)
        # The bridge leaves each rim a third of the way up, on the nose's side.
        rim = cv2.ellipse2Poly(at, axes, int(round(angle)), 0, 360, 5)
        high = rim[rim[:, 1] < centre[1] - axes[1] / 3]
        ends.append(high[np.argmin(np.abs(high[:, 0] - float(lm[168, 0])))])
    if bridge:
        cv2.line(out, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[1]), colour, 3, cv2.LINE_AA)
        span = np.zeros_like(rims)
        cv2.line(span, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[1]), 255, 3, cv2.LINE_8)
        return out, span > 0  # where the bridge is, away from the rims
    return out, rims > 0


@pytest.mark.parametrize("colour", [LIGHT, DARK])
def test_thin_rims_round_both_eyes_are_kept_light_or_dark(colour: tuple[int, int, int]) -> None:
    image, lm = _large_astronaut()
    glasses, rims = _with_glasses(image, lm, colour)
    found = occluder_mask(glasses, lm, KEEP)[rims]
    assert (found > 0.3).mean() > 0.6, (found > 0.3).mean()
    # Before: light rims are neither dark nor of another colour; dark ones only where long and dark enough.
    if colour == LIGHT:
        assert (occluder_mask(glasses, lm, OFF)[rims] > 0.3).mean() < 0.1


def test_light_rims_are_kept_see_through_dark_ones_opaque() -> None:
    image, lm = _large_astronaut()
    light = occluder_mask(_with_glasses(image, lm, LIGHT)[0], lm, KEEP)
    dark = occluder_mask(_with_glasses(image, lm, DARK)[0], lm, KEEP)
    _, rims = _with_glasses(image, lm, LIGHT)
    assert 0.5 < np.percentile(light[rims], 90) < 0.85
    assert np.percentile(dark[rims], 90) > 0.9


def test_a_bridge_between_the_lenses_is_kept_with_them() -> None:
    image, lm = _large_astronaut()
    glasses, span = _with_glasses(image, lm, LIGHT, bridge=True)
    middle = span & (np.abs(np.arange(span.shape[1]) - float(lm[168, 0])) < 0.04 * np.ptp(lm[:, 0]))[None, :]
    assert occluder_mask(glasses, lm, KEEP)[middle].mean() > 0.3
    no_bridge, _ = _with_glasses(image, lm, LIGHT)
    assert occluder_mask(no_bridge, lm, KEEP)[middle].mean() < 0.05


@pytest.mark.parametrize("case", ["bare", "arcs"])
def test_a_bare_face_or_arcs_under_the_eyes_are_not_glasses(case: str) -> None:
    image, lm = _large_astronaut()
    if case == "arcs":  # the lower half of each rim only: like shadows under the eyes
        image, _ = _with_glasses(image, lm, LIGHT, (20, 160))
    assert np.array_equal(occluder_mask(image, lm, KEEP), occluder_mask(image, lm, OFF))


def test_glasses_seen_once_are_confirmed_fainter_later_but_not_imagined_on_a_bare_face() -> None:
    image, lm = _large_astronaut()
    sharp, rims = _with_glasses(image, lm, LIGHT)
    faint = np.clip(image * 0.6 + sharp * 0.4 + 0.5, 0, 255).astype(np.uint8)  # a blurred, low-contrast keyframe
    assert occluder_mask(faint, lm, KEEP)[rims].mean() < 0.05  # too faint to find anywhere
    memory = SpectacleMemory()
    assert occluder_mask(sharp, lm, KEEP, memory=memory)[rims].mean() > 0.3
    assert memory.lenses is not None
    assert occluder_mask(faint, lm, KEEP, memory=memory)[rims].mean() > 0.3  # but there, where they were
    assert np.array_equal(occluder_mask(image, lm, KEEP, memory=memory), occluder_mask(image, lm, OFF))  # taken off
    for _ in range(10):  # and after a while without them, forgotten
        occluder_mask(image, lm, KEEP, memory=memory)
    assert memory.lenses is None
    assert occluder_mask(faint, lm, KEEP, memory=memory)[rims].mean() < 0.05


def _first_face(clip: str) -> tuple[Image, Landmarks]:
    from facewire.shared.face.identity import detect_faces

    path = CLIPS / f"{clip}.mp4"
    if not path.exists():
        pytest.skip(f"evaluation clips not present ({CLIPS}): they live beside the repository, not in it")
    cap = cv2.VideoCapture(str(path))
    ok, image = cap.read()
    cap.release()
    assert ok, path
    faces = detect_faces(image)
    assert len(faces) == 1
    return image, faces[0].landmarks


def test_clear_glasses_on_a_real_clip_are_kept_and_a_bare_face_gets_none() -> None:
    image, lm = _first_face("d12")  # thin, light, clear frames
    added = occluder_mask(image, lm, KEEP) - occluder_mask(image, lm, OFF)
    eyes = lm[[33, 133, 263, 362], :2]
    width = float(np.ptp(eyes[:, 0]))
    assert float((added > 0.3).sum()) > 0.5 * width  # pixels of rim, round both lenses
    for clip in ("d18", "d3"):
        image, lm = _first_face(clip)
        assert np.array_equal(occluder_mask(image, lm, KEEP), occluder_mask(image, lm, OFF)), clip


def test_the_spectacle_search_runs_only_when_its_rims_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under an avatar (glasses not drawn) the rims are only cut out of hair or a hand kept: with nothing kept the
    # search, most of a keyframe's occluder time, is skipped; with the glasses drawn it always runs.
    import facewire.shared.render.occlusion as occlusion

    image, lm = _large_astronaut()
    sharp, _ = _with_glasses(image, lm, DARK)
    x, y = np.round(lm[50, :2]).astype(int)  # her cheek's skin over the hair on her forehead: nothing kept
    bare = image.copy()
    bare[occluder_mask(image, lm, OcclusionOptions()) > 0.0] = np.median(image[y - 5 : y + 6, x - 5 : x + 6].reshape(-1, 3), axis=0)
    calls: list[int] = []
    search = occlusion._spectacle_mask

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return search(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(occlusion, "_spectacle_mask", counted)
    assert not occluder_mask(bare, lm, OcclusionOptions()).any()
    assert not calls
    assert occluder_mask(image, lm, OcclusionOptions()).any()  # her hair kept: its rims are looked for
    assert len(calls) == 1
    occluder_mask(bare, lm, KEEP)
    assert len(calls) == 2
