"""Automatic matte choice: chroma key when the scene has a green or blue screen, else learned.

Each check scores how much of the frame's sides and top is one saturated screen-like colour
(`screen_score`). The choice flips only after the score has crossed the far threshold on
`confirm` consecutive checks (hysteresis), so a person in a green shirt walking past, or a
passing lighting change, does not make the matte flicker between methods; when it does flip the
newly chosen matter is reset, as for a new scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from facewire.sender.matte.chroma import ScreenEstimate, estimate_screen, opponent
from facewire.sender.matte.skipping import SkippingMatter
from facewire.shared.types import Alpha, CapturedFrame, CoarseMatte, Image, Matter

Choice = Literal["chroma", "learned"]

# chroma-plane angles of the keying primaries, as opponent() measures them
_SCREEN_HUES = {"green": 90.0, "blue": -150.0}


@dataclass(frozen=True)
class AutoConfig:
    on: float = 0.6
    off: float = 0.35
    confirm: int = 3
    check_every: int = 5
    min_saturation: float = 30.0
    max_hue_error_deg: float = 35.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.off < self.on <= 1.0:
            raise ValueError(f"need 0 <= off < on <= 1, got off={self.off}, on={self.on}")
        if self.confirm < 1 or self.check_every < 1:
            raise ValueError("confirm and check_every must be >= 1")


def screen_hue_error(est: ScreenEstimate) -> float:
    """Degrees between the estimated backdrop hue and the nearer of green and blue."""
    c1, c2 = opponent(est.bgr)
    ang = math.degrees(math.atan2(float(c2), float(c1)))
    return min(abs((ang - h + 180.0) % 360.0 - 180.0) for h in _SCREEN_HUES.values())


def screen_score(image: Image, config: AutoConfig | None = None) -> float:
    """0..1: the share of the frame border covered by one saturated green or blue colour."""
    c = config or AutoConfig()
    est = estimate_screen(image)
    if est.saturation < c.min_saturation or screen_hue_error(est) > c.max_hue_error_deg:
        return 0.0
    return est.coverage


class AutoMatter:
    """facewire.shared.types.Matter that delegates to a chroma or a learned matter, chosen per scene."""

    name = "auto"

    def __init__(self, chroma: Matter, learned: Matter, config: AutoConfig | None = None) -> None:
        self.chroma, self.learned = chroma, learned
        self.config = config or AutoConfig()
        self.active: Choice | None = None
        self.last_score = 0.0
        self._streak = 0
        self._frames = 0

    def reset(self) -> None:
        self.active = None
        self._streak = 0
        self._frames = 0
        self.chroma.reset()
        self.learned.reset()

    def close(self) -> None:
        self.chroma.close()
        self.learned.close()

    def _decide(self, image: Image) -> None:
        c = self.config
        score = screen_score(image, c)
        self.last_score = score
        if self.active is None:
            self.active = "chroma" if score >= c.on else "learned"
            self._streak = 0
            return
        wants_switch = (self.active == "learned" and score >= c.on) or (self.active == "chroma" and score <= c.off)
        self._streak = self._streak + 1 if wants_switch else 0
        if self._streak >= c.confirm:
            self.active = "chroma" if self.active == "learned" else "learned"
            self._streak = 0
            (self.chroma if self.active == "chroma" else self.learned).reset()

    def foreground(self) -> Image | None:
        """The active matter's foreground colours for the last frame (the chroma key's despilled,
        screen-free colours), or None when it has none and the frame itself is the foreground."""
        return (self.chroma if self.active == "chroma" else self.learned).foreground()

    def _chosen(self, frame: CapturedFrame) -> Matter:
        """The matter for this frame, the screen checked every `check_every` frames (matted or left out alike)."""
        if self.active is None or self._frames % self.config.check_every == 0:
            self._decide(frame.image)
        self._frames += 1
        return self.chroma if self.active == "chroma" else self.learned

    def matte(self, frame: CapturedFrame) -> Alpha:
        return self._chosen(frame).matte(frame)

    def optional_matte(self, frame: CapturedFrame, coarse: bool = False) -> Alpha | None:
        m = self._chosen(frame)
        return m.optional_matte(frame, coarse) if isinstance(m, SkippingMatter) else m.matte(frame)

    def late_matte(self, frame: CapturedFrame) -> Alpha:
        m = self.chroma if self.active == "chroma" else self.learned
        return m.late_matte(frame) if isinstance(m, SkippingMatter) else m.matte(frame)

    def coarse(self, frame: CapturedFrame) -> CoarseMatte | None:
        m = self.chroma if self.active == "chroma" else self.learned
        return m.coarse(frame) if isinstance(m, SkippingMatter) else None
