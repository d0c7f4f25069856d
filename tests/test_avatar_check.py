"""facewire-avatar check: warnings in words for what will not look right, the built-in motion, the sheet."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.sender import avatar_check as ac
from facewire.shared.face import topology as topo
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio
from facewire.shared.face.pose import from_canonical, head_pose, to_canonical
from tests.render_fixtures import astronaut, astronaut_landmarks, big_astronaut


def _has(warnings: list[str], word: str) -> bool:
    return any(word in w for w in warnings)


def _bare_forehead() -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The big astronaut with the hair on her forehead painted over in her cheek's colour (with grain)."""
    image, lm = big_astronaut()
    oval = lm[topo.face_oval_ring(), :2]
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(oval).astype(np.int32)], 255)
    top = float(oval[:, 1].min())
    brows = float(lm[list(topo.BROW_TOPS), 1].min())
    rows = np.arange(image.shape[0])[:, None]
    cheek = image[int(lm[50, 1]) - 3 : int(lm[50, 1]) + 4, int(lm[50, 0]) - 3 : int(lm[50, 0]) + 4].reshape(-1, 3).mean(axis=0)
    forehead = (face > 0) & (rows < brows - 0.15 * (brows - top))
    rng = np.random.default_rng(0)
    image[forehead] = np.clip(cheek + rng.normal(0, 4, (int(forehead.sum()), 3)), 0, 255).astype(np.uint8)
    return image, lm, face, top, brows


def test_a_large_frontal_face_with_a_bare_forehead_gets_no_pose_size_or_cover_warning() -> None:
    image, lm, _, _, _ = _bare_forehead()
    warnings = ac.avatar_warnings(image, lm)
    for word in ("turned", "px wide", "forehead", "covers", "edge", "looks"):
        assert not _has(warnings, word), warnings


def test_a_small_face_is_warned_about_with_its_width() -> None:
    warnings = ac.avatar_warnings(astronaut(), astronaut_landmarks())  # ~90 px wide
    assert _has(warnings, "px wide"), warnings


def test_a_fringe_over_the_forehead_is_warned_about() -> None:
    image, lm, face, top, brows = _bare_forehead()
    rows = np.arange(image.shape[0])[:, None]
    image[(face > 0) & (rows < top + 0.7 * (brows - top))] = (30, 50, 90)
    assert _has(ac.avatar_warnings(image, lm), "forehead")


def test_a_turned_face_is_warned_about_and_a_far_turned_one_more_strongly() -> None:
    image, lm, _, _, _ = _bare_forehead()
    pose = head_pose(lm)
    canonical = to_canonical(lm, pose)
    for yaw, words in ((28.0, "filled from the mirror"), (50.0, "mostly hidden")):
        turned = from_canonical(canonical, replace(pose, yaw=pose.yaw + yaw))
        assert _has(ac.avatar_warnings(image, turned), words), yaw


def test_an_open_mouth_and_shut_eyes_in_the_picture_are_warned_about() -> None:
    image, lm = big_astronaut()
    frames = dict(ac.built_in_frames(lm))
    assert _has(ac.avatar_warnings(image, frames["open mouth"]), "mouth is open")
    assert _has(ac.avatar_warnings(image, frames["blink"]), "nearly shut")


def test_the_built_in_motion_moves_what_it_names_and_nothing_else() -> None:
    _, lm = big_astronaut()
    frames = dict(ac.built_in_frames(lm))
    neutral = frames["neutral"]
    assert float(np.abs(neutral[:, :2] - lm[:, :2]).max()) < 0.5
    p = {name: f.astype(np.float64) for name, f in frames.items()}
    assert mouth_ratio(p["open mouth"]) > mouth_ratio(p["neutral"]) + 0.2
    assert eye_open_ratio(p["blink"], "right") < 0.3 * eye_open_ratio(p["neutral"], "right")
    assert abs(mouth_ratio(p["blink"]) - mouth_ratio(p["neutral"])) < 0.01
    yaw0 = head_pose(neutral).yaw
    assert head_pose(frames["turn left"]).yaw == pytest.approx(yaw0 - 25.0, abs=2.0)
    assert head_pose(frames["turn right"]).yaw == pytest.approx(yaw0 + 25.0, abs=2.0)
    left = frames["glance left"][topo.RIGHT_IRIS_CENTER, 0] - neutral[topo.RIGHT_IRIS_CENTER, 0]
    assert left < -1.0
    corners = list(topo.MOUTH_CORNERS)
    assert float(frames["smile"][corners, 1].mean()) < float(neutral[corners, 1].mean()) - 1.0  # corners rise


def test_check_refuses_a_picture_without_a_face_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((200, 200, 3), 128, np.uint8))
    assert ac.main(["check", str(path)]) == 2
    assert "no face" in capsys.readouterr().err


def test_check_writes_a_sheet_with_every_step_of_the_built_in_motion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, _ = big_astronaut()
    avatar = tmp_path / "avatar.png"
    cv2.imwrite(str(avatar), image)
    sheet = tmp_path / "sheet.png"
    assert ac.main(["check", str(avatar), "--out", str(sheet)]) == 0
    picture = cv2.imread(str(sheet))
    assert picture is not None
    cells = 1 + len(ac.BUILT_IN_MOTION)
    rows = -(-cells // 5)
    assert picture.shape[1] == 5 * 240 and picture.shape[0] > rows * 240
    assert "sheet:" in capsys.readouterr().out


def test_send_identity_prints_the_same_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from facewire.sender.identity import identity_message

    path = tmp_path / "small.png"
    cv2.imwrite(str(path), astronaut())
    with caplog.at_level(logging.WARNING, logger="facewire.sender.identity"):
        identity_message(str(path))
    expected = ac.avatar_warnings(astronaut(), astronaut_landmarks())
    assert expected and all(any(w in record.getMessage() for record in caplog.records) for w in expected)
