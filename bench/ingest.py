"""`ssml-bench ingest`: can a paced source feed the ring at camera rate while a consumer builds windows?

Each row runs one source at `--speed 1` (40 kHz, 250 x 400) for `--seconds` into a live Ring; the
consumer thread reads every frame from its cursor, feeds `SlidingWindows` (41-frame windows every
`--stride` frames) and computes TFP for each window. Reported: achieved rate (frames pushed / wall
time of the run), per-second minimum and maximum (from the capture timestamps of the frames the
consumer received), frames dropped by the ring, windows built, and the source's start-up time.

Sources: `file` = a `.dat` looped (default: ../shared/data's REDS test file, else a simulated file in
a temporary folder), `sim` = the live simulated camera (pre-renders its loop first).
Targets: rate 40,000 Hz +- 1 %, 0 dropped.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..cli_common import positive_float, positive_int
from ..drivers import DriverOptions, open_driver
from ..features import tfp
from ..ring import Ring
from ..unpack import SlidingWindows
from .args import add_frame_size, bench_parser, odd_positive
from .report import report

RATE_HZ = 40_000.0
SHARED_DAT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "reds_base" / "test" / \
    "200_part1_key_id151.dat"


def parse_args(argv):
    p = bench_parser("ingest", __doc__, "ssml-bench ingest --seconds 60", "ssml-bench ingest --seconds 5 --sources sim",
                     "ssml-bench ingest --file rec.dat --stride 1333")
    p.add_argument("--seconds", type=positive_float, default=60.0, help="stream seconds per source (default 60)")
    p.add_argument("--sources", nargs="+", default=["file", "sim"], choices=["file", "sim"])
    p.add_argument("--file", default=None, help="a 250x400 .dat to loop (default: shared REDS test file)")
    p.add_argument("--stride", type=positive_int, default=400, help="frames between windows (default 400 = 100/s)")
    p.add_argument("--window", type=odd_positive, default=41)
    add_frame_size(p)
    p.add_argument("--ring-frames", type=positive_int, default=16384, help="ring capacity (default 16384 = 0.41 s)")
    return p.parse_args(argv)


def _file_uri(args, tmp: str) -> str:
    if args.file:
        return f"file:{args.file}"
    if SHARED_DAT.exists() and (args.height, args.width) == (250, 400):
        return f"file:{SHARED_DAT}"
    from ..drivers.sim import simulate
    from ..formats import DatWriter
    path = os.path.join(tmp, "ingest.dat")
    with DatWriter(path, args.height, args.width) as w:
        w.write_packed(simulate("traffic", 2000, height=args.height, width=args.width).packed)
    return f"file:{path}"


def run_source(uri: str, args) -> dict:
    opts = DriverOptions(height=args.height, width=args.width, rate_hz=RATE_HZ, speed=1.0, loop=True,
                         duration_s=args.seconds)
    t_open = time.perf_counter()
    driver = open_driver(uri, opts)
    startup_s = time.perf_counter() - t_open
    info = driver.info
    ring = Ring(info.frame_bytes, capacity=args.ring_frames)
    cursor = ring.cursor()
    stop = threading.Event()
    times = {}

    def produce():
        times["start"] = time.perf_counter()
        try:
            driver.run(ring, stop)
        finally:
            times["end"] = time.perf_counter()
            ring.close()

    windows = SlidingWindows(info.height, info.width, args.window, args.stride,
                             stored_width=info.frame_bytes * 8 // info.height)
    out = np.empty((info.height, info.width), np.float32)
    _warm_up(windows, info.frame_bytes, out)  # load the Numba kernels before the clock starts
    chunk = np.empty((512, info.frame_bytes), np.uint8)
    chunk_ns = np.empty(512, np.int64)
    per_second: dict[int, int] = {}
    received = n_windows = 0
    t0_ns = None
    producer = threading.Thread(target=produce, name="ingest-driver")
    producer.start()
    while True:
        cursor.wait(1, timeout=0.1)
        first, count = cursor.read(chunk, chunk_ns)
        if count == 0:
            if ring.closed and cursor.available == 0:
                break
            continue
        if t0_ns is None:
            t0_ns = int(chunk_ns[0])
        secs, counts = np.unique((chunk_ns[:count] - t0_ns) // 1_000_000_000, return_counts=True)
        for s, c in zip(secs.tolist(), counts.tolist()):
            per_second[s] = per_second.get(s, 0) + c
        received += count
        for _, window in windows.feed(chunk[:count], first):
            tfp(window, out)
            n_windows += 1
    producer.join()
    driver.close()
    elapsed = times["end"] - times["start"]
    full = [per_second[s] for s in sorted(per_second)[:-1]]  # the last second is partial
    rate = driver.frames_out / elapsed
    return {"source": info.name if len(info.name) < 40 else "file:..." + info.name[-28:],
            "seconds": round(elapsed, 2), "frames": driver.frames_out, "rate_hz": round(rate, 1),
            "rate_error_pct": round(100 * (rate / RATE_HZ - 1), 3),
            "min_per_s": min(full) if full else received, "max_per_s": max(full) if full else received,
            "dropped": cursor.dropped, "received": received, "windows": n_windows,
            "startup_s": round(startup_s, 2),
            "meets_target": "yes" if abs(rate / RATE_HZ - 1) <= 0.01 and cursor.dropped == 0 else "no"}


def _warm_up(windows: SlidingWindows, frame_bytes: int, out: np.ndarray) -> None:
    probe = SlidingWindows(windows.height, windows.width, windows.n, windows.stride, windows.stored_width)
    for _, window in probe.feed(np.zeros((windows.n + 1, frame_bytes), np.uint8), 0):
        tfp(window, out)


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources:
            uri = _file_uri(args, tmp) if source == "file" else "sim"
            rows.append(run_source(uri, args))
    report("ingest", rows, args.json, {"stride": args.stride, "window": args.window, "ring_frames": args.ring_frames,
                                       "target": "40,000 Hz +- 1 %, 0 dropped",
                                       "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count()})
    return 0 if all(r["meets_target"] == "yes" for r in rows) else 1
