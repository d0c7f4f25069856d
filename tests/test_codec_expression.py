"""The expression code (facewire.shared.codec.expression) on synthetic faces: the codec's parts, its
place on the codec seam, and the sender's stream down to the receiver's decoder.

Synthetic faces are the basis' mean neutral plus a person's own shape (partly outside the basis'
span), a random walk of expression coefficients and pose, and a little noise, so no media and no
tracker are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facewire.sender.coding import DEFAULT_CODES, Budget, FrameCoder, Outgoing
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.expression import entropy
from facewire.shared.codec.expression.basis import (
    BASIS_SHA256,
    BasisError,
    ExpressionBasis,
    Steps,
    shipped_basis,
)
from facewire.shared.codec.expression.code import FRAME_INTRA, Grid, Neutral, decode_frame, encode_frame, quantise
from facewire.shared.codec.expression.entropy import range_decode, range_encode
from facewire.shared.codec.expression.field import ExpressionDecoder, ExpressionEncoder, ExpressionPreparer
from facewire.shared.codec.expression.neutral import SETUP_TREE, decode_setup, encode_setup
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameDecodeError, FrameDecoder, FrameEncoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, Prepared
from facewire.shared.face.pose import from_canonical, head_pose
from facewire.shared.face.topology import MESH_SIZE
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis, HeadPose
from facewire.shared.wire import messages as m

# The model tables must be bit-identical on every platform, or encoder and decoder desynchronise.
TABLES_SHA256 = "6c812ca53483a9a89c2aa956976ace2c986287d1c46b1dbe95ea8fc85e352ada"
CODE = "expression"
IMAGE = np.zeros((8, 8, 3), np.uint8)
Face = tuple[HeadPose, np.ndarray]


@pytest.fixture(scope="module")
def basis() -> ExpressionBasis:
    return shipped_basis()


def synthetic_clip(basis: ExpressionBasis, frames: int, seed: int = 0, person: float = 0.01) -> list[Face]:
    """A person who talks and turns: coefficients and pose random-walk around rest."""
    rng = np.random.default_rng(seed)
    k = basis.size
    coeff = np.zeros(k)
    spread = basis.coeff_std.astype(np.float64)
    rest = np.array([0.0, -4.0, 0.0, 256.0, 240.0, 110.0])
    pose = rest.copy()
    shape = rng.normal(0.0, person, (MESH_SIZE, 3))  # this person's face, partly outside the basis
    out = []
    for _ in range(frames):
        coeff = 0.9 * coeff + 0.45 * spread * rng.normal(size=k)
        pose = rest + 0.97 * (pose - rest) + np.array([0.6, 0.4, 0.3, 1.5, 1.0, 0.4]) * rng.normal(size=6)
        canonical = (basis.mean_neutral + shape + (coeff @ basis.rows).reshape(-1, 3)
                     + rng.normal(0, 0.002, (MESH_SIZE, 3)))
        hp = HeadPose(*pose.tolist())
        lm = from_canonical(canonical, hp)
        lm[:, 2] += 40.0  # MediaPipe's z has an arbitrary offset: the code must not care
        out.append((hp, lm))
    return out


def analysis(index: int, face: Face | None, image: np.ndarray = IMAGE, state: str = "tracked") -> FrameAnalysis:
    observation = None if face is None else FaceObservation(face[1], face[0], 0.9, state)  # type: ignore[arg-type]
    return FrameAnalysis(CapturedFrame(index, index * 33_333, image), observation, None)


class Link:
    """A preparer, the send-time encoder and the decoder, with setups passed as the stream passes them."""

    def __init__(self, basis: ExpressionBasis) -> None:
        self.preparer, self.encoder, self.decoder = ExpressionPreparer(basis), ExpressionEncoder(basis), ExpressionDecoder(basis)
        self.setups = 0
        self.others: list[ExpressionDecoder] = []  # more receivers of the same setups

    def prepare(self, index: int, face: Face) -> tuple[FrameAnalysis, Prepared]:
        frame = analysis(index, face)
        prepared = self.preparer.prepare(frame)
        assert prepared is not None and prepared.landmarks is not None
        setup = self.preparer.take_setup()
        if setup is not None:  # setups are never skipped
            for coder in (self.encoder, self.decoder, *self.others):
                coder.setup(setup)
            self.setups += 1
        return frame, prepared

    def send(self, frame: FrameAnalysis, prepared: Prepared, intra: bool = False) -> tuple[bytes, np.ndarray]:
        payload = self.encoder.encode(CodedFrame(frame, {CODE: prepared}), intra)
        assert payload is not None
        draft = FrameDraft((512, 512))
        self.decoder.decode(payload, draft)
        assert draft.landmarks is not None
        return payload, draft.landmarks

    def run(self, clip: list[Face], intra_every: int = 0) -> list[tuple[bytes, np.ndarray, Prepared]]:
        out = []
        for i, face in enumerate(clip):
            frame, prepared = self.prepare(i, face)
            payload, decoded = self.send(frame, prepared, intra=bool(intra_every) and i % intra_every == 0)
            out.append((payload, decoded, prepared))
        return out


def xy_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean())


# --- the basis and the coder's tables ------------------------------------------------------------


def test_model_tables_are_the_specified_ones() -> None:
    assert hashlib.sha256(entropy.TABLE_FREQS.astype("<f8").tobytes()).hexdigest() == TABLES_SHA256


def test_the_shipped_basis_is_the_pinned_one(basis: ExpressionBasis) -> None:
    assert basis.sha256 == BASIS_SHA256 and basis.basis_id == int(BASIS_SHA256[:8], 16)
    assert basis.provenance["clips"] and all(len(clip["sha256"]) == 64 for clip in basis.provenance["clips"])
    for rows in basis.stage_rows64:
        assert np.allclose(rows @ rows.T, np.eye(len(rows)), atol=1e-5)


def test_a_wrong_missing_or_corrupt_basis_is_refused_naming_the_file(basis: ExpressionBasis, tmp_path: Path) -> None:
    from facewire.models import shipped

    path = shipped("expression_basis.npz")
    with pytest.raises(BasisError, match=r"expression_basis\.npz has sha256 .* expected 0000"):
        ExpressionBasis.load(path, "0" * 64)
    with pytest.raises(BasisError, match=r"gone\.npz cannot be read"):
        ExpressionBasis.load(tmp_path / "gone.npz", BASIS_SHA256)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(BasisError, match=r"broken\.npz does not load"):
        ExpressionBasis.load(broken)


def test_a_saved_basis_loads_back_identically(basis: ExpressionBasis, tmp_path: Path) -> None:
    digest = basis.save(tmp_path / "again.npz")
    assert digest == basis.save(tmp_path / "twice.npz")  # reproducible bytes
    again = ExpressionBasis.load(tmp_path / "again.npz", digest)
    assert np.array_equal(again.rows, basis.rows) and again.default_steps == basis.default_steps
    assert again.provenance == basis.provenance and np.array_equal(again.mesh_parent, basis.mesh_parent)


# --- round trips and prediction ------------------------------------------------------------------


def test_the_receiver_draws_exactly_what_the_preparer_predicted(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 200)
    out = Link(basis).run(clip)
    for _, decoded, prepared in out:
        assert np.array_equal(decoded, prepared.landmarks)
    errors = [xy_error(decoded, lm) for (_, lm), (_, decoded, _) in zip(clip, out, strict=True)]
    sizes = [len(payload) for payload, _, _ in out]
    assert np.mean(errors) < 1.0  # in-basis expression: quantisation, the person's shape and noise remain
    assert np.mean(sizes[1:]) < 40 and max(sizes) < 80


def test_prediction_runs_across_skipped_frames(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 120, seed=4)
    link = Link(basis)
    sent = 0
    for i, face in enumerate(clip):
        frame, prepared = link.prepare(i, face)  # every frame is prepared ...
        if i % 5 in (1, 2) or 40 <= i < 60:  # ... but the link had no room for these
            continue
        payload, decoded = link.send(frame, prepared)
        assert np.array_equal(decoded, prepared.landmarks)
        assert bool(payload[0] & FRAME_INTRA) == (sent == 0)
        sent += 1
    # the last predicted frame decodes exactly as an intra code of it does
    neutral = link.preparer.source.neutral
    assert neutral is not None and link.encoder.prediction.q is not None
    q = link.encoder.prediction.q
    assert np.array_equal(decode_frame(neutral, encode_frame(neutral, q, None), None), q)


def test_no_drift_over_600_predicted_frames(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 600, seed=1)
    out = Link(basis).run(clip)
    assert sum(payload[0] & FRAME_INTRA != 0 for payload, _, _ in out) == 1
    errors = np.array([xy_error(decoded, lm) for (_, lm), (_, decoded, _) in zip(clip, out, strict=True)])
    assert errors[-100:].mean() < errors[100:200].mean() * 1.3 + 0.05 and errors.max() < 2.0


def test_quantisation_is_absolute(basis: ExpressionBasis) -> None:
    """The indices of a frame depend on it and the neutral only, not on what came before."""
    clip = synthetic_clip(basis, 30, seed=6)
    link = Link(basis)
    prepared = [link.prepare(i, face)[1] for i, face in enumerate(clip)]
    neutral = link.preparer.source.neutral
    assert neutral is not None
    values = prepared[-1].values
    assert np.array_equal(quantise(neutral, *clip[-1]), values.q)  # type: ignore[attr-defined]


# --- setups: the neutral face ---------------------------------------------------------------------


def test_a_new_neutral_is_adopted_on_both_sides_without_breaking_prediction(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 300, seed=2)
    link = Link(basis)
    out = link.run(clip)
    assert link.setups >= 2  # the provisional neutral, then the estimate
    generations = {payload[0] & 0x0F for payload, _, _ in out}
    assert len(generations) == link.setups
    assert sum(payload[0] & FRAME_INTRA != 0 for payload, _, _ in out) == 1  # a new neutral needs no intra frame


def test_a_frame_for_a_neutral_the_receiver_lacks_is_refused(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 200, seed=2)
    link, behind = Link(basis), ExpressionDecoder(basis)
    for i, face in enumerate(clip):
        frame, prepared = link.prepare(i, face)
        if link.setups == 1 and not behind.neutrals:
            first = link.preparer.current_setup()
            assert first is not None
            behind.setup(first)  # ... and no later one
        payload, _ = link.send(frame, prepared, intra=True)
        if link.setups >= 2:
            with pytest.raises(CodeError, match="generation 1 .* holds 0"):
                behind.decode(payload, FrameDraft((512, 512)))
            return
        behind.decode(payload, FrameDraft((512, 512)))
    pytest.fail("no second neutral")


def test_a_late_receiver_joins_on_the_current_setup_and_an_intra_frame(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 260, seed=3)
    link = Link(basis)
    link.run(clip[:200])
    late = ExpressionDecoder(basis)
    setup = link.preparer.current_setup()
    assert setup is not None
    late.setup(setup)
    link.others.append(late)
    frame, prepared = link.prepare(200, clip[200])
    predicted, _ = link.send(frame, prepared)
    with pytest.raises(CodeError, match="no previous frame"):
        late.decode(predicted, FrameDraft((512, 512)))
    for i, face in enumerate(clip[201:], 201):
        frame, prepared = link.prepare(i, face)
        payload, decoded = link.send(frame, prepared, intra=i == 201)
        draft = FrameDraft((512, 512))
        late.decode(payload, draft)
        assert np.array_equal(draft.landmarks, decoded)


def test_setup_payload_round_trips_in_both_forms(basis: ExpressionBasis) -> None:
    grid = Grid(basis, basis.default_steps.fixed())
    rng = np.random.default_rng(5)
    for spread in (0.0, 0.03, 0.5):  # smooth faces go along the mesh tree, rough ones plain
        face = basis.mean_neutral + rng.normal(0, spread, (MESH_SIZE, 3))
        neutral = Neutral(7, np.rint(face / grid.steps.mesh_steps()).astype(np.int64), grid)
        payload = encode_setup(neutral)
        back = decode_setup(basis, payload)
        assert back.generation == 7 and np.array_equal(back.q, neutral.q) and back.grid.steps == grid.steps
    assert encode_setup(Neutral(0, np.rint(basis.mean_neutral / grid.steps.mesh_steps()).astype(np.int64), grid))[1] in (0, SETUP_TREE)


def test_other_steps_restart_prediction_on_both_sides(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 4)
    link = Link(basis)
    link.run(clip[:2])
    coarse = ExpressionPreparer(basis, replace(basis.default_steps, angle_deg=0.5))
    coarse.prepare(analysis(0, clip[2]))
    setup = coarse.take_setup()
    assert setup is not None
    link.encoder.setup(setup)
    link.decoder.setup(setup)
    prepared = coarse.prepare(analysis(1, clip[3]))
    assert prepared is not None
    payload = link.encoder.encode(CodedFrame(analysis(1, clip[3]), {CODE: prepared}), intra=False)
    assert payload is not None and payload[0] & FRAME_INTRA
    draft = FrameDraft((512, 512))
    link.decoder.decode(payload, draft)
    assert np.array_equal(draft.landmarks, prepared.landmarks)


def test_a_setup_for_another_basis_is_refused(basis: ExpressionBasis) -> None:
    preparer = ExpressionPreparer(basis)
    preparer.prepare(analysis(0, synthetic_clip(basis, 1)[0]))
    setup = preparer.take_setup()
    assert setup is not None
    other = replace(basis, sha256="ffffffff" + basis.sha256[8:])
    with pytest.raises(CodeError, match=f"made for basis {basis.basis_id:08x}, this receiver holds ffffffff"):
        ExpressionDecoder(other).setup(setup)


# --- keyframe codes -------------------------------------------------------------------------------


def test_the_keyframe_code_is_intra_and_leaves_the_prediction_alone(basis: ExpressionBasis) -> None:
    clip = synthetic_clip(basis, 40, seed=8)
    link = Link(basis)
    link.run(clip[:20])
    frame, prepared = link.prepare(20, clip[20])
    code = link.preparer.keyframe_code(prepared)
    assert code[0] & FRAME_INTRA
    assert np.array_equal(link.decoder.decode_keyframe(code), prepared.landmarks)
    payload, decoded = link.send(frame, prepared)  # predicted, from frame 19: the keyframe code did not touch the chain
    assert not payload[0] & FRAME_INTRA and np.array_equal(decoded, prepared.landmarks)
    with pytest.raises(CodeError, match="must be intra"):
        link.decoder.decode_keyframe(payload)


def test_a_keyframe_code_decodes_with_the_neutral_it_names(basis: ExpressionBasis) -> None:
    """A keyframe's parts may cross the link while newer setups arrive: its code names its neutral."""
    clip = synthetic_clip(basis, 2, seed=9)
    grid = Grid(basis, basis.default_steps.fixed())
    decoder = ExpressionDecoder(basis)
    neutrals = [Neutral(g, np.rint((basis.mean_neutral + 0.01 * g) / grid.steps.mesh_steps()).astype(np.int64), grid)
                for g in range(6)]
    code = encode_frame(neutrals[0], quantise(neutrals[0], *clip[0]), None)
    decoder.setup(encode_setup(neutrals[0]))
    for neutral in neutrals[1:4]:
        decoder.setup(encode_setup(neutral))
    assert decoder.decode_keyframe(code).shape == (MESH_SIZE, 3)  # three setups later: still held
    decoder.setup(encode_setup(neutrals[4]))
    with pytest.raises(CodeError, match="names neutral generation 0"):
        decoder.decode_keyframe(code)


# --- what may not decode ---------------------------------------------------------------------------


def _sent(basis: ExpressionBasis) -> tuple[ExpressionDecoder, bytes, bytes]:
    """A decoder holding a neutral and one frame, and (intra, predicted) payloads that follow it."""
    clip = synthetic_clip(basis, 3, seed=11)
    link = Link(basis)
    link.run(clip[:1])
    frame, prepared = link.prepare(1, clip[1])
    encoder = ExpressionEncoder(basis)
    encoder.neutral, encoder.prediction = link.encoder.neutral, replace(link.encoder.prediction)
    intra = encoder.encode(CodedFrame(frame, {CODE: prepared}), intra=True)
    predicted = link.encoder.encode(CodedFrame(frame, {CODE: prepared}), intra=False)
    assert intra is not None and predicted is not None
    return link.decoder, intra, predicted


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: b"",
        lambda p: p[:1],  # a header and nothing
        lambda p: p[:-1],  # truncated
        lambda p: p + b"\x00",  # a trailing byte
        lambda p: p + bytes(7),  # trailing bytes
        lambda p: bytes([0x00 | (p[0] & 0x1F)]) + p[1:],  # version 0
        lambda p: bytes([0xE0 | (p[0] & 0x1F)]) + p[1:],  # version 7
        lambda p: bytes([p[0] ^ 0x01]) + p[1:],  # another neutral
        lambda p: p + bytes(5000),  # oversized
    ],
)
@pytest.mark.parametrize("kind", ["intra", "predicted"])
def test_damaged_frames_raise_code_error_and_leave_the_state(basis: ExpressionBasis, damage, kind: str) -> None:  # type: ignore[no-untyped-def]
    decoder, intra, predicted = _sent(basis)
    payload = intra if kind == "intra" else predicted
    held = decoder.prediction.q
    with pytest.raises(CodeError):
        decoder.decode(damage(payload), FrameDraft((512, 512)))
    assert decoder.prediction.q is held
    decoder.decode(payload, FrameDraft((512, 512)))  # the undamaged one still decodes


def test_a_frame_before_any_setup_is_refused(basis: ExpressionBasis) -> None:
    _, intra, _ = _sent(basis)
    with pytest.raises(CodeError, match="before any setup"):
        ExpressionDecoder(basis).decode(intra, FrameDraft((512, 512)))


def _setup(basis: ExpressionBasis) -> bytes:
    preparer = ExpressionPreparer(basis)
    preparer.prepare(analysis(0, synthetic_clip(basis, 1)[0]))
    setup = preparer.take_setup()
    assert setup is not None
    return setup


HEAD = 8 + 20  # version, flags, generation, stages, basis id; five steps


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p[:5], "bytes"),
        (lambda p: p[:HEAD + 4], "shorter than its header"),
        (lambda p: p[:-1], "decode"),  # truncated body
        (lambda p: p + b"\x00", "trailing"),
        (lambda p: bytes([2]) + p[1:], "version"),
        (lambda p: p[:1] + bytes([0x80]) + p[2:], "flags"),
        (lambda p: p[:3] + bytes([255]) + p[4:], "stages"),  # a huge stage count
        (lambda p: p[:4] + struct.pack("<I", 0x12345678) + p[8:], "basis 12345678"),
        (lambda p: p[:8] + bytes(4) + p[12:], "steps"),  # a zero angle step
        (lambda p: p[:8] + b"\xff\xff\xff\xff" + p[12:], "steps"),  # an absurd one
        (lambda p: p[:HEAD + 16] + struct.pack("<H", 65535) + p[HEAD + 18:], "points"),  # a huge point count
        (lambda p: p[:HEAD + 18] + bytes([200]) + p[HEAD + 19:], "model"),
        (lambda p: p + bytes(70000), "bytes"),
    ],
)
def test_damaged_setups_raise_code_error(basis: ExpressionBasis, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CodeError, match=message):
        ExpressionDecoder(basis).setup(damage(_setup(basis)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=120))
def test_arbitrary_frame_bytes_raise_nothing_but_code_error(basis: ExpressionBasis, data: bytes) -> None:
    decoder, intra, _ = _sent(basis)
    generation = decoder.neutrals[-1].generation & 0x0F
    for payload in (data, bytes([0x20 | generation]) + data, bytes([0x30 | generation]) + data):
        draft = FrameDraft((512, 512))
        with contextlib.suppress(CodeError):
            decoder.decode(payload, draft)
            assert draft.landmarks is not None and np.all(np.isfinite(draft.landmarks))
        with contextlib.suppress(CodeError):
            assert np.all(np.isfinite(decoder.decode_keyframe(payload)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_arbitrary_setup_bytes_raise_nothing_but_code_error(basis: ExpressionBasis, data: bytes) -> None:
    head = _setup(basis)[:HEAD + 4 * len(basis.stage_sizes) + 5]
    for payload in (data, head + data, head[:-3] + data):
        with contextlib.suppress(CodeError):
            ExpressionDecoder(basis).setup(payload)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-(1 << 31), 1 << 31), min_size=1, max_size=50),
       bins=st.lists(st.integers(0, entropy.MODELS - 1), min_size=50, max_size=50))
def test_the_range_coder_round_trips_any_integers(values: list[int], bins: list[int]) -> None:
    v, b = np.array(values, np.int64), np.array(bins[:len(values)], np.int64)
    assert np.array_equal(range_decode(range_encode(v, b), b), v)


def test_the_range_coder_refuses_values_beyond_its_range() -> None:
    with pytest.raises(CodeError, match="range"):
        range_encode(np.array([1 << 40]), np.array([0]))


def test_models_follow_activity() -> None:
    still = np.zeros(40, np.int64)
    assert len(range_encode(still, entropy.model_bin(np.full(40, 1)))) <= 3  # a still value costs well under a bit
    jumpy = np.arange(-20, 20, dtype=np.int64) * 37
    busy = entropy.model_bin(np.full(40, 16 * 500))
    assert np.array_equal(range_decode(range_encode(jumpy, busy), busy), jumpy)


def test_a_broken_face_is_not_coded(basis: ExpressionBasis) -> None:
    pose, lm = synthetic_clip(basis, 1)[0]
    preparer = ExpressionPreparer(basis)
    assert preparer.prepare(analysis(0, None)) is None
    bad = lm.copy()
    bad[5, 0] = np.nan
    assert preparer.prepare(analysis(0, (pose, bad))) is None
    assert preparer.prepare(analysis(1, (replace(pose, scale=-1.0), lm))) is None
    assert preparer.prepare(analysis(2, (pose, lm))) is not None
    neutral = preparer.source.neutral
    assert neutral is not None
    with pytest.raises(CodeError):
        quantise(neutral, pose, bad)


def test_steps_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="steps"):
        Steps(angle_deg=0.0)


# --- the neutral estimate ---------------------------------------------------------------------------


def test_the_neutral_carries_the_persons_shape(basis: ExpressionBasis) -> None:
    """What the coefficients cannot express (outside the basis' span) is the person's own shape."""
    clip = synthetic_clip(basis, 150, seed=12, person=0.02)
    link = Link(basis)
    link.run(clip)
    neutral = link.preparer.source.neutral
    assert neutral is not None
    shape = np.random.default_rng(12).normal(0.0, 0.02, (MESH_SIZE, 3))  # synthetic_clip's first draw

    def outside(d: np.ndarray) -> np.ndarray:
        return d - basis.span_part(d)

    error = outside(neutral.points - basis.mean_neutral) - outside(shape)
    assert float(np.sqrt(np.mean(error[:, :2] ** 2))) < 0.004  # about the noise and the mesh grid


# --- in the sender's stream and the receiver's decoder ------------------------------------------------


def test_a_receiver_without_the_expression_code_gets_landmarks() -> None:
    assert DEFAULT_CODES[0] == CODE and "landmarks" in DEFAULT_CODES
    assert [FIELD_CODECS[code].role for code in negotiate(DEFAULT_CODES, list(FIELD_CODECS))] == ["face", "body"]
    assert negotiate(DEFAULT_CODES, list(FIELD_CODECS))[0] == CODE
    assert negotiate(DEFAULT_CODES, ["landmarks", "alpha"]) == ["landmarks"]


def _stream(basis: ExpressionBasis, codes: list[str], frames: int = 8) -> tuple[list[m.Message], list[Prepared], list[FrameAnalysis]]:
    """The messages a recording of a synthetic face sends with these negotiated codes."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), np.uint8)
    coder = FrameCoder(budget=Budget.at_most(10e6))
    stream, gate = FeatureStream(FrameEncoder(codes)), Ceiling(10e6)
    messages, prepared, analyses = [], [], []
    for i, face in enumerate(synthetic_clip(basis, frames, seed=13)):
        small = face[1] * np.float32(0.25) - np.float32([0, 20, 0])  # the face in the small picture
        frame = FrameAnalysis(CapturedFrame(i, i * 40_000, image), FaceObservation(small, head_pose(small), 0.9), None)
        item = coder.code(_NoForeground(), frame)
        prepared.append(item.frame.prepared[codes[0]])
        analyses.append(frame)
        messages += plan(stream, item, gate, i / 25)
    return messages, prepared, analyses


class _NoForeground:
    def foreground(self) -> None:
        return None


def _receive(codes: list[str], messages: list[m.Message]) -> list[object]:
    decoder = FrameDecoder(codes)
    out: list[object] = []
    for message in messages:
        wire = m.decode(m.encode(message))
        if isinstance(wire, m.Setup):
            decoder.setup(wire)
        elif isinstance(wire, m.Keyframe):
            out.append(decoder.decode_keyframe(wire))
        elif isinstance(wire, m.Frame):
            out.append(decoder.decode_frame(wire))
    return out


def test_the_stream_carries_the_expression_code_and_its_setup_first(basis: ExpressionBasis) -> None:
    messages, prepared, _ = _stream(basis, [CODE])
    kinds = [type(message).__name__ for message in messages]
    assert kinds[:2] == ["Setup", "Keyframe"] and kinds.count("Frame") == 8
    keyframe = next(message for message in messages if isinstance(message, m.Keyframe))
    assert keyframe.landmarks is not None and len(keyframe.landmarks) < 60  # the intra expression code, not landmarks
    decoded = _receive([CODE], messages)
    frames = [state for state in decoded if not hasattr(state, "image")]
    assert all(np.array_equal(state.landmarks, p.landmarks) for state, p in zip(frames, prepared, strict=True))  # type: ignore[attr-defined]
    assert np.array_equal(decoded[0].landmarks, prepared[0].landmarks)  # type: ignore[attr-defined]
    frame_bytes = [len(m.encode(message)) for message in messages if isinstance(message, m.Frame)]
    assert max(frame_bytes[1:]) < 60


def test_a_landmarks_session_gets_landmarks_in_its_keyframes_and_no_setup(basis: ExpressionBasis) -> None:
    messages, _, analyses = _stream(basis, ["landmarks"])
    assert not any(isinstance(message, m.Setup) for message in messages)
    decoded = _receive(["landmarks"], messages)
    keyframe, *frames = decoded
    assert np.abs(keyframe.landmarks[:, :2] - analyses[0].face.landmarks[:, :2]).max() <= 0.125 + 1e-6  # type: ignore[attr-defined,union-attr]
    assert len(frames) == 8 and all(state.landmarks is not None for state in frames)  # type: ignore[attr-defined]


def test_a_receiver_that_lost_a_setup_refuses_frames_until_the_keyframe_brings_it(basis: ExpressionBasis) -> None:
    messages, _, _ = _stream(basis, [CODE])
    without_setups = [message for message in messages if not isinstance(message, m.Setup)]
    with pytest.raises(FrameDecodeError, match="setup"):
        _receive([CODE], without_setups)


def test_a_superseded_item_hands_its_setups_and_keyframe_to_the_newer_one() -> None:
    async def run() -> Outgoing | None:
        slot: LatestSlot[Outgoing] = LatestSlot(asyncio.get_running_loop(), keep=lambda item: item.carries_state,
                                                merge=Outgoing.merged)
        frame = CodedFrame(analysis(0, None))
        keyframe = object()
        slot.put(Outgoing(frame, keyframe, (("expression", b"one"),)))  # type: ignore[arg-type]
        slot.put(Outgoing(frame))
        slot.put(Outgoing(frame, None, (("expression", b"two"),)))
        return await slot.get()

    item = asyncio.run(run())
    assert item is not None and item.keyframe is not None
    assert item.setups == (("expression", b"one"), ("expression", b"two"))


def test_encode_cost_is_bounded_for_any_face(basis: ExpressionBasis) -> None:
    """A face far from any the basis knows still codes (escapes), in a bounded size."""
    pose, lm = synthetic_clip(basis, 1)[0]
    link = Link(basis)
    link.run([(pose, lm)])
    wild = lm + np.random.default_rng(0).normal(0, 30.0, lm.shape).astype(np.float32)
    frame, prepared = link.prepare(1, (pose, wild))
    payload, decoded = link.send(frame, prepared)
    assert np.array_equal(decoded, prepared.landmarks) and len(payload) < 400
    assert math.isfinite(float(decoded.sum()))


def test_a_requested_keyframe_brings_the_setups_in_use_and_the_senders_own_do_not(basis: ExpressionBasis) -> None:
    """A keyframe the receiver asked for is where it starts over (a lost setup): the neutral goes with it;
    a keyframe of the sender's own (periodic, drifted) does not repeat ~550 bytes the receiver holds."""
    coder = FrameCoder(budget=Budget.at_most(10e6))
    image = np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)
    items = []
    for i, (_, lm) in enumerate(synthetic_clip(basis, 6, seed=14)):
        small = lm * np.float32(0.25) - np.float32([0, 20, 0])
        if i == 2:
            coder.policy.request()  # the sender's own
        if i == 4:
            coder.resync()  # the receiver asked
        frame = FrameAnalysis(CapturedFrame(i, i * 2_000_000, image), FaceObservation(small, head_pose(small), 0.9), None)
        items.append(coder.code(_NoForeground(), frame))
    assert [item.keyframe is not None for item in items] == [True, False, True, False, True, False]
    current = coder._preparers[CODE].current_setup()
    assert current is not None and (CODE, current) in items[4].setups
    assert (CODE, current) not in items[2].setups
