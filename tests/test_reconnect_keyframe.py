"""After a reconnect the rate control starts low; the session's first keyframe must go anyway.

Found by bench/faults.py: after a link drop the keyframe budget was 1200 bytes, the person needed
~1300 at the lowest quality, so no keyframe was built, no frame could be drawn, no ack came back to
raise the rate: the receiver showed nothing for good.
"""

from __future__ import annotations

import numpy as np

from facewire.sender.coding import KEYFRAME_SECONDS, LIVE_FIRST_KEYFRAME_SECONDS, Budget, FrameCoder
from facewire.shared.types import CapturedFrame
from tests.wire_fixtures import SyntheticAnalyzer


def _busy_frame() -> CapturedFrame:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (960, 1280, 3), np.uint8)  # detail no AVIF quality squeezes into 1200 bytes
    return CapturedFrame(image=image, ts_us=1_000_000, index=0)


class _Hopeless(Budget):
    """A budget no picture fits, at any scale."""

    def keyframe_bytes(self, first: bool = False) -> int:
        return 60


def test_a_starved_budget_gets_a_coarser_keyframe() -> None:
    analyzer = SyntheticAnalyzer()
    analysis = analyzer.analyze(_busy_frame())
    starved = Budget(ceiling_bps=256_000, target_bps=4_000)
    assert starved.keyframe_bytes() == 1200
    coder = FrameCoder(budget=starved)
    coder.policy.request()
    package = coder.code(analyzer, analysis).keyframe
    assert package is not None and package.scale > 1 and len(package.image) <= 1200


def test_the_first_keyframe_of_a_session_goes_over_a_hopeless_budget() -> None:
    analyzer = SyntheticAnalyzer()
    analysis = analyzer.analyze(_busy_frame())
    starved = _Hopeless(ceiling_bps=256_000, target_bps=4_000)

    steady = FrameCoder(budget=starved)
    steady.policy.request()
    assert steady.code(analyzer, analysis).keyframe is None  # mid-session: wait for the budget, as before

    reconnected = FrameCoder(budget=starved)
    reconnected.restart()
    package = reconnected.code(analyzer, analysis).keyframe
    assert package is not None and len(package.image) > 60 and package.quality <= 10
    reconnected.policy.request()
    assert reconnected.code(analyzer, analysis).keyframe is None  # only the first one is let through


def test_a_live_sessions_first_keyframe_takes_fewer_seconds_of_the_start_rate() -> None:
    """Nothing shows until the first keyframe has crossed: live, it takes LIVE_FIRST_KEYFRAME_SECONDS of the
    rate instead of KEYFRAME_SECONDS; later keyframes, and a recording's first, are unchanged."""
    recording = Budget.at_most(24_000)
    live = Budget.at_most(24_000)
    live.first_keyframe_s = LIVE_FIRST_KEYFRAME_SECONDS
    assert recording.keyframe_bytes(first=True) == recording.keyframe_bytes() == live.keyframe_bytes()
    assert live.keyframe_bytes(first=True) == round(live.keyframe_bytes() * LIVE_FIRST_KEYFRAME_SECONDS / KEYFRAME_SECONDS)
