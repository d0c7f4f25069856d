"""The matters that can leave out frames whose matte nobody reads (sender.analysis.SenderAnalyzer)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from facewire.shared.types import Alpha, CapturedFrame, CoarseMatte


@runtime_checkable
class SkippingMatter(Protocol):
    """A Matter that can leave out the frames whose matte nobody asks for (SenderAnalyzer, `matte=False`).

    `optional_matte(frame)` stands for `matte(frame)` on such a frame: None when the matter skipped it, or
    the matte when it must see every frame anyway (a state that follows the video: a chroma key's plate).
    `late_matte(frame)`: the matte of that skipped frame after all (a keyframe was decided on it), as
    `matte(frame)` would have made it. Only a matter whose matte of a frame does not depend on the frames
    before it may skip: what is sent stays the same, frame for frame."""

    def optional_matte(self, frame: CapturedFrame, coarse: bool = False) -> Alpha | None:
        """With `coarse`, a skipped frame still gets its CoarseMatte, where the matter makes one (`coarse()`)."""
        ...

    def late_matte(self, frame: CapturedFrame) -> Alpha: ...

    def coarse(self, frame: CapturedFrame) -> CoarseMatte | None:
        """The CoarseMatte this matter made of `frame` (its last one), if it made one."""
        ...
