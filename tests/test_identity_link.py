"""Identities over the link: content addressing, the receiver's cache, live switching, bad assets."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import msgspec
import pytest

from facewire.receiver.demo_sample import avatar_path
from facewire.receiver.session import AssetStore, Session
from facewire.sender.identity import identity_message, identity_messages, in_parts
from facewire.sender.uplink import IdentityBook
from facewire.shared.face.identity import IdentityError
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, MessageValidationError, ProtocolError


@pytest.fixture(scope="module")
def avatar() -> m.Identity:
    return identity_message(str(avatar_path()))


def test_identity_is_content_addressed(avatar: m.Identity) -> None:
    assert avatar.image is not None and avatar.asset == hashlib.sha256(avatar.image).hexdigest()
    assert avatar.image_format == "webp" and avatar.landmarks is not None  # as prepared for the link


def test_book_sends_image_once_and_switches_by_id(avatar: m.Identity) -> None:
    book = IdentityBook([avatar, m.Identity(asset="self")])
    first = book.session_started([])
    assert isinstance(first[0], m.Identity) and first[0].image is not None
    assert book.switch(1) == [m.IdentitySwitch(asset="self")]
    assert book.switch(0) == [m.IdentitySwitch(asset=avatar.asset)]
    again = book.session_started([avatar.asset])  # a receiver that cached it: no image crosses
    assert isinstance(again[0], m.Identity) and again[0].image is None and again[0].asset == avatar.asset
    resent = book.requested(avatar.asset)
    assert isinstance(resent[0], m.Identity) and resent[0].image == avatar.image


def test_receiver_caches_assets_and_asks_for_missing_ones(avatar: m.Identity) -> None:
    store = AssetStore()
    session = Session(store)
    assert session.handle(m.IdentitySwitch(asset=avatar.asset)) == ([m.AssetRequest(asset=avatar.asset)], None)
    replies, _ = session.handle(avatar)
    assert replies == [] and session.identity is not None and session.identity.asset_id == avatar.asset
    assert session.identity.landmarks is not None and session.identity.landmarks.shape == (478, 3)
    later = Session(store)  # a new session on the same receiver
    assert later.handle(m.Identity(asset=avatar.asset)) == ([], None)
    assert later.identity is not None and avatar.asset in store.ids()
    assert later.handle(m.IdentitySwitch(asset="self")) == ([], None) and later.identity is None


def test_receiver_rejects_an_image_that_does_not_match_its_hash(avatar: m.Identity) -> None:
    session = Session(AssetStore())
    forged = m.Identity(asset="0" * 64, image=avatar.image, image_format="jpeg")
    replies, _ = session.handle(forged)
    assert len(replies) == 1 and isinstance(replies[0], m.Error) and replies[0].code == "bad_asset"
    assert session.identity is None


def test_identity_dir_collects_usable_faces_and_names_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(avatar_path().read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not an image")
    messages = identity_messages("self", tmp_path)
    assert [msg.asset for msg in messages][0] == "self" and len(messages) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.png").write_bytes(b"nope")
    with pytest.raises(IdentityError, match="no usable face image.*not a readable image"):
        identity_messages("self", empty)


def _whole_image(messages: list[m.Message]) -> bytes:
    head, *rest = messages
    assert isinstance(head, m.Identity) and head.image is not None
    assert all(isinstance(part, m.IdentityPart) and part.part == i for i, part in enumerate(rest, 1))
    return head.image + b"".join(part.data for part in rest if isinstance(part, m.IdentityPart))


def test_an_image_crosses_in_parts_and_the_person_stays_hidden_until_it_is_whole(avatar: m.Identity) -> None:
    messages = in_parts(avatar, part_bytes=4096)
    head, parts = messages[0], messages[1:]
    assert isinstance(head, m.Identity) and head.parts == len(messages) > 2 and head.image_bytes == len(avatar.image or b"")
    assert all(len(m.encode(part)) < 4200 for part in parts)
    assert _whole_image([*messages]) == avatar.image
    session = Session(AssetStore())
    assert session.handle(head) == ([], None)
    assert session.awaiting_identity and session.identity is None  # the sender chose not to show their own face
    for part in parts:
        assert session.handle(part) == ([], None)
    assert not session.awaiting_identity
    assert session.identity is not None and session.identity.asset_id == avatar.asset


def test_parts_out_of_order_are_asked_for_again_and_parts_past_the_declared_size_close_the_link(avatar: m.Identity) -> None:
    head, first, second, *_ = in_parts(avatar, part_bytes=4096)
    session = Session(AssetStore())
    session.handle(head)
    replies, _ = session.handle(second)  # the first part went missing
    assert [type(reply) for reply in replies] == [m.Error, m.AssetRequest]
    assert isinstance(replies[0], m.Error) and not replies[0].fatal
    assert session.awaiting_identity  # still wanted: the sender answers the request with the whole identity
    session.handle(head)
    session.handle(first)
    oversized = m.IdentityPart(asset=avatar.asset, part=2, data=b"x" * len(avatar.image or b""))
    with pytest.raises(ProtocolError, match="declared") as caught:
        session.handle(oversized)
    assert caught.value.code is ErrorCode.BAD_ASSET


def test_a_switch_back_to_self_while_an_image_arrives_shows_the_sender_and_keeps_the_asset(avatar: m.Identity) -> None:
    head, *parts = in_parts(avatar, part_bytes=4096)
    session = Session(AssetStore())
    session.handle(head)
    session.handle(m.IdentitySwitch(asset="self"))
    assert not session.awaiting_identity
    for part in parts:
        session.handle(part)
    assert session.identity is None and avatar.asset in session.assets.ids()


@pytest.mark.parametrize("fields", [{"parts": 3}, {"image_bytes": 10}, {"parts": 2, "image_bytes": 3}])
def test_identity_parts_fields_are_checked_together(fields: dict[str, int]) -> None:
    raw = msgspec.msgpack.encode({"t": "identity", "asset": "a" * 64, "image": b"abcd", "image_format": "jpeg", **fields})
    with pytest.raises(MessageValidationError):
        m.decode(raw)


def test_the_sender_says_when_an_avatar_image_takes_long_on_its_link(avatar: m.Identity, caplog: pytest.LogCaptureFixture) -> None:
    from facewire.sender.cli import _warn_slow_identities

    size = len(avatar.image or b"")
    with caplog.at_level(logging.WARNING, logger="facewire.sender.cli"):
        _warn_slow_identities([m.Identity(asset="self"), avatar], ceiling_bps=size * 8 / 30)
        _warn_slow_identities([avatar], ceiling_bps=size * 8 / 5)
    assert len(caplog.records) == 1 and "identity 1" in caplog.text and "30 s" in caplog.text


def test_a_large_avatar_picture_crosses_the_link_as_its_face_at_a_drawable_size(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from facewire.sender.identity import LINK_FACE_WIDTH
    from facewire.shared.face import topology as topo

    small = cv2.imread(str(avatar_path()))
    big = cv2.copyMakeBorder(cv2.resize(small, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC), 600, 600, 600, 600,
                             cv2.BORDER_REFLECT)  # a phone photo: a large face with much round it
    path = tmp_path / "phone.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    message = identity_message(str(path))
    assert message.image_format == "webp" and message.image is not None
    assert len(message.image) < path.stat().st_size / 5
    assert message.asset == hashlib.sha256(message.image).hexdigest()
    session = Session(AssetStore())
    session.handle(message)
    sent = session.identity
    assert sent is not None and sent.landmarks is not None and sent.image is not None
    width = float(np.ptp(sent.landmarks[topo.face_oval_ring(), 0]))
    assert 0.9 * LINK_FACE_WIDTH <= width <= LINK_FACE_WIDTH * 1.02
    assert sent.image.shape[0] * sent.image.shape[1] < big.shape[0] * big.shape[1] / 10
