"""The default renderer: a piecewise-affine mesh warp, no downloaded weights.

Self mode warps the keyframe from its landmarks to the frame's. Avatar mode does the same for
the body and hair, then renders the avatar's face (its own geometry, the sender's expression
and pose; see retarget.py) from the avatar image and blends it in with the scene's shading.
Everything that depends only on a keyframe or an identity (triangulations, packed images,
mirror-filled textures, mouth panels) is computed once and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.face.identity import IdentityError, identity_from_image, is_self
from facewire.shared.render import blend as bl
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render.delight import DelightOptions
from facewire.shared.render.frontal import DEFAULT_DELIGHT, Texture, prepare_texture
from facewire.shared.render.glasses import draw_glasses
from facewire.shared.render.iris import draw_irises
from facewire.shared.render.layer_box import layer_reach
from facewire.shared.render.lids import REDRAWN, LashSource, close_lids
from facewire.shared.render.occlusion import OcclusionOptions, SpectacleMemory, occluder_mask
from facewire.shared.render.retarget import (
    AlignedSender,
    RetargetOptions,
    RetargetPlan,
    align_sender,
    apply_retarget,
    lip_retraction,
    plan_retarget,
)
from facewire.shared.render.sclera import EyeWhite, eye_whites, reveal_whites
from facewire.shared.render.warp import FIXED_POINT_PIXELS, CoarseMap, PointMap, Points, Region, remap, similarity_2d, warp_map
from facewire.shared.types import Affine, Alpha, AlphaFix, FrameState, IdentityAsset, Image, KeyframeState, Landmarks, RenderedPerson

log = logging.getLogger(__name__)

IndexArray = npt.NDArray[np.int32]
_RING_SCALES = (1.35, 2.1)
# Faces narrower than this get a per-pixel face map; wider ones a map every 2 pixels, upsampled
# (bilinear, exact inside triangles; eyes are then >= 40 px wide and their iris triangles several
# pixels across, and the output differs from the per-pixel map by < 0.3 grey levels on average).
_FINE_FACE_WIDTH = 200.0


@dataclass(frozen=True)
class MeshOptions:
    body_step: int = 4
    face_step: int = 0  # 0: by face size (_FINE_FACE_WIDTH); coarse maps blur small eyes, so 2 only for large faces
    ring_follow: float = 0.5  # how much of the head's motion the outer ring (shoulders) follows
    # ... when the body's motion is coded (the rest of the ring's motion is the body's): the ring lies about
    # the shoulders and the ends of the hair. Against the sender's matte on 8 clips (keyframes 2.5 s apart):
    # IoU 0.916 at 0.25, 0.92 at 0 (bench/alpha_follow.py measures it through the whole chain).
    body_ring_follow: float = 0.0
    retarget: RetargetOptions = field(default_factory=RetargetOptions)
    # The mesh renderer reaches the outline with a narrow feather and no forehead fade: the
    # avatar's own jaw, cheeks and forehead are much of what makes it recognisable.
    blend: bl.BlendOptions = field(default_factory=lambda: bl.BlendOptions(feather=0.05, inset=0.01, forehead_fade=0.0))
    mirror_fill: bool = True
    delight: DelightOptions = DEFAULT_DELIGHT  # the avatar's own light taken out of its texture (frontal.prepare_texture)
    fine_chroma: float = 0.2  # of the avatar's faint fine colour detail kept (frontal.soften_fine_chroma)
    fine_grain: float = 20.0  # the avatar's grain below this contrast (B+G+R levels) smoothed (frontal.smooth_fine_texture)
    rigid_irises: bool = True  # irises drawn whole over a clean eye (facewire.shared.render.iris), not stretched by the warp
    rigid_glasses: bool = True  # glasses the avatar wears drawn as one piece moving with the head (shared.render.glasses)
    held_iris_travel: float = 0.08  # of the eye's width: how far an iris left to the warp may move (0: free)
    # Of the way from a drawn iris's place in the avatar's eye to where its edge meets the corner: how far a glance
    # may take it, softly (eyes_mouth.limit_glance; 0: free). Half of it passes unchanged, so ordinary glances do.
    iris_reach: float = 0.8
    smooth_lids: bool = True  # closing lids smoothed into skin with a lash line (facewire.shared.render.lids)
    keep_occluders: bool = True  # hair and hands on the sender's face stay in front of an avatar (glasses: occlusion.glasses)
    # How far the sender's face outline, round an avatar, moves onto the avatar's retargeted outline (_with_outline):
    # 0 leaves the sender's jaw, cheeks and face width showing wherever they reach past the avatar's.
    avatar_silhouette: float = 1.0
    # The share of the face outline's own motion (beyond the head's similarity) that the hair ring takes with it
    # (_follow_outline), in self mode and round an avatar: 0 leaves the ring on the similarity, and a turned head
    # squeezes the keyframe's band beyond its near jaw into a dark line and stretches the far side's hair and ear.
    band_follow: float = 1.0
    occlusion: OcclusionOptions = field(default_factory=OcclusionOptions)


def _draw_order(vertices_z: npt.NDArray[np.float32], tris: IndexArray) -> npt.NDArray[np.intp]:
    holes = len(em.hole_triangles())
    skin_depth = vertices_z[tris[holes:]].mean(axis=1)
    # MediaPipe z is smaller towards the camera: draw far triangles first, near ones on top.
    return np.concatenate([np.arange(holes), holes + np.argsort(-skin_depth, kind="stable")])


def _depths(landmarks: Landmarks) -> npt.NDArray[np.float32]:
    extra = np.full(2 * em.EYE_RING_POINTS + 1, 0.0, np.float32)
    return np.concatenate([landmarks[:, 2], extra]).astype(np.float32)


def _ray_to_box(centre: Points, directions: Points, size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Distance along each unit direction from the centre to a box half an image larger on every side."""
    w, h = size
    lo = np.array([-0.5 * w, -0.5 * h])
    hi = np.array([1.5 * w, 1.5 * h])
    d = directions.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(d[:, 0] > 0, (hi[0] - centre[0]) / d[:, 0], (lo[0] - centre[0]) / d[:, 0])
        ty = np.where(d[:, 1] > 0, (hi[1] - centre[1]) / d[:, 1], (lo[1] - centre[1]) / d[:, 1])
    return np.nanmin(np.where(np.isfinite(np.stack([tx, ty])), np.stack([tx, ty]), np.inf), axis=0)


def _rings(oval: Points, centre: Points, size: tuple[int, int]) -> list[Points]:
    """Three rings around the face outline along rays from its centre: hair, shoulders, and a fixed far box.

    Built ray by ray (not by Delaunay) so every ring edge is a mesh edge: the layers never cross,
    and the outline shared with the face mesh stays a seam-free boundary.
    """
    offsets = oval.astype(np.float64) - centre
    radius = np.linalg.norm(offsets, axis=1)
    directions = offsets / np.maximum(radius, 1e-6)[:, None]
    far = np.maximum(_ray_to_box(centre, directions, size), radius + 3.0)
    r1 = np.minimum(_RING_SCALES[0] * radius, radius + 0.4 * (far - radius))
    r2 = np.minimum(_RING_SCALES[1] * radius, radius + 0.8 * (far - radius))
    return [(centre + directions * r[:, None]).astype(np.float32) for r in (r1, r2, far)]


def _keep_band(inner: Points, outer: Points, keyframe_gap: npt.NDArray[np.float64]) -> Points:
    """`outer` (a ring round `inner`, vertex by vertex) pushed out along the rays from `inner`'s centre
    wherever it lies closer to `inner` than `_MIN_BAND` of `keyframe_gap` (its distance in the keyframe,
    at this frame's scale).

    The hair ring follows the head as a whole (a similarity), the outline follows the face: when the
    head turns, the outline's far side runs up to the ring or past it, and the keyframe's band of
    jaw, its shadow and the hair's edge is squeezed into a line or folded over (a thin dark jagged
    line along an avatar's jaw, drawn on the coarse map's grid).
    """
    rays = inner.astype(np.float64) - inner.mean(axis=0)
    rays /= np.maximum(np.linalg.norm(rays, axis=1), 1e-6)[:, None]
    gap = np.sum((outer - inner) * rays, axis=1)
    push = np.maximum(_MIN_BAND * keyframe_gap - gap, 0.0)
    return (outer + rays * push[:, None]).astype(np.float32)


_MIN_BAND = 0.5  # of a ring band's keyframe width: a turned head in the test clips squeezes it to -0.3


def _follow_outline(ring: Points, residual: Points, share: float) -> Points:
    """The hair ring `ring` (placed by the head's similarity), vertex by vertex moved `share` of the outline's
    `residual`: how far each outline vertex lies from where the similarity puts it.

    The similarity is fitted to the whole face, and on a turned head the face's front (nose, eyes, mouth) slides
    sideways further than its sides: the near side's outline then lies outside where the similarity puts it and
    the far side's inside. A ring on the similarity squeezed the keyframe's band beyond the near jaw (jaw edge,
    the shadow under it, the hair's edge) into a dark line along the jaw (to half its width, _keep_band) and
    stretched the far side's to twice its width, the ear and hair there pulled out beside the far cheek. Moved with
    its outline vertex, the band keeps the width and shape the keyframe gives it (at the head's scale and roll).
    """
    if share <= 0.0:
        return ring
    return (ring + np.float32(share) * residual).astype(np.float32)


def _strip_triangles(count: int, layers: int) -> IndexArray:
    """Triangles joining consecutive closed rings of `count` vertices each, stored ring after ring.

    The first `count` triangles are a fan over the innermost ring from an extra last vertex (its
    centre): a coarse stand-in for the face mesh so the coarse body map is right up to the outline.
    """
    centre = layers * count
    tris = [(centre, k, (k + 1) % count) for k in range(count)]
    for layer in range(layers - 1):
        a0, b0 = layer * count, (layer + 1) * count
        for k in range(count):
            k1 = (k + 1) % count
            tris += [(a0 + k, a0 + k1, b0 + k), (a0 + k1, b0 + k1, b0 + k)]
    return np.array(tris, np.int32)


@dataclass(frozen=True)
class _KeyframeModel:
    kf: int
    packed: Image  # BGR + alpha as the fourth channel, warped in one remap
    landmarks: Landmarks
    src_vertices: Points  # extended mesh vertices in the keyframe
    border_tris: IndexArray
    border_src: Points  # vertices: oval, then the three rings
    mouth_ratio: float
    panels: tuple[Image, Image]  # the keyframe's mouth interior: its own teeth when it shows them, else synthetic
    shadow: npt.NDArray[np.float32] | None  # the dark of the keyframe's open mouth (None: not open), for a mouth closing
    whites: tuple[EyeWhite | None, EyeWhite | None]  # the keyframe's irises and whites of the eyes, for a gaze change
    image: Image  # the keyframe's picture (BGR), for an avatar's mouth interior
    support: npt.NDArray[np.int32]  # which keyframe rectangles hold any of the person (_support)


def _occluder(
    image: Image, landmarks: Landmarks, options: OcclusionOptions | None, alpha: Alpha | None, memory: SpectacleMemory | None = None
) -> npt.NDArray[np.uint8] | None:
    if options is None:
        return None
    mask = occluder_mask(image, landmarks, options, alpha, memory)
    if float(mask.max()) < 0.05:
        return None
    return np.asarray(np.clip(mask * 255.0 + 0.5, 0, 255), np.uint8)


def _prepare_keyframe(keyframe: KeyframeState) -> _KeyframeModel:
    assert keyframe.landmarks is not None
    lm = keyframe.landmarks.astype(np.float32)
    h, w = keyframe.image.shape[:2]
    alpha = keyframe.alpha if keyframe.alpha is not None else np.ones((h, w), np.float32)
    packed = np.dstack([keyframe.image, np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)])
    src_vertices = em.extended_vertices(lm)
    oval = lm[topo.face_oval_ring(), :2]
    centre = lm[topo.face_oval_ring(), :2].mean(axis=0)
    border_src = np.concatenate([oval, *_rings(oval, centre, (w, h)), centre[None]]).astype(np.float32)
    mouth = em.MouthFrame.of(lm)
    panels, _ = em.mouth_panels(keyframe.image, lm)
    return _KeyframeModel(
        kf=keyframe.kf,
        packed=packed,
        landmarks=lm,
        src_vertices=src_vertices,
        border_tris=_strip_triangles(len(oval), 4),
        border_src=border_src,
        mouth_ratio=mouth.ratio,
        panels=panels,
        shadow=em.interior_shadow(keyframe.image, lm),
        whites=eye_whites(keyframe.image, lm),
        image=keyframe.image,
        support=_support(packed[..., 3]),
    )


def _unpacked(packed: npt.NDArray[np.uint8]) -> tuple[Image, Alpha]:
    """The picture (BGR) and the alpha (0..1) of a warped BGRA keyframe."""
    alpha = cv2.extractChannel(packed, 3).astype(np.float32)
    alpha *= np.float32(1.0 / 255.0)  # in place: a frame-sized float array fewer
    return np.asarray(cv2.cvtColor(packed, cv2.COLOR_BGRA2BGR), np.uint8), alpha


def _apply(matrix: npt.NDArray[np.float64], points: Points) -> Points:
    return (points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


class MeshRenderer:
    """facewire.shared.types.Renderer: identity + keyframe + frame features -> the person at the frame geometry."""

    name = "mesh"

    def __init__(self, options: MeshOptions | None = None) -> None:
        self.options = options or MeshOptions()
        self._keyframe_state: KeyframeState | None = None
        self._keyframe: _KeyframeModel | None = None  # None while the keyframe shows no usable face
        self._texture_now: Texture | None = None  # the avatar being drawn; None: the sender's own face
        self._textures: dict[str, Texture | None] = {}
        self._plan: tuple[_KeyframeModel, Texture, RetargetPlan] | None = None
        self._lashes: tuple[Texture, dict[int, LashSource]] | None = None  # the avatar's lash strips by level (its width)
        # _palette_panels: the narrow (False) and wide (True) palettes' panels built so far for a keyframe and avatar
        self._cavity: tuple[_KeyframeModel, Texture, dict[bool, tuple[Image, Image]]] | None = None
        # 255 where glasses, hair or a hand cover the keyframe's face (None: nothing does). Found only
        # when an avatar is drawn (~30 ms a keyframe), so self mode never pays for it.
        self._occluder: tuple[_KeyframeModel, bool, npt.NDArray[np.uint8] | None] | None = None
        self._spectacles = SpectacleMemory()  # the sender's glasses, carried from keyframe to keyframe
        # Self mode warps only the bands of rows the person can reach (`_reach`): elsewhere the picture is black
        # and the alpha 0. True: the whole frame, for an owner that shows the keyframe's surroundings too (the
        # compositor's `blur` background is made of the person's picture).
        self.draw_room = False

    def prepare_keyframe(self, keyframe: KeyframeState) -> None:
        h, w = keyframe.image.shape[:2]
        self._keyframe_state = keyframe
        self._keyframe = _prepare_keyframe(keyframe) if _usable(keyframe.landmarks, (w, h)) else None

    def prepare_identity(self, identity: IdentityAsset | None) -> None:
        self._texture_now = self._texture(identity) if identity is not None and not is_self(identity) else None

    def _texture(self, identity: IdentityAsset) -> Texture | None:
        """The prepared avatar, or None for an asset without a usable face (said once, then self mode)."""
        if identity.asset_id in self._textures:
            return self._textures[identity.asset_id]
        texture: Texture | None = None
        try:
            if identity.image is None:
                raise IdentityError(f"identity {identity.asset_id[:12]} has no image")
            if identity.landmarks is None or identity.landmarks.shape != (topo.MESH_SIZE, 3):
                identity = identity_from_image(identity.image, identity.asset_id)
            assert identity.landmarks is not None and identity.image is not None
            texture = prepare_texture(
                identity.image,
                identity.landmarks,
                mirror_fill=self.options.mirror_fill,
                fine_chroma=self.options.fine_chroma,
                fine_grain=self.options.fine_grain,
                delighting=self.options.delight,
                rigid_irises=self.options.rigid_irises,
                rigid_glasses=self.options.rigid_glasses,
            )
        except IdentityError as exc:
            log.warning("identity %s is unusable, showing the sender instead: %s", identity.asset_id[:12], exc)
        if len(self._textures) >= 8:  # a session switches between a handful of identities
            self._textures.pop(next(iter(self._textures)))
        self._textures[identity.asset_id] = texture
        return texture

    def render(self, frame: FrameState) -> RenderedPerson:
        keyframe, model = self._keyframe_state, self._keyframe
        if keyframe is None:
            raise RuntimeError("MeshRenderer.render before prepare_keyframe")
        h, w = keyframe.image.shape[:2]
        if frame.face == "lost" or model is None or not _usable(frame.landmarks, (w, h)):
            alpha = _pick_alpha(frame.alpha, keyframe.alpha, (h, w))
            return RenderedPerson(keyframe.image, alpha)
        assert frame.landmarks is not None
        dst = frame.landmarks.astype(np.float32)
        texture = self._texture_now
        avatar = texture is not None
        sender: AlignedSender | None = None  # the sender in the keyframe's head frame: the retarget's and the lips'
        target: Landmarks | None = None
        if texture is not None:
            sender = align_sender(self._retarget_plan(model, texture), dst)
            target = self._avatar_target(model, texture, sender)
        reach = frame.alpha is None and not avatar and not self.draw_room and w * h >= _REACH_FROM
        # Under an avatar the keyframe face shows only at the feathered edge: the coarse fan will do. `reach`
        # draws the face's map itself, into the bands it warps.
        body_dst = dst if target is None else _with_outline(dst, target, self.options.avatar_silhouette)
        maps = self._keyframe_map(model, body_dst, (w, h), coarse_face=avatar or reach, body_motion=frame.body, keep_bands=avatar)
        if frame.alpha is not None:
            # The sender's own matte wins: the keyframe's alpha need not be warped.
            alpha = _pick_alpha(frame.alpha, None, (h, w))
            image = _warp_person(keyframe.image, maps, alpha)
        elif reach:
            image, alpha = _unpacked(self._warp_reach(model, dst, frame, maps))
        else:
            image, alpha = _unpacked(maps.remap(model.packed))
        if not avatar:
            reveal_whites(image, dst, model.whites)
            if self.options.smooth_lids:
                close_lids(image, dst, model.landmarks)
            em.shade_narrowed(image, dst, model.mouth_ratio, model.shadow)
            em.composite_cavity(image, dst, model.panels, model.mouth_ratio)
        else:
            assert texture is not None and target is not None and sender is not None
            self._render_avatar(image, texture, model, self._keyframe_occluder(model, keyframe, texture), dst, sender, target,
                                body_dst, alpha, maps)
        return RenderedPerson(image, alpha)

    def render_region(self, frame: FrameState, region: Region) -> RenderedPerson:
        """`render(frame)` with `draw_room` exactly inside `region` (frame pixels), for the sender's replica of the
        receiver, which needs only the face box (the residual layer's): the whole frame's warp costs ~3x more.
        (A render without `draw_room` is the same wherever its alpha is above 0 or the layer's fusion reads: the
        layer is coded against the full warp, so what the sender sends does not depend on the receiver's bands.)

        The region is grown by what the lids and the mouth's cavity read (`_drawn_region`); outside that
        the picture is the keyframe's and the alpha 0. Self mode without a frame matte only (what the
        replica draws); anything else draws the whole frame.
        """
        keyframe, model = self._keyframe_state, self._keyframe
        if keyframe is None:
            raise RuntimeError("MeshRenderer.render_region before prepare_keyframe")
        h, w = keyframe.image.shape[:2]
        if (self._texture_now is not None or frame.alpha is not None or frame.face == "lost" or model is None
                or not _usable(frame.landmarks, (w, h))):
            return self.render(frame)
        assert frame.landmarks is not None
        dst = frame.landmarks.astype(np.float32)
        sy, sx = _drawn_region(region, dst, (w, h))
        if (sy.stop - sy.start) * (sx.stop - sx.start) > _WHOLE_FRAME_SHARE * w * h:
            return self.render(frame)  # a face filling the frame: a part would cost more (crops, copies) than it saves
        image = keyframe.image.copy()
        alpha = np.zeros((h, w), np.float32)
        if sy.stop > sy.start and sx.stop > sx.start:
            # the body map's box equals its full map's crop (CoarseMap.box), the face map is the same one
            # cut to the box, and remap reads each output pixel from its own map value: the same bytes
            body = self._keyframe_map(model, dst, (w, h), coarse_face=True, body_motion=frame.body)
            maps = np.ascontiguousarray(body.box(sy, sx))
            self._face_maps(model, dst, (w, h), maps, (sy, sx))
            image[sy, sx], alpha[sy, sx] = _unpacked(remap(model.packed, maps))
            reveal_whites(image, dst, model.whites)
        if self.options.smooth_lids:
            close_lids(image, dst, model.landmarks)
        em.shade_narrowed(image, dst, model.mouth_ratio, model.shadow)
        em.composite_cavity(image, dst, model.panels, model.mouth_ratio)
        return RenderedPerson(image, alpha)

    def _avatar_panels(self, model: _KeyframeModel, texture: Texture, ratio: float) -> tuple[Image, Image]:
        """The mouth interior under an avatar opened `ratio` (opening / width): synthetic teeth in the keyframe's light,
        the avatar's hue (em.avatar_palette), the colour cast match_shading gives the avatar's skin (em.scene_cast), teeth
        in the colour real teeth take beside the keyframe's skin (em.scene_teeth).

        Not the keyframe's own interior when it shows one: copied from inside the sender's inner lips it brings the
        rim of the sender's lips (a red band of lipstick inside the avatar's mouth) and the sender's teeth, cut off
        where the keyframe's opening ended, with darkness below them (a slash across a smile).
        The narrow and wide palettes' panels are blended by the opening, each built once per keyframe and avatar when
        an opening first needs it (~3 ms each): most keyframes' first frames need one or none, and drawing that frame
        is slow already (the keyframe's occluders, the retarget plan).
        """
        lo, hi = em.WIDE_OPENING
        w = float(np.clip((ratio - lo) / (hi - lo), 0.0, 1.0))
        if w <= 0.0:
            return self._palette_panels(model, texture, wide=False)
        if w >= 1.0:
            return self._palette_panels(model, texture, wide=True)
        narrow, wide = self._palette_panels(model, texture, wide=False), self._palette_panels(model, texture, wide=True)
        return (cv2.addWeighted(wide[0], w, narrow[0], 1.0 - w, 0.0), cv2.addWeighted(wide[1], w, narrow[1], 1.0 - w, 0.0))

    def _palette_panels(self, model: _KeyframeModel, texture: Texture, wide: bool) -> tuple[Image, Image]:
        """The synthetic panels of the narrow or the wide palette (_avatar_panels), kept for the keyframe and avatar."""
        if self._cavity is None or self._cavity[0] is not model or self._cavity[1] is not texture:
            self._cavity = (model, texture, {})
        built = self._cavity[2]
        if wide not in built:
            cast = em.scene_cast(model.image, model.landmarks, texture.image, texture.landmarks, self.options.blend.chroma_strength)
            palette = em.avatar_palette(texture.lips, cast, wide=wide, teeth=em.scene_teeth(model.image, model.landmarks))
            built[wide] = em.synthetic_panels(em.skin_tone(model.image, model.landmarks), palette)
        return built[wide]

    def _keyframe_occluder(self, model: _KeyframeModel, keyframe: KeyframeState, texture: Texture) -> npt.NDArray[np.uint8] | None:
        """The keyframe's occluders kept in front of the avatar `texture`. The sender's glasses only when asked
        (`OcclusionOptions.glasses`), and never over an avatar that wears its own: the two pairs, each at its own
        face's place and size, would both show (double rims), and the avatar's are part of the look its user chose."""
        own = texture.glasses is not None
        cached = self._occluder
        if cached is not None and cached[0] is model and cached[1] == own:
            return cached[2]
        options = self.options.occlusion if self.options.keep_occluders else None
        if options is not None and own:
            options = replace(options, glasses=False)
        occluder = _occluder(keyframe.image, model.landmarks, options, keyframe.alpha, self._spectacles)
        self._occluder = (model, own, occluder)
        return occluder

    def _retarget_plan(self, model: _KeyframeModel, texture: Texture) -> RetargetPlan:
        cached = self._plan
        if cached is not None and cached[0] is model and cached[1] is texture:
            return cached[2]
        plan = plan_retarget(model.landmarks, texture.landmarks, self.options.retarget)
        self._plan = (model, texture, plan)
        return plan

    def _lash_source(self, texture: Texture, level: Image, to_level: npt.NDArray[np.float64]) -> LashSource:
        """The avatar's own lash strips (close_lids' `own_lashes`) in its picture's `level`, sampled once a level: a
        face whose width hovers at a level's edge switches levels from frame to frame."""
        if self._lashes is None or self._lashes[0] is not texture:
            self._lashes = (texture, {})
        built = self._lashes[1]
        if level.shape[1] not in built:  # a texture's levels differ in width
            built[level.shape[1]] = LashSource.of(level, _apply(to_level, texture.landmarks[:, :2]))
        return built[level.shape[1]]

    def _avatar_target(self, model: _KeyframeModel, texture: Texture, sender: AlignedSender) -> Landmarks:
        """The avatar's landmarks with the sender's expression at the sender's pose (retarget), irises held
        (those left to the warp) or limited to the avatar's own eye (those drawn whole)."""
        target = apply_retarget(self._retarget_plan(model, texture), sender)
        if self.options.held_iris_travel > 0:
            held = (texture.irises[0] is None, texture.irises[1] is None)
            target = em.hold_irises(target, texture.landmarks, held, self.options.held_iris_travel)
        if self.options.iris_reach > 0:
            drawn = (texture.irises[0] is not None, texture.irises[1] is not None)
            target = em.limit_glance(target, texture.landmarks, drawn, self.options.iris_reach)
        return target

    def _face_step(self, landmarks: Landmarks) -> int:
        if self.options.face_step > 0:
            return self.options.face_step
        return 1 if bl.face_width(landmarks) < _FINE_FACE_WIDTH else 2

    def _keyframe_map(self, model: _KeyframeModel, dst: Landmarks, size: tuple[int, int], coarse_face: bool = False,
                      body_motion: Affine | None = None, keep_bands: bool = False) -> CoarseMap:
        """The backward map taking the keyframe to this frame: body rings, and the dense face mesh unless coarse.

        The inner ring follows the head; the far box follows the body's coded motion (`body_motion`, frame to
        keyframe; None: the body stays where the keyframe has it); the middle ring (about the shoulders and
        the hair's ends) moves `ring_follow` of the way with the head, or with the body's motion
        `body_ring_follow` of the way with the head and the rest with the body. `keep_bands`: no ring comes
        closer to the one inside it than `_MIN_BAND` of its keyframe distance (_keep_band).
        """
        opts = self.options
        motion = similarity_2d(model.landmarks, dst)
        n_oval = len(topo.face_oval_ring())
        ring1, ring2 = model.border_src[n_oval : 2 * n_oval], model.border_src[2 * n_oval : 3 * n_oval]
        far = model.border_src[3 * n_oval : 4 * n_oval]
        src = model.border_src
        body_ring2, follow = ring2, opts.ring_follow
        if body_motion is not None:
            follow = opts.body_ring_follow
            # The far box stays put in the frame and reads the keyframe where the body came from.
            src = np.concatenate([src[: 3 * n_oval], _apply(body_motion, far), src[4 * n_oval :]])
            body_ring2 = _apply(cv2.invertAffineTransform(body_motion), ring2)
        ring2_dst = ring2 + follow * (_apply(motion, ring2) - ring2) + (1.0 - follow) * (body_ring2 - ring2)
        oval = dst[topo.face_oval_ring(), :2]
        oval_src = model.border_src[:n_oval]
        ring1_dst = _follow_outline(_apply(motion, ring1), oval - _apply(motion, oval_src), opts.band_follow)
        if keep_bands:
            scale = float(np.hypot(motion[0, 0], motion[1, 0]))
            ring1_dst = _keep_band(oval, ring1_dst, scale * np.linalg.norm(ring1 - oval_src, axis=1))
            ring2_dst = _keep_band(ring1_dst, ring2_dst, scale * np.linalg.norm(ring2 - ring1, axis=1))
        border_dst = np.concatenate([oval, ring1_dst, ring2_dst, far, oval.mean(axis=0, keepdims=True)])
        tris = model.border_tris
        full = Region.full(size)
        fallback = cv2.invertAffineTransform(motion)
        body = CoarseMap.build(border_dst[tris], src[tris], full, opts.body_step, None, fallback)
        if coarse_face:
            return body  # upsampled later only where the person is
        maps = body.full()
        self._face_maps(model, dst, size, maps)
        return CoarseMap(maps, full, 1)

    def _face_maps(self, model: _KeyframeModel, dst: Landmarks, size: tuple[int, int], maps: PointMap,
                   box: tuple[slice, slice] | None = None) -> None:
        """Overwrite the body map inside the face with the dense mesh warp (eyes, lids, mouth); `maps` covers
        the frame, or the frame's rows and columns `box`."""
        _paste_face(maps, self._face_warp(model, dst, size), size, box)

    def _face_warp(self, model: _KeyframeModel, dst: Landmarks, size: tuple[int, int]) -> _FaceWarp:
        mesh_tris = em.mesh_triangles()
        dst_vertices = em.extended_vertices(dst)
        step = self._face_step(dst)
        region = _face_map_region(dst_vertices, size, step)
        order = _draw_order(_depths(dst), mesh_tris)
        src = em.lid_source_vertices(model.src_vertices, model.landmarks, dst)[mesh_tris]
        face, covered = warp_map(dst_vertices[mesh_tris], src, region, step, order)
        return face, covered, region

    def _warp_reach(self, model: _KeyframeModel, dst: Landmarks, frame: FrameState, body: CoarseMap) -> npt.NDArray[np.uint8]:
        """The packed keyframe (BGRA) warped like `remap(model.packed, full map)` in the bands of rows `_reach`
        finds, 0 elsewhere: the same bytes wherever the alpha can be above 0 or the layer's fusion reads them."""
        h, w = model.packed.shape[:2]
        size = (w, h)
        face = self._face_warp(model, dst, size)
        # The face's map region, grown by what the lids and the cavity read (_drawn_region), and the alpha fix's
        # box are drawn whole: the face's own map and the fix place the person there whatever the body map says.
        extra = [_drawn_region(face[2], dst, size)]
        if frame.alpha_fix is not None:
            extra.append(_fix_box(frame.alpha_fix, size))
        bands = _reach(body, model.support, size, extra, layer_reach(dst))
        if bands is None:
            maps = body.full()
            _paste_face(maps, face, size)
            return remap(model.packed, maps)
        out = np.empty_like(model.packed)
        done = 0  # rows above this are written
        for ys, xs in bands:
            out[done : ys.start] = 0
            out[ys, : xs.start] = 0
            out[ys, xs.stop :] = 0
            done = ys.stop
            maps = body.box(ys, xs)  # the full map's crop (CoarseMap.box), the face's map pasted as on the full map
            _paste_face(maps, face, size, (ys, xs))
            # pointwise: a band's fixed-point maps are the full map's cut to it, so its pixels are the full remap's
            fixed, fraction = cv2.convertMaps(maps, None, cv2.CV_16SC2)
            cv2.remap(model.packed, fixed, fraction, cv2.INTER_LINEAR, dst=out[ys, xs], borderMode=cv2.BORDER_REPLICATE)
        out[done:] = 0
        return out

    def _render_avatar(
        self,
        image: Image,
        texture: Texture,
        model: _KeyframeModel,
        keyframe_occluder: npt.NDArray[np.uint8] | None,
        dst: Landmarks,
        sender: AlignedSender,
        target: Landmarks,
        body_dst: Landmarks,
        alpha: Alpha,
        maps: CoarseMap,
    ) -> None:
        """The avatar's face drawn at `target` (_avatar_target) over `image`, the keyframe warped to `body_dst`;
        `sender` is the sender's landmarks `dst` aligned to the keyframe's head (align_sender)."""
        opts = self.options
        size = (image.shape[1], image.shape[0])
        mesh_tris = em.mesh_triangles()
        dst_vertices = em.extended_vertices(target, inside=True)  # as the texture's src_vertices
        step = self._face_step(target)
        width = bl.face_width(target)
        region = _face_region(dst_vertices, size, step, bl.shading_scale(width, opts.blend))
        order = _draw_order(_depths(target), mesh_tris)
        level, to_level = texture.level_for(width)
        closings = em.eye_closings(dst, model.landmarks)  # the sender's: an avatar's lids are drawn by them
        src = _apply(to_level, em.lid_source_vertices(texture.src_vertices, texture.landmarks, target, closings))[mesh_tris]
        # Outside the mesh (the feathered edge reaches a little past it) sample the avatar's own
        # surroundings under the same head motion, not whatever the identity map would hit.
        fallback = to_level @ np.vstack([similarity_2d(target, texture.landmarks), [0.0, 0.0, 1.0]])
        face_map, covered = _inner_warp_map(dst_vertices[mesh_tris], src, region, step, order, fallback)
        face = remap(level, face_map)
        sy, sx, py, px = region.clip_to(size)
        if sy.stop <= sy.start or sx.stop <= sx.start:
            return  # the face is entirely outside the picture
        face = face[py, px]
        base = image[sy, sx]
        mask = bl.face_mask(target, region, opts.blend)[py, px] * (covered[py, px] * np.float32(1.0 / 255.0))
        origin = np.array([sx.start, sy.start], np.float32)
        midline = (target[topo.NOSE_BRIDGE, :2] - origin, target[topo.CHIN, :2] - origin)
        local = target.copy()
        local[:, :2] -= origin
        # Irises and lids before the shading: they take the scene's light with the rest of the face.
        draw_irises(face, local, texture.irises)
        if opts.smooth_lids:
            # How shut the sender's eyes are, not the avatar's retargeted ones (close_lids' `closings`).
            own = self._lash_source(texture, level, to_level)
            close_lids(face, local, texture.landmarks, REDRAWN, closings, own)
        draw_glasses(face, local, texture.glasses)  # in front of the lids, lit with the rest
        # The retargeted avatar closes its lips with the sender's (retarget.plan_retarget): a picture's open mouth
        # then shows its shadow, like the sender's own closing from an open keyframe.
        em.shade_narrowed(face, local, texture.mouth_ratio, texture.shadow)
        face = np.ascontiguousarray(bl.match_shading(face, base, mask, width, opts.blend, midline))
        # The cavity goes in after the shading so teeth keep their colour; panels are lit like the scene.
        ratio = em.MouthFrame.of(local).ratio
        if em.cavity_strength(ratio, texture.mouth_ratio) > 0.0:  # else no cavity: its panels need not be built
            bared = lip_retraction(self._retarget_plan(model, texture), sender)
            em.composite_cavity(face, local, self._avatar_panels(model, texture, ratio), texture.mouth_ratio, bared)
        occluder = None
        if keyframe_occluder is not None:
            # The keyframe's occluders, carried to this frame by the keyframe's own dense face warp: the
            # body map's coarse fan puts a strand at the temple in the middle of a turned face.
            occluder = _warp_occluder(keyframe_occluder, _dense_keyframe_box(model, body_dst, maps, sy, sx))
        weight = bl.swap_weight(mask, alpha[sy, sx], occluder)
        image[sy, sx] = bl.blend(base, face, weight)


_FaceWarp = tuple[PointMap, npt.NDArray[np.uint8], Region]  # the dense face map, its coverage (255: covered), its region


def _paste_face(maps: PointMap, warp: _FaceWarp, size: tuple[int, int], box: tuple[slice, slice] | None = None) -> None:
    """The face's map written over `maps` (the frame's, or its rows and columns `box`) where every coarse sample
    was inside the mesh: the outline band keeps the body map."""
    face, covered, region = warp
    sy, sx, py, px = region.clip_to(size)
    if box is not None:
        sy, py = _cut(sy, py, box[0])
        sx, px = _cut(sx, px, box[1])
        if sy.stop <= sy.start or sx.stop <= sx.start:
            return
    # cv2.copyTo writes into the view in place (20x np.where); assigning its result keeps that certain.
    inside = cv2.compare(covered[py, px], 250, cv2.CMP_GE)
    maps[sy, sx] = cv2.copyTo(np.ascontiguousarray(face[py, px]), inside, maps[sy, sx])


def _cut(frame: slice, local: slice, box: slice) -> tuple[slice, slice]:
    """`frame` (and the same span of a region's array, `local`) cut to `box`, then made relative to `box`."""
    start, stop = max(frame.start, box.start), min(frame.stop, box.stop)
    stop = max(stop, start)
    offset = local.start - frame.start
    return slice(start - box.start, stop - box.start), slice(start + offset, stop + offset)


def _drawn_region(region: Region, dst: Landmarks, size: tuple[int, int]) -> tuple[slice, slice]:
    """The frame rows and columns `render_region` draws: `region` and whatever the lids and the cavity read
    there, clipped to the frame. close_lids reads an eye's outline and crease grown by 0.3 of the eye's
    width + 2 px, composite_cavity the inner lips grown by 2 px: all within the face's landmarks grown
    by half an eye's span + 4 px."""
    points = dst[:, :2].astype(np.float64)
    eye = max(float(np.hypot(*np.ptp(points[ring], axis=0))) for ring in (topo.right_eye_ring(), topo.left_eye_ring()))
    pad = int(np.ceil(0.5 * eye)) + 4
    lo, hi = np.floor(points.min(axis=0)) - pad, np.ceil(points.max(axis=0)) + pad
    x0, y0 = max(0, min(region.x0, int(lo[0]))), max(0, min(region.y0, int(lo[1])))
    x1 = min(size[0], max(region.x0 + region.width, int(hi[0])))
    y1 = min(size[1], max(region.y0 + region.height, int(hi[1])))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


_OCCLUDER_STEP = 4  # occluders are soft masks: the keyframe's face map on a 4-px grid is fine enough


def _with_outline(dst: Landmarks, target: Landmarks, share: float) -> Landmarks:
    """The sender's landmarks `dst` with the face outline moved `share` of the way onto the avatar's (`target`): what
    the keyframe round the face is warped to.

    The avatar is drawn inside its own outline, and the keyframe shows round it. Warped to the sender's own outline,
    the sender's cheeks and jaw showed wherever they reach past the avatar's (a wide face round a narrower avatar:
    a flat mask with the avatar's features in the middle), and the sender's matte cut off an avatar wider than the
    sender. Warped to the avatar's, the keyframe's face edge meets the avatar's, and the hair, ears and neck round it
    follow through the rings (keep_bands).
    """
    if share <= 0.0:
        return dst
    out = dst.copy()
    oval = topo.face_oval_ring()
    out[oval, :2] += np.float32(share) * (target[oval, :2] - dst[oval, :2])
    return out


def _dense_keyframe_box(model: _KeyframeModel, dst: Landmarks, maps: CoarseMap, sy: slice, sx: slice) -> PointMap:
    """The keyframe-to-frame map over the box (sy, sx): the dense face mesh where it covers, the body map elsewhere."""
    step = _OCCLUDER_STEP
    height, width = sy.stop - sy.start, sx.stop - sx.start
    region = Region(sx.start, sy.start, -(-width // step) * step, -(-height // step) * step)
    mesh_tris = em.mesh_triangles()
    dst_vertices = em.extended_vertices(dst)
    order = _draw_order(_depths(dst), mesh_tris)
    src = em.lid_source_vertices(model.src_vertices, model.landmarks, dst)[mesh_tris]
    face, covered = warp_map(dst_vertices[mesh_tris], src, region, step, order)
    body = maps.box(sy, sx)
    inside = cv2.compare(covered[:height, :width], 250, cv2.CMP_GE)
    return np.asarray(cv2.copyTo(np.ascontiguousarray(face[:height, :width]), inside, body), np.float32)


def _warp_occluder(occluder: npt.NDArray[np.uint8], maps: PointMap) -> npt.NDArray[np.float32]:
    """The occluder mask (0..1) remapped by `maps`, looked up only where the map reads near its support.

    Occluders are mostly a lock of hair or a frame of glasses: a small part of the face region. Bilinear
    lookups read the two pixels around the source point, so outside the support grown by a pixel (and
    the frame's border, which the lookup replicates) the result is 0 without looking.
    """
    out = np.zeros(maps.shape[:2], np.float32)
    x, y, w, h = cv2.boundingRect(occluder)
    if w == 0 or h == 0:
        return out
    rows, cols = occluder.shape
    # A tenth of a pixel more: fixed-point lookups round the source point to 1/32 of a pixel.
    lo = (x - 1.1 if x > 0 else -np.inf, y - 1.1 if y > 0 else -np.inf)
    hi = (x + w + 0.1 if x + w < cols else np.inf, y + h + 0.1 if y + h < rows else np.inf)
    reads = cv2.inRange(maps, lo, hi)
    bx, by, bw, bh = cv2.boundingRect(reads)
    if bw > 0 and bh > 0:
        box = (slice(by, by + bh), slice(bx, bx + bw))
        out[box] = remap(occluder, maps[box]).astype(np.float32) * np.float32(1.0 / 255.0)
    return out


def _inner_warp_map(dst: Points, src: Points, region: Region, step: int, order: npt.NDArray[np.intp],
                    fallback: npt.NDArray[np.float64]) -> tuple[PointMap, npt.NDArray[np.uint8]]:
    """warp_map over `region` computed one coarse sample wider on every side and cut back: the upsampled
    map at the region's border rows is then interpolated like inside, not held at the last sample,
    so where the region ends (the frame's edge, say) changes nothing."""
    wide = Region(region.x0 - step, region.y0 - step, region.width + 2 * step, region.height + 2 * step)
    maps, covered = warp_map(dst, src, wide, step, order, fallback)
    inner = (slice(step, step + region.height), slice(step, step + region.width))
    return maps[inner], covered[inner]


def _face_map_region(vertices: Points, size: tuple[int, int], step: int) -> Region:
    """Where the dense face map is drawn (`_face_maps`): the mesh's extended vertices' box, 2 px wider."""
    return Region.around(vertices, size, 2, step)


# AlphaFix's tiles (32 px, shared.types): alpha_fix.TILE_PX, which mesh cannot import (alpha_fix loads the replica,
# which loads mesh); tests/test_render_reach.py holds the two equal.
FIX_TILE_PX = 32


def _fix_box(fix: AlphaFix, size: tuple[int, int]) -> tuple[slice, slice]:
    """The frame rows and columns `alpha_fix.apply_fix` may change: its held tiles' box grown by a tile."""
    rows, columns = np.nonzero(fix.held)
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    r0, r1 = max(int(rows.min()) - 1, 0), int(rows.max()) + 2
    c0, c1 = max(int(columns.min()) - 1, 0), int(columns.max()) + 2
    t = FIX_TILE_PX
    return slice(r0 * t, min(r1 * t, size[1])), slice(c0 * t, min(c1 * t, size[0]))


# Below this many pixels the whole frame is warped: finding the bands costs ~0.5 ms, and at 640x480 (d6, w1) that
# was more than the bands saved (+0.4..0.6 ms a frame); at 1280x720 they save 0..0.8 ms.
_REACH_FROM = 600_000
_SUPPORT_CELL = 4  # px a side: the keyframe's support kept per cell, a table small enough for the cache


def _support(alpha8: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """The integral image (one row and column of 0 first) of `_SUPPORT_CELL`-px cells holding a pixel with alpha > 0."""
    h, w = alpha8.shape
    c = _SUPPORT_CELL
    padded = np.zeros((-(-h // c) * c, -(-w // c) * c), np.uint8)
    padded[:h, :w] = alpha8 > 0
    cells = padded.reshape(padded.shape[0] // c, c, padded.shape[1] // c, c).max(axis=(1, 3))
    return np.asarray(cv2.integral(cells, sdepth=cv2.CV_32S), np.int32)


_REACH_BLOCK = 4  # coarse body-map samples a side of a reach block (16 px at the default step of 4)
_BAND = 64  # rows a remap call covers: fewer calls, and body.box's margin rows are a smaller share of each


def _reach(body: CoarseMap, support: npt.NDArray[np.int32], size: tuple[int, int], extra: list[tuple[slice, slice]],
           radius: int) -> list[tuple[slice, slice]] | None:
    """Bands of rows (each a span of columns) holding every pixel where the warped keyframe alpha can be above 0,
    the boxes `extra`, and all within `radius` pixels of them; None: warp the whole frame.

    A pixel's map value lies between its neighbouring coarse samples' (bilinear upsampling by the integer
    step), and remap reads the two source pixels around it (rounded to 1/32 px, the border replicated): a
    block whose neighbours' map box, so grown, holds no keyframe pixel with alpha > 0 (`support`, the integral
    image) warps to alpha 0 exactly, whatever the body's motion.
    """
    w, h = size
    k, g = body.step, _REACH_BLOCK
    rows, cols = body.coarse.shape[:2]
    if body.region != Region.full(size) or k < 2 or rows * k != h or cols * k != w or w * h < max(_REACH_FROM, FIXED_POINT_PIXELS):
        return None
    # block (i, j) holds samples g*i .. g*i+g-1, whose pixels read the map from samples g*i-1 .. g*i+g
    kernel = np.ones((g + 2, g + 2), np.uint8)
    # every g-th sample by a nearest resize (an integer factor picks samples g*i): numpy's strided copy of the
    # 2-channel map costs 0.15 ms
    blocks = (-(-cols // g), -(-rows // g))
    lo = cv2.resize(cv2.erode(body.coarse, kernel, anchor=(1, 1), borderType=cv2.BORDER_REPLICATE), blocks,
                    interpolation=cv2.INTER_NEAREST) if cols % g == 0 and rows % g == 0 else None
    if lo is None:
        return None
    hi = cv2.resize(cv2.dilate(body.coarse, kernel, anchor=(1, 1), borderType=cv2.BORDER_REPLICATE), blocks,
                    interpolation=cv2.INTER_NEAREST)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    # the source box read: from the pixel below the lowest point to the one after the highest (0.1: the
    # fixed point's 1/32-px rounding and the float resize's), clamped like the replicated border; exclusive end
    # (cv2 with per-channel scalars: numpy's clip to per-channel bounds costs 0.25 ms here; from 0 up the
    # integer conversion truncates, which is the floor: first = floor(lo - 0.1), last = floor(hi + 0.1) + 2)
    top_left, room = (0.0, 0.0, 0.0, 0.0), (w - 1.0, h - 1.0, 0.0, 0.0)
    first = cv2.min(cv2.max(cv2.subtract(lo, (0.1, 0.1, 0.0, 0.0)), top_left), room).astype(np.int32)
    last = cv2.min(cv2.max(cv2.add(hi, (1.1, 1.1, 0.0, 0.0)), top_left), room).astype(np.int32) + 1
    # in the support's cells: the cell of the first pixel read to the one after the last's
    c = _SUPPORT_CELL
    first //= c
    last = (last + (c - 1)) // c
    stride = support.shape[1]
    top, bottom = first[..., 1] * stride, last[..., 1] * stride
    flat = support.reshape(-1)
    held = flat.take(bottom + last[..., 0]) - flat.take(top + last[..., 0]) - flat.take(bottom + first[..., 0]) \
        + flat.take(top + first[..., 0])
    block = g * k
    reached = (held > 0).astype(np.uint8)
    for ys, xs in extra:
        if ys.stop > ys.start and xs.stop > xs.start:
            reached[ys.start // block : -(-ys.stop // block), xs.start // block : -(-xs.stop // block)] = 1
    grow = -(-radius // block)
    if grow > 0:
        reached = cv2.dilate(reached, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    per_band = _BAND // block
    bands: list[tuple[slice, slice]] = []
    for r in range(0, reached.shape[0], per_band):
        columns = np.flatnonzero(reached[r : r + per_band].any(axis=0))
        if len(columns):
            bands.append((slice(r * block, min((r + per_band) * block, h)),
                          slice(int(columns[0]) * block, min((int(columns[-1]) + 1) * block, w))))
    return bands


def _face_region(points: Points, size: tuple[int, int], step: int, grid: int = 4) -> Region:
    """The face's region on a fixed grid of `grid` pixels (corners at multiples of it), clipped to the frame.

    blend.match_shading works at a quarter or an eighth of the size (blend.shading_scale): with sides a
    multiple of that OpenCV takes its exact block averaging, three times faster than area resizing by a
    fractional factor. A fixed grid also keeps the face map's samples at the same frame positions from
    frame to frame.
    """
    k = int(np.lcm(step, grid))
    x0 = max(0, int(np.floor((points[:, 0].min() - 2) / k)) * k)
    y0 = max(0, int(np.floor((points[:, 1].min() - 2) / k)) * k)
    x1 = min(-(-size[0] // k) * k, int(np.ceil((points[:, 0].max() + 2) / k)) * k)
    y1 = min(-(-size[1] // k) * k, int(np.ceil((points[:, 1].max() + 2) / k)) * k)
    return Region(x0, y0, max(k, x1 - x0), max(k, y1 - y0))


def _warp_person(image: Image, maps: CoarseMap, alpha: Alpha) -> Image:
    """The keyframe warped by `maps` where the person is (alpha > 0, its bounding box); as it is elsewhere.

    Nothing outside the matte shows over a background, and a blurred-keyframe background sees the
    room at 1/8 size: warping the whole frame would spend most of the remap on pixels never seen.
    """
    x, y, bw, bh = cv2.boundingRect(cv2.compare(alpha, 0.0, cv2.CMP_GT))
    h, w = image.shape[:2]
    if bw * bh > _WHOLE_FRAME_SHARE * w * h:
        return maps.remap(image)
    out = image.copy()
    if bw > 0 and bh > 0:
        box = (slice(y, y + bh), slice(x, x + bw))
        out[box] = remap(image, maps.box(*box))
    return out


# Above this share of the frame the person's box is warped as a whole frame (one call, no copy).
_WHOLE_FRAME_SHARE = 0.85


def _usable(landmarks: Landmarks | None, size: tuple[int, int]) -> bool:
    """Finite, a face at least a few pixels wide, and at least partly inside the picture."""
    if landmarks is None or landmarks.shape != (topo.MESH_SIZE, 3) or not np.isfinite(landmarks).all():
        return False
    lo, hi = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
    if float(np.min(hi - lo)) < 4.0:
        return False
    return bool(hi[0] > 0 and hi[1] > 0 and lo[0] < size[0] and lo[1] < size[1])


def _pick_alpha(frame_alpha: Alpha | None, fallback: Alpha | None, shape: tuple[int, int]) -> Alpha:
    if frame_alpha is not None and frame_alpha.shape == shape:
        return frame_alpha.astype(np.float32, copy=False)
    if frame_alpha is not None:
        return cv2.resize(frame_alpha.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    if fallback is not None:
        return fallback.astype(np.float32, copy=False)
    return np.ones(shape, np.float32)
