"""Vidar `.dat` spike files: packed binary frames back to back, no header (docs/formats.md#dat-spike-files).

Packed layout: pixel p = row * W + col counts row-major from the *bottom* image row up, and is bit
`p % 8` (least significant first) of byte `p // 8`. In memory, frames are H x W uint8 arrays in image
orientation (row 0 = top), values 0/1.

`.dat` files and raw streams need frames of a whole number of bytes. Spike arrays (`.npy`/`.npz`,
see `arrays.py`) may have any H x W: they travel through the ring in the same layout with each frame
padded to ceil(H*W/8) bytes (spare bits zero). `read_spikes` and `open_writer` pick the format from
the file suffix.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numba
import numpy as np

from .errors import SpikeFormatError
from . import unpack

DEFAULT_HEIGHT = 250
DEFAULT_WIDTH = 400
DEFAULT_RATE_HZ = 40_000.0
RATE_GAIN = 0.6  # firing rate at intensity 1 (spikes/frame): REDS_BASE and the simulator (docs/formats.md#ground-truth)
RAW_EXTRA_COLUMNS = 16  # some raw captures store 416 columns per row for a 400-wide sensor


@dataclass(frozen=True)
class FrameGeometry:
    """Frame size in memory (height x width) and as stored (stored_width >= width columns per row)."""

    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    stored_width: int = 0  # 0 = same as width
    whole_bytes: bool = True  # False: frames padded to whole bytes (spike arrays of any size)

    def __post_init__(self):
        if self.stored_width == 0:
            object.__setattr__(self, "stored_width", self.width)
        if self.height <= 0 or self.width <= 0:
            raise SpikeFormatError(f"frame size must be positive, got {self.height}x{self.width}")
        if self.stored_width < self.width:
            raise SpikeFormatError(f"stored width {self.stored_width} is smaller than width {self.width}")
        if self.whole_bytes and (self.height * self.stored_width) % 8:
            raise SpikeFormatError(
                f"a {self.height}x{self.stored_width} frame is {self.height * self.stored_width} bits, "
                "not a whole number of bytes; check --height/--width")

    @property
    def frame_bytes(self) -> int:
        return -(-self.height * self.stored_width // 8)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


def stored_width_for(height: int, width: int, frame_bytes: int) -> int:
    """Columns per stored row of `frame_bytes`-byte packed frames of height x width (416 for raw
    250x400 captures); the inverse of FrameGeometry.frame_bytes, padded frames included."""
    if frame_bytes == -(-height * width // 8):
        return width
    return frame_bytes * 8 // height


_PACK8 = np.uint64(0x0102040810204080)  # gathers bit 0 of 8 little-endian bytes into one byte, LSB first
_NOT_BITS = np.uint64(0xFEFEFEFEFEFEFEFE)


@numba.njit(nogil=True, cache=True)
def _pack_kernel(frames, out):
    """frames: n x H x W uint8 0/1 (any strides); out: n x ceil(H*W/8). Returns the OR of all input
    bytes taken 8 at a time, so a caller can tell whether every value was 0 or 1."""
    n, h, w = frames.shape
    row = np.zeros(out.shape[1] * 8, np.uint8)  # one frame in file order; the padding stays 0
    words = row.view(np.uint64)
    seen = np.uint64(0)
    for f in range(n):
        for fr in range(h):  # file row fr holds image row h - 1 - fr
            src = frames[f, h - 1 - fr]
            base = fr * w
            for c in range(w):
                row[base + c] = src[c]
        dst = out[f]
        for k in range(dst.shape[0]):
            v = words[k]
            seen |= v
            dst[k] = (v * _PACK8) >> np.uint64(56)
    return seen


def pack_into(frames: np.ndarray, out: np.ndarray) -> bool:
    """Pack n x H x W uint8/bool frames (image orientation) into `out` (n x ceil(H*W/8) uint8).

    Returns False when some value is neither 0 nor 1; `out` is then not meaningful.
    """
    if frames.dtype == np.bool_:
        frames = frames.view(np.uint8)
    n, h, w = frames.shape
    if frames.dtype != np.uint8 or out.dtype != np.uint8 or out.shape != (n, -(-h * w // 8)):
        raise ValueError(f"cannot pack {frames.dtype} frames {frames.shape} into {out.dtype} {out.shape}")
    return n == 0 or not int(_pack_kernel(frames, out) & _NOT_BITS)


def pack_frames(frames: np.ndarray) -> np.ndarray:
    """Pack n x H x W (or H x W) frames in image orientation into n x ceil(H*W/8) bytes; nonzero = spike."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.dtype not in (np.uint8, np.bool_):
        frames = frames != 0
    n, h, w = frames.shape
    out = np.empty((n, -(-h * w // 8)), np.uint8)
    if not pack_into(frames, out):
        pack_into(frames != 0, out)
    return out


class FrameAccess:
    """Random access by frame index, shared by `.dat` files and spike arrays. Subclasses set `path`,
    `geometry` and `packed` (n x frame_bytes, sliceable) and implement `__len__` and
    `read(start, stop, out=None)` -> n x H x W uint8."""

    path: str
    geometry: FrameGeometry

    @property
    def height(self) -> int:
        return self.geometry.height

    @property
    def width(self) -> int:
        return self.geometry.width

    def _check_range(self, start: int, stop: int) -> None:
        if not (0 <= start <= stop <= len(self)):
            raise IndexError(f"frames [{start}, {stop}) outside 0..{len(self)} of {self.path}")

    def __getitem__(self, index):
        if isinstance(index, slice):
            idx = range(*index.indices(len(self)))
            if not idx:
                return np.empty((0, self.height, self.width), np.uint8)
            lo, hi = min(idx[0], idx[-1]), max(idx[0], idx[-1]) + 1  # read once, then step (any sign)
            return self.read(lo, hi)[idx[0] - lo::idx.step]
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
        """Release the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SpikeFile(FrameAccess):
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

    def __len__(self) -> int:
        return self.packed.shape[0]

    def __repr__(self) -> str:
        return f"SpikeFile({self.path!r}, frames={len(self)}, {self.height}x{self.width})"

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Unpack frames [start, stop) into `out` (allocated if None) as n x H x W uint8."""
        self._check_range(start, stop)
        if out is None:
            out = np.empty((stop - start, self.height, self.width), np.uint8)
        unpack.unpack_into(self.packed[start:stop], out, self.geometry.stored_width)
        return out

    def close(self) -> None:
        mm = getattr(self.packed, "_mmap", None)
        if mm is not None:
            mm.close()


def read_dat(path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH, *,
             stored_width: int = 0, allow_truncated: bool = False) -> SpikeFile:
    """Open a `.dat` file memory-mapped. `stored_width=416` strips the extra raw columns."""
    return SpikeFile(path, height, width, stored_width, allow_truncated)


ARRAY_SUFFIXES = (".npy", ".npz")
SPIKE_FILE_SUFFIXES = (".dat", *ARRAY_SUFFIXES)


def is_array_path(path) -> bool:
    return os.fspath(path).lower().endswith(ARRAY_SUFFIXES)


def read_spikes(path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH, *, stored_width: int = 0,
                allow_truncated: bool = False) -> FrameAccess:
    """Open any spike file by its suffix: `.npy` (memory-mapped) or `.npz` N x H x W 0/1 arrays, else
    a `.dat` file. The result has `len()`, `[i]`, `[a:b]`, `.window(center, n)`, `.read(a, b)`,
    `.chunks(n)`, `.packed[a:b]` (packed frames) and `close()`.

    height, width, stored_width and allow_truncated describe `.dat` files; arrays carry their own
    size and ignore them.
    """
    if is_array_path(path):
        from .arrays import SpikeArray  # arrays.py builds on this module
        return SpikeArray(path)
    return SpikeFile(path, height, width, stored_width, allow_truncated)


class SpikeWriter:
    """Base of the file writers: `write_packed` (n x frame_bytes, the ring's layout), `write`
    (n x H x W, nonzero = spike), `frames_written`, `close()`. Subclasses implement `_write_packed`
    and `_write_frames` for checked input."""

    def __init__(self, path, geometry: FrameGeometry):
        self.path = os.fspath(path)
        self.geometry = geometry
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
        self._write_packed(packed)
        self.frames_written += packed.shape[0]

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.shape[-2:] != self.geometry.shape:
            raise SpikeFormatError(f"{self.path}: frames of shape {frames.shape[-2:]}, expected "
                                   f"{self.geometry.shape}")
        self._write_frames(frames)
        self.frames_written += frames.shape[0]

    def _write_packed(self, packed: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _write_frames(self, frames: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DatWriter(SpikeWriter):
    """Appends packed or unpacked frames to a `.dat` file (stored as given: width = stored width)."""

    def __init__(self, path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH):
        if (height * width) % 8:
            raise SpikeFormatError(
                f"{os.fspath(path)}: {height}x{width} frames are {height * width} bits, not a whole number "
                "of bytes, which a .dat file needs; write a .npy file instead")
        super().__init__(path, FrameGeometry(height, width))

    def _write_packed(self, packed: np.ndarray) -> None:
        self._f.write(packed.data)

    def _write_frames(self, frames: np.ndarray) -> None:
        self._f.write(pack_frames(frames).data)


def write_dat(path, frames: np.ndarray) -> None:
    """Write n x H x W 0/1 frames (image orientation) as a `.dat` file."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    with DatWriter(path, frames.shape[1], frames.shape[2]) as w:
        w.write(frames)


def open_writer(path, height: int, width: int, stored_width: int = 0) -> SpikeWriter:
    """A writer for frames of height x width (stored `stored_width` wide) chosen by suffix: `.npy` gets
    N x H x W uint8 (extra stored columns dropped), anything else a `.dat` in the stored layout."""
    p = os.fspath(path)
    if p.lower().endswith(".npz"):
        raise SpikeFormatError(f"{p}: cannot record to a .npz archive (it is written in one go at the end); "
                               "record to a .npy or .dat file")
    if p.lower().endswith(".npy"):
        from .arrays import NpyWriter
        return NpyWriter(p, height, width, stored_width)
    return DatWriter(p, height, stored_width or width)
