"""Keeping this process's threads in the ordinary time-sharing class.

SVT-AV1 (the residual layer's encoder, and bench/codec.py's reference) moves the thread that opens an encoder
and the ~18 threads it starts to SCHED_FIFO at priority 99 whenever it is allowed to, i.e. when the process runs
as root (a container, this machine). A real-time thread is never preempted by ordinary ones: the sender's event
loop, which runs the layer's encoder, then takes a core from the receiver's renderer and from the sender's own
analysis whenever it has work, and anything it spins on stalls the machine. facewire's threads share two cores
by nice values and bounded hand-offs, so they go back to SCHED_OTHER, their nice value kept.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_REAL_TIME = frozenset(getattr(os, name) for name in ("SCHED_FIFO", "SCHED_RR") if hasattr(os, name))


def time_shared_threads() -> int:
    """Moves every thread of this process that runs in a real-time class back to SCHED_OTHER; returns how many
    it moved. Linux only (elsewhere nothing is done: no encoder there takes a real-time class unasked)."""
    if sys.platform != "linux":
        return 0
    moved = 0
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        try:
            if os.sched_getscheduler(tid) in _REAL_TIME:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                moved += 1
        except (ProcessLookupError, PermissionError) as exc:  # a thread that ended meanwhile; a sandbox's refusal
            log.debug("thread %d keeps its scheduling class: %s", tid, exc)
    if moved:
        log.debug("%d real-time thread(s) moved back to time-sharing", moved)
    return moved
