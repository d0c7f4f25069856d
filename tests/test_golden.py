"""The stream and the pictures for a fixed input match a stored digest (tests/golden/digest.py).

The digest was made by the tree before a restructuring; a change meant to alter the stream or the
pictures regenerates it (`python tests/golden/digest.py tests/golden/stream_digest.json`) and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.digest import avatar_sample, digest

STORED = json.loads((Path(__file__).parent / "golden" / "stream_digest.json").read_text())


@pytest.mark.parametrize("identity", ["self", "avatar"])
def test_stream_and_pictures_match_the_stored_digest(identity: str) -> None:
    today = digest("facewire.", "self" if identity == "self" else avatar_sample())
    stored = STORED[identity]
    assert [m["t"] for m in today["messages"]] == [m["t"] for m in stored["messages"]]
    for index, (now, then) in enumerate(zip(today["messages"], stored["messages"], strict=True)):
        assert now == then, f"message {index} ({then['t']}) differs"
    assert len(today["frames"]) == len(stored["frames"])
    for index, (now, then) in enumerate(zip(today["frames"], stored["frames"], strict=True)):
        assert now == then, f"output frame {index} differs (mean {now['mean']} against {then['mean']})"
