"""Numba kernels that unpack packed spike frames (docs/formats.md#dat-spike-files) into preallocated uint8
windows.

Fast path (`_unpack_shift`): each input byte becomes 8 output bytes `(byte >> b) & 1`, a loop LLVM
vectorises; rows are flipped on the way (file row 0 is the image's bottom row). The 256-entry lookup
table kernel (`_unpack_aligned`, one 8-byte store per input byte) is kept as the reference the unpack
benchmark compares against: on this machine the shift kernel is ~1.6x faster per CPU second.
Any width works; widths that are not a multiple of 8 take a bit-by-bit path.
"""
from __future__ import annotations

import numba
import numpy as np


def _make_lut() -> np.ndarray:
    lut = np.zeros(256, np.uint64)
    for b in range(256):
        v = 0
        for bit in range(8):
            if b >> bit & 1:
                v |= 1 << (8 * bit)  # little-endian: byte `bit` of the word holds pixel `bit`
        lut[b] = v
    return lut


LUT64 = _make_lut()


@numba.njit(nogil=True, cache=True)
def _unpack_aligned(packed, out, row_bytes, lut):
    """packed: n x frame_bytes; out: n x H x W, W % 8 == 0 and row_bytes*8 >= W (extra columns cut)."""
    n, h, w = out.shape
    words = w // 8
    for f in range(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r].view(np.uint64)
            base = r * row_bytes
            for j in range(words):
                dst[j] = lut[src[base + j]]


def _unpack_shift_impl(packed, out, row_bytes):
    """packed: n x frame_bytes; out: n x H x W, W % 8 == 0 and row_bytes*8 >= W (extra columns cut)."""
    n, h, w = out.shape
    words = w // 8
    for f in numba.prange(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r]
            base = r * row_bytes
            for j in range(words):
                v = src[base + j]
                for b in range(8):
                    dst[8 * j + b] = (v >> b) & 1


_unpack_shift = numba.njit(nogil=True, cache=True)(_unpack_shift_impl)
# not cached: a second cached dispatcher of the same Python function shares its cache entry with the
# serial one and silently loads the serial machine code
_unpack_shift_parallel = numba.njit(nogil=True, parallel=True)(_unpack_shift_impl)


@numba.njit(nogil=True, cache=True)
def _unpack_bits(packed, out, stored_w):
    """Any geometry: pixel p = r * stored_w + c is bit p % 8 of byte p // 8."""
    n, h, w = out.shape
    for f in range(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r]
            for c in range(w):
                p = r * stored_w + c
                dst[c] = (src[p >> 3] >> (p & 7)) & 1


def unpack_into(packed: np.ndarray, out: np.ndarray, stored_width: int = 0, parallel: bool = False) -> None:
    """Unpack n packed frames into `out` (n x H x W uint8, C-contiguous), flipping rows to image order.

    `stored_width` is the number of columns per stored row (0 = W); extra columns are dropped.
    """
    n, h, w = out.shape
    stored_w = stored_width or w
    if packed.shape[0] != n or packed.shape[1] != -(-h * stored_w // 8):  # frames padded to whole bytes
        raise ValueError(f"packed {packed.shape} does not hold {n} frames of {h}x{stored_w}")
    if out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous uint8 array")
    if n == 0:
        return
    if w % 8 == 0 and stored_w % 8 == 0:
        kernel = _unpack_shift_parallel if parallel and n > 1 else _unpack_shift
        kernel(packed, out, stored_w // 8)
    else:
        _unpack_bits(packed, out, stored_w)


def unpack(packed: np.ndarray, height: int, width: int, stored_width: int = 0) -> np.ndarray:
    """Allocate and unpack: packed (n x bytes or bytes) -> n x H x W uint8."""
    packed = np.atleast_2d(np.asarray(packed, np.uint8))
    out = np.empty((packed.shape[0], height, width), np.uint8)
    unpack_into(packed, out, stored_width)
    return out


class SlidingWindows:
    """Incremental sliding windows over a stream of packed frames; each needed frame is unpacked once.

    Feed consecutive packed chunks with the stream index of their first frame; `feed` yields
    (center, window) for every window of `n` frames whose centre lies on the grid
    `first_center + k * stride` and is complete. Frames no window needs (stride > n) are never
    unpacked. A gap in the indices (dropped frames) restarts the buffer at the new data; windows that
    would span the gap are not produced. The yielded window is a view into an internal buffer, valid
    until the next `feed` call.
    """

    def __init__(self, height: int, width: int, n: int = 41, stride: int = 1, stored_width: int = 0,
                 first_center: int | None = None, capacity: int | None = None):
        if n < 1 or n % 2 == 0:
            raise ValueError(f"window length must be odd and positive, got {n}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.n, self.half, self.stride = n, n // 2, stride
        self.height, self.width, self.stored_width = height, width, stored_width
        self.capacity = capacity or max(4 * n, n + 512)
        self.buffer = np.zeros((self.capacity, height, width), np.uint8)  # zeros: touch pages now
        self.next_center = self.half if first_center is None else first_center
        self.buf_start = self.buf_end = 0  # stream indices held in buffer[0 : buf_end - buf_start]
        self.frames_unpacked = 0

    def _need_from(self) -> int:
        return self.next_center - self.half

    def _advance_grid_past(self, first_index: int) -> None:
        """Move next_center to the first grid centre whose window starts at or after first_index."""
        need = first_index + self.half
        if self.next_center < need:
            k = -(-(need - self.next_center) // self.stride)
            self.next_center += k * self.stride

    def feed(self, packed: np.ndarray, first_index: int):
        count = packed.shape[0]
        end = first_index + count
        if first_index != self.buf_end or self.buf_end == self.buf_start:
            # gap (or first call): nothing buffered is contiguous with the new data
            self.buf_start = self.buf_end = first_index
            self._advance_grid_past(first_index)
        pos = first_index
        while pos < end:
            need = self._need_from()
            if self.buf_end < need:  # skip frames no window needs
                self.buf_start = self.buf_end = min(need, end)
                pos = self.buf_end
                if pos >= end:
                    break
            # make room: drop buffered frames before the next window's start
            if self.buf_end - self.buf_start >= self.capacity:
                keep_from = max(self.buf_start, need)
                held = self.buf_end - keep_from
                if keep_from > self.buf_start and held:
                    self.buffer[:held] = self.buffer[keep_from - self.buf_start:self.buf_end - self.buf_start]
                self.buf_start = keep_from
            room = self.capacity - (self.buf_end - self.buf_start)
            take = min(room, end - pos)
            if self.stride > self.n:  # windows do not overlap: stop at the next window's last frame
                take = min(take, self.next_center + self.half + 1 - pos)
            dst0 = self.buf_end - self.buf_start
            unpack_into(packed[pos - first_index:pos - first_index + take],
                        self.buffer[dst0:dst0 + take], self.stored_width)
            self.frames_unpacked += take
            self.buf_end += take
            pos += take
            while self.next_center + self.half < self.buf_end:
                s = self.next_center - self.half - self.buf_start
                yield self.next_center, self.buffer[s:s + self.n]
                self.next_center += self.stride
