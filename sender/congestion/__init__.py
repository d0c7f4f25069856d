"""Sans-I/O send-rate control for the uplink, after WebRTC's Google Congestion Control.

Nothing here owns a socket or a clock: the uplink tells the controller what it sent (`on_send`: a
frame, acknowledged; `on_send_bulk`: a keyframe part, in flight until a later frame's ack;
`on_send_uncontrolled`), what the receiver acknowledged (`on_acks`) and round trips measured
elsewhere (`on_rtt`), always with the sender's monotonic `now` in seconds, and asks:

* how fast may the codec produce? `target_bps`, never above the ceiling (`--bitrate`), never
  below the floor;
* may this message go now? `decide(nbytes, now)` / `may_send`: the bytes in flight (sent, not yet
  acknowledged) are kept near one round trip's worth at the target rate plus a small queue
  allowance, so a frame that cannot go is replaced by the next (latest-frame-wins) instead of
  waiting in a kernel buffer;
* when may it go? `next_send_time(nbytes, now)`: a pacer, so a keyframe cut into chunks
  (`chunk_bytes`, `room_bytes`) leaves at the link's pace and frames overtake it, and a token
  bucket that holds the ceiling over any 10 s; `budget_bytes` sizes a keyframe to the rate.

The estimate is delay-based, as GCC's is (draft-ietf-rmcat-gcc-02; libwebrtc's `InterArrival`,
`TrendlineEstimator`, `AimdRateControl`, `LinkCapacityEstimator`, `BitrateEstimator`, with their
constants). Differences, all because the link is TCP at a few tens of kbps: no loss-based part
(TCP hides loss), no probing (a startup phase grows faster until the first congestion instead),
increase limits scaled to kbps, and the in-flight window always on: it is the one thing that keeps
kernel and router queues short when a sender can write faster than the link drains.

`snapshot()` returns every quantity a decision was made from; its `last_change` names the rule
that last moved the target and why.
"""

from facewire.sender.congestion.aimd import RateState
from facewire.sender.congestion.config import ControllerConfig
from facewire.sender.congestion.controller import Counters, Decision, RateController
from facewire.sender.congestion.delay import Signal

__all__ = ["ControllerConfig", "Counters", "Decision", "RateController", "RateState", "Signal"]
