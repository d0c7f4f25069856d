"""Identities over the link: content addressing, the receiver's cache, live switching, bad assets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from facewire.receiver.demo_sample import avatar_path
from facewire.receiver.session import AssetStore, Session
from facewire.sender.identity import identity_message, identity_messages
from facewire.sender.uplink import IdentityBook
from facewire.shared.face.identity import IdentityError
from facewire.shared.wire import messages as m


@pytest.fixture(scope="module")
def avatar() -> m.Identity:
    return identity_message(str(avatar_path()))


def test_identity_is_content_addressed(avatar: m.Identity) -> None:
    assert avatar.asset == hashlib.sha256(avatar_path().read_bytes()).hexdigest()
    assert avatar.image_format == "jpeg" and avatar.landmarks is not None


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
