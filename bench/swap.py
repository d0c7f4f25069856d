"""Face-swap quality bench: every clip x every avatar through a renderer, judged by independent models.

For each clip the sender side runs the project's tracker (facewire.sender.tracker); the first tracked
frame is the keyframe (the receiver's neutral face). Every frame is rendered with each avatar and
the output is judged:

* identity: dlib's 128-d ResNet face descriptor (face_recognition_models' weights) of the output
  face against the avatar image and against the sender's input frame; same person < 0.6;
* expression: MediaPipe landmarks re-detected on the output; Pearson correlation of mouth opening
  and eye openness (each over its width) between input and output (NaN, left out of the means,
  where the input's openness hardly changes: MIN_SPREAD);
* pose: yaw/pitch/roll (facewire.shared.face.pose.head_pose) of input vs re-detected output, mean abs degrees;
* flicker: colour jumps: mean |second temporal difference| of the face box's mean colour, output
  minus input (grey levels; > 0 means the face's brightness or colour pops more than the camera's
  picture does). Pixel-wise differences are avoided: they grow with motion times texture contrast,
  so a sharp avatar on a moving head would score as flicker;
* ms/frame: render time only (shared CPU: treat as an upper bound);
* blotch and seam (`blotch_scores`): what the eye calls blotches, smears, torn make-up and seams.
  The output's log-luminance band-passed at the scale of a patch (difference of Gaussians at
  0.015 and 0.06 face widths), its RMS over the skin (the face inside the outline less eyes,
  brows, lips and nostrils of both the input and the re-detected output), minus the same of the
  input: a clean face with the scene's smooth light adds nothing, a patch of the sender's shadow
  or the avatar's hair, a smeared brow or a pale band adds energy at that scale. `seam` is the same
  over a band round the outline (0.06 face widths inside). x100, so about percent of contrast.
  `rings` is paleness round the eyes (lids, sockets, corners; not the openings, lashes or brows),
  which `blotch` leaves out with the features (`skin_scores`). `blotch` is brightness only and cannot
  see colour: `cast` is the RMS over the same skin of the output's log chromaticity (log B/G, log R/G,
  at the patch scale) off the input's, that is off the sender's skin in the scene's light, which the
  neck and ears beside the face keep: an ochre varnish, a brown painted shade or a grey-green patch
  raise it; 0 is the scene's own skin colour (it is not a difference of two measures like the others).

`--stream KBPS` drives the renderer through a stream file instead (bench/drive.py): the real sender records each
clip at that bitrate as an avatar sender, and the receiver's decoder hands the renderer its keyframes and
quantised landmarks; the judged truth is still the input frame each message was captured from.

`--same-person` runs the avatar path driven by the clip's own person: the avatar is the clip's
first tracked frame (the keyframe), later frames are the truth; face-region SSIM and PSNR (inside
the true frame's outline) of that and of self mode, side by side. `--sheet DIR` writes contact
sheets of every identity (avatars and portraits) on each clip's three most expressive frames: face
crops at full size and the whole frame as a 256-px video tile, with the blotch measure per cell.

Writes JSON and a contact-sheet PNG. Run: .venv/bin/python bench/swap.py --frames 40 --clips d3,d18
(needs `pip install dlib-bin face-recognition-models`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from facewire.sender.tracker import MediaPipeFaceTracker, TrackerConfig  # noqa: E402
from facewire.shared.face.identity import load_identity  # noqa: E402
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio  # noqa: E402
from facewire.shared.face.pose import head_pose  # noqa: E402
from facewire.shared.render import make_renderer  # noqa: E402
from facewire.shared.render.mesh import MeshOptions, MeshRenderer  # noqa: E402
from facewire.shared.types import (  # noqa: E402
    CapturedFrame,
    FrameState,
    IdentityAsset,
    Image,
    KeyframeState,
    Landmarks,
    RenderedPerson,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive import Step, direct, record, recorded  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEWIRE_DATA", ROOT.parent / "shared" / "data"))
SAME_PERSON = 0.6
AS_AVATAR_TARGET = 0.95  # of a pair's frames recognised as the avatar (issue 12)


class Recogniser:
    """dlib 128-d face descriptors; the face box comes from MediaPipe landmarks so detection is not the judge."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._dlib = dlib

    def descriptor(self, image: Image, landmarks: Landmarks) -> npt.NDArray[np.float64]:
        x0, y0 = landmarks[:468, :2].min(axis=0)
        x1, y1 = landmarks[:468, :2].max(axis=0)
        rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        shape = self._shape(rgb, rect)
        return np.array(self._net.compute_face_descriptor(rgb, shape, 1), np.float64)


@dataclass
class PairResult:
    clip: str
    avatar: str
    frames: int
    face_found: float
    as_avatar: float
    as_sender: float
    dist_avatar: float
    dist_sender: float
    avatar_vs_sender: float  # the two input faces' own distance: how alike the people already are
    mouth_corr: float
    eye_corr: float
    pose_err_deg: float
    flicker: float
    ms_per_frame: float
    blotch: float = float("nan")
    seam: float = float("nan")
    rings: float = float("nan")
    cast: float = float("nan")
    tone: float = float("nan")
    form: float = float("nan")
    # Judged frames the recogniser did not call the avatar: (frame, distance to the avatar, yaw, pitch, mouth
    # ratio, eye ratio of the input), to see whether a pair fails on turns, a laugh or narrowed eyes.
    missed: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)


def _ratios(lm: Landmarks) -> tuple[float, float]:
    p = lm.astype(np.float64)
    return mouth_ratio(p), 0.5 * (eye_open_ratio(p, "right") + eye_open_ratio(p, "left"))


def _face_crop(image: Image, lm: Landmarks, side: int = 240) -> Image:
    """A square around the face (its box plus a fifth on each side), `side` pixels: faces are what the sheet is for."""
    lo, hi = lm[:468, :2].min(axis=0), lm[:468, :2].max(axis=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.7
    scale = side / (2 * half)
    matrix = np.array([[scale, 0, side / 2 - scale * centre[0]], [0, scale, side / 2 - scale * centre[1]]])
    return np.asarray(cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)), np.uint8)


def _jerk(means: list[npt.NDArray[np.float64]]) -> float:
    a, b, c = means
    return float(np.abs(a - 2 * b + c).mean())


# Input openness (over width) must spread at least this much for a correlation to mean anything: a
# mouth that stays shut for the whole clip gives a correlation of noise (d14 frames 180-330: 0.001).
MIN_SPREAD = 0.02


def _corr(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.std(a) < MIN_SPREAD or np.std(b) < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _features(shape: tuple[int, int], landmarks: Landmarks, width: float) -> npt.NDArray[np.uint8]:
    from facewire.shared.render.delight import feature_mask

    return feature_mask(shape, landmarks.astype(np.float32), width)


BLOTCH_SCALES = (0.015, 0.06)  # face widths: finer is texture (pores, grain), coarser is light
SEAM_BAND = 0.06  # face widths inside the outline
# Face widths: the band of the face's form (cheekbone shade, temples, the jaw's turn), coarser than
# features and blotches (BLOTCH_SCALES), finer than the light's direction over the whole face.
FORM_SCALES = (0.04, 0.2)


def _band_energy(luma: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_], width: float,
                 scales: tuple[float, float] = BLOTCH_SCALES) -> float:
    fine, coarse = (max(0.7, k * width) for k in scales)
    band = cv2.GaussianBlur(luma, (0, 0), fine) - cv2.GaussianBlur(luma, (0, 0), coarse)
    return float(np.sqrt(np.mean(np.square(band[mask])))) if mask.any() else float("nan")


def blotch_scores(truth: Image, out: Image, lm: Landmarks, out_lm: Landmarks | None) -> tuple[float, float]:
    """(blotch, seam): patch-scale contrast the output adds over the input, on the skin and at the outline."""
    scores = skin_scores(truth, out, lm, out_lm)
    return scores.blotch, scores.seam


@dataclass(frozen=True)
class SkinScores:
    """What the output adds over the input (x100), by region (see skin_scores)."""

    blotch: float  # luminance, on the skin less the features
    seam: float  # luminance, in the band inside the outline
    rings: float  # paleness round the eyes: lids, sockets and corners, less the openings and brows
    cast: float  # colour, on the skin less the features: off the scene's skin under the same light (not a difference)
    tone: float  # the skin's mean brightness and colour off the sender's in the same light: a mask on its neck
    form: float  # luminance relief at the scale of the face's form (cheekbones, temples): < 0 is flatter


_SKIN_FIELDS = ("blotch", "seam", "rings", "cast", "tone", "form")
RING_REACH = 0.05  # face widths round the eyes' openings
LASH_LINE = 0.012  # face widths round an opening: lashes and liner, left out of `rings`


def skin_scores(truth: Image, out: Image, lm: Landmarks, out_lm: Landmarks | None) -> SkinScores:
    """Blotch, seam and rings: what the eye calls blotches, seams and pale rings round the eyes.

    Each is a measure of the output minus the same of the input, x100. `blotch` and `seam` are the
    band-passed (BLOTCH_SCALES) RMS of log luminance over a region (`_band_energy`). `rings`
    covers the eyes' surroundings, which `blotch` leaves out with the features (white rings of lifted
    lids): the mean of their log luminance above the skin's light beside them (the skin blurred at
    the coarse scale), since there a band-pass is all the eye's own contrast. A dark mark there
    (hair's shade at a corner) it does not see.
    """
    from facewire.shared.face import topology as topo
    from facewire.shared.render.delight import eye_openings, normalised_blur
    from facewire.shared.render.warp import fill_polygon

    oval = lm[topo.face_oval_ring(), :2].astype(np.float32)
    width = float(np.ptp(oval[:, 0]))
    pad = int(0.2 * width) + 4
    h, w = truth.shape[:2]
    x0, y0 = (max(0, int(v) - pad) for v in oval.min(axis=0))
    x1, y1 = (int(v) + pad for v in oval.max(axis=0))
    x1, y1 = min(w, x1), min(h, y1)
    shift = np.array([x0, y0], np.float32)
    shape = (y1 - y0, x1 - x0)
    face = np.zeros(shape, np.uint8)
    fill_polygon(face, oval - shift)
    local = lm.astype(np.float32).copy()
    local[:, :2] -= shift
    features = _features(shape, local, width)
    faces = [local]
    if out_lm is not None:
        other = out_lm.astype(np.float32).copy()
        other[:, :2] -= shift
        features |= _features(shape, other, width)
        faces.append(other)
    k = max(1, int(round(SEAM_BAND * width)))
    inner = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    skin = (inner > 0) & (features == 0)
    seam = (face > 0) & (inner == 0)
    near = np.zeros(shape, np.uint8)
    kept = np.zeros(shape, np.uint8)
    for points in faces:
        near |= eye_openings(shape, points, max(1, int(round(RING_REACH * width))))
        kept |= eye_openings(shape, points, max(1, int(round(LASH_LINE * width))))
        for brow in topo.brows():
            cv2.fillConvexPoly(kept, cv2.convexHull(np.round(points[brow, :2]).astype(np.int32)), 255)
    rings = (inner > 0) & (near > 0) & (kept == 0)

    def luma(image: Image) -> npt.NDArray[np.float32]:
        return np.log(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32) + 8.0)

    def paler(image: Image) -> float:
        # Round an eye the band-pass is all the eye's own contrast; a ring is lids paler than the skin beside them
        # (a sender's lids are as often darker as not, so only the paleness counts: a signed mean would trade it off).
        y = luma(image)
        light = normalised_blur(y[..., None], skin.astype(np.float32), max(0.7, BLOTCH_SCALES[1] * width))[..., 0]
        return float(np.maximum(y - light, 0.0)[rings].mean()) if rings.any() else float("nan")

    def chroma(image: Image) -> npt.NDArray[np.float32]:
        logs = np.log(image[y0:y1, x0:x1].astype(np.float32) + 8.0)
        # Log chromaticity (blue and red against green): a colour, whatever the light's brightness.
        return np.asarray(cv2.GaussianBlur(logs[..., [0, 2]] - logs[..., 1:2], (0, 0), max(0.7, BLOTCH_SCALES[0] * width)), np.float32)

    off = chroma(out) - chroma(truth)
    return SkinScores(
        blotch=100.0 * (_band_energy(luma(out), skin, width) - _band_energy(luma(truth), skin, width)),
        seam=100.0 * (_band_energy(luma(out), seam, width) - _band_energy(luma(truth), seam, width)),
        rings=100.0 * (paler(out) - paler(truth)),
        cast=100.0 * float(np.sqrt(np.mean(np.square(off[skin])))) if skin.any() else float("nan"),
        tone=100.0 * _tone_offset(truth[y0:y1, x0:x1], out[y0:y1, x0:x1], skin),
        form=100.0 * (_form_energy(luma(out), skin, width) - _form_energy(luma(truth), skin, width)),
    )


def _form_energy(luma: npt.NDArray[np.float32], skin: npt.NDArray[np.bool_], width: float) -> float:
    """RMS over the skin of log luminance band-passed at FORM_SCALES, the features filled in from the skin round them.

    Without the fill, the dark of eyes, brows and lips spreads into the skin at this scale and a flat face with
    strong features would score as modelled.
    """
    from facewire.shared.render.delight import normalised_blur

    weight = skin.astype(np.float32)
    fine, coarse = (normalised_blur(luma[..., None], weight, max(0.7, k * width))[..., 0] for k in FORM_SCALES)
    return float(np.sqrt(np.mean(np.square((fine - coarse)[skin])))) if skin.any() else float("nan")


def _tone_offset(truth: Image, out: Image, skin: npt.NDArray[np.bool_]) -> float:
    """How far the output's skin is, on average, from the sender's skin in the same light: log ratio per channel.

    The norm over B, G, R of the mean log ratio over the skin: brightness and colour together (a pale, greyed face
    on a tan neck has all three channels too high, red least). The sender's own face is the reference, not the neck
    itself: it is lit like the neck and ears beside it, and needs no search for a neck a collar or beard may cover.
    A mean, not a per-pixel RMS (as `cast`): the avatar's own features and form are not an offset.
    """
    if not skin.any():
        return float("nan")
    ratio = np.log(out[skin].astype(np.float32) + 8.0) - np.log(truth[skin].astype(np.float32) + 8.0)
    return float(np.linalg.norm(ratio.mean(axis=0)))


def track_clip(path: Path, max_frames: int, start: int = 0) -> list[tuple[Image, Landmarks | None]]:
    tracker = MediaPipeFaceTracker(TrackerConfig())
    cap = cv2.VideoCapture(str(path))
    frames: list[tuple[Image, Landmarks | None]] = []
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        while len(frames) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            obs = tracker.track(CapturedFrame(len(frames), len(frames) * 33_333, image))
            frames.append((image, None if obs is None else obs.landmarks))
    finally:
        cap.release()
        tracker.close()
    return frames


def on_scene(person: RenderedPerson, scene: Image) -> Image:
    """The rendered person over the input frame, under the person's alpha: a stream's keyframe carries the person
    alone (the receiver composes a background of its own), and the judges should see the face in its own scene."""
    alpha = person.alpha[..., None]
    return np.asarray(person.image * alpha + scene * (1.0 - alpha) + 0.5, np.uint8)


def run_pair(
    clip: str,
    frames: list[tuple[Image, Landmarks | None]],
    steps: list[Step],
    avatar_name: str,
    identity: IdentityAsset,
    avatar_desc: npt.NDArray[np.float64],
    recogniser: Recogniser,
    renderer_name: str,
    sheet_every: int,
    mesh_options: MeshOptions,
    stride: int = 1,
) -> tuple[PairResult, list[Image]]:
    renderer = make_renderer(renderer_name, mesh_factory=lambda: MeshRenderer(mesh_options))
    key = next(i for i, (_, lm) in enumerate(frames) if lm is not None)
    kf_image, kf_lm = frames[key]
    assert kf_lm is not None
    renderer.prepare_identity(identity)
    redetect = MediaPipeFaceTracker(TrackerConfig(smoothing=None))
    baseline = float(np.linalg.norm(recogniser.descriptor(kf_image, kf_lm) - avatar_desc))
    found = as_avatar = as_sender = 0
    d_av: list[float] = []
    d_se: list[float] = []
    m_in: list[float] = []
    m_out: list[float] = []
    e_in: list[float] = []
    e_out: list[float] = []
    pose_err: list[float] = []
    flicker: list[float] = []
    skin: list[SkinScores] = []
    times: list[float] = []
    sheet: list[Image] = []
    history: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
    missed: list[tuple[int, float, float, float, float, float]] = []
    n = judged = 0
    sheet_cells = max(1, len(frames) // max(sheet_every, 1))
    for i, keyframe, state in steps:
        if keyframe is not None:
            renderer.prepare_keyframe(keyframe)
        image, lm = frames[i]
        if lm is None:  # the sender tracked a face the bench's tracker did not: no truth to judge it by
            continue
        n += 1
        t0 = time.perf_counter()
        out = on_scene(renderer.render(state), image)
        times.append((time.perf_counter() - t0) * 1000)
        x0, y0 = np.maximum(lm[:468, :2].min(axis=0).astype(int), 0)
        x1, y1 = lm[:468, :2].max(axis=0).astype(int)
        box = (slice(y0, y1), slice(x0, x1))
        means = (image[box].reshape(-1, 3).mean(axis=0), out[box].reshape(-1, 3).mean(axis=0))
        history = (history + [means])[-3:]
        if len(history) == 3:
            flicker.append(_jerk([h[1] for h in history]) - _jerk([h[0] for h in history]))
        if len(sheet) < sheet_cells and i >= len(sheet) * sheet_every:
            sheet.append(np.hstack([_face_crop(image, lm), _face_crop(out, lm)]))
        if i % stride:
            continue
        judged += 1
        # Each judged picture is searched alone (the tracker reset): tracking on from the last judged one, `stride`
        # frames back, lost a head that had moved far and held its face where it had been, so the descriptor was
        # taken beside the face (d12 frame 36: 95 px off, "nobody" for 32 of 37 avatars); tracked on through every
        # frame, the tracker's own smoothing lagged the mouth (w1 x s12: 0.20 open where the picture shows 0.29).
        redetect.reset()
        obs = redetect.track(CapturedFrame(i, i * 33_333, out))
        if obs is not None and obs.state != "tracked":
            obs = None  # a held face is an earlier picture's landmarks: nothing found in this one
        skin.append(skin_scores(image, out, lm, None if obs is None else obs.landmarks))
        if obs is None:
            continue
        found += 1
        olm = obs.landmarks
        desc = recogniser.descriptor(out, olm)
        sender_desc = recogniser.descriptor(image, lm)
        da = float(np.linalg.norm(desc - avatar_desc))
        ds = float(np.linalg.norm(desc - sender_desc))
        d_av.append(da)
        d_se.append(ds)
        as_avatar += da < SAME_PERSON
        as_sender += ds < SAME_PERSON
        mi, ei = _ratios(lm)
        mo, eo = _ratios(olm)
        pi, po = head_pose(lm), head_pose(olm)
        if da >= SAME_PERSON:
            missed.append((i, round(da, 3), round(pi.yaw, 1), round(pi.pitch, 1), round(mi, 3), round(ei, 3)))
        m_in.append(mi)
        m_out.append(mo)
        e_in.append(ei)
        e_out.append(eo)
        pose_err.append((abs(pi.yaw - po.yaw) + abs(pi.pitch - po.pitch) + abs(pi.roll - po.roll)) / 3)
    redetect.close()
    result = PairResult(
        clip=clip,
        avatar=avatar_name,
        frames=n,
        face_found=found / max(judged, 1),
        as_avatar=as_avatar / max(found, 1),
        as_sender=as_sender / max(found, 1),
        dist_avatar=float(np.mean(d_av)) if d_av else float("nan"),
        dist_sender=float(np.mean(d_se)) if d_se else float("nan"),
        avatar_vs_sender=baseline,
        mouth_corr=_corr(m_in, m_out),
        eye_corr=_corr(e_in, e_out),
        pose_err_deg=float(np.mean(pose_err)) if pose_err else float("nan"),
        flicker=float(np.mean(flicker)) if flicker else float("nan"),
        ms_per_frame=float(np.median(times)) if times else float("nan"),
        **{k: float(np.mean([getattr(v, k) for v in skin])) if skin else float("nan") for k in _SKIN_FIELDS},
        missed=missed,
    )
    return result, sheet


def face_similarity(out: Image, truth: Image, lm: Landmarks) -> tuple[float, float]:
    """SSIM (grey, Gaussian window 1.5) and PSNR (colour) of `out` against `truth` inside the true face outline."""
    from skimage.metrics import structural_similarity

    from facewire.shared.face import topology as topo
    from facewire.shared.render.warp import fill_polygon

    h, w = truth.shape[:2]
    x0, y0 = np.maximum(lm[:468, :2].min(axis=0).astype(int) - 4, 0)
    x1, y1 = np.minimum(lm[:468, :2].max(axis=0).astype(int) + 4, (w, h))
    a = cv2.cvtColor(out[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float64)
    b = cv2.cvtColor(truth[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float64)
    mask = np.zeros(a.shape, np.uint8)
    fill_polygon(mask, lm[topo.face_oval_ring(), :2].astype(np.float32) - np.array([x0, y0], np.float32))
    inside = mask > 0
    _, ssim_map = structural_similarity(a, b, data_range=255, full=True, gaussian_weights=True, sigma=1.5)
    diff = out[y0:y1, x0:x1][inside].astype(np.float64) - truth[y0:y1, x0:x1][inside]
    mse = max(float(np.mean(np.square(diff))), 1e-6)
    return float(ssim_map[inside].mean()), float(10.0 * np.log10(255.0**2 / mse))


def same_person(clip: str, frames: list[tuple[Image, Landmarks | None]], mesh_options: MeshOptions, stride: int) -> dict[str, float | str]:
    """The avatar path driven by the clip's own person: the keyframe is also the avatar picture, later frames the truth.

    Everything that differs from self mode (texture preparation, retargeting, irises, lids,
    shading and seam blending) shows as a loss against self mode on the same frames.
    """
    from facewire.shared.face.identity import asset_id_of, identity_from_image

    key = next(i for i, (_, lm) in enumerate(frames) if lm is not None)
    kf_image, kf_lm = frames[key]
    assert kf_lm is not None
    keyframe = KeyframeState(0, kf_image, None, kf_lm)
    avatar = identity_from_image(kf_image, asset_id_of(kf_image.tobytes()), f"{clip} frame {key}")
    result: dict[str, float | str] = {"clip": clip}
    for mode, identity in (("self", None), ("avatar", avatar)):
        renderer = MeshRenderer(mesh_options)
        renderer.prepare_identity(identity)
        renderer.prepare_keyframe(keyframe)
        scores = []
        for i in range(key + stride, len(frames), stride):
            image, lm = frames[i]
            if lm is None:
                continue
            out = renderer.render(FrameState(i, i * 33_333, "tracked", lm, None)).image
            scores.append(face_similarity(out, image, lm))
        result[f"{mode}_ssim"], result[f"{mode}_psnr"] = (float(v) for v in np.mean(scores, axis=0))
    result["ssim_gap"] = float(result["self_ssim"]) - float(result["avatar_ssim"])  # type: ignore[arg-type]
    return result


def expressive_frames(frames: list[tuple[Image, Landmarks | None]], count: int = 3) -> list[int]:
    """`count` frames that show the most: the widest mouth, the most turned head, the most tilted one (10 frames apart)."""
    tracked = [i for i, (_, lm) in enumerate(frames) if lm is not None][5:]
    if not tracked:
        return []
    mouth = {i: mouth_ratio(frames[i][1].astype(np.float64)) for i in tracked}  # type: ignore[union-attr]
    poses = {i: head_pose(frames[i][1]) for i in tracked}  # type: ignore[arg-type]
    keys = [lambda i: mouth[i], lambda i: abs(poses[i].yaw), lambda i: abs(poses[i].pitch) + abs(poses[i].roll)]
    chosen: list[int] = []
    for key in keys[:count]:
        free = [i for i in tracked if all(abs(i - c) >= 10 for c in chosen)] or tracked
        chosen.append(max(free, key=key))
    return sorted(chosen)


def received_identity(name: str) -> IdentityAsset:
    """The identity as a receiver gets it over the link: the picture the sender prepares for it (cropped round the
    face, at most LINK_FACE_WIDTH, WebP), with the landmarks found on that picture."""
    from facewire.sender.identity import identity_message

    message = identity_message(str(identity_file(name)))
    assert message.image is not None
    return load_identity(message.image)


def identity_file(name: str) -> Path:
    for folder in ("avatars", "portraits"):
        path = DATA / folder / f"{name}.jpg"
        if path.exists():
            return path
    raise FileNotFoundError(f"no identity image {name}.jpg under {DATA}/avatars or /portraits")


def all_identities() -> list[str]:
    return sorted(p.stem for p in (DATA / "avatars").glob("*.jpg")) + sorted(p.stem for p in (DATA / "portraits").glob("*.jpg"))


def write_sheets(out_dir: Path, clips: dict[str, list[tuple[Image, Landmarks | None]]], drives: dict[str, list[Step]],
                 names: list[str], mesh_options: MeshOptions, renderer_name: str, per_page: int = 9,
                 received: bool = False) -> list[dict[str, float | str]]:
    """Contact sheets of every identity on each clip's expressive frames: face crops (240 px) and 256-px tiles.

    Pages of `per_page` identities; the top row is the input. Each cell is labelled with its blotch
    measures; a frame its drive has no step for (not sent) is a black cell. Returns one record per cell
    (identity, clip, frame, blotch, seam, rings).
    """
    from facewire.shared.face.identity import IdentityError

    picks = {c: expressive_frames(frames) for c, frames in clips.items()}
    crop, tile = 240, 256
    cells = [(c, i) for c in clips for i in picks[c]]
    head_faces = [_label(_face_crop(clips[c][i][0], clips[c][i][1], crop), f"{c}:{i}") for c, i in cells]  # type: ignore[arg-type]
    head_tiles = [_tile(clips[c][i][0], tile) for c, i in cells]
    faces_rows = [np.hstack([np.zeros((crop, crop, 3), np.uint8)] + head_faces)]
    tile_rows = [np.hstack([np.zeros((tile, tile, 3), np.uint8)] + head_tiles)]
    records: list[dict[str, float | str]] = []
    for name in names:
        try:
            identity = load_identity(identity_file(name))
        except IdentityError as exc:
            print(f"{name}: unusable: {exc}", flush=True)
            continue
        assert identity.image is not None and identity.landmarks is not None
        faces = [_label(_face_crop(identity.image, identity.landmarks, crop), name)]
        tiles = [_label(_tile(identity.image, tile), name)]
        drawn_as = received_identity(name) if received else identity
        for c, frames in clips.items():
            renderer = make_renderer(renderer_name, mesh_factory=lambda: MeshRenderer(mesh_options))
            renderer.prepare_identity(drawn_as)
            drawn: dict[int, Image] = {}
            for i, keyframe, state in drives[c]:
                if keyframe is not None:
                    renderer.prepare_keyframe(keyframe)
                if i in picks[c]:
                    drawn[i] = on_scene(renderer.render(state), frames[i][0])
            for i in picks[c]:
                image, lm = frames[i]
                assert lm is not None
                if i not in drawn:
                    faces.append(_label(np.zeros((crop, crop, 3), np.uint8), "not sent"))
                    tiles.append(np.zeros((tile, tile, 3), np.uint8))
                    continue
                out = drawn[i]
                sc = skin_scores(image, out, lm, None)
                records.append({"identity": name, "clip": c, "frame": i, **asdict(sc)})
                faces.append(_label(_face_crop(out, lm, crop), f"b{sc.blotch:.1f} c{sc.cast:.0f} t{sc.tone:.0f} f{sc.form:.1f}"))
                tiles.append(_tile(out, tile))
        faces_rows.append(np.hstack(faces))
        tile_rows.append(np.hstack(tiles))
        print(f"{name}: blotch {np.mean([r['blotch'] for r in records if r['identity'] == name]):.2f}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, rows in (("faces", faces_rows), ("tiles", tile_rows)):
        for page, start in enumerate(range(1, len(rows), per_page)):
            cv2.imwrite(str(out_dir / f"{kind}_{page}.png"), np.vstack([rows[0]] + rows[start : start + per_page]))
    (out_dir / "sheet.json").write_text(json.dumps(records, indent=1))
    return records


def steps_of(clip: str, frames: list[tuple[Image, Landmarks | None]], kbps: float | None, identity: str, out_dir: Path) -> list[Step]:
    """The renderer's input for `clip`: the tracker's (kbps None) or the stream the sender records at `kbps` (kept
    in `out_dir`/streams; the `identity` only makes it an avatar sender's stream: any one does)."""
    if kbps is None:
        return direct(frames)
    stream = out_dir / "streams" / f"{clip}_{kbps:g}kbps.fws"
    stream.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record(DATA / "clips" / f"{clip}.mp4", len(frames), kbps, identity_file(identity), stream)
    steps = recorded(stream, frames)
    print(f"{clip}: recorded at {kbps:g} kbps ({stream.stat().st_size / 1024:.0f} KiB with the avatar picture) in "
          f"{time.perf_counter() - t0:.0f} s; {len(steps)} of {len(frames)} frames sent with a face", flush=True)
    return steps


def _tile(image: Image, side: int) -> Image:
    """The whole picture fitted into a `side`-pixel square, as a small video tile shows it."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = np.zeros((side, side, 3), np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out


def parse_mesh_options(settings: list[str]) -> MeshOptions:
    """MeshOptions with `group.field=value` overrides (groups: retarget, blend, delight; or a top-level field; `none` for None).

    The de-lighting before the frequency split: delight.broad_scale=none delight.scale=0.055
    delight.strength=0.7 delight.max_gain=1.5.
    """
    options = MeshOptions()
    for item in settings:
        key, _, raw = item.partition("=")
        word = raw.lower()
        value: float | bool | None = None if word == "none" else word == "true" if word in ("true", "false") else float(raw)
        group, _, name = key.rpartition(".")
        owner = getattr(options, group) if group else options
        current = getattr(owner, name)
        # An optional field (None by default) takes the value as given; others keep their type.
        typed = value if value is None or current is None else type(current)(value)
        options = replace(options, **{group: replace(owner, **{name: typed})}) if group else replace(options, **{name: typed})
    return options


def _label(image: Image, text: str) -> Image:
    out = image.copy()
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(rows: list[tuple[str, Image, list[Image]]], cells: int, cell_h: int = 240) -> Image:
    lines = []
    for label, avatar, pairs in rows:
        thumbs = [cv2.resize(avatar, (int(avatar.shape[1] * cell_h / avatar.shape[0]), cell_h))]
        for pair in pairs[:cells]:
            thumbs.append(cv2.resize(pair, (int(pair.shape[1] * cell_h / pair.shape[0]), cell_h)))
        line = np.hstack(thumbs)
        lines.append(_label(line, label))
    width = max(line.shape[1] for line in lines)
    return np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: all in ../shared/data)")
    parser.add_argument("--avatars", default="", help="comma-separated identity names (avatars/ or portraits/); 'all' for both "
                        "folders (default: the avatars folder)")
    parser.add_argument("--same-person", action="store_true", help="the avatar path driven by the clip's own person, beside self mode")
    parser.add_argument("--sheet", type=Path, metavar="DIR", help="contact sheets of every --avatars identity on each clip, then stop")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (from --start)")
    parser.add_argument("--start", type=int, default=0, help="first frame of each clip (a later segment: another keyframe)")
    parser.add_argument("--stride", type=int, default=1, help="judge every Nth frame (all are tracked and rendered)")
    parser.add_argument("--renderer", default="mesh")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "swap", help="folder for swap.json and the sheet")
    parser.add_argument("--cells", type=int, default=4, help="frames per contact-sheet row")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="mesh option, e.g. retarget.outline_pull=0.5 or blend.chroma_strength=0.4")  # fmt: skip
    parser.add_argument("--stream", type=float, metavar="KBPS",
                        help="drive the renderer through a stream file the real sender records of each clip at this "
                             "bitrate (compressed keyframes, quantised face code), not the tracker's own output")  # fmt: skip
    args = parser.parse_args(argv)
    if args.stream is not None and (args.start or args.same_person):
        parser.error("--stream records each clip from its first frame, for the identity bench and --sheet")
    cv2.setNumThreads(1)
    if not DATA.is_dir():
        print(f"no evaluation data at {DATA}", file=sys.stderr)
        return 2
    clips = args.clips.split(",") if args.clips else sorted(p.stem for p in (DATA / "clips").glob("*.mp4"))
    if args.avatars == "all":
        avatars = all_identities()
    else:
        avatars = args.avatars.split(",") if args.avatars else sorted(p.stem for p in (DATA / "avatars").glob("*.jpg"))
    mesh_options = parse_mesh_options(args.set)
    if args.same_person:
        rows_same = []
        for clip in clips:
            row = same_person(clip, track_clip(DATA / "clips" / f"{clip}.mp4", args.frames, args.start), mesh_options, args.stride)
            rows_same.append(row)
            print(json.dumps(row), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "same_person.json").write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "clips": rows_same},
                                                              indent=2, default=str))
        print(json.dumps({"worst_ssim_gap": max(float(r["ssim_gap"]) for r in rows_same)}))
        return 0
    if args.sheet is not None:
        tracked = {clip: track_clip(DATA / "clips" / f"{clip}.mp4", args.frames, args.start) for clip in clips}
        drives = {clip: steps_of(clip, frames, args.stream, avatars[0], args.sheet) for clip, frames in tracked.items()}
        records = write_sheets(args.sheet, tracked, drives, avatars, mesh_options, args.renderer,
                               received=args.stream is not None)
        print(json.dumps({"cells": len(records), **{k: float(np.nanmean([float(r[k]) for r in records])) for k in _SKIN_FIELDS}}))
        return 0
    recogniser = Recogniser()
    identities = {a: load_identity(identity_file(a)) for a in avatars}
    avatar_desc = {}
    for a, ident in identities.items():
        assert ident.image is not None and ident.landmarks is not None
        avatar_desc[a] = recogniser.descriptor(ident.image, ident.landmarks)
    # Through a stream the renderer draws the picture as it crossed the link; dlib compares with the original.
    drawn_as = {a: received_identity(a) for a in avatars} if args.stream is not None else identities
    results: list[PairResult] = []
    rows: list[tuple[str, Image, list[Image]]] = []
    sheet_every = max(1, args.frames // args.cells)
    for clip in clips:
        frames = track_clip(DATA / "clips" / f"{clip}.mp4", args.frames, args.start)
        steps = steps_of(clip, frames, args.stream, avatars[0], args.out)
        for a in avatars:
            res, cells = run_pair(clip, frames, steps, a, drawn_as[a], avatar_desc[a], recogniser, args.renderer,
                                  sheet_every, mesh_options, args.stride)  # fmt: skip
            results.append(res)
            image = identities[a].image
            assert image is not None
            rows.append((f"{clip} x {a}: av {res.as_avatar:.2f} se {res.as_sender:.2f} m {res.mouth_corr:.2f} "
                         f"e {res.eye_corr:.2f}", image, cells))  # fmt: skip
            print(json.dumps(asdict(res)), flush=True)
    summary = {
        "as_avatar": float(np.mean([r.as_avatar for r in results])),
        "as_sender": float(np.mean([r.as_sender for r in results])),
        # Pairs whose own faces dlib already calls one person cannot score better than the inputs do.
        "as_sender_distinct_pairs": float(np.mean([r.as_sender for r in results if r.avatar_vs_sender >= SAME_PERSON] or [float("nan")])),
        "face_found": float(np.mean([r.face_found for r in results])),
        # The pairs under the target (>= 95% of frames as the avatar), worst first: where to look (each one's `missed`).
        "as_avatar_below_target": {f"{r.clip} x {r.avatar}": r.as_avatar for r in sorted(results, key=lambda r: r.as_avatar)
                                   if r.as_avatar < AS_AVATAR_TARGET},
        "mouth_corr": float(np.nanmean([r.mouth_corr for r in results])),
        "eye_corr": float(np.nanmean([r.eye_corr for r in results])),
        "pose_err_deg": float(np.nanmean([r.pose_err_deg for r in results])),
        "flicker": float(np.nanmean([r.flicker for r in results])),
        "ms_per_frame": float(np.median([r.ms_per_frame for r in results])),
        **{k: float(np.nanmean([getattr(r, k) for r in results])) for k in _SKIN_FIELDS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    settings = {"clips": clips, "avatars": avatars, "frames": args.frames, "start": args.start, "stride": args.stride,
                "renderer": args.renderer, "set": args.set, "stream_kbps": args.stream}  # fmt: skip
    report = {"machine": machine, "settings": settings, "summary": summary, "pairs": [asdict(r) for r in results]}
    (args.out / "swap.json").write_text(json.dumps(report, indent=2))
    cv2.imwrite(str(args.out / "swap_sheet.png"), contact_sheet(rows, args.cells))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
