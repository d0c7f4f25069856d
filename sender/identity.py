"""`--identity IMAGE|self`: validate the avatar and build the content-addressed identity message."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import msgspec
import numpy as np
from PIL import Image as PILImage

from facewire.sender.capture import IMAGE_SUFFIXES
from facewire.shared.codec.images import MAX_IDENTITY_PIXELS, sniff
from facewire.shared.codec.landmarks import LandmarkEncoder
from facewire.shared.face import topology as topo
from facewire.shared.face.identity import SELF_ID, IdentityError, asset_id_of, decode_image, identity_from_image
from facewire.shared.types import Image, Landmarks
from facewire.shared.wire import messages as m

log = logging.getLogger(__name__)



# What of an avatar picture crosses the link (once per receiver, but nobody is shown until it is whole): the face
# and round it this many face widths on each side (hair over the face, the outline's surroundings the renderer
# samples), with the face at most LINK_FACE_WIDTH pixels wide: a receiver draws faces of ~150-250 px at 640x480
# and samples a texture level near that size anyway. A phone photo (a face 1000 px wide, 3 MB) would otherwise
# hold a 24-kbps link for a quarter of an hour.
LINK_MARGIN = 0.75
LINK_FACE_WIDTH = 320
LINK_WEBP_QUALITY = 90
# The largest picture read at all (the one that crosses is cut down to the face, within the receiver's limits).
MAX_SOURCE_PIXELS = 40_000_000


def for_the_link(data: bytes, image: Image, landmarks: Landmarks) -> bytes:
    """The avatar picture as it crosses the link: cropped round the face, shrunk to LINK_FACE_WIDTH, as WebP;
    `data` itself when that is not smaller."""
    oval = landmarks[topo.face_oval_ring(), :2]
    (x0, y0), (x1, y1) = oval.min(axis=0), oval.max(axis=0)
    margin = LINK_MARGIN * max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    left, top = max(0, int(x0 - margin)), max(0, int(y0 - margin))
    right, bottom = min(w, int(np.ceil(x1 + margin))), min(h, int(np.ceil(y1 + margin)))
    crop = image[top:bottom, left:right]
    scale = min(1.0, LINK_FACE_WIDTH / max(float(x1 - x0), 1.0))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    out = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(crop[..., ::-1])).save(out, "WEBP", quality=LINK_WEBP_QUALITY, method=6)
    prepared = out.getvalue()
    return prepared if len(prepared) < len(data) else data


def identity_message(spec: str) -> m.Identity:
    """The identity message for an image path, or the sender's own face for `self`."""
    if spec == SELF_ID:
        return m.Identity(asset=SELF_ID)
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read identity image {path}: {exc.strerror or exc}") from None
    image = decode_image(data, str(path))
    if image.shape[0] * image.shape[1] > MAX_SOURCE_PIXELS:
        raise IdentityError(f"{path}: {image.shape[1]}x{image.shape[0]} is over {MAX_SOURCE_PIXELS} pixels; "
                            "use a smaller image")
    asset = identity_from_image(image, asset_id_of(data), str(path))
    assert asset.landmarks is not None and asset.image is not None
    from facewire.sender.avatar_check import avatar_warnings  # the renderer's modules: only when an avatar is used

    for warning in avatar_warnings(asset.image, asset.landmarks):
        log.warning("%s: %s (facewire-avatar check %s --out sheet.png shows it)", path, warning, path)
    sent, fmt = for_the_link(data, asset.image, asset.landmarks), sniff(data)
    prepared = sent is not data
    if prepared:
        fmt = "webp"
    elif fmt is None:
        # Only the protocol's formats travel (a receiver decodes no other); anything else is re-encoded
        # losslessly so the hash names what is sent.
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise IdentityError(f"{path}: cannot re-encode as PNG")
        sent, fmt = png.tobytes(), "png"
    if len(sent) > m.MAX_IMAGE_BYTES:
        raise IdentityError(f"{path}: {len(sent)} bytes is over the {m.MAX_IMAGE_BYTES}-byte limit; use a smaller image")
    received = decode_image(sent, str(path)) if prepared else image
    if received.shape[0] * received.shape[1] > MAX_IDENTITY_PIXELS:
        raise IdentityError(f"{path}: {received.shape[1]}x{received.shape[0]} is over the receiver's limit of "
                            f"{MAX_IDENTITY_PIXELS} pixels; use a smaller image")
    # the landmarks of what the receiver gets, found on it as a receiver would find them itself
    asset = identity_from_image(received, asset_id_of(sent), str(path))
    if prepared:
        log.info("%s: %d KB as sent (the face and round it), of %d KB", path, len(sent) // 1024, len(data) // 1024)
    assert asset.landmarks is not None
    return m.Identity(asset=asset.asset_id, image=sent, image_format=fmt,
                      landmarks=LandmarkEncoder().encode(asset.landmarks, intra=True))


# An identity's image crosses the link in pieces of about this size (~0.7 s each of a 24-kbps link), so frames and
# pings pass between them: whole, a 90 KB photo held that link for 30 s and the connection timed out.
IDENTITY_PART_BYTES = 2048


def in_parts(message: m.Identity, part_bytes: int = IDENTITY_PART_BYTES) -> list[m.Identity | m.IdentityPart]:
    """The identity as an `identity` message carrying its image's first piece and `identity_part`s for the rest
    (at most MAX_IDENTITY_PARTS pieces in all); as it is when its image fits in one piece or it has none."""
    image = message.image
    if image is None:
        return [message]
    size = max(part_bytes, -(-len(image) // m.MAX_IDENTITY_PARTS))
    if len(image) <= size:
        return [message]
    pieces = [image[i:i + size] for i in range(0, len(image), size)]
    head = msgspec.structs.replace(message, image=pieces[0], parts=len(pieces), image_bytes=len(image))
    return [head, *(m.IdentityPart(asset=message.asset, part=i, data=piece) for i, piece in enumerate(pieces[1:], 1))]


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
