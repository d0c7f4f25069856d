"""Retarget's upper lids under raised brows: the top of a column from the lid's margin to the brow's lower edge moves
(eased) no further than RetargetOptions.lid_reach of the column's length from where the avatar has it, the margin
held; the brow and the skin above it are carried back by the difference, the margin and the face's outline stay
(issue 12: happy and sad on w0 and w1, the lid's crease and socket shadow stretched and sheared into a dark smudge
from the eye up to the brow)."""

from __future__ import annotations

import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render.retarget import RetargetOptions, retarget
from facewire.shared.types import Landmarks
from tests.render_fixtures import big_astronaut
from tests.test_lid_skin import BROW_UPPER, COLUMNS, _raise_brows

_OFF = RetargetOptions(lid_reach=0.0)


def _columns(face: Landmarks) -> np.ndarray:
    """Every upper lid column's margin-to-brow-edge length, both eyes."""
    return np.concatenate([np.linalg.norm(face[cols[:, 3], :2] - face[cols[:, 0], :2], axis=1) for cols in COLUMNS])


def test_a_brow_raised_far_stretches_the_lid_no_more_than_the_limit() -> None:
    sender = big_astronaut()[1]
    now = _raise_brows(sender, 30.0)
    assert (_columns(now) / _columns(sender)).min() > 1.4  # the sender's own lid grows far
    rest = _columns(retarget(sender, sender, sender))
    limited = _columns(retarget(now, sender, sender)) / rest
    free = _columns(retarget(now, sender, sender, _OFF)) / rest
    assert free.min() > 1.4, free
    assert limited.max() < 1.0 + RetargetOptions().lid_reach + 1e-3, limited
    assert limited.min() > 1.05, limited  # a raised brow still shows


def _turned_or_grown(face: Landmarks, rest: Landmarks) -> np.ndarray:
    """How far each column's top moved from `rest`'s, its margin held, leaving out a shortening along the column."""
    out = []
    for cols in COLUMNS:
        before = rest[cols[:, 3], :2] - rest[cols[:, 0], :2]
        along = before / np.linalg.norm(before, axis=1, keepdims=True)
        moved = face[cols[:, 3], :2] - face[cols[:, 0], :2] - before
        moved -= np.minimum((moved * along).sum(axis=1), 0.0)[:, None] * along
        out.append(np.linalg.norm(moved, axis=1))
    return np.concatenate(out)


def test_a_brow_moved_sideways_turns_the_lid_no_further_than_its_reach() -> None:
    """An inner brow drawn in towards the nose turns the inner columns (a column lying sideways, from the eye's inner
    corner to a brow low beside it, turned up 45 degrees shears the lid's triangles 2-7x)."""
    sender = big_astronaut()[1]
    now = sender.copy()
    inward = np.array([[12.0, 0.0], [-12.0, 0.0]])  # towards the nose: the subject's right brow lies at smaller x
    for cols, brow, shift in zip(COLUMNS, (list(BROW_UPPER), list(topo.symmetry()[list(BROW_UPPER)])), inward, strict=True):
        now[list(cols[:, 3]) + brow, :2] += shift.astype(np.float32)
    rest = retarget(sender, sender, sender)
    length = _columns(rest)
    for options, low in ((RetargetOptions(), None), (_OFF, 0.4)):
        out = retarget(now, sender, sender, options)
        moved = _turned_or_grown(out, rest) / length
        if low is None:
            assert moved.max() < RetargetOptions().lid_reach + 1e-3, moved
        else:
            assert moved.max() > low, moved


def test_the_brow_is_carried_whole_and_the_margin_and_outline_stay() -> None:
    sender = big_astronaut()[1]
    now = _raise_brows(sender, 30.0)
    limited, free = retarget(now, sender, sender), retarget(now, sender, sender, _OFF)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring(), topo.face_oval_ring()):
        assert np.abs(limited[ring, :2] - free[ring, :2]).max() < 1e-3
    brows = (list(BROW_UPPER), list(topo.symmetry()[list(BROW_UPPER)]))
    for cols, upper in zip(COLUMNS, brows, strict=True):
        lower = limited[cols[1:6, 3], 1] - free[cols[1:6, 3], 1]  # the brow's lower edge over the lid, moved down
        assert lower.min() > 2.0, lower
        drop = limited[upper, 1] - free[upper, 1]
        assert np.allclose(drop, lower, atol=0.15 * lower.max()), (drop, lower)


def test_an_avatar_at_rest_is_drawn_as_pushed_whatever_its_lids() -> None:
    """The identity push lengthens or shortens an avatar's lid columns; at the sender's neutral face none is limited."""
    sender = big_astronaut()[1]
    for brows in (-6.0, 6.0):
        avatar = _raise_brows(sender, brows)
        assert np.abs(retarget(sender, sender, avatar) - retarget(sender, sender, avatar, _OFF)).max() < 1e-3


def _gap(face: Landmarks, lower: int, upper: int) -> np.ndarray:
    """How far apart two of the columns' rings (0 margin, 1 lashes, 2 crease, 3 brow edge) are along each column's
    margin-to-brow-edge chord, every column."""
    gaps = []
    for cols in COLUMNS:
        chord = face[cols[:, 3], :2] - face[cols[:, 0], :2]
        along = chord / np.linalg.norm(chord, axis=1, keepdims=True)
        gaps.append(((face[cols[:, upper], :2] - face[cols[:, lower], :2]) * along).sum(axis=1))
    return np.concatenate(gaps)


def test_a_crease_close_over_the_lashes_takes_no_more_than_its_share_of_a_narrowed_eyes_stretch() -> None:
    """A narrowed eye's margin comes down, its lashes keep their length (rigid_lashes): the lid skin above them
    stretches. At its share of the column a crease lying just over the lashes took all of it (5x where the column grew
    1.25x), its fold's shadow drawn as a dark band; the two bands above the lashes now grow alike."""
    from tests.render_fixtures import close_eyes

    sender = big_astronaut()[1]
    avatar = sender.copy()
    for cols in COLUMNS:
        lashes = sender[cols[:, 1], :2]
        avatar[cols[:, 2], :2] = lashes + 0.1 * (sender[cols[:, 2], :2] - lashes)
    narrowed = sender + np.float32(0.5) * (close_eyes(sender) - sender)
    rest, now = retarget(sender, sender, avatar), retarget(narrowed, sender, avatar)
    column = _gap(now, 1, 3) / _gap(rest, 1, 3)  # the skin above the lashes
    assert column.max() > 1.2, column
    crease = _gap(now, 1, 2) / _gap(rest, 1, 2)
    assert np.allclose(crease, column, atol=0.03), (crease, column)


def test_a_blink_leaves_the_brow_where_the_delta_puts_it() -> None:
    """The lid's margin comes down in a blink or a smile's narrowing: the column grows, the brow does not move."""
    from tests.render_fixtures import close_eyes

    sender = big_astronaut()[1]
    for amount in (0.5, 1.0):
        now = sender + np.float32(amount) * (close_eyes(sender) - sender)
        assert np.abs(retarget(now, sender, sender) - retarget(now, sender, sender, _OFF)).max() < 1e-3
