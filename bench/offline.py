"""`ssml-bench offline`: windows per second of lossless file reconstruction (`ssml-stream --speed max
--stride N --save`), the way a user converts a recording, at each size, model and stride.

Each row simulates a clip (`ssml-sim`, traffic scene) at the row's size once, then runs `ssml-stream`
in a fresh process on it and reads the throughput from its summary line (windows after the first one
divided by the time between the first and the last output: start-up and model loading excluded), and
checks that the saved file holds every window of the stride grid (lossless).

Target (CPU, 2 cores): ssml-rt at stride 1, 250 x 400: >= 120 windows/s.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

from ..cli_common import positive_int
from .args import add_threads, bench_parser, frame_size

WINDOW = 41
SUMMARY_FPS = re.compile(r"^summary: .*windows out (\d+), fps ([0-9.]+)", re.MULTILINE)


def parse_args(argv):
    p = bench_parser("offline", __doc__, "ssml-bench offline",
                     "ssml-bench offline --compute cuda --sizes 250x400 1000x1000 --models ssml-rt ssml-full")
    p.add_argument("--sizes", nargs="+", type=frame_size(), default=[(250, 400)], metavar="HxW",
                   help="frame sizes (default 250x400)")
    p.add_argument("--models", nargs="+", default=["ssml-rt"], help="--model values (default ssml-rt)")
    p.add_argument("--strides", nargs="+", type=positive_int, default=[1], help="--stride values (default 1)")
    p.add_argument("--windows", type=positive_int, default=400, help="windows per row at stride 1 (default 400)")
    p.add_argument("--compute", default="auto", choices=["auto", "cpu", "cuda"])
    add_threads(p, "ssml-stream's own")
    return p.parse_args(argv)


def run_tool(entry: str, args: list[str]) -> str:
    """Run a console script's function in a fresh process of this Python; its stdout + stderr."""
    module, func = entry.split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}())"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{entry} {' '.join(args)} failed (exit {done.returncode}): {tail[0]}")
    return done.stdout + done.stderr


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from .report import report

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in args.sizes:
            clip = os.path.join(tmp, f"clip-{h}x{w}.dat")
            frames = WINDOW - 1 + args.windows * max(1, min(args.strides))
            run_tool("ssml_stream.cli:sim_main", [clip, "--scene", "traffic", "--frames", str(frames),
                                                  "--height", str(h), "--width", str(w)])
            for model in args.models:
                for stride in args.strides:
                    out = os.path.join(tmp, "out.npz")
                    cmd = ["--device", f"file:{clip}", "--height", str(h), "--width", str(w), "--model", model,
                           "--compute", args.compute, "--speed", "max", "--stride", str(stride), "--save", out,
                           "--no-publish", "--quiet"]
                    if args.threads:
                        cmd += ["--threads", str(args.threads)]
                    t0 = time.perf_counter()
                    text = run_tool("ssml_stream.stream_cli:main", cmd)
                    wall = time.perf_counter() - t0
                    found = SUMMARY_FPS.search(text)
                    if not found:
                        raise RuntimeError(f"ssml-stream printed no summary line: {text.strip()[-200:]}")
                    with np.load(out) as z:
                        saved = int(z["frames"].shape[0])
                    expected = (frames - WINDOW) // stride + 1
                    rows.append({"size": f"{h}x{w}", "model": model, "stride": stride, "compute": args.compute,
                                 "windows": saved, "lossless": "yes" if saved == expected else f"no ({expected})",
                                 "windows_per_s": float(found.group(2)), "wall_s_with_startup": round(wall, 1)})
                    os.remove(out)
    report("offline", rows, args.json, extra={"load_average": list(os.getloadavg())})
    return 0 if all(r["lossless"] == "yes" for r in rows) else 1
