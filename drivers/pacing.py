"""Paced replay of an array of packed frames into a Ring (used by the file and simulator drivers).

At `speed` x camera rate, frames are pushed in chunks of about 1 ms worth at their scheduled wall-clock
times; between chunks the thread sleeps on the stop event (no busy spin), so other threads run. A
producer that falls behind (a slow disk, a stalled thread) pushes everything due at once and catches
up; the source itself never drops frames. `speed=None` pushes as fast as the ring takes frames
(a lossless ring blocks the producer until the consumers have read).
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import ConfigError
from ..ring import RingClosed

CHUNK_S = 0.001          # paced chunks of ~1 ms of stream time
LOSSLESS_CHUNK_FRAMES = 256
MAX_RATE_HZ = 1e6        # 25x the 40 kHz camera; a simulated 0.5 s loop at this rate is 6 GB at 250x400


def check_speed(speed: float | None) -> float | None:
    """A replay pace (x camera rate), or None for as fast as consumed (lossless)."""
    if speed is None:
        return None
    speed = float(speed)
    if not speed > 0:
        raise ConfigError(f"speed must be a positive number or 'max', got {speed}")
    return speed


def check_rate(rate_hz: float) -> float:
    """A camera frame rate the pacing (and a pre-rendered simulator loop) can hold."""
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise ConfigError(f"camera frame rate {rate_hz:g} Hz is outside (0, {MAX_RATE_HZ:g}] Hz")
    return rate_hz


def replay(driver, packed: np.ndarray, ring, stop: threading.Event, *, rate_hz: float,
           speed: float | None, loop: bool, max_frames: int | None = None) -> int:
    """Push `packed` (n x frame_bytes, memmap or array) into `ring`, looping if asked.

    Updates `driver.frames_out` as it goes and returns it. Stops at `max_frames`, at the end of the
    data (without loop), when `stop` is set, or when the ring is closed under a blocked producer.
    """
    n_src = packed.shape[0]
    total = max_frames if max_frames is not None else (None if loop else n_src)
    if speed is None:
        chunk = LOSSLESS_CHUNK_FRAMES
    else:
        frames_per_s = rate_hz * speed
        chunk = max(1, int(round(frames_per_s * CHUNK_S)))
        max_burst = max(chunk, ring.capacity // 4)  # catching up: bounded bursts
        t0 = time.perf_counter()
    src = 0
    sent = 0
    try:
        while not stop.is_set() and (total is None or sent < total):
            remaining = chunk if total is None else min(chunk, total - sent)
            if speed is None:
                want = remaining
            else:
                due = int((time.perf_counter() - t0) * frames_per_s) - sent
                if due < remaining:
                    # sleep until the chunk's last frame is due
                    stop.wait(max(0.0, (sent + remaining) / frames_per_s - (time.perf_counter() - t0)))
                    continue
                want = due if total is None else min(due, total - sent)
                want = min(want, max_burst)
            while want > 0:
                k = min(want, n_src - src)
                ring.write(packed[src:src + k], time.time_ns())
                src += k
                sent += k
                want -= k
                driver.frames_out = sent
                if src == n_src:
                    if not loop:
                        return sent
                    src = 0
    except RingClosed:
        pass
    return sent
