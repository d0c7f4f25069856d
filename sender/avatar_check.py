"""`facewire-avatar check IMAGE`: what a user will look like with an avatar, before the call.

The avatar is driven through a built-in motion (neutral, smile, open mouth, blink, glances, head
turns and a nod, worn over scikit-image's astronaut as a stand-in sender) or through the frames of
`--clip` (the user's own video), rendered by the receiver's default renderer, and written as a
contact sheet. What will go wrong, and why, is said in words; only pictures that cannot work (no
face, several faces, a face too small to track, an unreadable file) are refused, by the same
checks `facewire-send --identity` makes. `avatar_warnings` is what `facewire-send --identity` prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.face.identity import IdentityError, detect_faces, load_identity
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio
from facewire.shared.face.pose import from_canonical, head_pose, to_canonical
from facewire.shared.render.frontal import glasses_drawn_rigid, picture_yaw
from facewire.shared.render.occlusion import avatar_cover, avatar_spectacles
from facewire.shared.render.warp import fill_polygon
from facewire.shared.types import FrameState, IdentityAsset, Image, KeyframeState, Landmarks

log = logging.getLogger(__name__)

# Where a warning starts (measured on the 37 portraits under ../shared/data; see the REPORT).
TURNED_DEG = 20.0  # |yaw|: the far side is filled from the mirror image beyond this
FAR_TURNED_DEG = 40.0  # |yaw|: the far side is mostly guessed
TILTED_DEG = 20.0  # |pitch|: looking up or down
SMALL_FACE_PX = 160.0  # narrower faces look soft when shown at call size
FOREHEAD_COVER = 0.2  # of the forehead covered by hair, a hat or a helmet
FACE_COVER = 0.08  # of the whole face covered
OPEN_MOUTH = 0.12  # mouth opening over width: teeth in the picture
SHUT_EYES = 0.15  # eye opening over width
EDGE_MARGIN = 0.02  # of the face width: a face this near the picture's edge is cut off


@dataclass(frozen=True)
class PoseStep:
    """One cell of the built-in motion: an expression and a head turn applied to the sender's neutral face."""

    name: str
    expression: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None
    yaw: float = 0.0
    pitch: float = 0.0


def avatar_warnings(image: Image, landmarks: Landmarks) -> list[str]:
    """What will not look right with this avatar picture, and why, one sentence each (empty: nothing)."""
    lm = landmarks.astype(np.float32)
    warnings: list[str] = []
    oval = lm[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    pose = head_pose(lm)
    if abs(pose.yaw) >= FAR_TURNED_DEG:
        warnings.append(f"the face is turned {abs(pose.yaw):.0f} degrees to one side: its far side is mostly hidden and is "
                        "guessed from the near side; a frontal picture will look much better")  # fmt: skip
    elif abs(pose.yaw) >= TURNED_DEG:
        warnings.append(f"the face is turned {abs(pose.yaw):.0f} degrees to one side: its far side is filled from the mirror "
                        "image and may look smeared when you turn your head; a frontal picture works best")  # fmt: skip
    if abs(pose.pitch) >= TILTED_DEG:
        way = "up" if pose.pitch > 0 else "down"
        warnings.append(f"the face looks {abs(pose.pitch):.0f} degrees {way}: the forehead or chin is foreshortened and will "
                        "stretch when you look straight ahead")  # fmt: skip
    if width < SMALL_FACE_PX:
        warnings.append(f"the face is only {width:.0f} px wide: it will look soft when shown larger; use a picture where "
                        f"it is at least {SMALL_FACE_PX:.0f} px wide")  # fmt: skip
    h, w = image.shape[:2]
    margin = EDGE_MARGIN * width
    if oval[:, 0].min() < -margin or oval[:, 1].min() < -margin or oval[:, 0].max() > w + margin or oval[:, 1].max() > h + margin:
        warnings.append("the face runs off the edge of the picture: the missing part is filled with guessed skin")
    forehead, face = _cover_shares(image, lm)
    if forehead >= FOREHEAD_COVER:
        warnings.append(f"hair (or a hat) covers {100 * forehead:.0f} % of the forehead: it is painted over with the "
                        "avatar's skin and your own hairline is shown instead, so the forehead may look bare or blurred")  # fmt: skip
    if face >= FACE_COVER:
        warnings.append(f"something that is not skin (hair, a hand, a helmet) covers {100 * face:.0f} % of the face: it "
                        "is painted over with the avatar's skin, which may look flat there")  # fmt: skip
    p = lm.astype(np.float64)
    if mouth_ratio(p) >= OPEN_MOUTH:
        warnings.append("the mouth is open in the picture: its lips are closed over its teeth when yours are, so a closed "
                        "mouth may look pressed; a picture with a closed, relaxed mouth works best")  # fmt: skip
    if min(eye_open_ratio(p, "right"), eye_open_ratio(p, "left")) < SHUT_EYES:
        warnings.append("the eyes are nearly shut in the picture: open eyes cannot be shown well; use a picture with open eyes")
    if avatar_spectacles(image, lm) is not None:
        if glasses_drawn_rigid(picture_yaw(lm)):
            warnings.append("the avatar wears glasses: they are drawn as one rigid piece that turns with your head, as the "
                            "picture shows them (a far turn shows their flat side), and your own glasses are not shown over "
                            "them")  # fmt: skip
        else:
            warnings.append("the avatar wears glasses in a turned picture: they move with its skin and may bend as you "
                            "talk; in a picture facing the camera they are drawn as one rigid piece")  # fmt: skip
    return warnings


def _cover_shares(image: Image, lm: Landmarks) -> tuple[float, float]:
    """The shares of the forehead (above the brows) and of the whole face that avatar_cover paints over."""
    oval = lm[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    h, w = image.shape[:2]
    pad = int(0.3 * width) + 2
    x0, y0 = max(0, int(oval[:, 0].min()) - pad), max(0, int(oval[:, 1].min()) - pad)
    x1, y1 = min(w, int(oval[:, 0].max()) + pad), min(h, int(oval[:, 1].max()) + pad)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0, 0.0
    local = lm.copy()
    local[:, :2] -= np.array([x0, y0], np.float32)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    cover = avatar_cover(crop, local) > 0.5
    face = np.zeros(crop.shape[:2], np.uint8)
    fill_polygon(face, local[topo.face_oval_ring(), :2])
    inside = face > 0
    brows = float(local[list(topo.BROW_TOPS), 1].min())
    upper = inside & (np.arange(crop.shape[0])[:, None] < brows)
    forehead = float(cover[upper].mean()) if upper.any() else 0.0
    return forehead, float(cover[inside].mean()) if inside.any() else 0.0


# The built-in motion, in head-canonical units (one unit: the distance between the eyes' centres).


def _smile(c: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = c.copy()
    for corner, side in ((61, -1.0), (291, 1.0)):
        d2 = np.sum(np.square(c[:, :2] - c[corner, :2]), axis=1)
        weight = np.exp(-d2 / (2 * 0.22**2))[:, None]
        out[:, :2] += weight * np.array([0.10 * side, 0.10], np.float32)
    return out


def _open_mouth(c: npt.NDArray[np.float32], angle: float = 0.32) -> npt.NDArray[np.float32]:
    """The jaw dropped: everything below the upper lip turned about an axis near the ears."""
    out = c.copy()
    top = float(c[topo.UPPER_LIP_INNER_MID, 1])
    bottom = float(c[topo.LOWER_LIP_INNER_MID, 1])
    t = np.clip((top - c[:, 1]) / max(top - bottom, 1e-3), 0.0, 1.0)
    weight = (t * t * (3 - 2 * t)).astype(np.float32)
    pivot = np.array([top + 0.35, -1.2], np.float32)  # (y, z): behind the cheeks, at the lip line
    y, z = c[:, 1] - pivot[0], c[:, 2] - pivot[1]
    a = angle * weight
    out[:, 1] = pivot[0] + y * np.cos(a) - z * np.sin(a)
    out[:, 2] = pivot[1] + y * np.sin(a) + z * np.cos(a)
    return out


def _blink(c: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out = c.copy()
    sym = topo.symmetry()
    for ring, corners, above in ((topo.right_eye_ring(), topo.RIGHT_EYE_CORNERS, _RIGHT_CREASE),
                                 (topo.left_eye_ring(), topo.LEFT_EYE_CORNERS, tuple(int(sym[i]) for i in _RIGHT_CREASE))):  # fmt: skip
        line = float(c[list(corners), 1].mean())
        for i in ring:
            out[i, 1] = line + (c[i, 1] - line) * (0.05 if c[i, 1] > line else 0.7)
        for i in above:
            out[i, 1] = c[i, 1] - 0.35 * (c[i, 1] - line)
    return out


_RIGHT_CREASE = (113, 225, 224, 223, 222, 221, 189)


def _glance(dx: float) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    def move(c: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = c.copy()
        irises = [topo.RIGHT_IRIS_CENTER, *topo.RIGHT_IRIS, topo.LEFT_IRIS_CENTER, *topo.LEFT_IRIS]
        out[irises, 0] += dx
        return out

    return move


BUILT_IN_MOTION = (
    PoseStep("neutral"),
    PoseStep("smile", _smile),
    PoseStep("open mouth", _open_mouth),
    PoseStep("blink", _blink),
    PoseStep("glance left", _glance(-0.1)),
    PoseStep("glance right", _glance(0.1)),
    PoseStep("turn left", yaw=-25.0),
    PoseStep("turn right", yaw=25.0),
    PoseStep("look up", pitch=15.0),
    PoseStep("look down, talking", lambda c: _open_mouth(c, 0.15), pitch=-12.0),
)


def built_in_frames(neutral: Landmarks) -> list[tuple[str, Landmarks]]:
    """The sender's neutral landmarks moved through BUILT_IN_MOTION, in the same picture's pixels."""
    pose = head_pose(neutral)
    canonical = to_canonical(neutral, pose)
    frames = []
    for step in BUILT_IN_MOTION:
        c = step.expression(canonical) if step.expression is not None else canonical
        moved = replace(pose, yaw=pose.yaw + step.yaw, pitch=pose.pitch + step.pitch)
        lm = from_canonical(c, moved)
        lm[:, 2] += float(neutral[list(topo.EYE_CORNERS), 2].mean())
        frames.append((step.name, lm))
    return frames


def stand_in_sender() -> tuple[Image, Landmarks]:
    """scikit-image's astronaut (public domain, in an installed wheel) at twice its size: a face ~230 px wide."""
    import skimage.data

    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    image = np.asarray(cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), np.uint8)
    faces = detect_faces(image, max_faces=1)
    if not faces:
        raise RuntimeError("the stand-in sender's face was not found (scikit-image's astronaut)")
    return image, faces[0].landmarks


def clip_frames(path: Path, max_frames: int = 300) -> tuple[tuple[Image, Landmarks], list[tuple[str, Image, Landmarks]]]:
    """The clip's first tracked frame (the keyframe) and its most telling frames: widest mouth, most turned, most tilted,
    and two evenly spaced others."""
    from facewire.sender.tracker import MediaPipeFaceTracker, TrackerConfig
    from facewire.shared.types import CapturedFrame

    tracker = MediaPipeFaceTracker(TrackerConfig())
    cap = cv2.VideoCapture(str(path))
    tracked: list[tuple[Image, Landmarks]] = []
    try:
        while len(tracked) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            obs = tracker.track(CapturedFrame(len(tracked), len(tracked) * 33_333, image))
            if obs is not None:
                tracked.append((image, obs.landmarks))
    finally:
        cap.release()
        tracker.close()
    if not tracked:
        raise IdentityError(f"{path}: no face tracked in the clip")
    mouth = [mouth_ratio(lm.astype(np.float64)) for _, lm in tracked]
    poses = [head_pose(lm) for _, lm in tracked]
    picks = {
        "widest mouth": int(np.argmax(mouth)),
        "most turned": int(np.argmax([abs(p.yaw) for p in poses])),
        "most tilted": int(np.argmax([abs(p.pitch) + abs(p.roll) for p in poses])),
        "a third in": len(tracked) // 3,
        "two thirds in": 2 * len(tracked) // 3,
    }
    return tracked[0], [(f"{name} ({i})", tracked[i][0], tracked[i][1]) for name, i in picks.items()]


def face_crop(image: Image, lm: Landmarks, side: int = 240) -> Image:
    lo, hi = lm[:468, :2].min(axis=0), lm[:468, :2].max(axis=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.75
    scale = side / (2 * half)
    matrix = np.array([[scale, 0, side / 2 - scale * centre[0]], [0, scale, side / 2 - scale * centre[1]]])
    return np.asarray(cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR), np.uint8)


def _label(image: Image, text: str, y: int = 18) -> Image:
    out = image.copy()
    cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _text_panel(lines: list[str], width: int, line_h: int = 20) -> Image:
    import textwrap

    wrapped = [part for line in lines for part in textwrap.wrap("- " + line, max(20, width // 9))] or ["no warnings"]
    panel = np.full((line_h * len(wrapped) + 10, width, 3), 32, np.uint8)
    for k, text in enumerate(wrapped):
        cv2.putText(panel, text, (8, line_h * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    return panel


def render_sheet(identity: IdentityAsset, sender: tuple[Image, Landmarks], frames: list[tuple[str, Image, Landmarks]],
                 warnings: list[str], columns: int = 5, cell: int = 240) -> Image:  # fmt: skip
    """The avatar picture and each frame rendered with it (face crops; a clip's own frame beside its rendering), in rows
    of `columns`, the warnings written underneath."""
    from facewire.shared.render.mesh import MeshRenderer

    assert identity.image is not None and identity.landmarks is not None
    renderer = MeshRenderer()
    renderer.prepare_identity(identity)
    renderer.prepare_keyframe(KeyframeState(0, sender[0], None, sender[1]))
    cells = [_label(face_crop(identity.image, identity.landmarks, cell), "avatar picture")]
    for k, (name, image, lm) in enumerate(frames):
        out = renderer.render(FrameState(k, k * 33_333, "tracked", lm, None)).image
        if image is not sender[0]:  # a real frame of a clip: show it beside its rendering
            cells.append(_label(face_crop(image, lm, cell), "you"))
        cells.append(_label(face_crop(out, lm, cell), name))
    while len(cells) % columns:
        cells.append(np.zeros((cell, cell, 3), np.uint8))
    grid = np.vstack([np.hstack(cells[i : i + columns]) for i in range(0, len(cells), columns)])
    return np.vstack([grid, _text_panel(warnings, grid.shape[1])])


def check(image_path: Path, out: Path | None, clip: Path | None) -> int:
    """Print the warnings for IMAGE and write the sheet; 0 when usable (warnings or not), 2 when refused."""
    try:
        identity = load_identity(image_path)
    except IdentityError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    assert identity.image is not None and identity.landmarks is not None
    warnings = avatar_warnings(identity.image, identity.landmarks)
    for line in warnings:
        print(f"warning: {line}")
    if not warnings:
        print("no warnings: this picture should work well")
    if out is None:
        return 0
    if clip is not None:
        (image, lm), picks = clip_frames(clip)
        sender = (image, lm)
        frames = picks
        columns = 6
    else:
        sender = stand_in_sender()
        frames = [(name, sender[0], lm) for name, lm in built_in_frames(sender[1])]
        columns = 5
    cv2.imwrite(str(out), render_sheet(identity, sender, frames, warnings, columns))
    print(f"sheet: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facewire-avatar", description="Check an avatar picture before a call.")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="warn about what will not look right, and draw the avatar moving")
    chk.add_argument("image", type=Path, help="the avatar picture (JPEG, PNG, WebP)")
    chk.add_argument("--out", type=Path, help="write the contact sheet here (PNG)")
    chk.add_argument("--clip", type=Path, help="drive the avatar with this video of you instead of the built-in motion")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cv2.setNumThreads(1)
    return check(args.image, args.out, args.clip)


if __name__ == "__main__":
    raise SystemExit(main())
