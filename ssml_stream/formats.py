"""Vidar `.dat` spike files: packed binary frames back to back, no header (docs/formats.md#dat-spike-files).

Packed layout: pixel p = row * W + col counts row-major from the *bottom* image row up, and is bit
`p % 8` (least significant first) of byte `p // 8`. In memory, frames are H x W uint8 arrays in image
orientation (row 0 = top), values 0/1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import SpikeFormatError
from . import unpack

DEFAULT_HEIGHT = 250
DEFAULT_WIDTH = 400
DEFAULT_RATE_HZ = 40_000.0
RAW_EXTRA_COLUMNS = 16  # some raw captures store 416 columns per row for a 400-wide sensor


@dataclass(frozen=True)
class FrameGeometry:
    """Frame size in memory (height x width) and as stored (stored_width >= width columns per row)."""

    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    stored_width: int = 0  # 0 = same as width

    def __post_init__(self):
        if self.stored_width == 0:
            object.__setattr__(self, "stored_width", self.width)
        if self.height <= 0 or self.width <= 0:
            raise SpikeFormatError(f"frame size must be positive, got {self.height}x{self.width}")
        if self.stored_width < self.width:
            raise SpikeFormatError(f"stored width {self.stored_width} is smaller than width {self.width}")
        if (self.height * self.stored_width) % 8:
            raise SpikeFormatError(
                f"a {self.height}x{self.stored_width} frame is {self.height * self.stored_width} bits, "
                "not a whole number of bytes; check --height/--width")

    @property
    def frame_bytes(self) -> int:
        return self.height * self.stored_width // 8

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


def pack_frames(frames: np.ndarray) -> np.ndarray:
    """Pack n x H x W (or H x W) 0/1 frames in image orientation into n x (H*W/8) bytes."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    n, h, w = frames.shape
    if (h * w) % 8:
        raise SpikeFormatError(f"cannot pack {h}x{w} frames: {h * w} bits is not a whole number of bytes")
    bits = (frames[:, ::-1, :] != 0).reshape(n, h * w)
    return np.packbits(bits, axis=1, bitorder="little")


class SpikeFile:
    """A memory-mapped `.dat` file with random access by frame index.

    `len(f)`, `f[i]` -> H x W uint8, `f[a:b]` -> n x H x W, `f.window(center, n)`, `f.chunks(n)`,
    `f.packed` (the raw n x frame_bytes memmap).
    """

    def __init__(self, path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH,
                 stored_width: int = 0, allow_truncated: bool = False):
        self.path = os.fspath(path)
        self.geometry = FrameGeometry(height, width, stored_width)
        if not os.path.exists(self.path):
            raise SpikeFormatError(f"{self.path}: no such file")
        if os.path.isdir(self.path):
            raise SpikeFormatError(f"{self.path}: is a directory, expected a .dat file")
        size = os.path.getsize(self.path)
        fb = self.geometry.frame_bytes
        g = self.geometry
        if size == 0:
            raise SpikeFormatError(f"{self.path}: empty file (0 bytes); expected frames of {fb} bytes "
                                   f"({g.height}x{g.stored_width} bits)")
        n_frames, self.truncated_bytes = divmod(size, fb)
        if n_frames == 0:
            raise SpikeFormatError(f"{self.path}: {size} bytes is less than one {g.height}x{g.stored_width} "
                                   f"frame ({fb} bytes); check --height/--width")
        if self.truncated_bytes and not allow_truncated:
            raise SpikeFormatError(
                f"{self.path}: size {size} bytes is not a multiple of the {g.height}x{g.stored_width} frame "
                f"size {fb} bytes ({n_frames} frames + {self.truncated_bytes} bytes); check --height/--width, "
                "or pass --allow-truncated to ignore the partial last frame")
        self.packed = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(n_frames, fb))

    @property
    def height(self) -> int:
        return self.geometry.height

    @property
    def width(self) -> int:
        return self.geometry.width

    def __len__(self) -> int:
        return self.packed.shape[0]

    def __repr__(self) -> str:
        return f"SpikeFile({self.path!r}, frames={len(self)}, {self.height}x{self.width})"

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Unpack frames [start, stop) into `out` (allocated if None) as n x H x W uint8."""
        if not (0 <= start <= stop <= len(self)):
            raise IndexError(f"frames [{start}, {stop}) outside 0..{len(self)} of {self.path}")
        if out is None:
            out = np.empty((stop - start, self.height, self.width), np.uint8)
        unpack.unpack_into(self.packed[start:stop], out, self.geometry.stored_width)
        return out

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self.read(start, stop)[::step]
            return self.read(start, max(start, stop))
        i = int(index)
        if i < 0:
            i += len(self)
        return self.read(i, i + 1)[0]

    def window(self, center: int, n: int = 41) -> np.ndarray:
        """The n frames centred on `center` (n odd): frames center - n//2 .. center + n//2."""
        start = center - n // 2
        if start < 0 or start + n > len(self):
            raise IndexError(f"a {n}-frame window centred on {center} does not fit in {len(self)} frames "
                             f"of {self.path}")
        return self.read(start, start + n)

    def chunks(self, n: int = 1024) -> Iterator[np.ndarray]:
        """Iterate over unpacked chunks of up to n frames (the last may be shorter)."""
        for start in range(0, len(self), n):
            yield self.read(start, min(start + n, len(self)))

    def close(self) -> None:
        mm = getattr(self.packed, "_mmap", None)
        if mm is not None:
            mm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_dat(path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH, *,
             stored_width: int = 0, allow_truncated: bool = False) -> SpikeFile:
    """Open a `.dat` file memory-mapped. `stored_width=416` strips the extra raw columns."""
    return SpikeFile(path, height, width, stored_width, allow_truncated)


class DatWriter:
    """Appends packed or unpacked frames to a `.dat` file."""

    def __init__(self, path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH):
        self.path = os.fspath(path)
        self.geometry = FrameGeometry(height, width)
        self.frames_written = 0
        try:
            self._f = open(self.path, "wb")
        except OSError as e:
            raise SpikeFormatError(f"{self.path}: cannot write ({e.strerror})") from None

    def write_packed(self, packed: np.ndarray) -> None:
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.ndim == 1:
            packed = packed[None]
        if packed.shape[1] != self.geometry.frame_bytes:
            raise SpikeFormatError(f"{self.path}: packed frames of {packed.shape[1]} bytes, expected "
                                   f"{self.geometry.frame_bytes}")
        self._f.write(packed.data)
        self.frames_written += packed.shape[0]

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.shape[-2:] != self.geometry.shape:
            raise SpikeFormatError(f"{self.path}: frames of shape {frames.shape[-2:]}, expected "
                                   f"{self.geometry.shape}")
        self.write_packed(pack_frames(frames))

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_dat(path, frames: np.ndarray) -> None:
    """Write n x H x W 0/1 frames (image orientation) as a `.dat` file."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    with DatWriter(path, frames.shape[1], frames.shape[2]) as w:
        w.write(frames)
