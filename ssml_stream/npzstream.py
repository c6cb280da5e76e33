"""An `.npz` whose main array grows while a run goes on, so stopping costs no copy (docs/reliability.md).

`np.savez` needs every array at once, so a live run used to spill its frames to a temporary file and
copy them into the `.npz` at the end: seconds per gigabyte (7 s/GB on this machine's disk), during
which a second Ctrl-C or a SIGKILL lost everything. Here the frames go straight into the stored
(uncompressed) zip member `frames.npy` of `PATH.part` as they arrive. `close` fills in the two things
that depend on the final frame count (the npy header's shape and the zip CRC-32), appends the small
arrays and the zip directory, and renames `PATH.part` to PATH: finishing takes milliseconds however
long the run was, and PATH is whole or absent. A killed process leaves the visible `PATH.part`.

Layout (zip64, so any size): [local header][npy header, NPY_HEADER_BYTES][frames...]
[local header + .npy of each small array]...[central directory][zip64 end records].
"""
from __future__ import annotations

import array
import io
import os
import struct
import threading
import time
import zlib

import numpy as np

from .arrays import NPY_HEADER_BYTES, npy_header

_FRAMES_NAME = b"frames.npy"
_ZIP64 = 0xFFFFFFFF         # "see the zip64 extra field"
_CRC_POLY = 0xEDB88320      # CRC-32, bit-reversed


def _crc_mulmod(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial over GF(2), in the reversed bit order zlib uses (bit 31 = x^0)."""
    m, p = 1 << 31, 0
    while m:
        if a & m:
            p ^= b
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return p


def crc32_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """zlib.crc32(A + B) from zlib.crc32(A), zlib.crc32(B) and len(B), without the data (zlib's
    crc32_combine, which Python does not expose): A's CRC times x^(8 len_b), plus B's."""
    shift, x_2k = 1 << 31, 1 << 30      # x^0; x^(2^k) for k = 0
    n = 8 * len_b
    while n:
        if n & 1:
            shift = _crc_mulmod(x_2k, shift)
        x_2k = _crc_mulmod(x_2k, x_2k)
        n >>= 1
    return _crc_mulmod(shift, crc_a) ^ crc_b


def _dos_time(t: float) -> tuple[int, int]:
    lt = time.localtime(t)
    return ((lt.tm_hour << 11) | (lt.tm_min << 5) | (lt.tm_sec // 2),
            ((lt.tm_year - 1980) << 9) | (lt.tm_mon << 5) | lt.tm_mday)


def _local_header(name: bytes, crc: int, size: int, dos: tuple[int, int]) -> bytes:
    # needs version 4.5 (zip64), no flags, stored; both sizes in the zip64 extra field
    return (struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, *dos, crc, _ZIP64, _ZIP64, len(name), 20)
            + name + struct.pack("<HHQQ", 1, 16, size, size))


def _central_header(name: bytes, crc: int, size: int, offset: int, dos: tuple[int, int]) -> bytes:
    return (struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, *dos, crc, _ZIP64, _ZIP64, len(name),
                        28, 0, 0, 0, 0, _ZIP64)
            + name + struct.pack("<HHQQQ", 1, 24, size, size, offset))


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    zip64_end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, cd_offset + cd_size, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, _ZIP64, _ZIP64, 0)
    return zip64_end + locator + end


class NpzStream:
    """`append` frames of one shape and dtype as they come; `close(**arrays)` writes PATH with `frames`
    (N x shape) and the given (small) arrays. Not thread-safe: one writer, or a lock around it."""

    def __init__(self, path, frame_shape: tuple[int, ...], dtype=np.float32):
        self.path = os.fspath(path)
        self.part = self.path + ".part"
        self.frame_shape = tuple(frame_shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.count = 0
        self._crc = 0
        self._dos = _dos_time(time.time())
        self._f = open(self.part, "wb")
        self._f.write(bytes(len(_local_header(_FRAMES_NAME, 0, 0, self._dos)) + NPY_HEADER_BYTES))  # see close

    def append(self, frame: np.ndarray) -> None:
        data = np.ascontiguousarray(frame, self.dtype)
        if data.shape != self.frame_shape:
            raise ValueError(f"frame of shape {data.shape}, expected {self.frame_shape}")
        self._f.write(data.data)
        self._crc = zlib.crc32(data.data, self._crc)
        self.count += 1

    def discard(self) -> None:
        """Remove the `.part` (a run that failed to start): PATH, if it exists, stays as it was."""
        self._f.close()
        os.unlink(self.part)

    def close(self, **arrays: np.ndarray) -> None:
        """Finish the file and rename it to `path`. After a failure (a full disk) the frames stay in the
        `.part`, which is then not a valid zip."""
        f, dos = self._f, self._dos
        with f:
            header = npy_header(self.dtype, (self.count, *self.frame_shape))
            data_bytes = self.count * self.dtype.itemsize * int(np.prod(self.frame_shape))
            crc = crc32_combine(zlib.crc32(header), self._crc, data_bytes)
            entries = [(_FRAMES_NAME, crc, NPY_HEADER_BYTES + data_bytes, 0)]
            f.seek(0)
            f.write(_local_header(_FRAMES_NAME, crc, entries[0][2], dos) + header)
            f.seek(0, os.SEEK_END)
            for name, value in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value))
                data = buf.getvalue()
                entries.append((name.encode() + b".npy", zlib.crc32(data), len(data), f.tell()))
                f.write(_local_header(entries[-1][0], entries[-1][1], len(data), dos) + data)
            cd_offset = f.tell()
            for name, crc, size, offset in entries:
                f.write(_central_header(name, crc, size, offset, dos))
            f.write(_end_records(len(entries), cd_offset, f.tell() - cd_offset))
        os.replace(self.part, self.path)


class NpzSaver:
    """The pipeline's --save file: `frames` (N x H x W float32) and `center`, `first`, `last`, `capture_ns` (N) in one .npz,
    streamed to disk as the frames arrive (NpzStream): memory stays flat, stopping costs no
    copy, and the .npz is whole or absent. Appends after close (a stage that outlived the stop) are
    dropped."""

    def __init__(self, path: str, height: int, width: int):
        self.path = path
        self._writer: NpzStream | None = NpzStream(self.path, (height, width), np.float32)
        self._lock = threading.Lock()
        self.meta = {k: array.array("q") for k in ("center", "first", "last", "capture_ns")}

    def append(self, out) -> None:
        """`out`: a pipeline Output (frame, center, first, last, capture_ns)."""
        with self._lock:
            if self._writer is None:
                return
            self._writer.append(out.frame)
            for k, values in self.meta.items():
                values.append(getattr(out, k))

    def close(self, discard: bool = False) -> None:
        """Write the .npz; with `discard` (a run that never started) leave any earlier file untouched."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None and discard:
                writer.discard()
            elif writer is not None:
                writer.close(**{k: np.frombuffer(v, np.int64) for k, v in self.meta.items()})
