"""Ring buffer of packed spike frames: one producer, several consumers with their own cursors.

This is where frames get dropped. A live producer never blocks: a consumer that falls more than
`capacity` frames behind loses the oldest ones, and its cursor counts exactly how many (`dropped`).
A lossless ring (file replay at --speed max) blocks the producer instead until every cursor has
read the slot it wants to overwrite.

Torn reads are impossible by construction: a consumer copies frames out, then checks that the
producer has not *started* writing over any of them (`_begun`, a seqlock-style counter); frames
overwritten during the copy are discarded and counted as dropped.
"""
from __future__ import annotations

import threading

import numpy as np


class RingClosed(Exception):
    """Raised to a blocked producer when the ring is closed."""


class Ring:
    def __init__(self, frame_bytes: int, capacity: int = 16384, lossless: bool = False):
        if capacity < 2:
            raise ValueError("ring capacity must be at least 2 frames")
        self.frame_bytes, self.capacity, self.lossless = frame_bytes, capacity, lossless
        self.frames = np.zeros((capacity, frame_bytes), np.uint8)  # zeros: touch pages up front
        self.capture_ns = np.zeros(capacity, np.int64)
        self._begun = 0      # frames the producer has started writing
        self._head = 0       # frames fully written (stream index of the next frame)
        self._closed = False
        self._cond = threading.Condition()
        self._cursors: list[Cursor] = []

    @property
    def head(self) -> int:
        """Stream index one past the newest complete frame."""
        return self._head

    @property
    def closed(self) -> bool:
        return self._closed

    def cursor(self, from_start: bool = True) -> "Cursor":
        """A new consumer; it starts at the oldest frame still held (or at the head)."""
        with self._cond:
            start = max(0, self._head - self.capacity) if from_start else self._head
            c = Cursor(self, start)
            self._cursors.append(c)
            return c

    def _remove(self, cursor: "Cursor") -> None:
        with self._cond:
            if cursor in self._cursors:
                self._cursors.remove(cursor)
                self._cond.notify_all()

    def write(self, packed: np.ndarray, capture_ns: np.ndarray | int) -> None:
        """Append k packed frames (k x frame_bytes) with their capture times (ns, array or scalar)."""
        k = packed.shape[0]
        ts = np.broadcast_to(np.asarray(capture_ns, np.int64), (k,))
        pos = 0
        while pos < k:
            take = min(k - pos, self.capacity)
            if self.lossless:
                take = self._wait_for_room(take)
            start = self._head
            with self._cond:
                self._begun = start + take
            slot = start % self.capacity
            first = min(take, self.capacity - slot)
            self.frames[slot:slot + first] = packed[pos:pos + first]
            self.capture_ns[slot:slot + first] = ts[pos:pos + first]
            if first < take:
                self.frames[:take - first] = packed[pos + first:pos + take]
                self.capture_ns[:take - first] = ts[pos + first:pos + take]
            with self._cond:
                self._head = start + take
                self._cond.notify_all()
            pos += take

    def _wait_for_room(self, want: int) -> int:
        with self._cond:
            while True:
                if self._closed:
                    raise RingClosed("ring closed while the producer waited for room")
                slowest = min((c.pos for c in self._cursors), default=self._head)
                room = self.capacity - (self._head - slowest)
                if room > 0:
                    return min(want, room)
                self._cond.wait(0.1)

    def close(self) -> None:
        """End of stream: consumers drain what is left, then `read` returns 0 frames."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Cursor:
    """One consumer's position in a Ring. Not shared between threads."""

    def __init__(self, ring: Ring, start: int):
        self.ring = ring
        self.pos = start
        self.dropped = 0  # frames this consumer lost because the producer overran it

    @property
    def available(self) -> int:
        return self.ring._head - self.pos

    def wait(self, n_frames: int = 1, timeout: float | None = None) -> bool:
        """Block until n_frames are available or the ring is closed; True if they are available."""
        r = self.ring
        with r._cond:
            return r._cond.wait_for(lambda: r._head - self.pos >= n_frames or r._closed, timeout) \
                and r._head - self.pos >= n_frames

    def _skip_overrun(self) -> None:
        lost = self.ring._head - self.ring.capacity - self.pos
        if lost > 0:
            self.dropped += lost
            self.pos += lost

    def read(self, out: np.ndarray, out_ns: np.ndarray | None = None) -> tuple[int, int]:
        """Copy up to len(out) frames at the cursor into out; returns (first_index, count).

        Frames that were overrun before or during the copy are skipped and added to `dropped`, so
        the frames returned are always exactly those with indices first_index .. first_index+count-1.
        """
        r = self.ring
        while True:
            self._skip_overrun()
            first = self.pos
            count = min(out.shape[0], r._head - first)
            if count <= 0:
                return first, 0
            self._copy(first, count, out, out_ns)
            overwritten = r._begun - r.capacity - first  # frames [first, first+overwritten) torn
            if overwritten <= 0:
                self.pos = first + count
                if r.lossless:
                    with r._cond:
                        r._cond.notify_all()  # wake a producer waiting for room
                return first, count
            # part of the copy may be torn: count it as dropped and retry from the safe point
            self.dropped += min(overwritten, count)
            self.pos = first + min(overwritten, count)

    def read_latest(self, n: int, out: np.ndarray, out_ns: np.ndarray | None = None) -> tuple[int, int]:
        """Copy the newest n complete frames (the newest window) and move the cursor past them.

        Returns (first_index, skipped) where skipped counts the frames jumped over. Returns
        (first_index, -1) without copying when fewer than n new frames exist since the cursor.
        """
        r = self.ring
        if n > r.capacity:
            raise ValueError(f"window of {n} frames does not fit a ring of {r.capacity}")
        while True:
            head = r._head
            first = head - n
            if first < self.pos:
                return self.pos, -1
            self._copy(first, n, out, out_ns)
            if r._begun - r.capacity <= first:
                skipped = first - self.pos
                self.pos = head
                return first, skipped

    def _copy(self, first: int, count: int, out: np.ndarray, out_ns: np.ndarray | None) -> None:
        r = self.ring
        slot = first % r.capacity
        a = min(count, r.capacity - slot)
        out[:a] = r.frames[slot:slot + a]
        if a < count:
            out[a:count] = r.frames[:count - a]
        if out_ns is not None:
            out_ns[:a] = r.capture_ns[slot:slot + a]
            if a < count:
                out_ns[a:count] = r.capture_ns[:count - a]

    def close(self) -> None:
        self.ring._remove(self)
