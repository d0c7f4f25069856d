"""Every tunable of the rate controller, in one frozen object.

The defaults are the values the simulation tests (tests/test_congestion.py) run with; the
constants of the delay detector and the AIMD rules are libwebrtc's, the rest is scaled to a
TCP uplink of a few tens of kbps.
"""

from __future__ import annotations

from dataclasses import dataclass

from facewire.shared.wire.messages import MAX_ACKS
from facewire.shared.wire.protocol import Limits


@dataclass(frozen=True)
class ControllerConfig:
    """Every tunable of the controller; the defaults are the values the simulation tests run with."""

    start_bps: float = 24_000.0
    # Send-time grouping: messages sent within this span form one group (GCC: 5 ms).
    burst_s: float = 0.005
    # Groups whose arrivals bunch up (TCP head-of-line release) are merged, as GCC does for bursts.
    arrival_burst_s: float = 0.005
    max_burst_duration_s: float = 0.1
    # Trendline filter (libwebrtc defaults).
    trendline_window: int = 20
    trendline_smoothing: float = 0.9
    threshold_gain: float = 4.0
    # Adaptive threshold, in ms of modified trend (libwebrtc defaults).
    threshold_init_ms: float = 12.5
    threshold_min_ms: float = 6.0
    threshold_max_ms: float = 600.0
    k_up: float = 0.0087
    k_down: float = 0.039
    max_adapt_offset_ms: float = 15.0
    overusing_time_threshold_ms: float = 10.0
    # AIMD.
    beta: float = 0.85
    mi_per_s: float = 1.08
    startup_mi_per_s: float = 1.6
    research_mi_per_s: float = 1.25
    min_increase_bps: float = 250.0
    ai_min_bps_per_s: float = 800.0
    ai_fraction_per_s: float = 0.05
    # With no overuse for this long the capacity estimate is forgotten and the increase turns
    # multiplicative again (libwebrtc relies on probing for that; a codec cannot send padding cheaply).
    capacity_forget_s: float = 5.0
    increase_limit_gain: float = 1.5
    increase_limit_extra_bps: float = 4_000.0
    # While re-searching (capacity forgotten after a calm spell) the target may run at most this far
    # ahead of what the link demonstrably carried, so the overshoot that the detection delay
    # (~RTT + 0.5 s) lets through stays bounded on long-RTT links. Startup is not limited: it has no
    # acked rate worth the name yet, and a slow first ramp costs the first picture.
    search_limit_gain: float = 1.3
    # ...plus this much, so that an app-limited codec can get past the rate at which it adds a layer
    # (features ~9 kbps; the layer starts at a target of ~13): with 250 bps the target sat at 1.3 x the
    # features' rate, just short of it, on a 24 kbps link.
    search_limit_extra_bps: float = 2_500.0
    acked_window_s: float = 0.5
    acked_min_span_s: float = 0.25
    acked_max_gap_s: float = 0.3
    # The receiver's ack rule (shared/wire/protocol.py): an ack leaves once its first entry is
    # `ack_interval_s` old, or at once with `ack_max_entries` entries. The ack carries no time of its
    # own, so the controller infers from this rule when it left (acks.py).
    ack_interval_s: float = Limits.ack_interval_s
    ack_max_entries: int = MAX_ACKS
    # In-flight window: target x (min RTT + the longest an entry waits for its ack + queue allowance).
    # The wait is inferred from each ack (acks.py); this is the guess before any.
    initial_ack_hold_s: float = 0.05
    queue_allowance_s: float = 0.15
    min_window_bytes: int = 400
    initial_rtt_s: float = 0.5
    min_rtt_window_s: float = 10.0
    # A sent message whose ack has not come back within this long no longer counts as in flight.
    expiry_min_s: float = 2.0
    expiry_rtt_multiple: float = 4.0
    # No feedback for this long with bytes in flight: cut the target (GCC's feedback timeout).
    feedback_timeout_min_s: float = 1.0
    feedback_timeout_cut: float = 0.8
    # Pacer: leaves at pacing_factor x target, with a burst allowance.
    pacing_factor: float = 1.5
    pacer_burst_s: float = 0.04
    pacer_min_burst_bytes: int = 200
    # Part of the window only essential messages (the features of a frame) may use, so keyframe chunks
    # and residual frames never lock the features out: the frames' measured rate (over the last
    # `frame_rate_window_s` of sends) for a message's time in flight plus `essential_reserve_s`, at
    # least the target's for `essential_reserve_s`, at most `essential_reserve_max` of the window.
    essential_reserve_s: float = 0.06
    essential_reserve_min_bytes: int = 100
    essential_reserve_max: float = 0.75
    frame_rate_window_s: float = 1.0
    # A chunk of a large message (keyframe) holds the frames behind it for its serialisation time;
    # beyond ~100 ms that reads as a delay spike to the detector and as latency to the viewer.
    chunk_s: float = 0.1
    chunk_min_bytes: int = 120
    # A residual layer's key frame rides whole with one frame, so it holds the frames behind it for its
    # serialisation time just as a chunk does; the layer's rate is capped so its key frames stay within this
    # much of the target (a key frame sized to the whole window held them for a round trip and more: live at
    # 64 kbps/150 ms, 16-28% of the frames were skipped behind them).
    layer_key_s: float = 0.25
    # Standing queue: a sender held by its window keeps the queue full but flat, which a delay *gradient*
    # cannot see; when RTT minus min RTT stays above this, the target drops as on overuse.
    standing_queue_s: float = 0.2
    standing_interval_s: float = 0.5
    # (There was a third rule, 'window-limited': the target at its increase limit and the window refusing
    # frames read as a link slower than the target. But the increase limit follows the acked rate, which
    # follows the codec when it makes less than the target, so an app-limited sender read as link-limited:
    # each cut to 0.85 x acked shrank the window, the next refusal cut again, and live a 24 kbps link
    # carried 8. Overuse and the standing queue cover a link that is really slower; the window bounds the
    # queue meanwhile.)
    # Ceiling guard: a token bucket at the ceiling rate whose depth bounds any 10 s window to
    # (10 + depth) / 10 of the ceiling, i.e. +5 % for 0.5 s.
    ceiling_burst_s: float = 0.5
    ceiling_min_burst_bytes: int = 600
    records_kept_s: float = 30.0
    # A link pause (radio outage): the receiver got nothing for this long although the sender kept
    # sending. The delay spike it leaves is not a growing queue: the trendline starts afresh.
    pause_gap_s: float = 0.3
