"""Retarget's upper lids: the rings over the margin (lashes, crease) keep the avatar's own shares of the margin-to-brow
span, so a lid thin for its eye stretches no more than the sender's, and no ring crosses another."""

from __future__ import annotations

import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render.retarget import RetargetOptions, retarget
from facewire.shared.types import Landmarks
from tests.render_fixtures import big_astronaut

# Each upper lid's columns (outer corner to inner): margin, lashes' ring, crease's ring, brow's lower edge.
_RIGHT = np.array(
    [
        (246, 161, 160, 159, 158, 157, 173),
        (247, 30, 29, 27, 28, 56, 190),
        (113, 225, 224, 223, 222, 221, 189),
        (124, 46, 53, 52, 65, 55, 193),
    ]
).T
COLUMNS = (_RIGHT, topo.symmetry()[_RIGHT])
BROW_UPPER = (70, 63, 105, 66, 107)  # the brow's upper edge, subject's right


def _thin_lids(face: Landmarks, keep: float) -> Landmarks:
    """The face with its lashes' and crease's rings pulled towards the margin: `keep` of their distance is left."""
    out = face.copy()
    for cols in COLUMNS:
        margin = face[cols[:, 0], :2]
        for k in (1, 2):
            out[cols[:, k], :2] = margin + keep * (face[cols[:, k], :2] - margin)
    return out


def _raise_brows(face: Landmarks, amount: float) -> Landmarks:
    """Brows raised by `amount` pixels and the skin under them pulled up evenly: each lid ring by its share of the
    way from the margin to the brow (the sender's own lid band stretches as much as the whole span)."""
    out = face.copy()
    up = np.array([0.0, -amount])
    sym = topo.symmetry()
    for cols, brow in ((COLUMNS[0], np.array(BROW_UPPER)), (COLUMNS[1], sym[list(BROW_UPPER)])):
        out[brow, :2] += up
        out[cols[:, 3], :2] += up
        margin, top = face[cols[:, 0], 1], face[cols[:, 3], 1]
        for k in (1, 2):
            share = (face[cols[:, k], 1] - margin) / (top - margin)
            out[cols[:, k], :2] += share[:, None] * up
    return out


def _band(face: Landmarks) -> np.ndarray:
    """Margin-to-crease distance of every column, both eyes."""
    return np.concatenate([np.linalg.norm(face[cols[:, 2], :2] - face[cols[:, 0], :2], axis=1) for cols in COLUMNS])


def _stretch(avatar: Landmarks, sender: Landmarks, now: Landmarks, lid_skin: bool | None = None) -> np.ndarray:
    """The avatar's margin-to-crease band with the sender's expression, over the same at the sender's neutral face
    (default options unless `lid_skin` is given), the brow as the delta puts it (lid_reach 0: tests/test_render_lid_stretch)."""
    options = RetargetOptions(lid_reach=0.0) if lid_skin is None else RetargetOptions(lid_skin=lid_skin, lid_reach=0.0)
    return _band(retarget(now, sender, avatar, options)) / _band(retarget(sender, sender, avatar, options))


def test_a_thin_lid_stretches_as_the_senders_does_under_raised_brows() -> None:
    sender = big_astronaut()[1]
    now = _raise_brows(sender, 10.0)
    own = _band(now) / _band(sender)
    assert own.max() > 1.15  # the sender's band grows visibly
    avatar = _thin_lids(sender, 0.4)
    kept = _stretch(avatar, sender, now)
    assert np.all(kept < own + 0.1), (kept, own)
    # By the sender's motion (main before): the thin lid took the whole rise of the sender's thicker one.
    delta = _stretch(avatar, sender, now, lid_skin=False)
    assert delta.max() > own.max() + 0.3, (delta, own)


def test_a_thin_lid_stretches_no_more_than_a_thick_one() -> None:
    """However thin the avatar's lid for its eye, its band stretches no more than a thick one's (nor than its whole
    margin-to-brow span): the lashes keep their length, and the skin above them takes the rest evenly."""
    sender = big_astronaut()[1]
    now = _raise_brows(sender, 10.0)
    thick = _stretch(sender, sender, now)
    assert thick.min() > 1.05
    for keep in (0.2, 0.4, 0.7):
        thin = _stretch(_thin_lids(sender, keep), sender, now)
        assert np.all(thin <= thick + 0.01), keep
        assert thin.min() > 1.0, keep


def test_only_the_lashes_and_crease_rings_move() -> None:
    sender = big_astronaut()[1]
    now = _raise_brows(sender, 10.0)
    avatar = _thin_lids(sender, 0.4)
    on = retarget(now, sender, avatar, RetargetOptions(lid_skin=True))
    off = retarget(now, sender, avatar, RetargetOptions(lid_skin=False))
    moved = np.flatnonzero(np.abs(on - off).max(axis=1) > 1e-3)
    rings = np.concatenate([cols[:, 1:3].ravel() for cols in COLUMNS])
    assert set(moved.tolist()) <= set(rings.tolist())
    assert len(moved) > 0


def test_a_lid_closing_under_a_thin_fold_never_crosses_its_rings() -> None:
    """A blink drops the margin a long way under an avatar's crease: the rings stay in order, margin to brow."""
    from tests.render_fixtures import close_eyes

    sender = big_astronaut()[1]
    avatar = _thin_lids(sender, 0.2)
    out = retarget(close_eyes(sender), sender, avatar)
    for cols in COLUMNS:
        p = out[cols, :2].astype(np.float64)  # (7, 4, 2)
        chord = p[:, 3] - p[:, 0]
        along = ((p - p[:, :1]) * chord[:, None]).sum(axis=2) / (chord**2).sum(axis=1)[:, None]
        assert np.all(np.diff(along, axis=1) > 0.0), along
