"""The vector index held open between searches by a long-lived reader (the web server).

Opening the embedded shard costs ~55 ms at 10,000 points, more than a whole search. A server that
reopened it per request would spend most of each request loading it; one that kept it open forever
would lock every ingest out (one process holds a shard at a time). `HeldIndex` keeps it open while
searches come and closes it once none came for `idle_seconds`, or as soon as another process waits
for it: a writer (a run's `embeddings` or `description` step, `reindex`) leaves a marker beside the
lock file while it waits (`someone_waits`), which is checked before each search and every 50 ms, so
it waits about one search. The index then stays closed for a hand-over pause, long enough for the
writer, polling the lock every 50 ms, to take it: readers cannot starve writers. As a safety net for
a waiter that leaves no marker, it is also closed after `max_hold_seconds`. Reopening after a release
is also what shows the server the writer's points.

With QDRANT_URL the same object simply keeps its client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from video_assets.store.vector_index import VectorIndex

HAND_OVER_SECONDS = 0.2  # > 3 polls of a waiting opener (qdrant_edge_index retries every 50 ms)
WATCH_SECONDS = 0.05  # how often the held index looks for idleness and waiting writers


class HeldIndex:
    def __init__(
        self,
        opener: Callable[[], AbstractContextManager[VectorIndex]],
        *,
        idle_seconds: float = 1.0,
        max_hold_seconds: float = 30.0,
        wanted: Callable[[], bool] = lambda: False,
    ) -> None:
        self._opener = opener
        self._wanted = wanted
        self.idle_seconds = idle_seconds
        self.max_hold_seconds = max_hold_seconds
        self._lock = threading.Lock()
        self._context: AbstractContextManager[VectorIndex] | None = None
        self._index: VectorIndex | None = None
        self._opened = 0.0
        self._last_use = 0.0
        self.opens = 0  # how often the index was (re)opened: the benchmark reports it
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="held-index-release", daemon=True)
        self._reaper.start()

    @contextmanager
    def use(self) -> Iterator[VectorIndex]:
        with self._lock:
            if self._index is not None and (time.monotonic() - self._opened > self.max_hold_seconds or self._wanted()):
                self._release()
                time.sleep(HAND_OVER_SECONDS)
            if self._index is None:
                context = self._opener()
                self._index = context.__enter__()
                self._context = context
                self._opened = time.monotonic()
                self.opens += 1
            try:
                yield self._index
            finally:
                self._last_use = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def release(self) -> None:
        with self._lock:
            self._release()

    def close(self) -> None:
        self._stop.set()
        self.release()

    def _release(self) -> None:
        context, self._context, self._index = self._context, None, None
        if context is not None:
            context.__exit__(None, None, None)

    def _reap(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            if self._index is None:
                continue
            idle = time.monotonic() - self._last_use >= self.idle_seconds
            if idle or self._wanted():
                with self._lock:  # a search in progress finishes first
                    if self._index is not None:
                        self._release()
