"""Retargeting: the identity push (the avatar's difference from the sender exaggerated) and keyframes caught mid-blink."""

from __future__ import annotations

import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render.retarget import RetargetOptions, retarget
from facewire.shared.types import Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes, open_mouth, transform

NOSE_TIP = 1
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 0, 17  # the outer lip ring's middle points


def _avatar(sender: Landmarks) -> Landmarks:
    """The sender with a longer nose and eyes set wider apart (each eye moved whole)."""
    avatar = sender.copy()
    avatar[NOSE_TIP, 1] += 6.0
    for ring, centre, iris, dx in (
        (topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS, -3.0),
        (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS, 3.0),
    ):
        avatar[[*ring, centre, *iris], 0] += dx
    return avatar


def _iris_gap(points: Landmarks) -> float:
    return float(np.linalg.norm(points[topo.RIGHT_IRIS_CENTER, :2] - points[topo.LEFT_IRIS_CENTER, :2]))


def _pushed(push: float, now: Landmarks | None = None) -> tuple[Landmarks, Landmarks]:
    sender = astronaut_landmarks()
    return sender, retarget(sender if now is None else now, sender, _avatar(sender), RetargetOptions(identity_push=push))


def test_push_exaggerates_how_the_avatar_differs_from_the_sender() -> None:
    sender, plain = _pushed(0.0)
    _, pushed = _pushed(0.5)
    nose_plain = plain[NOSE_TIP, 1] - sender[NOSE_TIP, 1]
    nose_pushed = pushed[NOSE_TIP, 1] - sender[NOSE_TIP, 1]
    assert nose_plain > 4.0
    assert nose_pushed > 1.35 * nose_plain
    gap_plain = _iris_gap(plain) - _iris_gap(sender)
    gap_pushed = _iris_gap(pushed) - _iris_gap(sender)
    assert gap_plain > 4.0
    assert gap_pushed > 1.35 * gap_plain


def test_push_keeps_eyes_mouth_and_outline_as_they_are() -> None:
    sender = astronaut_landmarks()
    talking = open_mouth(sender, 8.0)
    _, plain = _pushed(0.0, talking)
    _, pushed = _pushed(0.8, talking)
    oval = topo.face_oval_ring()
    assert np.abs(pushed[oval, :2] - plain[oval, :2]).max() < 1e-3
    for ids in (topo.right_eye_ring(), topo.left_eye_ring(), topo.inner_lip_ring(), topo.outer_lip_ring()):
        shape_plain = plain[ids, :2] - plain[ids, :2].mean(axis=0)
        shape_pushed = pushed[ids, :2] - pushed[ids, :2].mean(axis=0)
        assert np.abs(shape_pushed - shape_plain).max() < 0.05


def test_push_is_nothing_for_an_avatar_shaped_like_the_sender() -> None:
    sender = astronaut_landmarks()
    moved = transform(open_mouth(sender, 6.0), angle_deg=8.0, shift=(12.0, -5.0), centre=(220.0, 120.0))
    plain = retarget(moved, sender, sender, RetargetOptions(identity_push=0.0))
    pushed = retarget(moved, sender, sender, RetargetOptions(identity_push=1.0))
    assert np.abs(pushed - plain).max() < 1e-3


def test_push_is_limited_for_an_avatar_far_from_the_sender() -> None:
    sender = astronaut_landmarks()
    avatar = sender.copy()
    avatar[NOSE_TIP, 1] += 40.0
    plain = retarget(sender, sender, avatar, RetargetOptions(identity_push=0.0))
    pushed = retarget(sender, sender, avatar, RetargetOptions(identity_push=1.0, push_limit=0.05))
    face_width = float(np.ptp(sender[topo.face_oval_ring(), 0]))
    extra = np.linalg.norm(pushed[:, :2] - plain[:, :2], axis=1).max()
    assert 0.04 * face_width < extra <= 0.0501 * face_width


def test_a_keyframe_caught_mid_blink_does_not_make_the_avatar_stare() -> None:
    from facewire.shared.face.measures import eye_open_ratio

    sender = astronaut_landmarks()
    blinking = close_eyes(sender)
    assert eye_open_ratio(blinking.astype(np.float64), "right") < 0.2 < eye_open_ratio(sender.astype(np.float64), "right")
    plain = retarget(sender, sender, sender)
    from_blink = retarget(sender, blinking, sender)
    for side in ("right", "left"):
        opened = eye_open_ratio(from_blink.astype(np.float64), side)
        assert abs(opened - eye_open_ratio(plain.astype(np.float64), side)) < 0.3 * eye_open_ratio(plain.astype(np.float64), side)
    shut = retarget(blinking, blinking, sender)
    assert eye_open_ratio(shut.astype(np.float64), "right") < 0.2


def _widen_mouth(points: Landmarks, factor: float) -> Landmarks:
    """Both lip rings stretched sideways about the mouth's centre (a smile's width, corners pulled outwards)."""
    out = points.copy()
    lips = np.concatenate([topo.outer_lip_ring(), topo.inner_lip_ring()])
    centre = float(points[lips, 0].mean())
    out[lips, 0] = centre + (points[lips, 0] - centre) * factor
    return out


def _mouth_span(points: Landmarks) -> float:
    a, b = topo.MOUTH_OUTER_CORNERS
    return float(points[b, 0] - points[a, 0]) if points[b, 0] > points[a, 0] else float(points[a, 0] - points[b, 0])


def _eye_span(points: Landmarks) -> float:
    return float(np.linalg.norm(points[topo.RIGHT_EYE_CORNERS[0], :2] - points[topo.LEFT_EYE_CORNERS[0], :2]))


def _at_rest() -> Landmarks:
    """The astronaut with her smile's width taken out: a mouth half as wide as her eyes' outer corners are apart."""
    smiling = astronaut_landmarks()
    return _widen_mouth(smiling, 0.5 * _eye_span(smiling) / _mouth_span(smiling))


def test_a_grinning_avatar_widens_its_mouth_as_much_as_the_sender_does() -> None:
    """A picture's grin is expression, not a larger mouth: the sender's smile is not scaled up by it."""
    sender = _at_rest()
    grinning = _widen_mouth(sender, 0.78 / 0.5)  # a grin as wide as the widest picture's (happy1)
    smiling = _widen_mouth(sender, 1.1)
    widening = _mouth_span(retarget(smiling, sender, grinning, RetargetOptions(identity_push=0.0))) - _mouth_span(grinning)
    sender_widening = _mouth_span(smiling) - _mouth_span(sender)
    # Scaled by the widest mouth taken for its size over the sender's (0.6 / 0.5); before, by the grin's (0.78 / 0.5).
    assert 1.1 * sender_widening < widening < 1.3 * sender_widening


def test_a_small_mouth_still_moves_in_proportion_to_its_size() -> None:
    sender = _at_rest()
    small = _widen_mouth(sender, 0.75)
    smiling = _widen_mouth(sender, 1.1)
    widening = _mouth_span(retarget(smiling, sender, small, RetargetOptions(identity_push=0.0))) - _mouth_span(small)
    sender_widening = _mouth_span(smiling) - _mouth_span(sender)
    assert 0.7 * sender_widening < widening < 0.8 * sender_widening


def _short_chin(sender: Landmarks, lift: float) -> Landmarks:
    """The sender with everything below the lower lip raised towards it by `lift` of its depth below the lip (a
    short chin: a drawn face, a picture looking down)."""
    avatar = sender.copy()
    lip = float(sender[topo.outer_lip_ring(), 1].max())
    below = avatar[:, 1] > lip
    avatar[below, 1] -= lift * (avatar[below, 1] - lip)
    return avatar


def test_a_short_chinned_avatar_covers_the_senders_lower_lip() -> None:
    """The avatar's chin is kept at least min_chin_share of the sender's lip-to-chin span below the sender's
    lower lip, so the sender's own lip (drawn round the avatar's outline) never shows as a second one under it."""
    sender = astronaut_landmarks()
    lip = float(sender[topo.outer_lip_ring(), 1].max())
    span = float(sender[topo.CHIN, 1]) - lip
    short = _short_chin(sender, 0.7)  # its chin 0.3 of the span below the lip
    free = retarget(sender, sender, short, RetargetOptions(identity_push=0.0, min_chin_share=0.0))
    kept = retarget(sender, sender, short, RetargetOptions(identity_push=0.0))
    assert (free[topo.CHIN, 1] - lip) / span < 0.35
    assert (kept[topo.CHIN, 1] - lip) / span >= 0.5 - 0.02
    # The eyes and the brows are the avatar's own: only the lower outline moves.
    upper = [*topo.right_eye_ring(), *topo.left_eye_ring()]
    assert np.allclose(kept[upper], free[upper], atol=1e-3)


def test_an_avatar_with_a_chin_long_enough_keeps_its_own() -> None:
    sender = astronaut_landmarks()
    fine = _short_chin(sender, 0.3)  # 0.7 of the span
    free = retarget(sender, sender, fine, RetargetOptions(identity_push=0.0, min_chin_share=0.0))
    kept = retarget(sender, sender, fine, RetargetOptions(identity_push=0.0))
    assert np.array_equal(kept, free)


def _closed() -> Landmarks:
    """The astronaut with her lips meeting (the picture smiles with them apart)."""
    sender = astronaut_landmarks().astype(np.float32)
    return open_mouth(sender, -float(sender[topo.LOWER_LIP_INNER_MID, 1] - sender[topo.UPPER_LIP_INNER_MID, 1]))


def _mid_word(rest: Landmarks, up: float, down: float) -> Landmarks:
    """`rest` caught mid-word: the jaw and lower lip dropped by `down` px, the upper lip raised by up to `up` px in the
    middle (nothing at the corners), as a talking mouth opens both ways."""
    out = open_mouth(rest, down)
    inner = topo.inner_lip_ring()
    half = len(inner) // 2
    c0, c1 = rest[inner[0], 0], rest[inner[half], 0]
    dropped = open_mouth(rest, 1.0)
    lower = set(int(i) for i in np.flatnonzero(dropped[:, 1] != rest[:, 1]))
    top = float(rest[topo.NOSE_TIP, 1])
    for i in range(468):
        t = (float(rest[i, 0]) - c0) / (c1 - c0)
        if i in lower or not 0.0 < t < 1.0 or rest[i, 1] < top or rest[i, 1] > rest[topo.UPPER_LIP_INNER_MID, 1] + 0.5:
            continue
        # The upper lip whole, and the skin over it less towards the nose.
        near = min(1.0, (float(rest[i, 1]) - top) / max(float(rest[UPPER_LIP_OUTER, 1]) - top, 1.0))
        out[i, 1] -= up * np.sin(np.pi * t) * near**2
    return out


def test_a_keyframe_caught_mid_word_leaves_the_avatars_mouth_where_it_rests() -> None:
    """The keyframe's parted lips close from both sides, not onto its raised upper lip:
    when the sender's mouth is back at rest, the avatar's is at its own rest, not drawn down by the keyframe's raise
    (w0's first frame: the upper lip 15 px up, every later frame's avatar mouth pulled into a beak)."""
    rest = _closed()
    keyframe = _mid_word(rest, up=8.0, down=12.0)
    out = retarget(rest, keyframe, rest, RetargetOptions(identity_push=0.0, min_chin_share=0.0))
    mouth = [topo.UPPER_LIP_INNER_MID, topo.LOWER_LIP_INNER_MID, UPPER_LIP_OUTER, LOWER_LIP_OUTER]
    assert np.abs(out[mouth, 1] - rest[mouth, 1]).max() < 0.4 * 8.0  # the old closing: 8 px (the whole raise)
    # ... and the mouth still opens with the sender's: a keyframe at rest gives the same opening.
    talking = retarget(keyframe, keyframe, rest, RetargetOptions(identity_push=0.0, min_chin_share=0.0))
    opening = float(talking[topo.LOWER_LIP_INNER_MID, 1] - talking[topo.UPPER_LIP_INNER_MID, 1])
    assert opening > 0.8 * float(keyframe[topo.LOWER_LIP_INNER_MID, 1] - keyframe[topo.UPPER_LIP_INNER_MID, 1])


def _breadth_first_hops(seeds: list[int], stop: frozenset[int] = frozenset()) -> np.ndarray:
    """Hops from `seeds` by a plain breadth-first search over the mesh's triangle sides, irises hung on their eye's
    ring (an edge from each iris point to each ring point); vertices in `stop` are reached but not passed."""
    adjacency: list[set[int]] = [set() for _ in range(topo.MESH_SIZE)]
    for a, b, c in topo.face_triangles():
        adjacency[a] |= {b, c}
        adjacency[b] |= {a, c}
        adjacency[c] |= {a, b}
    for ring, centre, iris in (
        (topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
        (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
    ):
        for i in (centre, *iris):
            adjacency[i] |= {int(v) for v in ring}
    dist = np.full(topo.MESH_SIZE, np.inf)
    dist[seeds] = 0
    frontier = list(seeds)
    while frontier:
        frontier_next = []
        for v in frontier:
            for w in adjacency[v] if v not in stop else ():
                if dist[w] == np.inf:
                    dist[w] = dist[v] + 1
                    frontier_next.append(w)
        frontier = frontier_next
    return dist


def test_mesh_hops_are_a_breadth_first_searchs() -> None:
    """The region and feature weights' graph distances (a search a ring at a time over the adjacency matrix) are a plain
    breadth-first search's, irises unreached from the face, and the lip band is what the inner ring reaches
    without passing the outer one."""
    from facewire.shared.render.retarget import _hops, _lip_band

    eye_rings = [*topo.right_eye_ring(), *topo.left_eye_ring()]
    rng = np.random.default_rng(5)
    seed_sets = [eye_rings, [int(v) for v in topo.face_oval_ring()], [topo.RIGHT_IRIS_CENTER, *topo.RIGHT_IRIS], [1, 1, 4]]
    seed_sets += [[int(v) for v in rng.choice(topo.MESH_SIZE, int(rng.integers(1, 20)), replace=False)] for _ in range(20)]
    for seeds in seed_sets:
        assert np.array_equal(_hops(np.array(seeds, np.int32)), _breadth_first_hops(sorted(set(seeds)))), seeds
    assert np.isinf(_hops(np.array(eye_rings, np.int32))[[topo.RIGHT_IRIS_CENTER, *topo.LEFT_IRIS]]).all()
    inner, outer = [int(v) for v in topo.inner_lip_ring()], frozenset(int(v) for v in topo.outer_lip_ring())
    band = np.flatnonzero(np.isfinite(_breadth_first_hops(inner, outer)))
    assert np.array_equal(_lip_band(), band) and outer <= set(band.tolist()) and len(band) > len(inner) + len(outer)
