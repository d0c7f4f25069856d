"""`--identity IMAGE|self`: validate the avatar and build the content-addressed identity message."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import msgspec

from facewire.sender.capture import IMAGE_SUFFIXES
from facewire.shared.codec.images import MAX_IDENTITY_PIXELS, sniff
from facewire.shared.codec.landmarks import LandmarkEncoder
from facewire.shared.face.identity import SELF_ID, IdentityError, asset_id_of, decode_image, identity_from_image
from facewire.shared.types import Image
from facewire.shared.wire import messages as m

log = logging.getLogger(__name__)



def identity_message(spec: str) -> m.Identity:
    """The identity message for an image path, or the sender's own face for `self`."""
    if spec == SELF_ID:
        return m.Identity(asset=SELF_ID)
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read identity image {path}: {exc.strerror or exc}") from None
    fmt = sniff(data)
    if fmt is None:
        # Only the protocol's formats travel (a receiver decodes no other); anything else is re-encoded
        # losslessly so the hash names what is sent.
        ok, png = cv2.imencode(".png", decode_image(data, str(path)))
        if not ok:
            raise IdentityError(f"{path}: cannot re-encode as PNG")
        data, fmt = png.tobytes(), "png"
    if len(data) > m.MAX_IMAGE_BYTES:
        raise IdentityError(f"{path}: {len(data)} bytes is over the {m.MAX_IMAGE_BYTES}-byte limit; use a smaller image")
    image = decode_image(data, str(path))
    if image.shape[0] * image.shape[1] > MAX_IDENTITY_PIXELS:
        raise IdentityError(f"{path}: {image.shape[1]}x{image.shape[0]} is over the receiver's limit of "
                            f"{MAX_IDENTITY_PIXELS} pixels; use a smaller image")
    asset = identity_from_image(image, asset_id_of(data), str(path))
    assert asset.landmarks is not None and asset.image is not None
    from facewire.sender.avatar_check import avatar_warnings  # the renderer's modules: only when an avatar is used

    for warning in avatar_warnings(asset.image, asset.landmarks):
        log.warning("%s: %s (facewire-avatar check %s --out sheet.png shows it)", path, warning, path)
    return m.Identity(asset=asset.asset_id, image=data, image_format=fmt,
                      landmarks=LandmarkEncoder().encode(asset.landmarks, intra=True))


def identity_messages(identity: str, directory: Path | None) -> list[m.Identity]:
    """`--identity` first, then every usable image in `--identity-dir` (sorted by name); unusable ones are named."""
    messages = [identity_message(identity)]
    if directory is None:
        return messages
    if not directory.is_dir():
        raise IdentityError(f"--identity-dir {directory} is not a folder")
    problems = []
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            message = identity_message(str(path))
        except IdentityError as exc:
            problems.append(str(exc))
            continue
        if all(message.asset != known.asset for known in messages):
            messages.append(message)
    if len(messages) == 1:
        raise IdentityError(f"--identity-dir {directory} holds no usable face image" +
                            (": " + "; ".join(problems) if problems else ""))
    for problem in problems:
        log.warning("skipped identity: %s", problem)
    return messages


def with_embedding(message: m.Identity, embed: Callable[[Image], bytes | None]) -> m.Identity:
    """Attach a recognition embedding (insightface backend) to an avatar identity."""
    if message.image is None:
        return message
    embedding = embed(decode_image(message.image))
    return message if embedding is None else msgspec.structs.replace(message, embedding=embedding)
