"""Drop-oldest hand-offs between pipeline stages: thread to asyncio consumer, and thread to thread."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds only the newest item (the newest `depth`): a slow consumer never builds a queue, it skips
    stale items. `depth` > 1 suits a consumer that must show every item but may lag a burst behind
    (a sink that records every frame, at the start of a session when a backlog arrives at once).

    An item for which `keep(item)` is true (a frame that carries a keyframe) is never skipped: it
    waits for the consumer, and only the newest items after it wait behind it (at most `depth` of them);
    a newer kept item supersedes it and everything before, or, with `merge`, takes its place as
    `merge(older, newer)` (what the older one carried that the newer does not replace must still go).
    `dropped` counts items skipped (a merged one too: its frame is gone). A producer with no clock to keep
    (a file read as fast as it goes) puts with `wait=True` instead: it waits for room and nothing is skipped.
    `close()` ends the stream: `get()` then returns None once the last item has been taken.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, keep: Callable[[T], bool] | None = None,
                 merge: Callable[[T, T], T] | None = None, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"depth {depth}: a slot holds at least one item")
        self._loop = loop
        self._keep = keep
        self._merge = merge
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._kept: T | None = None
        self._items: deque[T] = deque()
        self._depth = depth
        self._closed = False
        self._ready = asyncio.Event()
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T, wait: bool = False) -> None:
        """Called from any thread but the consumer's; `wait`: until the slot has room (or is closed)."""
        with self._lock:
            while wait and not self._closed and (self._kept is not None or len(self._items) >= self._depth):
                self._room.wait(0.2)
            if self._keep is not None and self._keep(item):
                self.dropped += (self._kept is not None) + len(self._items)
                if self._kept is not None and self._merge is not None:
                    item = self._merge(self._kept, item)
                self._kept = item
                self._items.clear()
            else:
                if len(self._items) == self._depth:
                    self._items.popleft()
                    self.dropped += 1
                self._items.append(item)
            self.put_count += 1
        self._loop.call_soon_threadsafe(self._ready.set)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._room.notify_all()
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> T | None:
        while True:
            with self._lock:
                item: T | None = None
                if self._kept is not None:
                    item, self._kept = self._kept, None
                elif self._items:
                    item = self._items.popleft()
                if item is not None:
                    self._room.notify_all()
                if item is not None or self._closed:
                    return item
                self._ready.clear()
            await self._ready.wait()


class LatestBox(Generic[T]):
    """The thread-to-thread twin of LatestSlot for stages that never carry state (camera frames): the
    consumer blocks until an item comes, and a slow consumer gets only the newest. `dropped` counts
    items skipped; after `close()`, `get()` returns what is left, then None."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: T, wait: bool = False) -> None:
        """With `wait`, first waits until the consumer took the previous item (a source that is not
        paced by a clock, e.g. a file read as fast as it goes, then loses nothing)."""
        with self._ready:
            if wait:
                self._ready.wait_for(lambda: self._item is None or self._closed)
            self.dropped += self._item is not None
            self._item = item
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def get(self, timeout_s: float | None = None) -> T | None:
        """The newest item; None once closed and empty, or when `timeout_s` passes first."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            self._ready.notify_all()
            return item
