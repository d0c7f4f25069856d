"""The send side of one stream: sequence numbers, frames coded at send time, keyframes cut into parts.

The uplink (or the recorder) owns a FeatureStream and is its only user. It receives what the
analysing thread prepared (sender/coding.py) and turns it into messages in send order: the codes'
setups first, then frames drawn from the keyframe the receiver holds, with the parts of a new
keyframe fitted in between them, so frames never wait behind a whole picture.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from facewire.sender.coding import Outgoing
from facewire.shared.codec.alpha_fix import FixValues, payload_bound
from facewire.shared.codec.fields import FIELD_CODECS, face_code
from facewire.shared.codec.frames import REFERENCES, FrameEncoder, KeyframePackage
from facewire.shared.codec.layer import largest_channel, packet_is_key
from facewire.shared.codec.layer_field import LayerValues
from facewire.shared.wire import messages as m

# Frames analysed before the receiver holds any keyframe (the session's first is still being built, ~0.3 s)
# wait for it, at most this many (about a second): then they go right behind it, so a clip streamed once
# loses none of its start. Only at a session's start: later a frame always has a keyframe to be drawn from.
BACKLOG_FRAMES = 32
# A layer key frame's size per kbps of the layer's rate before one was seen: 450-1330 B at 3-10 kbps on
# face boxes (helper R6), 2.9 KB at 14.5 kbps a second and a half into a recording.
LAYER_KEY_BYTES_PER_KBPS = 200
# The receiver holds the last layer box until the next one comes. When the face has changed so much since (a mouth
# that closed under an open mouth's correction: a pink blob over the lips, d18 at 16 kbps) that more than
# STALE_SHARE of the box is off from this frame's residual by STALE_CODES box codes (gain 2: 16 grey levels), the
# fresh box may use the frames' reserve (the gate's `urgent`): bench/codec.py at 16 kbps, d18 0.9074 -> 0.9086,
# d6 0.8488 -> 0.8507, d3 +0.0009, d12 +0.0010, at 0.1-0.4 kbps more.
STALE_SHARE = 0.02
STALE_CODES = 32


@dataclass
class LayerCost:
    """What the residual layer's packets cost, for the send plan to let one go only when the gate holds it."""

    key_bytes: int | None = None  # the last key frame's size
    key_kbps: float = 1.0  # the layer's rate when it was coded
    packet_bytes: float = 80.0  # predicted packets, smoothed
    kf: int | None = None  # the newest keyframe the layer corrected
    lost: bool = True  # the receiver holds no layer stream (a new session, a loss): the next packet is a key frame
    held: npt.NDArray[np.uint8] | None = None  # the residual box of the last packet sent: what the receiver holds

    def key_bytes_per_kbps(self) -> float:
        """A key frame's bytes per kbps of the layer's rate: the last one's, or the prior before one was seen."""
        return LAYER_KEY_BYTES_PER_KBPS if self.key_bytes is None else self.key_bytes / max(self.key_kbps, 0.1)

    def estimate(self, kf: int, kbps: float) -> int:
        """The next packet's likely size if it corrects keyframe `kf` at `kbps` (a new keyframe starts with a
        key frame, whose size follows the rate)."""
        if not (self.lost or self.kf is None or kf > self.kf):
            return round(self.packet_bytes)
        if self.key_bytes is None:
            return round(LAYER_KEY_BYTES_PER_KBPS * kbps)
        return round(self.key_bytes * kbps / self.key_kbps)

    def stale(self, box: npt.NDArray[np.uint8], kf: int) -> bool:
        """Whether the box the receiver holds is far off this frame's residual `box` (for keyframe `kf`)."""
        if self.lost or self.held is None or self.kf != kf:
            return False
        off = largest_channel(cv2.absdiff(box, self.held)) > STALE_CODES
        return bool(np.count_nonzero(off) > STALE_SHARE * off.size)

    def sent(self, packet: bytes, kf: int, kbps: float, box: npt.NDArray[np.uint8] | None = None) -> None:
        self.held = box
        if packet_is_key(packet):
            self.key_bytes, self.key_kbps = len(packet), kbps
        else:
            self.packet_bytes += 0.2 * (len(packet) - self.packet_bytes)
        self.kf, self.lost = max(kf, self.kf or 0), False


@dataclass
class FeatureStream:
    encoder: FrameEncoder = field(default_factory=FrameEncoder)
    seq: int = 0
    keyframes: int = 0  # keyframes whose every part was sent
    packed: bool = False  # the session sends frames packed (protocol.md 2): what they cost depends on it
    keyframe_av1: bool = False  # the session takes keyframes without their AVIF containers (`keyframe-av1`)
    last_frame_bytes: int = 40  # the size of the last frame message: what the next one is likely to cost
    last_layer_bytes: int = 0  # of which the residual layer's packet (the budget steers the layer on the rest)
    layer: LayerCost = field(default_factory=LayerCost)
    _current: KeyframePackage | None = None  # the newest keyframe every part of which was sent
    # What the receiver holds, as its decoder keeps them: the last REFERENCES keyframes sent whole.
    _held: OrderedDict[int, KeyframePackage] = field(default_factory=OrderedDict)
    _incoming: KeyframePackage | None = None
    _parts: deque[m.Keyframe | m.KeyframePart] = field(default_factory=deque)
    _backlog: deque[Outgoing] = field(default_factory=deque)
    backlog_dropped: int = 0  # frames that waited too long for the first keyframe (their state went on)

    def restart(self, codes: Sequence[str] | None = None, packed: bool | None = None,
                keyframe_av1: bool | None = None) -> None:
        """A new link session (with the codes and the messages' forms it negotiated): the receiver holds nothing."""
        self.encoder.use(self.encoder.codes if codes is None else codes)
        self.packed = self.packed if packed is None else packed
        self.keyframe_av1 = self.keyframe_av1 if keyframe_av1 is None else keyframe_av1
        self.layer.lost = True
        self._current = self._incoming = None
        self._held.clear()
        self._parts.clear()
        self._backlog.clear()

    def force_intra(self) -> None:
        """The receiver lost the prediction chain: the next frame is intra."""
        self.encoder.force_intra()
        self.layer.lost = True

    @property
    def held(self) -> tuple[int, ...]:
        """The keyframes the receiver holds, oldest first."""
        return tuple(self._held)

    @property
    def current(self) -> KeyframePackage | None:
        return self._current

    def state_messages(self, item: Outgoing, part_bytes: int) -> list[m.Message]:
        """What must go before this item's frame: the setups of its codes (negotiated ones only). A new
        keyframe is queued as parts of at most `part_bytes` of picture, for `next_part`."""
        if item.keyframe is not None:
            self._incoming = item.keyframe
            self._parts = deque(item.keyframe.messages(part_bytes, face_code(self.encoder.codes), self.keyframe_av1))
        setups = [(code, payload) for code, payload in item.setups if code in self.encoder.codes]
        for code, payload in setups:
            self.encoder.setup(code, payload)
        return [m.Setup(code=code, payload=payload) for code, payload in setups]

    def hold(self, item: Outgoing) -> None:
        """`item` waits for the session's first keyframe. When too many wait the oldest frame goes, not
        what it carried (its setups, a keyframe): the next one carries that on."""
        if len(self._backlog) == BACKLOG_FRAMES:
            oldest = self._backlog.popleft()
            self._backlog[0] = Outgoing.merged(oldest, self._backlog[0])
            self.backlog_dropped += 1
        self._backlog.append(item)

    def take_waiting(self) -> list[Outgoing]:
        """The items waiting for the first keyframe, oldest first (they wait no more)."""
        items = list(self._backlog)
        self._backlog.clear()
        return items

    @property
    def waiting(self) -> int:
        """How many frames wait for the session's first keyframe."""
        return len(self._backlog)

    def take_last_waiting(self) -> Outgoing | None:
        return self._backlog.pop() if self._backlog else None

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

    def layer_bytes_due(self, item: Outgoing) -> int:
        """What this item's layer packet is likely to cost if it goes with its frame (0: it carries none for
        the keyframe the receiver draws it from): a key frame's size after a new keyframe or a loss."""
        values = self._layer_values(item)
        return 0 if values is None else self.layer.estimate(values.kf, values.kbps)

    def layer_stale(self, item: Outgoing) -> bool:
        """Whether the layer box the receiver holds is far off this item's residual (LayerCost.stale)."""
        values = self._layer_values(item)
        return values is not None and self.layer.stale(values.box, values.kf)

    def _layer_values(self, item: Outgoing) -> LayerValues | None:
        """The item's layer residual when it was drawn from the keyframe the frame will be drawn from."""
        reference = self.reference(item)
        for name, prepared in item.frame.prepared.items():
            values = prepared.values
            if name in self._layer_codes() and isinstance(values, LayerValues) and reference is not None \
                    and values.kf == reference.kf:
                return values
        return None

    def fix_bytes_due(self, item: Outgoing) -> int:
        """At most what this item's alpha corrections cost if they go with its frame (0: it prepared none)."""
        return max((payload_bound(prepared.values.bps) for prepared in item.frame.prepared.values()
                    if isinstance(prepared.values, FixValues)), default=0)

    def frame(self, item: Outgoing, layer: bool = False, fix: bool = False) -> m.Frame | None:
        """The frame message, or None while the receiver holds no keyframe to draw it from; with its layer
        packet only when `layer` (the layer feeds its video only with the frames that carry it), with alpha
        corrections only when `fix` (they wait while the link has no room beside the frames)."""
        reference = self.reference(item)
        if reference is None:
            return None
        coded = item.frame
        if not layer or not fix:
            coded = dataclasses.replace(coded, prepared={
                name: prepared for name, prepared in coded.prepared.items()
                if (layer or name not in self._layer_codes()) and (fix or not isinstance(prepared.values, FixValues))})
        frame = self.encoder.frame(coded, self._next_seq(), reference.kf, reference.ts_us)
        self.last_frame_bytes = len(m.encode(frame, self.packed))
        packets = [code for code, name in zip(frame.codes, self.encoder.codes, strict=True)
                   if name in self._layer_codes() and code is not None]
        self.last_layer_bytes = sum(map(len, packets))
        values = self._layer_values(item)
        for packet in packets:
            self.layer.sent(packet, reference.kf, values.kbps if values is not None else 1.0,
                            values.box if values is not None else None)
        return frame

    def _layer_codes(self) -> set[str]:
        return {name for name in self.encoder.codes if FIELD_CODECS[name].role == "layer"}

    @property
    def last_features_bytes(self) -> int:
        """The last frame's bytes without its layer packet: what the features cost."""
        return self.last_frame_bytes - self.last_layer_bytes

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 2**32
        return self.seq
