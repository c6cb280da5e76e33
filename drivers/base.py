"""The Driver interface: a spike source that writes packed frames into a Ring.

A driver is opened from a URI (see `ssml_stream.drivers.open_driver`), reports its metadata in
`info`, and `run(ring, stop)` pushes frames until the source ends or `stop` is set. Live sources
(camera, simulator, raw stream) write to a live ring and never wait for consumers; a lossless replay
(`--speed max`) writes to a lossless ring, which blocks it instead.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import DriverError
from ..formats import DEFAULT_HEIGHT, DEFAULT_RATE_HZ, DEFAULT_WIDTH, stored_width_for


@dataclass(frozen=True)
class DriverOptions:
    """Options common to all drivers; each driver reads the ones it understands."""

    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    stored_width: int = 0           # 416 for raw captures with 16 extra columns per row
    rate_hz: float = DEFAULT_RATE_HZ
    speed: float | None = 1.0       # replay pace x camera rate; None = as fast as the consumer takes (lossless)
    loop: bool = False
    allow_truncated: bool = False
    seed: int = 0
    duration_s: float | None = None  # stop after this much stream time (None = until the source ends)
    extra: dict = field(default_factory=dict)  # driver-specific (e.g. simulator noise settings)

    @property
    def max_frames(self) -> int | None:
        """Frames in `duration_s` of stream time (None = until the source ends)."""
        return None if self.duration_s is None else int(round(self.duration_s * self.rate_hz))


@dataclass(frozen=True)
class SourceInfo:
    name: str            # human-readable, e.g. "file:rec.dat" or "sim:shapes"
    height: int
    width: int
    rate_hz: float
    live: bool           # True: never blocks (ring drops); False: lossless replay (ring blocks producer)
    frame_bytes: int
    stored_width: int = 0  # columns per stored row (416 for raw 250 x 400 captures); 0: derived from frame_bytes

    def __post_init__(self):
        if not self.stored_width:
            object.__setattr__(self, "stored_width", stored_width_for(self.height, self.width, self.frame_bytes))


@runtime_checkable
class Driver(Protocol):
    """A spike source; `info` is set once it is open. Subclassing is optional: it inherits
    `frames_out = 0`, a `close` that does nothing and use in a `with` block."""

    info: SourceInfo
    frames_out: int = 0  # frames written to the ring so far

    def run(self, ring, stop: threading.Event) -> None:
        """Write frames into `ring` until the source ends or `stop` is set; then return.

        Must not call ring.close(); the caller does. Raises DriverError on failures.
        """
        ...

    def close(self) -> None:
        """Release files, sockets and devices. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_ring(driver: Driver, ring) -> None:
    """Refuse a ring sized for other frames (it must be built from `driver.info.frame_bytes`)."""
    if ring.frame_bytes != driver.info.frame_bytes:
        raise DriverError(f"{driver.info.name}: ring holds {ring.frame_bytes}-byte frames, the source makes "
                          f"{driver.info.frame_bytes}-byte frames; size the ring from driver.info.frame_bytes")
