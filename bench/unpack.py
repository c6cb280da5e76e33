"""`ssml-bench unpack`: frames/s of the unpack kernels, numpy, and the machine's write bandwidth, same run.

Unpack rows (outputs preallocated and touched before timing), each into two targets: one
window-sized buffer (`--window` frames, reused: it stays in cache; what a consumer does per window)
and one large buffer holding every frame (`--frames`, a few hundred MB: streams to DRAM):
- numba / numba-parallel: `unpack_into` (64 pixels per step), one thread / every Numba thread;
- shift, lut: earlier kernels kept here for comparison (8 shifted stores per byte; a 256-entry table);
- numpy: `np.unpackbits(bitorder="little")` then the row flip copied into the same buffer.
  np.unpackbits has no `out=` argument, so it allocates its result on every call; that cost is part
  of what the numpy path really does.
Roofline rows: `fill` writes the same targets without reading anything (the most any kernel that
writes 1 byte per pixel can do), with one thread and with every Numba thread; `copy` is np.copyto
from another large buffer (reads as much as it writes). write_gb_s = bytes written per second;
pct_of_fill = write_gb_s over the fill's for the same target and thread count.

Each row is the best of `--repeat` runs (least disturbed by other load); frames_per_cpu_s divides by
the process's CPU time instead of wall time, which shows the kernel's cost when other jobs share the cores.
Target: >= 200k frames/s of 250 x 400 into preallocated windows on the 2-core machine.
"""
from __future__ import annotations

import os
import time

import numba
import numpy as np

from ..cli_common import positive_int
from ..unpack import unpack_into
from .args import add_frame_size, bench_parser
from .report import report

TARGET_FPS = 200_000


def parse_args(argv):
    p = bench_parser("unpack", __doc__, "ssml-bench unpack", "ssml-bench unpack --frames 8000 --repeat 5",
                     "ssml-bench unpack --height 1000 --width 1000 --frames 400")
    p.add_argument("--frames", type=positive_int, default=4000, help="frames to unpack per run (default 4000)")
    add_frame_size(p, width_multiple=8)
    p.add_argument("--window", type=positive_int, default=41, help="window buffer length in frames (default 41)")
    p.add_argument("--repeat", type=positive_int, default=3, help="runs per row; the best is reported (default 3)")
    p.add_argument("--density", type=float, default=0.3, help="spike probability per pixel (default 0.3)")
    args = p.parse_args(argv)
    if args.frames < args.window:
        p.error("need --frames >= --window")
    return args


@numba.njit(nogil=True, cache=True)
def _shift_kernel(packed, out, row_bytes):
    """The previous default: each input byte becomes 8 output bytes `(byte >> b) & 1`."""
    n, h, w = out.shape
    for f in range(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r]
            base = r * row_bytes
            for j in range(w // 8):
                v = src[base + j]
                for b in range(8):
                    dst[8 * j + b] = (v >> b) & 1


def _make_lut() -> np.ndarray:
    lut = np.zeros(256, np.uint64)
    for b in range(256):
        lut[b] = sum(1 << (8 * bit) for bit in range(8) if b >> bit & 1)  # byte `bit` of the word = pixel `bit`
    return lut


LUT64 = _make_lut()


@numba.njit(nogil=True, cache=True)
def _lut_kernel(packed, out, row_bytes, lut):
    """One 8-byte table entry stored per input byte."""
    n, h, w = out.shape
    for f in range(n):
        src = packed[f]
        for r in range(h):
            dst = out[f, h - 1 - r].view(np.uint64)
            for j in range(w // 8):
                dst[j] = lut[src[r * row_bytes + j]]


def _fill_impl(out, value):
    for f in numba.prange(out.shape[0]):
        out[f] = value


_fill = numba.njit(nogil=True, cache=True)(_fill_impl)
_fill_parallel = numba.njit(nogil=True, parallel=True)(_fill_impl)  # not cached: see ssml_stream/unpack.py


def _numpy_into(packed, out):
    n, h, w = out.shape
    bits = np.unpackbits(packed, axis=1, bitorder="little")  # allocates (no out= in numpy)
    np.copyto(out, bits.reshape(n, h, w)[:, ::-1])


def methods(width: int) -> dict:
    """{name: (threads, fn(packed, out))}; the unpack methods write `out` from `packed`."""
    threads = numba.get_num_threads()
    return {"numba": (1, lambda p, o: unpack_into(p, o)),
            "numba-parallel": (threads, lambda p, o: unpack_into(p, o, parallel=True)),
            "shift (previous)": (1, lambda p, o: _shift_kernel(p, o, width // 8)),
            "lut": (1, lambda p, o: _lut_kernel(p, o, width // 8, LUT64)),
            "numpy": (1, _numpy_into)}


def _best(run, frames, repeat):
    """(frames per wall second, frames per CPU second of this process), best of `repeat` runs.

    CPU seconds count every thread of the process, so on a machine shared with other jobs the second
    number shows what the kernel costs, the first what it achieved."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        run()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return frames / wall, frames / max(cpu, 1e-9)


def _time_windows(fn, packed, window_buf, repeat):
    n_win = window_buf.shape[0]
    usable = packed.shape[0] // n_win * n_win

    def run():
        for s in range(0, usable, n_win):
            fn(packed[s:s + n_win], window_buf)
    return _best(run, usable, repeat)


def main(argv=None) -> int:
    args = parse_args(argv)
    h, w, n = args.height, args.width, args.frames
    rng = np.random.default_rng(0)
    packed = np.packbits(rng.random((n, h * w), dtype=np.float32) < args.density, axis=1, bitorder="little")
    window_buf = np.ones((args.window, h, w), np.uint8)  # touched
    full_buf = np.ones((n, h, w), np.uint8)
    unpackers = methods(w)
    reference = np.empty_like(window_buf)
    _numpy_into(packed[:args.window], reference)
    for name, (_, fn) in unpackers.items():  # compile, warm up, and check every method agrees
        window_buf[:] = 0
        fn(packed[:args.window], window_buf)
        if not np.array_equal(window_buf, reference):
            raise AssertionError(f"{name} unpacks differently from numpy")
    threads = numba.get_num_threads()
    fills = {"fill": (1, lambda p, o: _fill(o, 1)), "fill-parallel": (threads, lambda p, o: _fill_parallel(o, 1))}
    for _, fn in fills.values():
        fn(None, window_buf)
    timed = {}
    for name, (_, fn) in {**unpackers, **fills}.items():
        timed[(name, "window")] = _time_windows(fn, packed, window_buf, args.repeat)
        timed[(name, "all-frames")] = _best(lambda: fn(packed, full_buf), n, args.repeat)
    source = np.ones_like(full_buf)
    timed[("copy", "all-frames")] = _best(lambda: np.copyto(full_buf, source), n, args.repeat)
    del source
    threads_of = {name: t for name, (t, _) in {**unpackers, **fills}.items()} | {"copy": 1}
    frame_bytes = h * w
    rows = []
    for (name, target), (value, per_cpu_s) in timed.items():
        fill_name = "fill" if threads_of[name] == 1 else "fill-parallel"
        is_unpack = name in unpackers
        rows.append({"method": name, "threads": threads_of[name],
                     "into": f"{args.window}-frame window" if target == "window" else f"{n}-frame buffer",
                     "frames_per_s": round(value), "frames_per_cpu_s": round(per_cpu_s),
                     "write_gb_s": round(value * frame_bytes / 1e9, 2),
                     "pct_of_fill": round(100 * value / timed[(fill_name, target)][0], 1),
                     "x_numpy": round(value / timed[("numpy", target)][0], 2) if is_unpack else None,
                     "x_realtime_40k": round(value / 40_000, 2) if is_unpack else None,
                     "meets_200k": ("yes" if value >= TARGET_FPS else "no") if is_unpack else "-"})
    best_name = max(("numba", "numba-parallel"), key=lambda m: timed[(m, "window")][0])
    best = timed[(best_name, "window")][0]
    fill_best = timed[("fill" if threads_of[best_name] == 1 else "fill-parallel", "window")][0]
    extra = {"frames": n, "height": h, "width": w, "window": args.window, "repeat": args.repeat,
             "cpu_count": os.cpu_count(), "numba_threads": threads, "load_average": list(os.getloadavg()),
             "best_window_fps": round(best), "target_fps": TARGET_FPS,
             "read_bytes_per_frame": packed.shape[1], "written_bytes_per_frame": frame_bytes,
             "note": "np.unpackbits has no out= argument: it allocates its output on every call"}
    report("unpack", rows, args.json, extra)
    print(f"best Numba path into a window buffer: {best_name}, {best:,.0f} frames/s ({best / TARGET_FPS:.0%} of the "
          f"200k target), {best * frame_bytes / 1e9:.1f} GB/s written = {best / fill_best:.0%} of a fill of the same "
          f"buffer with as many threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0
