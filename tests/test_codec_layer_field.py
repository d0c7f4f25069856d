"""The residual layer on the codec seam: the sender's replica draws exactly what the receiver shows, the
layer waits while a new keyframe crosses and restarts with a key frame after it, its rate stays within
its share, and hostile packets are refused."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.receiver.compositor import Compositor
from facewire.receiver.player import Player
from facewire.receiver.session import AssetStore, Session
from facewire.receiver.stats import StatsMeter
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import (
    DEFAULT_CODES,
    LAYER_OVERSHOOT_BPS,
    LAYER_SHARE,
    MIN_BODY_WITH_LAYER_BPS,
    MIN_LAYER_BPS,
    MIN_RESIDUAL_CEILING_BPS,
    Budget,
    FrameCoder,
    Outgoing,
    codes_for,
)
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.alpha_fix import CAPABILITY as ALPHA_FIX
from facewire.shared.codec.alpha_fix import AlphaFixDecoder, apply_fix
from facewire.shared.codec.body import BodyDecoder
from facewire.shared.codec.fields import FIELD_CODECS, face_code, negotiate
from facewire.shared.codec.frames import FrameDecodeError, FrameDecoder, FrameEncoder
from facewire.shared.codec.layer import LayerDecoder, LayerEncoder, packet_is_key
from facewire.shared.codec.layer_field import CAPABILITY, LAYER_FPS, LayerFieldDecoder, LayerFieldEncoder, LayerValues
from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, Prepared
from facewire.shared.render.replica import LayerHold, Replica
from facewire.shared.types import CapturedFrame, FrameAnalysis, Image, KeyframeState
from facewire.shared.wire import messages as m

SIZE = 96


# ------------------------------------------------------------------------------------ unit: the encoder
def _box(index: int) -> Image:
    rng = np.random.default_rng(index // 4)
    base = cv2.resize(rng.integers(60, 200, (6, 6, 3), dtype=np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return np.asarray(np.roll(base, index % 4, axis=1), np.uint8)


def _coded(index: int, kf: int, drawn_from: int, kbps: float = 8.0) -> CodedFrame:
    frame = CapturedFrame(index, index * 33_333, np.zeros((4, 4, 3), np.uint8))
    values = LayerValues(kf, _box(index), kbps)
    return CodedFrame(FrameAnalysis(frame, None, None), {CAPABILITY: Prepared(values=values)}, drawn_from)


def test_the_layer_waits_for_its_keyframe_and_restarts_with_a_key_frame() -> None:
    encoder = LayerFieldEncoder()
    first = [encoder.encode(_coded(i, 1, 1), False) for i in range(4)]
    assert all(p is not None for p in first)
    assert packet_is_key(first[0]) and not any(packet_is_key(p) for p in first[1:] if p is not None)
    # keyframe 2 was built (the residual is drawn from it) but the receiver still draws from 1: nothing goes
    assert [encoder.encode(_coded(i, 2, 1), False) for i in range(4, 8)] == [None] * 4
    after = encoder.encode(_coded(8, 2, 2), False)
    assert after is not None and packet_is_key(after)
    following = encoder.encode(_coded(9, 2, 2), False)
    assert following is not None and not packet_is_key(following)
    assert encoder.coder is not None and encoder.coder.restarts == 0  # same rate: a forced key, no restart


def test_a_skipped_frame_hands_its_residual_to_the_next_unless_that_has_its_own() -> None:
    with_layer = Outgoing(_coded(3, kf=1, drawn_from=1))
    plain = Outgoing(CodedFrame(_coded(4, kf=1, drawn_from=1).analysis))
    assert with_layer.carries_layer and not plain.carries_layer and not with_layer.carries_state
    merged = Outgoing.merged(with_layer, plain)
    assert merged.frame.analysis is plain.frame.analysis  # the newer frame, with the older residual
    assert merged.frame.prepared[CAPABILITY] is with_layer.frame.prepared[CAPABILITY]
    newer = Outgoing(_coded(6, kf=1, drawn_from=1))
    assert Outgoing.merged(with_layer, newer).frame.prepared[CAPABILITY] is newer.frame.prepared[CAPABILITY]


def test_a_frame_without_layer_values_carries_no_packet() -> None:
    frame = CapturedFrame(0, 0, np.zeros((4, 4, 3), np.uint8))
    assert LayerFieldEncoder().encode(CodedFrame(FrameAnalysis(frame, None, None), {}, 1), True) is None


def test_the_rate_changes_on_a_keyframe_change_or_a_large_move_only() -> None:
    encoder = LayerFieldEncoder()
    encoder.encode(_coded(0, 1, 1, 8.0), False)
    encoder.encode(_coded(1, 1, 1, 9.5), False)  # +19%: kept
    assert encoder.coder is not None and encoder.coder.kbps == 8.0
    packet = encoder.encode(_coded(2, 1, 1, 12.0), False)  # +50%: a restart
    assert encoder.coder.kbps == 12.0 and packet is not None and packet_is_key(packet)
    encoder.encode(_coded(3, 2, 2, 13.0), False)  # a new keyframe: the key frame carries any change
    assert encoder.coder.kbps == 13.0


def test_a_receiver_that_lost_the_stream_gets_a_key_frame_but_periodic_intra_frames_do_not_restart_the_layer() -> None:
    codes = ["landmarks", CAPABILITY]
    frames = FrameEncoder(codes, intra_interval=3)
    decoder = LayerFieldDecoder()
    landmarks = np.full((478, 3), 50.0, np.float32)
    keys = []
    for index in range(12):
        coded = _coded(index, 1, 1)
        analysis = FrameAnalysis(coded.analysis.frame, _face(landmarks), None)
        if index == 7:
            frames.force_intra()  # a keyframe_request
        message = frames.frame(CodedFrame(analysis, coded.prepared), index + 1, 1, 0)
        payload = message.codes[1]
        assert payload is not None
        keys.append(packet_is_key(payload))
        decoder.decode(payload, FrameDraft((4, 4)))
    assert keys == [True] + [False] * 6 + [True] + [False] * 4


def _face(landmarks: np.ndarray):  # type: ignore[no-untyped-def]
    from facewire.shared.types import FaceObservation, HeadPose

    return FaceObservation(landmarks, HeadPose(0, 0, 0, 2, 2, 1), 0.9)


# ------------------------------------------------------------------------------- unit: rule and budget
def test_the_default_layers_follow_the_budget_and_self_mode() -> None:
    with_layer = (*DEFAULT_CODES, CAPABILITY)
    # below MIN_BODY_WITH_LAYER_BPS the body's motion gives its bits to the layer
    thin_layer = (*(code for code in DEFAULT_CODES if code != BODY), CAPABILITY)
    assert codes_for(None, 256_000, True) == with_layer
    assert codes_for(None, MIN_BODY_WITH_LAYER_BPS, True) == with_layer
    assert codes_for(None, MIN_BODY_WITH_LAYER_BPS - 1, True) == thin_layer
    assert codes_for(None, MIN_RESIDUAL_CEILING_BPS, True) == thin_layer
    assert codes_for(None, MIN_RESIDUAL_CEILING_BPS - 1, True) == DEFAULT_CODES
    assert codes_for(None, 256_000, False) == DEFAULT_CODES  # an avatar: the layer would correct the wrong face
    assert codes_for("features", 256_000, True) == DEFAULT_CODES
    assert codes_for("features", 16_000, True) == DEFAULT_CODES  # no layer to give the body's bits to
    assert codes_for("features+residual", 4_000, True) == thin_layer
    with pytest.raises(ValueError, match="identity self"):
        codes_for("features+residual", 256_000, False)


def test_the_layer_gets_what_the_features_leave_under_the_lower_of_link_and_ceiling() -> None:
    budget = Budget(ceiling_bps=16_000, target_bps=16_000, features_bps=5_000)
    assert budget.layer_bps() == pytest.approx(LAYER_SHARE * 16_000 - 5_000 - LAYER_OVERSHOOT_BPS)
    budget.target_bps = 9_000  # the link allows less than the ceiling
    assert budget.layer_bps() == pytest.approx(LAYER_SHARE * 9_000 - 5_000 - LAYER_OVERSHOOT_BPS)
    budget.target_bps = 7_000  # too little left: no layer
    assert LAYER_SHARE * 7_000 - 5_000 - LAYER_OVERSHOOT_BPS < MIN_LAYER_BPS and budget.layer_bps() == 0.0
    assert Budget(ceiling_bps=16_000, target_bps=1e9).layer_bps() <= LAYER_SHARE * 16_000


def test_under_a_known_gate_the_layer_gets_what_the_frames_and_the_start_leave_with_no_margin() -> None:
    """A recording (`gated`): the features are what the frames cost the gate, the start's repayment is what its
    schedule takes; the rest is the layer's, without the live margins."""
    budget = Budget(ceiling_bps=16_000, target_bps=16_000, features_bps=5_000, gated=True, repay_bps=4_000)
    assert budget.layer_bps() == pytest.approx(16_000 - 4_000 - 5_000)
    live = dataclasses.replace(budget, gated=False)  # live: the uplink's window keeps the margins, no repayment here
    assert live.layer_bps() == pytest.approx(LAYER_SHARE * 16_000 - 5_000 - LAYER_OVERSHOOT_BPS)
    budget.repay_bps = 9_500  # the start takes most of it: below the layer's floor
    assert budget.layer_bps() == 0.0


def test_a_layer_at_the_gated_rate_goes_regularly_and_spends_the_ceiling() -> None:
    """Sized by the gate's own numbers (the frames' cost, the start's repayment), a layer packet every third frame
    goes nearly every time, and the recording spends what its ceiling allows: sized with the live margins, the
    same gate refused a third of them (irregular corrections, each larger)."""
    for gated in (True, False):
        gate = Ceiling(16_000, end_s=10.0, start_repay_s=10.0)
        start, frame = 4_700, 36  # bytes: the session's start; a frame as the gate charges it
        gate.on_send_uncontrolled(start, 0.0)
        budget = Budget(ceiling_bps=16_000, target_bps=16_000, features_bps=frame * 8 * 30.0, gated=gated)
        offered = packets = 0
        total = start
        for index in range(300):
            now = index / 30
            assert index == 0 or gate.may_send(frame, now, essential=True)
            size = frame
            if index and index % 3 == 0:
                budget.repay_bps = gate.start_repay_bps(now)
                layer = round(budget.layer_bps() / 8 / LAYER_FPS)
                offered += 1
                if gate.may_send(frame + layer, now):
                    size, packets = size + layer, packets + 1
            gate.on_send(index, size, now)
            total += size
        if gated:
            assert packets >= 0.9 * offered and total * 8 / 10.0 >= 0.95 * 16_000
        else:
            assert packets < 0.7 * offered
        assert total * 8 / 10.0 <= 16_000 * 1.02


def test_live_the_layer_runs_no_faster_than_its_key_frames_fit_the_window() -> None:
    """The uplink caps the layer so that a key frame fits what its window leaves beside the frames; below the
    layer's floor there is none."""
    budget = Budget(ceiling_bps=256_000, target_bps=24_000, features_bps=11_000)
    uncapped = budget.layer_bps()
    budget.layer_max_bps = 4_000
    assert uncapped > 4_000 and budget.layer_bps() == 4_000
    budget.layer_max_bps = MIN_LAYER_BPS - 1
    assert budget.layer_bps() == 0.0


# ----------------------------------------------------------------------------- unit: hostile packets
def _stream(count: int) -> list[bytes]:
    encoder = LayerEncoder(SIZE, 8.0, 10.0)
    try:
        return [encoder.encode(_box(i)) for i in range(count)]
    finally:
        encoder.close()


@pytest.mark.parametrize("damage", ["empty", "header only", "garbage", "version", "side", "no key first", "lost",
                                    "truncated key", "too long"])
def test_hostile_layer_payloads_raise_code_error(damage: str) -> None:
    packets = _stream(3)
    decoder = LayerFieldDecoder()
    draft = FrameDraft((4, 4))
    key, second, third = packets
    bad = {
        "empty": [b""],
        "header only": [key[:3]],
        "garbage": [bytes([3, 0, SIZE // 2]) + bytes(range(256)) * 4],
        "version": [bytes([(7 << 1) | 1]) + key[1:]],
        "side": [key[:2] + bytes([64]) + key[3:]],
        "no key first": [second],
        "lost": [key, third],
        "truncated key": [key[: len(key) // 3]],
        "too long": [key + bytes(70_000)],
    }[damage]
    with pytest.raises(CodeError):
        for packet in bad:
            decoder.decode(packet, draft)


def test_a_bad_layer_packet_fails_its_frame_not_the_receiver() -> None:
    decoder = FrameDecoder(["landmarks", CAPABILITY])
    with pytest.raises(FrameDecodeError):
        decoder.decode_frame(m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[None, b"\x03\x00\x30garbage"]))


# ------------------------------------------------------------------- a recording through the real pipeline
FRAMES = 210
FPS = 30.0
CEILING_BPS = 24_000.0


@dataclass
class Recording:
    messages: list[m.Message] = field(default_factory=list)
    states: dict[int, KeyframeState] = field(default_factory=dict)  # every keyframe the sender built, as the receiver decodes it
    sent: dict[int, tuple[Prepared | None, str]] = field(default_factory=dict)  # seq -> (face code values, face state)
    residual_kf: dict[int, int] = field(default_factory=dict)  # seq -> the keyframe its layer residual was drawn from
    codes: list[str] = field(default_factory=list)
    layer_targets: list[float] = field(default_factory=list)


def _input_frames(directory: Path) -> Path:
    """The astronaut turning and sliding, her face ~110 px wide in 384x384 (tests/golden's motion, larger)."""
    from tests.render_fixtures import astronaut

    base = astronaut()
    directory.mkdir(parents=True)
    for index in range(FRAMES):
        t = index / FPS
        matrix = cv2.getRotationMatrix2D((256.0, 153.6), 8.0 * math.sin(2 * math.pi * t / 1.5), 1.0 + 0.05 * math.sin(3 * t))
        matrix[0, 2] += 18.0 * math.sin(2 * math.pi * t / 1.2)
        frame = cv2.warpAffine(base, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(directory / f"{index:05d}.png"), cv2.resize(frame, (384, 384), interpolation=cv2.INTER_AREA))
    return directory


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    from facewire.sender.cli import make_analyzer

    frames = _input_frames(tmp_path_factory.mktemp("layer") / "in")
    source = FrameSource(str(frames), CaptureOptions(fps=FPS, media_clock=True))
    analyzer = make_analyzer("auto", "cpu")
    coder = FrameCoder(codes_for("features+residual", CEILING_BPS, True), Budget.at_most(CEILING_BPS))
    coder.policy.interval_s = 4.0  # a second keyframe within the recording, sent in parts
    out = Recording(codes=negotiate(coder.codes, list(FIELD_CODECS)))
    stream, gate = FeatureStream(FrameEncoder(out.codes)), Ceiling(CEILING_BPS)
    face_name = face_code(out.codes)
    try:
        for frame in source:
            analysis = analyzer.analyze(frame)
            item = coder.code(analyzer, analysis)
            if item.keyframe is not None and (state := coder.keyframe_state(item.keyframe.kf)) is not None:
                out.states[item.keyframe.kf] = state
            layer = item.frame.prepared.get(CAPABILITY)
            for message in plan(stream, item, gate, frame.index / FPS):
                out.messages.append(message)
                if isinstance(message, m.Frame):
                    out.sent[message.seq] = (item.frame.prepared.get(face_name), analysis.face_state)
                    if layer is not None and isinstance(layer.values, LayerValues):
                        out.residual_kf[message.seq] = layer.values.kf
                    if message.codes[-1] is not None and layer is not None and isinstance(layer.values, LayerValues):
                        out.layer_targets.append(layer.values.kbps)
            coder.budget.observe_frame(stream.last_features_bytes, FPS)
            coder.held = stream.held
    finally:
        source.close()
        analyzer.close()
    return out


BODY = "body-motion"


@dataclass
class _Pictures:
    images: list[Image] = field(default_factory=list)

    def write(self, image: Image, ts_us: int) -> None:
        self.images.append(image.copy())

    def update_stats(self, stats: dict[str, float]) -> None:
        return None

    def close(self) -> None:
        return None


def _layer_packets(recording: Recording) -> list[tuple[m.Frame, bytes | None]]:
    return [(message, message.codes[recording.codes.index(CAPABILITY)])
            for message in recording.messages if isinstance(message, m.Frame)]


def test_the_recording_carries_the_layer(recording: Recording) -> None:
    packets = [p for _, p in _layer_packets(recording) if p is not None]
    keyframes = [message for message in recording.messages if isinstance(message, m.Keyframe)]
    assert CAPABILITY in recording.codes and keyframes
    assert len(packets) >= 5, "the layer should run once the start's debt is repaid"


def test_the_replica_draws_what_the_receiver_shows_bit_for_bit(recording: Recording) -> None:
    from facewire.shared.render.mesh import MeshRenderer

    pictures = _Pictures()
    player = Player(MeshRenderer(), pictures, StatsMeter(), background="#808080")
    session = Session(AssetStore(), FrameDecoder(recording.codes))
    replica = Replica(MeshRenderer())
    own = LayerDecoder(SIZE)  # the sender decoding its own packets
    own_body = BodyDecoder()  # and its own body motions
    own_fix = AlphaFixDecoder()  # and its own alpha corrections
    expected: list[Image] = []
    compositor: Compositor | None = None
    corrected = 0
    for message in recording.messages:
        replies, job = session.handle(message)
        assert not replies
        if job is None:
            continue
        assert isinstance(message, m.Frame)
        sender_state = recording.states[message.kf]
        # the keyframe the sender built is the one the receiver decoded
        assert np.array_equal(sender_state.image, job.keyframe.image)
        assert sender_state.alpha is not None and job.keyframe.alpha is not None
        assert np.array_equal(sender_state.alpha, job.keyframe.alpha)
        player.show(job, 1 / FPS)
        face, face_state = recording.sent[message.seq]
        payload = message.codes[recording.codes.index(CAPABILITY)]
        box = None if payload is None else own.decode(payload)
        draft = FrameDraft((sender_state.image.shape[1], sender_state.image.shape[0]))
        if BODY in recording.codes and (motion := message.codes[recording.codes.index(BODY)]) is not None:
            own_body.decode(motion, draft)
        if ALPHA_FIX in recording.codes:
            if (fix := message.codes[recording.codes.index(ALPHA_FIX)]) is not None:
                own_fix.decode(fix, draft)
            own_fix.hold(draft)
        replica.use(sender_state)
        person = replica.show(replica.frame_state(None if face is None else face.landmarks, face_state, layer=box,
                                                  body=draft.body))
        person = type(person)(person.image, apply_fix(person.alpha, draft.alpha_fix))
        corrected += replica.hold.box is not None
        compositor = compositor or Compositor("#808080", (person.image.shape[1], person.image.shape[0]))
        expected.append(compositor.compose(person))
    assert len(pictures.images) == len(expected) >= FRAMES // 2
    for index, (shown, replicated) in enumerate(zip(pictures.images, expected, strict=True)):
        assert np.array_equal(shown, replicated), f"picture {index} differs"
    assert corrected >= 30, "the layer's correction should be on a good part of the pictures"


def test_a_layer_packet_only_corrects_the_keyframe_its_frame_is_drawn_from(recording: Recording) -> None:
    """The residual is drawn from a keyframe the receiver holds (a keyframe still on its way is not drawn
    from, so the layer waits for no keyframe), a packet goes only with a frame drawn from that keyframe,
    and the layer's first packet for a keyframe is a key frame."""
    first_packets: dict[int, bytes] = {}
    for message, payload in _layer_packets(recording):
        if payload is not None:
            residual_kf = recording.residual_kf.get(message.seq)
            assert residual_kf == message.kf, f"frame {message.seq}: a residual of keyframe {residual_kf} on {message.kf}"
            first_packets.setdefault(message.kf, payload)
    assert first_packets and all(packet_is_key(p) for p in first_packets.values())


def test_the_layer_stays_within_its_share_over_the_recording(recording: Recording) -> None:
    frames = [message for message in recording.messages if isinstance(message, m.Frame)]
    layer = sum(len(p) for _, p in _layer_packets(recording) if p is not None)
    total = sum(len(m.encode(message)) for message in recording.messages)
    seconds = FRAMES / FPS
    assert recording.layer_targets and max(recording.layer_targets) <= LAYER_SHARE * CEILING_BPS / 1000
    # SVT-AV1 misses its target by up to ~1 kbps at these rates, and a 1.6 s recording holds its first key frame
    assert layer * 8 / seconds <= max(recording.layer_targets) * 1000 + 2 * LAYER_OVERSHOOT_BPS + 8 * 1500 / seconds
    assert total * 8 / seconds <= 1.1 * CEILING_BPS + 8 * 6000 / seconds  # the first keyframe may borrow, once
    # a layer key frame larger than the gate's half second of savings may hold the frames behind it a moment
    assert len(frames) >= FRAMES * 0.8, "the layer's share must leave the frames their room"


def test_the_hold_clears_on_a_keyframe_change() -> None:
    hold = LayerHold()
    box = _box(0)
    hold.update(1, box)
    hold.update(1, None)
    assert hold.box is box
    hold.update(2, None)
    assert hold.box is None and hold.kf == 2


# ------------------------------------------------------- the recording gate after the session's start
def _gate_run(frame_bytes: int, seconds: float, start_bytes: int = 4700, ceiling_bps: float = 16_000.0,
              layer_bytes: int = 0) -> tuple[int, int, int]:
    """(frames sent, layer packets sent, bytes sent) through a Ceiling: the start whole, then frames at
    30 fps, each offering a layer packet of `layer_bytes` (not essential) every third frame."""
    gate = Ceiling(ceiling_bps)
    gate.on_send_uncontrolled(start_bytes, 0.0)
    frames = packets = 0
    total = start_bytes
    for index in range(round(seconds * 30)):
        now = index / 30
        if index and not gate.may_send(frame_bytes, now, essential=True):
            continue
        size = frame_bytes
        if layer_bytes and index % 3 == 0 and gate.may_send(frame_bytes + layer_bytes, now):
            size += layer_bytes
            packets += 1
        gate.on_send(index, size, now)
        frames += 1
        total += size
    return frames, packets, total


def test_a_light_face_code_keeps_moving_while_the_first_keyframe_is_repaid() -> None:
    frames, packets, total = _gate_run(frame_bytes=30, seconds=10.0, layer_bytes=90)
    assert frames == 300  # not one frame held: 7 kbps of frames fit beside the keyframe's repayment
    assert 0 < packets < 100  # the layer waited for the bucket
    assert total * 8 / 10.0 <= 16_000 * 1.1


def test_a_heavy_face_code_still_repays_the_start_within_the_ceiling() -> None:
    for seconds in (6.0, 10.0):  # repay_s and the ceiling's window: within them, frames may run ahead
        frames, _, total = _gate_run(frame_bytes=500, seconds=seconds)
        assert frames < seconds * 30
        assert total * 8 / seconds <= 16_000 * 1.1 + 8 * 500 / seconds  # one frame over at most


def test_a_held_box_is_stale_when_much_of_it_is_far_off_the_fresh_residual() -> None:
    from facewire.sender.stream import STALE_CODES, STALE_SHARE, LayerCost

    cost = LayerCost()
    held = np.full((SIZE, SIZE, 3), 128, np.uint8)
    opened = held.copy()
    opened[40:70, 30:66] = 128 + 2 * STALE_CODES  # a mouth opened since: ~12% of the box far off
    assert not cost.stale(opened, kf=1)  # nothing held yet
    packet = LayerEncoder(SIZE, 4.0).encode(held)
    cost.sent(packet, kf=1, kbps=4.0, box=held)
    assert not cost.stale(held, kf=1)
    assert cost.stale(opened, kf=1)
    assert not cost.stale(opened, kf=2)  # another keyframe: the receiver's hold was cleared
    nudged = held.copy()
    side = int(math.sqrt(STALE_SHARE) * SIZE) - 2
    nudged[:side, :side] = 128 + 2 * STALE_CODES  # less than STALE_SHARE of the box
    assert not cost.stale(nudged, kf=1)
    slight = held + np.uint8(STALE_CODES // 2)  # all of it, a little
    assert not cost.stale(slight, kf=1)
    cost.lost = True
    assert not cost.stale(opened, kf=1)


@dataclass
class _EveryMatte:
    """An analyser that is not a SenderAnalyzer: `analyse` asks it for every frame's matte."""

    inner: object

    def analyze(self, frame: CapturedFrame) -> FrameAnalysis:
        return self.inner.analyze(frame)  # type: ignore[attr-defined, no-any-return]

    def foreground(self) -> Image | None:
        return self.inner.foreground()  # type: ignore[attr-defined, no-any-return]

    def reset(self) -> None:
        self.inner.reset()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_a_recording_that_leaves_out_the_mattes_nobody_reads_sends_the_same(tmp_path: Path) -> None:
    from facewire.sender.cli import make_analyzer
    from facewire.sender.runner import record_stream
    from tests.golden.digest import normalised, records

    frames = _input_frames(tmp_path / "in")
    streams, mattes = [], []
    for lazy in (True, False):
        source = FrameSource(str(frames), CaptureOptions(fps=FPS, media_clock=True))
        analyzer = make_analyzer("auto", "cpu")
        made = [0]
        matte = analyzer.matter.matte  # type: ignore[union-attr]

        def counted(frame: CapturedFrame, matte=matte, made=made):  # type: ignore[no-untyped-def]
            made[0] += 1
            return matte(frame)

        analyzer.matter.matte = counted  # type: ignore[union-attr, method-assign]
        # below MIN_BODY_WITH_LAYER_BPS: no body code reads every frame's matte
        coder = FrameCoder(codes_for("features+residual", 16_000.0, True), Budget.at_most(16_000.0))
        assert not coder.matte_every_frame
        path = tmp_path / f"{lazy}.fws"
        try:
            record_stream(source, analyzer if lazy else _EveryMatte(analyzer), path, None, coder=coder)
        finally:
            source.close()
            analyzer.close()
        streams.append([normalised(raw) for raw in records(path)])
        mattes.append(made[0])
    assert streams[0] == streams[1]
    assert mattes[1] == FRAMES and mattes[0] < 0.2 * FRAMES  # the keyframes' alone (the layer reads the receiver's alpha)
