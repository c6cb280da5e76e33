"""`ssml-bench unpack`: frames/s of the Numba unpack kernels vs numpy on the same data, same run.

Rows (all outputs preallocated and touched before timing):
- numba / numba-parallel: `unpack_into` (the shift kernel), numba-lut: the lookup-table kernel, into one window-sized buffer (`--window` frames, reused: stays in cache),
  i.e. what a consumer does when it unpacks each window;
- numba / numba-parallel into one large buffer holding every frame (streams to DRAM);
- numpy: `np.unpackbits(bitorder="little")` then the row flip copied into the same preallocated
  buffer. np.unpackbits has no `out=` argument, so it allocates its result on every call; that cost
  is part of what the numpy path really does.
Ratios are numba frames/s over numpy frames/s for the same target. Each row is the best of
`--repeat` runs (least disturbed by other load on the machine); frames_per_cpu_s divides by the
process's CPU time instead of wall time, which shows the kernel's cost when other jobs share the cores.

Target: >= 200k frames/s of 250 x 400 into preallocated windows on the 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ..errors import ConfigError
from ..unpack import LUT64, _unpack_aligned, unpack_into
from .report import report

TARGET_FPS = 200_000


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ssml-bench unpack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  ssml-bench unpack\n  ssml-bench unpack --frames 8000 --repeat 5\n"
                                       "  ssml-bench unpack --height 1000 --width 1000 --frames 400")
    p.add_argument("--frames", type=int, default=4000, help="frames to unpack per run (default 4000)")
    p.add_argument("--height", type=int, default=250)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--window", type=int, default=41, help="window buffer length in frames (default 41)")
    p.add_argument("--repeat", type=int, default=3, help="runs per row; the best is reported (default 3)")
    p.add_argument("--density", type=float, default=0.3, help="spike probability per pixel (default 0.3)")
    p.add_argument("--json", default="bench_results/unpack.json")
    args = p.parse_args(argv)
    if args.frames < args.window or args.window < 1 or args.repeat < 1 or args.width % 8:
        raise ConfigError("need --frames >= --window >= 1, --repeat >= 1 and --width a multiple of 8")
    return args


def _numpy_into(packed, out):
    n, h, w = out.shape
    bits = np.unpackbits(packed, axis=1, bitorder="little")  # allocates (no out= in numpy)
    np.copyto(out, bits.reshape(n, h, w)[:, ::-1])


def _numba_into(parallel):
    return lambda packed, out: unpack_into(packed, out, parallel=parallel)


def _lut_into(packed, out):
    """The 256-entry lookup-table kernel (one 8-byte store per input byte), single thread."""
    _unpack_aligned(packed, out, out.shape[2] // 8, LUT64)


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


def _time_full(fn, packed, full_buf, repeat):
    return _best(lambda: fn(packed, full_buf), packed.shape[0], repeat)


def main(argv=None) -> int:
    args = parse_args(argv)
    h, w, n = args.height, args.width, args.frames
    rng = np.random.default_rng(0)
    packed = np.packbits(rng.random((n, h * w), dtype=np.float32) < args.density, axis=1, bitorder="little")
    window_buf = np.ones((args.window, h, w), np.uint8)  # touched
    full_buf = np.ones((n, h, w), np.uint8)
    methods = {"numba": _numba_into(False), "numba-parallel": _numba_into(True), "numba-lut": _lut_into,
               "numpy": _numpy_into}
    reference = np.empty_like(window_buf)
    _numpy_into(packed[:args.window], reference)
    for name, fn in methods.items():  # compile, warm up, and check every method agrees
        fn(packed[:args.window], window_buf)
        if not np.array_equal(window_buf, reference):
            raise AssertionError(f"{name} unpacks differently from numpy")
    fps = {}
    for name, fn in methods.items():
        fps[(name, "window")] = _time_windows(fn, packed, window_buf, args.repeat)
        fps[(name, "all-frames")] = _time_full(fn, packed, full_buf, args.repeat)
    rows = []
    for (name, target), (value, per_cpu_s) in fps.items():
        ratio = value / fps[("numpy", target)][0]
        rows.append({"method": name, "into": f"{args.window}-frame window" if target == "window" else f"{n}-frame buffer",
                     "frames_per_s": round(value), "frames_per_cpu_s": round(per_cpu_s), "x_numpy": round(ratio, 2),
                     "x_realtime_40k": round(value / 40_000, 2),
                     "meets_200k": "yes" if value >= TARGET_FPS else "no"})
    best = max(fps[(m, "window")][0] for m in ("numba", "numba-parallel"))
    extra = {"frames": n, "height": h, "width": w, "window": args.window, "repeat": args.repeat,
             "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
             "best_window_fps": round(best), "target_fps": TARGET_FPS,
             "note": "np.unpackbits has no out= argument: it allocates its output on every call"}
    report("unpack", rows, args.json, extra)
    print(f"best Numba path into a window buffer: {best:,.0f} frames/s ({best / TARGET_FPS:.0%} of the 200k target); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0
