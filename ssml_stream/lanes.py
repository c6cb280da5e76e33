"""Reconstruct windows on several threads at once and hand the results on in order (lossless runs).

A lossless replay (`--speed max --stride N`) is limited by the model alone: on a 2-core CPU one torch
thread per window, two windows at a time, does about 1.8x the windows of one window at a time (the
small convolutions scale poorly across threads inside one forward; two forwards scale almost
linearly; figures in docs/architecture.md#offline-lanes). Windows are dealt round-robin to the
lanes, so reading the lanes' results round-robin gives them back in grid order; the queues are
bounded, so memory stays flat and a stopped run ends within one window's time.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

_END = object()
POLL_S = 0.1


class Lanes:
    """`submit(center, window, capture_ns)` from one thread; `reconstruct(window)` runs on `count`
    worker threads (it must be safe to call concurrently); `emit(frame, center, capture_ns)` is called
    on one hand-on thread in submission order. `finish()` waits for everything submitted."""

    def __init__(self, count: int, reconstruct: Callable[[np.ndarray], np.ndarray],
                 emit: Callable[[np.ndarray, int, int], None], stop: threading.Event, times=None):
        self.count, self.reconstruct, self.emit, self.stop, self.times = count, reconstruct, emit, stop, times
        self.inboxes = [queue.Queue(maxsize=1) for _ in range(count)]
        self.outboxes = [queue.Queue(maxsize=2) for _ in range(count)]
        self.errors: list[BaseException] = []
        self._submitted = 0
        self._threads = [threading.Thread(target=self._guard(self._work, i), name=f"ssml-lane-{i}", daemon=True)
                         for i in range(count)]
        self._threads.append(threading.Thread(target=self._guard(self._hand_on), name="ssml-lanes-out", daemon=True))
        for t in self._threads:
            t.start()

    def submit(self, center: int, window: np.ndarray, capture_ns: int) -> bool:
        """Queue a copy of `window` (the caller may reuse its buffer); False once the run stops."""
        ok = self._put(self.inboxes[self._submitted % self.count], (center, window.copy(), capture_ns))
        self._submitted += ok
        return ok

    def finish(self) -> None:
        """Wait until every submitted window is emitted (or the run stops); re-raise a lane's error."""
        for box in self.inboxes:
            self._put(box, _END)
        for t in self._threads:
            while t.is_alive() and not (self.stop.is_set() and self.errors):
                t.join(POLL_S)
        if self.errors:
            raise self.errors[0]

    def _put(self, box: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                box.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, box: queue.Queue):
        while not self.stop.is_set():
            try:
                return box.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return _END

    def _work(self, lane: int) -> None:
        while True:
            item = self._get(self.inboxes[lane])
            if item is not _END:
                center, window, capture_ns = item
                t = time.perf_counter_ns()
                item = (self.reconstruct(window), center, capture_ns)
                if self.times is not None:
                    self.times.add("model", time.perf_counter_ns() - t)
            if not self._put(self.outboxes[lane], item) or item is _END:
                return

    def _hand_on(self) -> None:
        k = 0
        while True:
            item = self._get(self.outboxes[k % self.count])
            if item is _END:
                return
            self.emit(*item)
            k += 1

    def _guard(self, fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as e:  # surfaced by finish(); stop the run
                self.errors.append(e)
                self.stop.set()
        return run
