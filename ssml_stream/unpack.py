"""Numba kernels that unpack packed spike frames (docs/formats.md#dat-spike-files) into preallocated uint8
windows.

Fast path (`_unpack_words`): 64 packed bits become 64 output bytes in one step. The bits are loaded
as one 64-bit word and handed to LLVM as a vector of 64 booleans widened to bytes; on AVX-512 that is
a mask load, a masked byte move and one 64-byte store (elsewhere LLVM lowers the same IR its own way).
The rest of a row (W % 64 columns) goes 8 pixels at a time the same way. Rows are flipped on the way
(file row 0 is the image's bottom row). One thread unpacked ~780k frames/s of 250 x 400 into a
41-frame window here, ~60 % of the speed of a plain fill of that buffer (`ssml-bench unpack` measures
both in one run); `parallel=True` only pays off for large batches on otherwise idle cores. Widths
that are not a multiple of 8 take a bit-by-bit path.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _make_expand(bits: int):
    """An intrinsic expand(src, src_pos, dst, dst_pos): the `bits` bits at src[src_pos:] (little-endian,
    bit i = pixel i) -> dst[dst_pos:dst_pos + bits] as 0/1 bytes. Unaligned loads and stores."""
    word_t, mask_t, bytes_t = ir.IntType(bits), ir.VectorType(ir.IntType(1), bits), ir.VectorType(ir.IntType(8), bits)

    @intrinsic
    def expand(typingctx, src, src_pos, dst, dst_pos):
        def codegen(context, builder, signature, args):
            src_arr, s_pos, dst_arr, d_pos = args
            s_data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=src_arr).data
            d_data = cgutils.create_struct_proxy(signature.args[2])(context, builder, value=dst_arr).data
            word = builder.load(builder.bitcast(builder.gep(s_data, [s_pos]), word_t.as_pointer()), align=1)
            pixels = builder.zext(builder.bitcast(word, mask_t), bytes_t)
            builder.store(pixels, builder.bitcast(builder.gep(d_data, [d_pos]), bytes_t.as_pointer()), align=1)
            return context.get_dummy_value()
        return types.void(src, types.intp, dst, types.intp), codegen
    return expand


_expand64 = _make_expand(64)
_expand8 = _make_expand(8)


def _unpack_words_impl(packed, out, row_bytes):
    """packed: n x frame_bytes; out: n x H x W, W % 8 == 0 and row_bytes*8 >= W (extra columns cut)."""
    n, h, w = out.shape
    words = w // 64
    for f in numba.prange(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r]
            base = r * row_bytes
            for j in range(words):
                _expand64(src, base + 8 * j, dst, 64 * j)
            for j in range(8 * words, w // 8):
                _expand8(src, base + j, dst, 8 * j)


_unpack_words = numba.njit(nogil=True, cache=True)(_unpack_words_impl)
# not cached: a second cached dispatcher of the same Python function shares its cache entry with the
# serial one and silently loads the serial machine code
_unpack_words_parallel = numba.njit(nogil=True, parallel=True)(_unpack_words_impl)


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
    if packed.dtype != np.uint8 or packed.strides[1] != 1:  # the word kernel reads each frame's bytes in place
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if w % 8 == 0 and stored_w % 8 == 0:
        kernel = _unpack_words_parallel if parallel and n > 1 else _unpack_words
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
