"""Threads are kept in the time-sharing class (SVT-AV1 as root moves its own and its caller's to SCHED_FIFO)."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from facewire.shared.codec.layer import LayerEncoder
from facewire.shared.process.scheduling import time_shared_threads

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="thread scheduling classes are read from Linux's /proc")


def _real_time_threads() -> list[int]:
    tids = [int(name) for name in os.listdir("/proc/self/task")]
    return [tid for tid in tids if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR)]


def test_a_real_time_thread_goes_back_to_time_sharing() -> None:
    ready, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def worker() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        ready.wait(10)
        try:
            os.sched_setscheduler(tid[0], os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            pytest.skip("not allowed to make a thread real-time here (not root): nothing to move back")
        assert _real_time_threads() == tid
        assert time_shared_threads() == 1
        assert _real_time_threads() == []
        assert os.sched_getscheduler(tid[0]) == os.SCHED_OTHER
    finally:
        done.set()
        thread.join()


def test_the_layer_encoder_leaves_no_real_time_thread() -> None:
    """As root, opening SVT-AV1 made the caller and its ~18 threads SCHED_FIFO 99 (measured); not any more."""
    encoder = LayerEncoder()
    try:
        encoder.encode(np.full((encoder.size, encoder.size, 3), 128, np.uint8))
        assert _real_time_threads() == []
    finally:
        encoder.close()
