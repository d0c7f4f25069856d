"""The relay's rooms, sans I/O: who publishes, who watches whom, each sender's state, each receiver's outbox.

Pure and synchronous, like the protocol objects: the websocket shell (relay/server.py) and the Redis
bridge (relay/bridge.py) feed validated messages in with the current time and carry out the
`Upstream` requests that come back; a receiver's shell writes what its `Outbox` holds.

A sender's messages are state or stream (messages.STATE_MESSAGES / STREAM_MESSAGES). A `Publication`
keeps one sender's current state (its active identity with its image, the last setups of each code,
its last REFERENCES complete keyframes — frames name any of them — and the one still arriving in
parts), so a receiver that joins, or switches to this sender, gets all of it at once and then live frames.

Frames are delta coded: each is predicted from the one before, and a receiver's decoder resets at a
gap in the sequence numbers, after which only an intra frame decodes (shared/codec/frames.py). So an
outbox forwards frames only from an intra frame on (`frame.intra`): a receiver that joins, switches
sender, or falls behind (its bounded frame queue overflows: the queued frames are dropped, counted as
stale) waits for the next intra frame, and the relay asks the sender for one with a `keyframe_request`
at most once per `REQUEST_GAP_S` per sender. Frames before that intra frame are not sent at all: they
would only make the receiver fail to decode and ask for a keyframe itself. State is never dropped.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from facewire.shared.codec.fields import FIELD_CODECS
from facewire.shared.codec.frames import REFERENCES
from facewire.shared.wire import messages as m

REQUEST_GAP_S = 2.0  # at most one keyframe request per sender this often, whoever asks
MAX_IDENTITIES = 8  # identity images kept per sender (they can be MiBs; receivers ask for others upstream)


class Lost(str, enum.Enum):
    """Why a frame did not reach a receiver."""

    STALE = "stale"  # the receiver was slow: its queue overflowed (latest frame wins)
    BEFORE_INTRA = "before_intra"  # the receiver had a gap (joined, switched, or stale) and waits for an intra frame


@dataclass(frozen=True)
class Upstream:
    """A message for sender `sender` of room `room` (on this relay, or on another one through Redis)."""

    room: str
    sender: str
    message: m.KeyframeRequest | m.IntraRequest | m.AssetRequest


@dataclass
class HeldIdentity:
    """An identity with its image: the `identity` message (the image's first piece) and its parts' raw messages."""

    head: m.Identity
    parts: list[bytes] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.parts) + 1 == self.head.parts

    def raws(self, activate: bool) -> list[bytes]:
        return [m.encode(msgspec.structs.replace(self.head, activate=activate)), *self.parts]


@dataclass
class Publication:
    """One sender's current state in a room, as raw validated messages ready to forward."""

    name: str
    codes: list[str]
    origin: str = ""  # the relay the sender is connected to ("" for this one)
    joined_at: float = 0.0
    last_seen: float = 0.0
    identities: OrderedDict[str, HeldIdentity] = field(default_factory=OrderedDict)  # by asset, with images
    identity: list[bytes] = field(default_factory=list)  # what makes a joining receiver show the active identity
    _incoming: HeldIdentity | None = None  # an identity whose image is still arriving in parts
    _incoming_shown: bool = False  # ... which is the active one: its parts belong to `identity` too
    # The last few setups of each code: a keyframe's face code names the neutral it was coded with, and a
    # receiver holds the last REFERENCES of them, as it holds the last REFERENCES keyframes (frames name any).
    setups: dict[str, deque[bytes]] = field(default_factory=dict)
    keyframes: deque[list[bytes]] = field(default_factory=lambda: deque(maxlen=REFERENCES))  # complete, oldest first
    assembling: list[bytes] = field(default_factory=list)  # the keyframe still arriving in parts
    _assembling_parts: int = 0
    last_request: float | None = None  # when a keyframe request last went to the sender
    request_pending: bool = False

    def absorb(self, message: m.Message, raw: bytes) -> None:
        """Keep what a state message changes."""
        if isinstance(message, m.Identity):
            self._identity(message, raw)
        elif isinstance(message, m.IdentityPart):
            self._identity_part(message, raw)
        elif isinstance(message, m.IdentitySwitch):
            held = self.identities.get(message.asset)
            self.identity, self._incoming_shown = [raw] if held is None else held.raws(activate=True), False
        elif isinstance(message, m.Setup):
            self.setups.setdefault(message.code, deque(maxlen=REFERENCES)).append(raw)
        elif isinstance(message, m.Keyframe):
            self.assembling, self._assembling_parts = [raw], message.parts
            self._complete()
        elif isinstance(message, m.KeyframePart) and self.assembling:
            self.assembling.append(raw)
            self._complete()

    def _identity(self, message: m.Identity, raw: bytes) -> None:
        if message.image is not None:
            self._incoming, self._incoming_shown = HeldIdentity(message), False
            self._keep_complete()
        if not message.activate:
            return
        held = self.identities.get(message.asset)
        # the receiver that joins later holds nothing: give it the image
        self.identity = held.raws(activate=True) if message.image is None and held is not None else [raw]
        self._incoming_shown = self._incoming is not None and self._incoming.head is message

    def _identity_part(self, message: m.IdentityPart, raw: bytes) -> None:
        incoming = self._incoming
        if incoming is None or incoming.head.asset != message.asset:
            return  # the receivers' sessions ask for the image again
        incoming.parts.append(raw)
        if self._incoming_shown:
            self.identity.append(raw)
        self._keep_complete()

    def _keep_complete(self) -> None:
        incoming = self._incoming
        if incoming is None or not incoming.complete:
            return
        self._incoming = None
        self.identities[incoming.head.asset] = incoming
        self.identities.move_to_end(incoming.head.asset)
        while len(self.identities) > MAX_IDENTITIES:
            self.identities.popitem(last=False)

    def _complete(self) -> None:
        if len(self.assembling) == self._assembling_parts:
            self.keyframes.append(self.assembling)
            self.assembling = []

    def snapshot(self) -> list[bytes]:
        """Everything a receiver needs before this sender's frames, in the order the sender sent it."""
        head = list(self.identity)
        setups = [raw for history in self.setups.values() for raw in history]
        return [*head, *setups, *(raw for keyframe in self.keyframes for raw in keyframe), *self.assembling]

    def identity_messages(self, asset: str) -> list[bytes]:
        """The identity with its image, in its parts (empty: not held)."""
        held = self.identities.get(asset)
        return [] if held is None else held.raws(activate=held.head.activate)

    def want_intra(self, now: float) -> bool:
        """A receiver needs an intra frame: whether a keyframe request may go to the sender now (else it
        stays pending and goes with a later frame)."""
        self.request_pending = True
        return self.due(now)

    def due(self, now: float) -> bool:
        if not self.request_pending or (self.last_request is not None and now - self.last_request < REQUEST_GAP_S):
            return False
        self.request_pending, self.last_request = False, now
        return True


STATE, FRAME, STATS = 0, 1, 2  # what an outbox item is: stream items (frames, stats) may be dropped


@dataclass
class Outbox:
    """What waits to be written to one receiver: state always, in order; frames while the oldest queued one
    is younger than `max_age_s` and they are fewer than `max_frames`, and only from an intra frame on after
    any gap.

    Staleness is by age, not by count alone: a relay that was off the CPU for a moment takes in a burst of
    one sender's frames before the receiver's writer runs, which is no reason to drop them; a receiver whose
    writer cannot write (its link is slow) lets them age."""

    max_frames: int = 64
    max_age_s: float = 0.25
    notify: Callable[[], None] = lambda: None
    items: deque[tuple[bytes, int]] = field(default_factory=deque)
    frames: int = 0  # frames among `items`
    _ages: deque[float] = field(default_factory=deque)  # when each queued frame came, oldest first
    waiting_for_intra: bool = True
    lost: dict[Lost, int] = field(default_factory=lambda: dict.fromkeys(Lost, 0))
    sent_frames: int = 0
    held_s: list[float] = field(default_factory=list)  # how long each frame popped since the owner last looked waited

    def state(self, raw: bytes) -> None:
        self.items.append((raw, STATE))
        self.notify()

    def restart(self, raws: Iterable[bytes]) -> None:
        """Begin again with `raws` (all state): what was queued is dropped, frames resume at an intra frame."""
        self.items.clear()
        self._ages.clear()
        self.frames = 0
        self.waiting_for_intra = True
        self.items.extend((raw, STATE) for raw in raws)
        self.notify()

    def then(self, raws: Iterable[bytes]) -> None:
        """After what is queued, `raws` (all state) begin another sender's run: its frames from an intra frame on."""
        self.items.extend((raw, STATE) for raw in raws)
        self.waiting_for_intra = True
        self.notify()

    def stats(self, raw: bytes) -> None:
        """Informative only: goes when no frame is waiting (a slow receiver loses it first)."""
        if self.frames == 0:
            self.items.append((raw, STATS))
            self.notify()

    def frame(self, raw: bytes, intra: bool, now: float = 0.0) -> bool:
        """Queue a frame (`intra`: an intra frame) that came at `now`; False when this receiver needs an intra
        frame (the sender should be asked for one)."""
        if self.waiting_for_intra:
            if not intra:
                self.lost[Lost.BEFORE_INTRA] += 1
                return False
            self.waiting_for_intra = False
        elif self.frames >= self.max_frames or (self._ages and now - self._ages[0] > self.max_age_s):
            self._drop_frames()
            if not intra:
                self.lost[Lost.STALE] += 1
                return False
            self.waiting_for_intra = False
        self.items.append((raw, FRAME))
        self._ages.append(now)
        self.frames += 1
        self.notify()
        return True

    def _drop_frames(self) -> None:
        """Latest wins: the queued frames are stale, and the prediction chain they belonged to is broken for
        this receiver, so frames resume at the next intra one."""
        self.lost[Lost.STALE] += self.frames
        self.items = deque(item for item in self.items if item[1] == STATE)
        self._ages.clear()
        self.frames, self.waiting_for_intra = 0, True

    def pop(self, now: float | None = None) -> bytes | None:
        """The next item to write; with `now`, a frame's time in the outbox is noted in `held_s`."""
        if not self.items:
            return None
        raw, kind = self.items.popleft()
        if kind == FRAME:
            came = self._ages.popleft()
            if now is not None:
                self.held_s.append(now - came)
            self.frames -= 1
            self.sent_frames += 1
        return raw


@dataclass
class Subscriber:
    """A receiver joined to a room: whom it wants to see, whom it sees, and its outbox."""

    key: int
    codes: list[str]  # what it decodes
    show: str | None = None  # the sender it asked for (None: the room's rule)
    outbox: Outbox = field(default_factory=Outbox)
    shown: str | None = None


class AdmissionError(ValueError):
    """A receiver or sender the room cannot take; `code` is the protocol error code."""

    def __init__(self, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field_name


@dataclass
class Room:
    """One room: its publications (local and remote senders) and its local subscribers.

    Whom a receiver sees: the sender it named (`show`) while that sender publishes; otherwise the sender
    that joined the room most recently, kept until it leaves (a new sender does not take a receiver
    that already shows someone, so nobody flickers between people; a receiver that named nobody moves
    to the newest sender only when its sender leaves).
    """

    name: str
    max_senders: int = 16
    max_receivers: int = 256
    publications: dict[str, Publication] = field(default_factory=dict)
    subscribers: dict[int, Subscriber] = field(default_factory=dict)
    joining: int = 0  # receivers on their way in (the shell's count: the room must stay while they come)

    @property
    def codes(self) -> set[str]:
        return {code for publication in self.publications.values() for code in publication.codes}

    def accepted_codes(self) -> list[str]:
        """What a new sender may code frames with: what the relay knows and every receiver here decodes."""
        return [code for code in FIELD_CODECS if all(code in sub.codes for sub in self.subscribers.values())]

    # --- senders ---------------------------------------------------------------------------------------

    def publish_start(self, name: str, codes: list[str], now: float, origin: str = "") -> Publication:
        known = self.publications.get(name)
        if known is not None and origin and known.origin == origin:
            known.last_seen = now  # a remote sender announced again
            return known
        if known is not None:
            raise AdmissionError("busy", f"a sender named {name!r} already publishes in room {self.name!r}", "name")
        if name not in self.publications and sum(p.origin == "" for p in self.publications.values()) >= self.max_senders:
            raise AdmissionError("busy", f"room {self.name!r} has its {self.max_senders} senders")
        publication = self.publications[name] = Publication(name, codes, origin, joined_at=now, last_seen=now)
        for sub in self.subscribers.values():
            if sub.shown is None or sub.shown not in self.publications or sub.show == name:
                self._show(sub, name)
        return publication

    def publish_end(self, name: str) -> None:
        if self.publications.pop(name, None) is None:
            return
        for sub in self.subscribers.values():
            if sub.shown == name:
                self._show(sub, self._choose(sub), keep=True)  # its last frames still go

    def publish(self, name: str, message: m.Message, raw: bytes, now: float) -> list[Upstream]:
        """A message from sender `name`: kept when it is state, passed on to the receivers that show it."""
        publication = self.publications.get(name)
        if publication is None:
            return []
        publication.last_seen = now
        if isinstance(message, m.Frame):
            return self._frame(publication, raw, message.intra, now)
        viewers = [sub for sub in self.subscribers.values() if sub.shown == name]
        if isinstance(message, m.STATE_MESSAGES):
            publication.absorb(message, raw)
            for sub in viewers:
                sub.outbox.state(raw)
            return []
        if isinstance(message, m.Stats):
            for sub in viewers:
                sub.outbox.stats(raw)
            return []
        return []

    def publish_frame(self, name: str, raw: bytes, intra: bool, now: float) -> list[Upstream]:
        """A frame from sender `name` that needs no decoding here (another relay validated it): `intra` says
        whether it is an intra frame."""
        publication = self.publications.get(name)
        if publication is None:
            return []
        publication.last_seen = now
        return self._frame(publication, raw, intra, now)

    def _frame(self, publication: Publication, raw: bytes, intra: bool, now: float) -> list[Upstream]:
        wants = False
        for sub in self.subscribers.values():
            if sub.shown == publication.name:
                wants |= not sub.outbox.frame(raw, intra, now)
        if wants:
            publication.request_pending = True
        return self._requests(publication, now)

    def _requests(self, publication: Publication, now: float) -> list[Upstream]:
        """An intra frame, when a receiver waits for one and the sender's gate allows; a keyframe too when the
        relay holds none of this sender's to give (the receivers hold what the relay holds)."""
        if not publication.due(now):
            return []
        reason = "relay: a receiver waits for an intra frame"
        request = m.IntraRequest(reason=reason) if publication.keyframes else m.KeyframeRequest(reason=reason)
        return [Upstream(self.name, publication.name, request)]

    # --- receivers -------------------------------------------------------------------------------------

    def join(self, sub: Subscriber, now: float) -> list[Upstream]:
        if len(self.subscribers) >= self.max_receivers:
            raise AdmissionError("busy", f"room {self.name!r} has its {self.max_receivers} receivers")
        missing = sorted(self.codes - set(sub.codes))
        if missing:
            raise AdmissionError("unsupported_code", f"room {self.name!r} is coded with {sorted(self.codes)}; this "
                                 f"receiver does not decode {missing}", "capabilities")
        self.subscribers[sub.key] = sub
        return self._show(sub, self._choose(sub), now)

    def leave(self, key: int) -> None:
        self.subscribers.pop(key, None)

    def from_receiver(self, key: int, message: m.Message, now: float) -> list[Upstream]:
        """A receiver's keyframe or asset request: answered from the cache where the relay can."""
        sub = self.subscribers.get(key)
        publication = None if sub is None or sub.shown is None else self.publications.get(sub.shown)
        if sub is None or publication is None:
            return []
        if isinstance(message, m.KeyframeRequest):
            sub.outbox.restart(publication.snapshot())
            publication.request_pending = True
            return self._requests(publication, now)
        if isinstance(message, m.AssetRequest):
            held = publication.identity_messages(message.asset)
            if held:
                for raw in held:
                    sub.outbox.state(raw)
                return []
            return [Upstream(self.name, publication.name, message)]
        return []

    def _choose(self, sub: Subscriber) -> str | None:
        if sub.show is not None and sub.show in self.publications:
            return sub.show
        newest = max(self.publications.values(), key=lambda p: p.joined_at, default=None)
        return None if newest is None else newest.name

    def _show(self, sub: Subscriber, name: str | None, now: float | None = None, keep: bool = False) -> list[Upstream]:
        """`keep`: what the receiver's outbox holds of the sender it showed goes first (that sender left)."""
        sub.shown = name
        publication = None if name is None else self.publications[name]
        source = m.Source(name=name or "", codes=[] if publication is None else publication.codes,
                          senders=sorted(self.publications)[:256])
        state = [m.encode(source), *([] if publication is None else publication.snapshot())]
        if keep:
            sub.outbox.then(state)
        else:
            sub.outbox.restart(state)
        if publication is None:
            return []
        publication.request_pending = True
        return [] if now is None else self._requests(publication, now)
