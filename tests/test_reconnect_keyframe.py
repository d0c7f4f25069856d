"""After a reconnect the rate control starts low; the session's first keyframe must go anyway.

Found by bench/faults.py: after a link drop the keyframe budget was 1200 bytes, the person needed
~1300 at the lowest quality, so no keyframe was built, no frame could be drawn, no ack came back to
raise the rate: the receiver showed nothing for good. (Keyframes now shrink to 1/2 or 1/4 scale
first, so it takes a larger person to reach this; the encoder is stood in for here so the test is
about the coder's decision, not about what AVIF can squeeze.)
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import facewire.sender.coding as coding
from facewire.sender.coding import Budget, FrameCoder
from facewire.shared.codec.keyframe import KeyframeTooLarge
from facewire.shared.types import CapturedFrame
from tests.wire_fixtures import SyntheticAnalyzer

NEEDED = 1500  # what the stand-in encoder needs at its lowest quality and coarsest scale


def _encoder(*args: object) -> tuple[SimpleNamespace, None]:
    kf, budget = args[1], args[4]
    assert isinstance(budget, int)
    if budget < NEEDED:
        raise KeyframeTooLarge(f"needs {NEEDED} bytes, over the budget of {budget}", NEEDED)
    return SimpleNamespace(kf=kf, quality=5, scale=4, nbytes=NEEDED, image=bytes(NEEDED)), None


def test_the_first_keyframe_of_a_session_goes_over_a_hopeless_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coding, "build_keyframe", _encoder)
    analyzer = SyntheticAnalyzer()
    analysis = analyzer.analyze(CapturedFrame(index=0, ts_us=1_000_000, image=np.zeros((120, 160, 3), np.uint8)))
    starved = Budget(ceiling_bps=256_000, target_bps=4_000)
    assert starved.keyframe_bytes() == 1200

    steady = FrameCoder(budget=starved)
    steady.policy.request()
    assert steady.code(analyzer, analysis).keyframe is None  # mid-session: wait for the budget, as before

    reconnected = FrameCoder(budget=starved)
    reconnected.restart()
    package = reconnected.code(analyzer, analysis).keyframe
    assert package is not None and package.nbytes == NEEDED
    reconnected.policy.request()
    assert reconnected.code(analyzer, analysis).keyframe is None  # only the session's first goes over
