"""Work done for one frame whose result only matters to the frames after it, kept off the frame's latency path.

The closed loop (the sender's replica of the receiver drawing a frame, and the residual layer's box of
camera minus that drawing) is such work: the receiver holds the box it decodes and applies it to the
frames after it, so the box need not travel with the frame it was drawn against. Waiting for it put the
replica's ~10 ms on every third frame's capture-to-sink latency.

`Behind` runs one job at a time and hands its result to a later frame:

* live (`background`): on its own thread, beside the analysis of the next frames; the result goes with
  the first frame coded after it finished, and a frame due while a job runs starts none (the next one may);
* in a recording: in line, its result held for the next frame, so the stream is exactly one frame behind
  whatever the timing, and the same for every run (the golden digest, bench/codec.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Work off the frames' path (keyframe builds, the closed loop) runs at this nice value above the sender's:
# two processes share two cores, and an AVIF search (100-300 ms of CPU every few seconds at 256 kbps) or a
# replica drawing that takes a core from the analysing thread or the receiver's renderer delays frames. A
# lower priority lets them take only what the frames leave; they still get a whole core when one is idle.
BACKGROUND_NICE = 10


def _lower_priority() -> None:
    """Lowers the calling thread's CPU priority (Linux: a thread's nice value is its own; elsewhere
    setpriority would lower the whole process, so it is left alone)."""
    if sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)
    except OSError as exc:  # a sandbox may refuse it: the work still runs, at the frames' priority
        log.debug("background thread priority unchanged: %s", exc)


def background_worker(name: str) -> concurrent.futures.ThreadPoolExecutor:
    """One thread, at a lower CPU priority than the frames' threads, for work off their latency path."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_lower_priority)


@dataclass
class Behind(Generic[T]):
    """One job at a time whose result a later call of `take` hands over. One owner (the analysing thread)."""

    background: bool = False
    name: str = "behind"
    _pending: concurrent.futures.Future[T] | None = field(default=None, repr=False)
    _executor: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def idle(self) -> bool:
        """No job's result is waiting or being made: `start` may run one."""
        return self._pending is None

    def take(self) -> T | None:
        """The last job's result once it is done (a job's exception is raised here), else None."""
        pending = self._pending
        if pending is None or not pending.done():
            return None
        self._pending = None
        return pending.result()

    def start(self, work: Callable[[], T]) -> None:
        """Runs `work` (on the worker live, at once in a recording), for a later `take`."""
        if self._pending is not None:
            raise RuntimeError(f"{self.name}: a job is still waiting to be taken")
        if self.background:
            if self._executor is None:
                self._executor = background_worker(self.name)
            self._pending = self._executor.submit(work)
            return
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            done.set_result(work())
        except Exception as exc:  # noqa: BLE001 - raised by take(), as a worker's would be
            done.set_exception(exc)
        self._pending = done
