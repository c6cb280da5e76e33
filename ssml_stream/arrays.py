"""Spike arrays: N x H x W frames of 0/1 (uint8 or bool) in `.npy` or `.npz` files, any H x W.

Row 0 of a frame is the top of the image. A `.npy` file is memory-mapped; in a `.npz` archive the
array named `spk` (or else the only array) is read into memory. Nothing is ever unpickled: headers
are read first and object arrays are refused before any data is touched.

Values are checked where frames are read: every chunk that `read`, `[i]`, `window`, `chunks` or
`packed[a:b]` touches is checked with one cheap pass over the bytes already in hand, and the whole
array is checked at open when it is at most FULL_CHECK_BYTES, so small files fail at once.

`packed[a:b]` packs frames on the fly into the `.dat` layout (formats.py), each frame padded to
whole bytes: the file driver replays arrays through the ring exactly like `.dat` files.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib

import numpy as np

from .errors import SpikeFormatError
from .formats import FrameAccess, FrameGeometry, SpikeWriter, pack_into
from .unpack import unpack_into

SPIKE_KEY = "spk"                 # the array a .npz must name when it holds several
FULL_CHECK_BYTES = 64 * 2**20     # arrays up to this size have all values checked at open
SPIKE_DTYPES = (np.dtype(np.uint8), np.dtype(np.bool_))


def _read_header(fp, name: str) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) from a .npy header; reads no data and unpickles nothing."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fp)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fp)
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as e:
        raise SpikeFormatError(f"{name}: not a .npy array ({e})") from None


def _check_header(name: str, shape: tuple, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise SpikeFormatError(f"{name}: holds Python objects (pickled data), which are never loaded because "
                               "unpickling can run code; save the spikes as a uint8 or bool array")
    if len(shape) != 3:
        raise SpikeFormatError(f"{name}: array of shape {shape}, expected 3 dimensions: frames x height x width")
    if dtype not in SPIKE_DTYPES:
        raise SpikeFormatError(f"{name}: dtype {dtype}, expected uint8 or bool frames of 0/1")
    if 0 in shape:
        raise SpikeFormatError(f"{name}: empty array of shape {shape}")


def _open_npy(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as fp:
            shape, fortran, dtype = _read_header(fp, path)
            offset = fp.tell()
    except OSError as e:
        raise SpikeFormatError(f"{path}: cannot read ({e.strerror})") from None
    _check_header(path, shape, dtype)
    need = offset + int(np.prod(shape)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < need:
        raise SpikeFormatError(f"{path}: {size} bytes, but its header promises {shape[0]}x{shape[1]}x{shape[2]} "
                               f"{dtype} ({need} bytes); the file is truncated")
    return np.memmap(path, dtype, "r", offset=offset, shape=shape, order="F" if fortran else "C")


def _spike_key(path: str, names: list[str]) -> str:
    keys = [n[:-4] for n in names if n.endswith(".npy")]
    if SPIKE_KEY in keys:
        return SPIKE_KEY
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise SpikeFormatError(f"{path}: the archive holds no arrays")
    raise SpikeFormatError(f"{path}: holds {len(keys)} arrays ({', '.join(sorted(keys))}) and none named "
                           f"'{SPIKE_KEY}'; name the spike array '{SPIKE_KEY}'")


def _open_npz(path: str) -> tuple[np.ndarray, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            key = _spike_key(path, archive.namelist())
            name = f"{path}['{key}']"
            with archive.open(key + ".npy") as fp:
                shape, _, dtype = _read_header(fp, name)
            _check_header(name, shape, dtype)
            with archive.open(key + ".npy") as fp:
                return np.lib.format.read_array(fp, allow_pickle=False), key
    except SpikeFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as e:
        raise SpikeFormatError(f"{path}: not a readable .npz archive ({e})") from None
    except OSError as e:
        raise SpikeFormatError(f"{path}: cannot read ({e.strerror or e})") from None


class PackedFrames:
    """`spikes.packed[a:b]` of a spike array: frames a..b-1 packed on the fly (n x frame_bytes uint8)."""

    def __init__(self, spikes: "SpikeArray"):
        self._spikes = spikes
        self.shape = (len(spikes), spikes.geometry.frame_bytes)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("packed frames of a spike array are read by contiguous slices, packed[a:b]")
        start, stop, _ = index.indices(self.shape[0])
        return self._spikes.read_packed(start, max(start, stop))


class SpikeArray(FrameAccess):
    """An N x H x W 0/1 array from a `.npy` (memory-mapped) or `.npz` file, with the interface of
    `SpikeFile`: `len()`, `[i]`, `[a:b]`, `.window(center, n)`, `.read(a, b)`, `.chunks(n)`,
    `.packed[a:b]`, `close()`. `source` says how the data was opened."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise SpikeFormatError(f"{self.path}: no such file")
        if os.path.isdir(self.path):
            raise SpikeFormatError(f"{self.path}: is a directory, expected a .npy or .npz file")
        if self.path.lower().endswith(".npz"):
            self.frames, key = _open_npz(self.path)
            self.source = f".npz array '{key}', in memory"
        else:
            self.frames = _open_npy(self.path)
            self.source = ".npy, memory-mapped"
        self._u8 = self.frames.view(np.uint8)
        n, h, w = self.frames.shape
        self.geometry = FrameGeometry(h, w, whole_bytes=False)
        self.packed = PackedFrames(self)
        if self.frames.nbytes <= FULL_CHECK_BYTES:
            self._check_values(0, self._u8)

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __repr__(self) -> str:
        return f"SpikeArray({self.path!r}, frames={len(self)}, {self.height}x{self.width}, {self.frames.dtype})"

    def _check_values(self, start: int, frames: np.ndarray) -> None:
        """Raise if a value in `frames` (uint8, stream frames start..) is not 0 or 1."""
        if frames.size and frames.max() > 1:
            peak = frames.reshape(frames.shape[0], -1).max(axis=1)
            i = int(np.argmax(peak > 1))
            raise SpikeFormatError(f"{self.path}: frame {start + i} holds the value {peak[i]}; spike arrays "
                                   "must hold only 0 and 1")

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy frames [start, stop) into `out` (allocated if None) as n x H x W uint8."""
        self._check_range(start, stop)
        if out is None:
            out = np.empty((stop - start, self.height, self.width), np.uint8)
        np.copyto(out, self._u8[start:stop])
        self._check_values(start, out)
        return out

    def read_packed(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) packed in the `.dat` layout, n x frame_bytes (each frame padded to whole bytes)."""
        self._check_range(start, stop)
        out = np.empty((stop - start, self.geometry.frame_bytes), np.uint8)
        if not pack_into(self._u8[start:stop], out):
            self._check_values(start, self._u8[start:stop])
        return out

    def close(self) -> None:
        mm = getattr(self.frames, "_mmap", None)
        if mm is not None:
            mm.close()


# ------------------------------------------------------------------------------------------------ writing

NPY_HEADER_BYTES = 128  # fits any 3-D shape below 10^20 frames, so a header can be rewritten in place


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A .npy (format 1.0) header of exactly NPY_HEADER_BYTES, for a file written before its length is known."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str, tuple(shape))
    body = text.ljust(NPY_HEADER_BYTES - 11) + "\n"  # after magic (6), version (2) and header length (2)
    if len(body) != NPY_HEADER_BYTES - 10:
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER_BYTES}-byte npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class NpyWriter(SpikeWriter):
    """Writes frames to a `.npy` file as N x H x W uint8 0/1 as they come. The header is written first
    (saying 0 frames) and rewritten with the final count by `close()`; packed frames stored wider than
    `width` lose their extra columns."""

    def __init__(self, path, height: int, width: int, stored_width: int = 0):
        super().__init__(path, FrameGeometry(height, width, stored_width, whole_bytes=False))
        self._f.write(npy_header(np.uint8, (0, height, width)))
        self._buf = np.empty((0, height, width), np.uint8)  # unpacked frames, grown as needed

    def _write_packed(self, packed: np.ndarray) -> None:
        n = packed.shape[0]
        if self._buf.shape[0] < n:
            self._buf = np.empty((n, *self.geometry.shape), np.uint8)
        unpack_into(packed, self._buf[:n], self.geometry.stored_width)
        self._f.write(self._buf[:n].data)

    def _write_frames(self, frames: np.ndarray) -> None:
        self._f.write(np.ascontiguousarray(frames != 0, np.uint8).data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.seek(0)
            self._f.write(npy_header(np.uint8, (self.frames_written, *self.geometry.shape)))
        super().close()
