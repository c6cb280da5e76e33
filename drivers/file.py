"""Replay a `.dat` file or a spike array (`.npy`/`.npz`): paced at camera rate x speed (live), or
lossless as fast as consumers read.

The ring carries frames as *stored*: for raw 416-wide captures (`stored_width=416`) each ring slot is
height*416/8 bytes and the consumer strips the extra columns when it unpacks
(formats.stored_width_for). Arrays are packed into the same layout as they are replayed, padded to
whole bytes per frame when H*W is not a multiple of 8; their size comes from the array, not from the
options. Frame indices are the ring's stream indices, so they stay continuous across loops.
"""
from __future__ import annotations

import os
import threading

from ..formats import read_spikes
from .base import Driver, DriverOptions, SourceInfo, check_ring
from .pacing import check_speed, replay


class FileReplay(Driver):
    def __init__(self, path: str, options: DriverOptions | None = None):
        options = options or DriverOptions()
        self.options = options
        self.speed = check_speed(options.speed)
        self.path = os.fspath(path)
        self.spikes = read_spikes(self.path, options.height, options.width, stored_width=options.stored_width,
                                  allow_truncated=options.allow_truncated)
        self.frames_out = 0
        self.info = SourceInfo(name=f"file:{self.path}", height=self.spikes.height, width=self.spikes.width,
                               rate_hz=float(options.rate_hz), live=self.speed is not None,
                               frame_bytes=self.spikes.geometry.frame_bytes,
                               stored_width=self.spikes.geometry.stored_width)

    @property
    def stored_width(self) -> int:
        return self.spikes.geometry.stored_width

    def run(self, ring, stop: threading.Event) -> None:
        check_ring(self, ring)
        o = self.options
        replay(self, self.spikes.packed, ring, stop, rate_hz=o.rate_hz, speed=self.speed, loop=o.loop,
               max_frames=o.max_frames)

    def close(self) -> None:
        self.spikes.close()
