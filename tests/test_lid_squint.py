"""An avatar's narrowed eye keeps its lashes at the margin; a shut one samples the lid skin above them (issue 12).

The avatar's upper lids are sampled by how shut the *sender's* eyes are: a smile's narrowing (w1: 0.56 at its
peak) moved the avatar's retargeted margin far enough that, on the avatar's own measure, the margin was lifted into
its lashes, whose tips then stretched over the lid as vertical streaks.
"""

from __future__ import annotations

import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.types import Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes


def _big() -> Landmarks:
    return (astronaut_landmarks().astype(np.float64) * 3.0).astype(np.float32)


def _travel(moved: np.ndarray, vertices: np.ndarray, neutral: Landmarks) -> np.ndarray:
    """How far each right upper margin vertex was moved, as a share of its way to the crease ring."""
    upper = topo.right_eye_ring()[1:8]
    crease = neutral[list(em.RIGHT_LID_ABOVE), :2]
    return np.linalg.norm(moved[upper] - vertices[upper], axis=1) / np.linalg.norm(crease - vertices[upper], axis=1)


def test_an_avatar_eye_narrowed_by_a_smile_keeps_its_lash_line_at_the_margin() -> None:
    neutral = _big()
    vertices = em.extended_vertices(neutral)
    # The avatar's own lids far down (its retargeted opening), the sender's eyes only narrowed.
    lowered = neutral + np.float32(0.7) * (close_eyes(neutral) - neutral)
    assert em.lid_closing(lowered, neutral, topo.right_eye_ring()) > 0.6
    moved = em.lid_source_vertices(vertices, neutral, lowered, (0.5, 0.5))
    assert np.allclose(_travel(moved, vertices, neutral), 0.0, atol=1e-6)
    # Without the sender's closings (the sender's own face) the eye's own closing still pulls the margin.
    assert (_travel(em.lid_source_vertices(vertices, neutral, lowered), vertices, neutral) > 0.1).all()


def test_an_avatar_eye_shut_with_the_senders_samples_the_skin_above_its_lashes() -> None:
    neutral = _big()
    vertices = em.extended_vertices(neutral)
    # However far the avatar's own margin came down, a blink of the sender's (0.8 and up) lifts it into the lid skin.
    for amount in (0.7, 1.0):
        target = neutral + np.float32(amount) * (close_eyes(neutral) - neutral)
        moved = em.lid_source_vertices(vertices, neutral, target, (0.9, 0.9))
        assert (_travel(moved, vertices, neutral) > 0.5).all()


def _lash_band(face: Landmarks) -> np.ndarray:
    """Margin-to-lashes'-ring distance of every column of both upper lids."""
    from tests.test_lid_skin import COLUMNS

    return np.concatenate([np.linalg.norm(face[cols[:, 1], :2] - face[cols[:, 0], :2], axis=1) for cols in COLUMNS])


def test_a_narrowed_avatar_eye_keeps_its_lashes_as_long_as_at_rest() -> None:
    """Lashes are hairs on the margin: as the margin comes down (a smile) the lid skin above them unfolds, the lashes'
    band does not stretch (RetargetOptions.rigid_lashes). At their share of the column, long painted lashes were
    drawn as a tall dark band over a smile's narrowed eye."""
    from facewire.shared.render.retarget import RetargetOptions, retarget
    from tests.render_fixtures import big_astronaut

    sender = big_astronaut()[1]
    narrowed = sender + np.float32(0.5) * (close_eyes(sender) - sender)
    rigid = _lash_band(retarget(narrowed, sender, sender)) / _lash_band(retarget(sender, sender, sender))
    assert np.allclose(rigid, 1.0, atol=0.03), rigid
    shared = RetargetOptions(rigid_lashes=False)
    stretched = _lash_band(retarget(narrowed, sender, sender, shared)) / _lash_band(retarget(sender, sender, sender, shared))
    assert stretched.max() > 1.1, stretched
