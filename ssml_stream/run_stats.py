"""Run statistics of the pipeline: output latency and rate (bounded memory), time spent per stage,
the end-of-run summary, and the note about a silent live source."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

NO_FRAMES_NOTE_S = 5.0     # a live source silent this long is reported (once per silence)


class LatencyStats:
    """Latency and output-time bookkeeping with bounded memory, so an all-day run does not grow.

    Whole-run percentiles come from a log-spaced histogram (1 % bins, 0.01 ms .. 1000 s); the status
    line reads the outputs since its previous call from a bounded deque. Written by the sink thread.
    """

    EDGES_MS = np.geomspace(0.01, 1e6, int(np.log(1e8) / np.log(1.01)) + 1)

    def __init__(self):
        self.hist = np.zeros(len(self.EDGES_MS) + 1, np.int64)
        self.count = 0
        self.first_t = self.last_t = 0.0
        self._recent: deque = deque(maxlen=8192)
        self._prev_t: float | None = None  # last output time handed to the status line

    def add(self, latency_ms: float, t: float) -> None:
        self.hist[np.searchsorted(self.EDGES_MS, latency_ms)] += 1
        if self.count == 0:
            self.first_t = t
        self.count += 1
        self.last_t = t
        self._recent.append((latency_ms, t))

    def recent(self) -> tuple[list[float], list[float]]:
        """(latencies, output times) since the previous call; times start with the previous call's last."""
        items = [self._recent.popleft() for _ in range(len(self._recent))]
        lat = [x[0] for x in items]
        times = ([self._prev_t] if self._prev_t is not None else []) + [x[1] for x in items]
        if items:
            self._prev_t = items[-1][1]
        return lat, times

    @staticmethod
    def percentiles(ms: list[float]) -> tuple[float, float]:
        if not ms:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(np.asarray(ms), [50, 99])
        return float(p50), float(p99)

    @classmethod
    def hist_percentiles(cls, hist: np.ndarray) -> tuple[float, float]:
        """p50, p99 (ms) of a histogram over EDGES_MS (geometric bin centres, ~0.5 % error)."""
        total = int(hist.sum())
        if total == 0:
            return float("nan"), float("nan")
        edges = np.concatenate([[cls.EDGES_MS[0]], cls.EDGES_MS, [cls.EDGES_MS[-1]]])
        cum = np.cumsum(hist)
        out = []
        for q in (0.5, 0.99):
            i = int(np.searchsorted(cum, q * total))
            out.append(float(np.sqrt(edges[i] * edges[i + 1])))
        return out[0], out[1]

    def fps(self) -> float:
        span = self.last_t - self.first_t
        return (self.count - 1) / span if self.count >= 2 and span > 0 else 0.0


class StageTimes:
    """Total time and count per named stage (ring read, unpack, forward, publish, ...), added from any
    thread; `mean_ms()` gives the mean milliseconds per call of each. Constant memory."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ns: dict[str, int] = {}
        self._n: dict[str, int] = {}

    def add(self, stage: str, ns: int, count: int = 1) -> None:
        with self._lock:
            self._ns[stage] = self._ns.get(stage, 0) + ns
            self._n[stage] = self._n.get(stage, 0) + count

    def mean_ms(self) -> dict[str, float]:
        with self._lock:
            return {k: self._ns[k] / self._n[k] / 1e6 for k in self._ns if self._n[k]}


@dataclass
class Summary:
    frames_in: int
    frames_dropped: int
    windows_out: int
    windows_skipped: int
    fps: float
    latency_p50_ms: float
    latency_p99_ms: float
    wall_s: float
    model: str
    frames_recorded: int | None = None
    record_dropped: int | None = None
    stage_ms: dict = field(default_factory=dict)  # mean ms per call of each stage (StageTimes)

    def line(self) -> str:
        s = (f"frames in {self.frames_in}, frames dropped {self.frames_dropped}, windows out {self.windows_out}, "
             f"fps {self.fps:.1f}, latency p50 {self.latency_p50_ms:.1f} ms p99 {self.latency_p99_ms:.1f} ms, "
             f"skipped {self.windows_skipped}, model {self.model}")
        if self.frames_recorded is not None:
            s += f", recorded {self.frames_recorded} (dropped {self.record_dropped})"
        return s


class SilenceWatch:
    """Says once through `log` when a live source has delivered no frame for NO_FRAMES_NOTE_S seconds
    (a sender that connected but sends nothing, a FIFO nobody writes); again only after frames came
    back and stopped again."""

    def __init__(self, name: str, log: Callable[[str], None]):
        self.name, self.log = name, log
        self._frames = 0
        self._since = time.monotonic()
        self._told = False

    def check(self, frames: int) -> None:
        now = time.monotonic()
        if frames != self._frames:
            self._frames, self._since, self._told = frames, now, False
        elif not self._told and now - self._since >= NO_FRAMES_NOTE_S:
            self._told = True
            self.log(f"no frames from {self.name} for {NO_FRAMES_NOTE_S:g} s; still waiting")
