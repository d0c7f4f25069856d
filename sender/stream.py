"""The send side of one stream: sequence numbers, frames coded at send time, keyframes cut into parts.

The uplink (or the recorder) owns a FeatureStream and is its only user. It receives what the
analysing thread prepared (sender/coding.py) and turns it into messages in send order: the codes'
setups first, then frames drawn from the keyframe the receiver holds, with the parts of a new
keyframe fitted in between them, so frames never wait behind a whole picture.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from facewire.sender.coding import Outgoing
from facewire.shared.codec.fields import face_code
from facewire.shared.codec.frames import REFERENCES, FrameEncoder, KeyframePackage
from facewire.shared.wire import messages as m


@dataclass
class FeatureStream:
    encoder: FrameEncoder = field(default_factory=FrameEncoder)
    seq: int = 0
    keyframes: int = 0  # keyframes whose every part was sent
    last_frame_bytes: int = 40  # the size of the last frame message: what the next one is likely to cost
    _current: KeyframePackage | None = None  # the newest keyframe every part of which was sent
    # What the receiver holds, as its decoder keeps them: the last REFERENCES keyframes sent whole.
    _held: OrderedDict[int, KeyframePackage] = field(default_factory=OrderedDict)
    _incoming: KeyframePackage | None = None
    _parts: deque[m.Keyframe | m.KeyframePart] = field(default_factory=deque)

    def restart(self, codes: Sequence[str] | None = None) -> None:
        """A new link session (with the codes it negotiated): the receiver holds nothing."""
        self.encoder.use(self.encoder.codes if codes is None else codes)
        self._current = self._incoming = None
        self._held.clear()
        self._parts.clear()

    def force_intra(self) -> None:
        """The receiver lost the prediction chain: the next frame is intra."""
        self.encoder.force_intra()

    @property
    def current(self) -> KeyframePackage | None:
        return self._current

    def state_messages(self, item: Outgoing, part_bytes: int) -> list[m.Message]:
        """What must go before this item's frame: the setups of its codes (negotiated ones only). A new
        keyframe is queued as parts of at most `part_bytes` of picture, for `next_part`."""
        if item.keyframe is not None:
            self._incoming = item.keyframe
            self._parts = deque(item.keyframe.messages(part_bytes, face_code(self.encoder.codes)))
        setups = [(code, payload) for code, payload in item.setups if code in self.encoder.codes]
        for code, payload in setups:
            self.encoder.setup(code, payload)
        return [m.Setup(code=code, payload=payload) for code, payload in setups]

    def next_part(self) -> m.Keyframe | m.KeyframePart | None:
        """The next piece of the keyframe on its way, if any (call `part_sent` once it went)."""
        return self._parts[0] if self._parts else None

    def part_sent(self) -> None:
        self._parts.popleft()
        if not self._parts and self._incoming is not None:
            self._current, self._incoming = self._incoming, None
            self._held[self._current.kf] = self._current
            while len(self._held) > REFERENCES:
                self._held.popitem(last=False)
            self.keyframes += 1

    def reference(self, item: Outgoing) -> KeyframePackage | None:
        """The keyframe this item's frame is drawn from: the one the analysing thread chose when the
        receiver holds it, else the newest; None while the receiver holds none."""
        chosen = self._held.get(item.reference) if item.reference is not None else None
        return chosen or self._current

    def frame(self, item: Outgoing) -> m.Frame | None:
        """The frame message, or None while the receiver holds no keyframe to draw it from."""
        reference = self.reference(item)
        if reference is None:
            return None
        frame = self.encoder.frame(item.frame, self._next_seq(), reference.kf, reference.ts_us)
        self.last_frame_bytes = len(m.encode(frame))
        return frame

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 2**32
        return self.seq
