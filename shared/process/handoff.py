"""A size-one, drop-oldest hand-off from a producer thread to an asyncio consumer."""

from __future__ import annotations

import asyncio
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds only the newest item: a slow consumer never builds a queue, it skips stale items.

    `dropped` counts items replaced before anyone took them. `close()` ends the stream:
    `get()` then returns None once the last item has been taken.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._item: T | None = None
        self._closed = False
        self._ready = asyncio.Event()
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> None:
        """Called from any thread."""
        with self._lock:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
        self._loop.call_soon_threadsafe(self._ready.set)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> T | None:
        while True:
            with self._lock:
                item, self._item = self._item, None
                if item is not None or self._closed:
                    return item
                self._ready.clear()
            await self._ready.wait()
