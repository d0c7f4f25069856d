"""Turns render jobs into output pictures: render, refine alpha, fade when the face is gone, composite, sink."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from facewire.receiver.compositor import BLUR, Compositor
from facewire.receiver.extrapolate import MAX_AHEAD_FRAMES, extrapolate
from facewire.receiver.session import RenderJob
from facewire.receiver.sinks import Sink
from facewire.receiver.stats import StatsMeter
from facewire.shared.codec.alpha_fix import apply_fix
from facewire.shared.render.replica import LayerHold, draw
from facewire.shared.types import FrameState, IdentityAsset, Image, KeyframeState, RenderedPerson, Renderer

log = logging.getLogger(__name__)
MAX_AHEAD_S = 0.1  # a late frame is extrapolated over two frame intervals, never more than this


@runtime_checkable
class _DrawsRoom(Protocol):
    """A renderer that may leave the frame outside the person undrawn (MeshRenderer) unless told to draw it."""

    draw_room: bool


@dataclass
class Fader:
    """Person opacity: fades out over `fade_s` once the face is lost or frames stop, back in when it returns."""

    fade_s: float = 1.0
    level: float = 1.0

    def step(self, present: bool, dt_s: float) -> float:
        rate = dt_s / self.fade_s
        self.level = min(1.0, self.level + 2 * rate) if present else max(0.0, self.level - rate)
        return self.level


@dataclass(frozen=True)
class Drawn:
    """A frame rendered by `Player.draw`, for `Player.emit`: the person, its opacity, and when drawing started
    and ended (wall clock, µs)."""

    person: RenderedPerson
    opacity: float
    job: RenderJob
    started_us: int
    rendered_us: int


@dataclass
class Player:
    renderer: Renderer
    sink: Sink
    stats: StatsMeter
    background: str | None = None
    output_size: tuple[int, int] | None = None
    mirror: bool = False
    fader: Fader = field(default_factory=Fader)
    on_picture: Callable[[Image], None] | None = None
    _compositor: Compositor | None = None
    _last_person: RenderedPerson | None = None
    _last_ts_us: int | None = None
    _warned: bool = False
    # What the renderer was last told; compared by object, since the session makes a new one for each change.
    _keyframe: KeyframeState | None = None
    _identity: IdentityAsset | None = None
    _told_identity: bool = False
    _layer: LayerHold = field(default_factory=LayerHold)  # the residual layer's last correction
    # The last frame shown and the one before (its motion carries a late frame's stand-in), and how long
    # the next one has been late.
    _last_job: RenderJob | None = None
    _previous: FrameState | None = None
    _late_s: float = 0.0

    def __post_init__(self) -> None:
        self.stats.listeners.append(self.sink.update_stats)  # e.g. the http preview's /stats.json
        if self.background == BLUR and isinstance(self.renderer, _DrawsRoom):
            # the blurred background is made of the person's picture: the renderer must draw all of it
            self.renderer.draw_room = True

    def show(self, job: RenderJob, dt_s: float) -> Image:
        """Render one decoded frame and send the picture to the sink."""
        return self.emit(self.draw(job, dt_s))

    def draw(self, job: RenderJob, dt_s: float) -> Drawn:
        """The first half of `show`: one decoded frame rendered, not yet composited. `emit` may run on another
        thread while the next frame is drawn (one emit at a time, in order): the two halves share no state."""
        started_us = _now_us()
        try:
            if not self._told_identity or job.identity is not self._identity:
                self.renderer.prepare_identity(job.identity)
                self._identity, self._told_identity = job.identity, True
            if job.keyframe is not self._keyframe:
                self.renderer.prepare_keyframe(job.keyframe)
                self._keyframe = job.keyframe
            # The residual layer corrects the sender's own face: with an avatar it is not applied.
            if job.identity is not None:
                self._layer.clear()
            person = draw(self.renderer, job.frame, job.keyframe, self._layer if job.identity is None else None)
            person = _corrected(person, job)
        except Exception:
            # A renderer failure on one frame must not take the link down; show the keyframe person instead.
            if not self._warned:
                log.exception("renderer %s failed; showing the keyframe", self.renderer.name)
                self._warned = True
            alpha = job.frame.alpha if job.frame.alpha is not None else job.keyframe.alpha
            person = _corrected(RenderedPerson(job.keyframe.image, _alpha_or_opaque(alpha, job.keyframe.image)), job)
        self._last_person, self._last_ts_us = person, job.frame.ts_us
        self._previous = None if self._last_job is None else self._last_job.frame
        self._last_job, self._late_s = job, 0.0
        opacity = self.fader.step(job.frame.face != "lost", dt_s)
        return Drawn(person, opacity, job, started_us, _now_us())

    def emit(self, drawn: Drawn) -> Image:
        """The second half of `show`: composite the drawn frame and send the picture to the sink."""
        picture, composed_us = self._emit(drawn.person, drawn.opacity, drawn.job.frame.ts_us)
        job = drawn.job
        if job.received_us:
            # a picture that waited for the one before it to be composited counts that wait as compositing
            self.stats.stages({"upstream": job.received_us - job.frame.ts_us, "decode": job.decoded_us - job.received_us,
                               "wait": drawn.started_us - job.decoded_us, "render": drawn.rendered_us - drawn.started_us,
                               "compose": composed_us - drawn.rendered_us, "sink": _now_us() - composed_us})
        return picture

    def rehearse(self, keyframe: KeyframeState, frame: FrameState) -> None:
        """Draws and composites `frame` from `keyframe` without showing it (receiver/warmup.py): the renderer is
        told of the next session's keyframe and identity as if this had not happened."""
        self.renderer.prepare_identity(None)
        self.renderer.prepare_keyframe(keyframe)
        person = draw(self.renderer, frame, keyframe, None)
        self._told_identity, self._keyframe = False, None
        self._composite(person)

    def repeat(self, dt_s: float) -> Image | None:
        """No new frame in time: for a frame interval or two the face carries on the way it was moving
        (damped, receiver/extrapolate.py); then the last picture again, fading out."""
        if self._last_person is None:
            return None
        self._late_s += dt_s
        person = self._extrapolated()
        if person is not None:
            self._last_person = person  # a repeat after it holds where the motion eased to, not a step back
            return self._emit(person, self.fader.level, None)[0]
        return self._emit(self._last_person, self.fader.step(False, dt_s), None)[0]

    def _extrapolated(self) -> RenderedPerson | None:
        """The last frame carried `_late_s` on, while that is within the horizon; None past it (or with no
        motion to go by)."""
        job, previous = self._last_job, self._previous
        if job is None or previous is None:
            return None
        horizon_s = min(MAX_AHEAD_FRAMES * (job.frame.ts_us - previous.ts_us) / 1e6, MAX_AHEAD_S)
        if not 0.0 < self._late_s <= horizon_s:
            return None
        frame = extrapolate(previous, job.frame, self._late_s, horizon_s)
        if frame is job.frame:
            return None
        try:
            return draw(self.renderer, frame, job.keyframe, self._layer if job.identity is None else None)
        except Exception:  # the frame itself drew (show() caught its failure): this one may simply repeat
            return None

    def hold(self) -> Image | None:
        """A frame the sender skipped on purpose: show the last person again as it was."""
        if self._last_person is None:
            return None
        return self._emit(self._last_person, self.fader.level, None)[0]

    def _emit(self, person: RenderedPerson, opacity: float, ts_us: int | None) -> tuple[Image, int]:
        """Composite and write; returns the picture and when compositing ended (wall clock, µs)."""
        shown = person if opacity >= 1.0 else RenderedPerson(person.image, person.alpha * np.float32(opacity))
        picture = self._composite(shown)
        composed_us = _now_us()
        self.sink.write(picture, ts_us or 0)
        self.stats.shown(ts_us)
        if self.on_picture is not None:
            self.on_picture(picture)
        return picture, composed_us

    def _composite(self, person: RenderedPerson) -> Image:
        size = self.output_size or (person.image.shape[1], person.image.shape[0])
        if self._compositor is None or self._compositor.size != size:
            self._compositor = Compositor(self.background, size, self.mirror)
        return self._compositor.compose(person)


def _now_us() -> int:
    return time.time_ns() // 1000


def _corrected(person: RenderedPerson, job: RenderJob) -> RenderedPerson:
    """The person with the sender's alpha corrections held for this frame (the renderer predicted the alpha)."""
    fix = job.frame.alpha_fix
    if fix is None or job.frame.alpha is not None:
        return person
    return RenderedPerson(person.image, apply_fix(person.alpha, fix))


def _alpha_or_opaque(alpha: np.ndarray | None, image: Image) -> np.ndarray:
    if alpha is not None:
        return alpha
    return np.ones(image.shape[:2], np.float32)

