"""`ssml-bench scaling`: how throughput scales, as three PNG plots plus the rows as JSON.

- resolution: frames/s of the rt network (`ssml-rt`, the runtime's CPU path: traced + frozen fp32, torch
  threads as the live pipeline sets them unless --threads) on one 41-frame window, per frame size;
  TFP alongside.
- window: the rt network always takes 41 frames, so this sweep varies what can vary with the window
  length: the classical reconstructions (Numba TFP and TFI at the centre) and unpacking the window's
  packed frames, in ms per window at the first frame size.
- subscribers: the ZeroMQ publisher's send rate (u1 frames at the first frame size, sent back to back)
  with 0, 1, 2, 4 subscribers: SUB sockets in this process on an ipc endpoint, each drained by a
  thread. Readers share the cores with the sender, so this is what one machine does with local viewers.
Each point is the best of its repeats (least disturbed by other load); medians are in the JSON.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time

import numpy as np

from ..cli_common import nonneg_int, positive_int
from ..errors import ConfigError
from .args import add_threads, bench_parser, frame_size, odd_positive

DEFAULT_SIZES = [(250, 400), (500, 800), (750, 1000), (1000, 1000)]


def parse_args(argv):
    p = bench_parser("scaling", __doc__, "ssml-bench scaling",
                     "ssml-bench scaling --sizes 250x400 1000x1000 --iters 5",
                     "ssml-bench scaling --out-dir /tmp/plots --json /tmp/plots/scaling.json")
    p.add_argument("--sizes", nargs="+", type=frame_size(minimum=8, width_multiple=8), default=DEFAULT_SIZES,
                   metavar="HxW", help=f"frame sizes (default: {' '.join(f'{h}x{w}' for h, w in DEFAULT_SIZES)})")
    p.add_argument("--windows", nargs="+", type=odd_positive, default=[11, 21, 41, 81, 161, 321],
                   help="window lengths for the classical sweep (odd; default: %(default)s)")
    p.add_argument("--subscribers", nargs="+", type=nonneg_int, default=[0, 1, 2, 4])
    p.add_argument("--iters", type=positive_int, default=10, help="timed runs per point (default 10)")
    p.add_argument("--send-frames", type=positive_int, default=1000,
                   help="frames sent per subscriber count (default 1000)")
    add_threads(p, "as the live pipeline, one core fewer than the machine has")
    p.add_argument("--out-dir", default="bench_results", help="folder for the PNG plots (default bench_results)")
    return p.parse_args(argv)


def _best_median_ms(fn, iters: int) -> tuple[float, float]:
    fn()  # warm-up (first call traces / compiles)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[0], 1e3 * times[len(times) // 2]


def _row(sweep, setting, what, best_ms, median_ms, x):
    return {"sweep": sweep, "setting": setting, "what": what, "x": x, "ms_best": round(best_ms, 3),
            "ms_median": round(median_ms, 3), "per_s_best": round(1e3 / best_ms, 1)}


def _spikes(n, h, w, seed=0):
    return (np.random.default_rng(seed).random((n, h, w), dtype=np.float32) < 0.2).astype(np.uint8)


def resolution_sweep(args) -> list[dict]:
    from ..features import tfp
    from ..runtime import default_threads, load_model
    rec = load_model("ssml-rt", "cpu", threads=args.threads or default_threads())
    rows = []
    for h, w in args.sizes:
        window = _spikes(41, h, w)
        out = np.empty((h, w), np.float32)
        mp = h * w / 1e6
        rows.append(_row("resolution", f"{h}x{w}", "rt network (ssml-rt)",
                         *_best_median_ms(lambda: rec(window, out), args.iters), mp))
        rows.append(_row("resolution", f"{h}x{w}", "TFP",
                         *_best_median_ms(lambda: tfp(window, out), args.iters), mp))
    return rows


def window_sweep(args) -> list[dict]:
    from ..features import tfi, tfp
    from ..unpack import unpack_into
    h, w = args.sizes[0]
    rows = []
    for n in args.windows:
        window = _spikes(n, h, w)
        packed = np.packbits(window.reshape(n, -1), axis=1, bitorder="little")
        target = np.ones_like(window)
        out = np.empty((h, w), np.float32)
        for what, fn in (("TFP", lambda: tfp(window, out)), ("TFI", lambda: tfi(window, out=out)),
                         ("unpack window", lambda: unpack_into(packed, target))):
            rows.append(_row("window", f"{n} frames", what, *_best_median_ms(fn, args.iters), n))
    return rows


def subscriber_sweep(args) -> list[dict]:
    import zmq

    from ..publish import Publisher
    h, w = args.sizes[0]
    rate = np.random.default_rng(0).random((h, w), dtype=np.float32) * 0.6
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssml-scaling-") as tmp:
        for k in args.subscribers:
            with Publisher([f"ipc://{tmp}/pub.ipc"], fmt="u1") as pub:
                ctx = zmq.Context.instance()
                socks = []
                for _ in range(k):
                    s = ctx.socket(zmq.SUB)
                    s.setsockopt(zmq.SUBSCRIBE, b"")
                    s.setsockopt(zmq.RCVHWM, 4)
                    s.setsockopt(zmq.LINGER, 0)
                    s.connect(pub.endpoints[0])
                    socks.append(s)
                try:
                    rows.append(_measure_sends(pub, socks, rate, args.send_frames, k))
                finally:
                    for s in socks:
                        s.close()
    return rows


def _measure_sends(pub, socks, rate, n_frames: int, k: int) -> dict:
    """Send rate of back-to-back sends (n_frames in five timed chunks) while every socket is drained by
    its own thread."""
    import zmq
    seq = itertools.count()

    def send():
        pub.send_frame(rate, seq=next(seq), center=0, first=0, last=0, capture_ns=time.time_ns(), model="scaling")

    deadline = time.monotonic() + 30
    for s in socks:  # subscriptions reach the publisher asynchronously: send until each got one
        while not s.poll(10):
            send()
            if time.monotonic() > deadline:
                raise ConfigError("a local subscriber received nothing within 30 s")
    for s in socks:
        while s.poll(0):
            s.recv_multipart()
    stop = threading.Event()
    received = [0] * len(socks)
    errors = []

    def drain(i):
        try:
            while not stop.is_set():
                if socks[i].poll(20):
                    while True:
                        try:
                            socks[i].recv_multipart(zmq.NOBLOCK, copy=False)
                            received[i] += 1
                        except zmq.Again:
                            break
        except Exception as e:  # noqa: BLE001 - reported after the run instead of dying silently
            errors.append(e)

    threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(len(socks))]
    for t in threads:
        t.start()
    refused0 = pub.refused
    chunk = max(1, n_frames // 5)
    per_frame_ms = []
    for _ in range(max(1, n_frames // chunk)):  # five timed chunks: best and median
        t0 = time.perf_counter()
        for _ in range(chunk):
            send()
        per_frame_ms.append(1e3 * (time.perf_counter() - t0) / chunk)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(5)
    if errors:
        raise errors[0]
    per_frame_ms.sort()
    row = _row("subscribers", f"{k} subscribers", "publisher u1 send", per_frame_ms[0],
               per_frame_ms[len(per_frame_ms) // 2], k)
    row["received_min"] = min(received) if received else 0
    row["refused"] = pub.refused - refused0
    return row


def plot(rows: list[dict], out_dir: str) -> list[str]:
    """One PNG per sweep (matplotlib's Agg canvas: no display, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    specs = {
        "resolution": ("megapixels per frame", "frames / s (best)", "rt network and TFP vs frame size"),
        "window": ("window length (frames)", "ms per window (best)",
                   "classical cost vs window length (the rt net always takes 41)"),
        "subscribers": ("local subscribers", "frames sent / s (best)", "publisher send rate vs subscribers"),
    }
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for sweep, (xlabel, ylabel, title) in specs.items():
        points = [r for r in rows if r["sweep"] == sweep]
        if not points:
            continue
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for what in dict.fromkeys(r["what"] for r in points):
            series = [r for r in points if r["what"] == what]
            y = [r["ms_best"] if sweep == "window" else r["per_s_best"] for r in series]
            ax.plot([r["x"] for r in series], y, marker="o", label=what)
        if sweep == "subscribers":
            ax.set_xticks(sorted({r["x"] for r in points}))
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, f"scaling_{sweep}.png")
        fig.savefig(path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    from .report import report
    args = parse_args(argv)
    rows = resolution_sweep(args) + window_sweep(args) + subscriber_sweep(args)
    for r in rows:
        r.setdefault("received_min", None)
        r.setdefault("refused", None)
    paths = plot(rows, args.out_dir)
    report("scaling", rows, args.json, extra={"plots": paths, "load_average": list(os.getloadavg()),
                                              "cpu_count": os.cpu_count()})
    print(f"plots: {', '.join(paths)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0
