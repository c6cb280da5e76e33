"""`ssml-bench compare`: this project's models against re-implementations of peers' inference paths,
timed in the same process, on the same 41-frame window, round after round (load changes hit all alike).

Rows (each takes the 41 x H x W uint8 window and returns the H x W image, so every row includes its
own input conversion and feature computation):
- ssml-rt and ssml-full (full NBSN) through `ssml_stream.load_model`, the path the pipeline and
  `ssml-eval` use (CPU: traced + frozen fp32; the full NBSN channels-last in eval mode); ssml-full
  once more with `precision="bf16"` (autocast, fp32 output head) on CPU;
- the SSML public release's inference path, re-implemented (bench/peers.py `ReleaseNbsn`): the same
  network and weights as ssml-full in eager fp32 NCHW, numpy motion features, three sub-window
  passes. Its output is checked against ssml-full (max_abs_diff);
- a supervised peer of similar size: a plain 2.9 M-parameter U-Net on the 41-frame window
  (bench/peers.py `PlainUNet`), random weights, eager fp32 as a release would run it, and through
  our runtime. A size/compute stand-in, not any peer's trained model.
Ratios: x_ssml_rt = ms / ms of ssml-rt, x_ssml_full = ms / ms of ssml-full fp32 (> 1: slower than ours).
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..cli_common import positive_int
from .args import add_device, add_frame_size, add_threads, bench_parser


def parse_args(argv):
    p = bench_parser("compare", __doc__, "ssml-bench compare", "ssml-bench compare --iters 5 --threads 2",
                     "ssml-bench compare --height 64 --width 96 --json /tmp/compare.json")
    add_frame_size(p)
    p.add_argument("--iters", type=positive_int, default=3, help="timed rounds (default 3)")
    add_threads(p, "every core")
    add_device(p)
    return p.parse_args(argv)


@dataclass
class Method:
    run: Callable            # 41 x H x W uint8 window -> H x W float32 image
    cost_model: object       # a CPU torch module of the same architecture: parameters and MACs
    precision: str
    same_network_as_full: bool = False  # its output is compared with ssml-full's


def build_methods(args) -> dict[str, Method]:
    import torch

    from ..models import load_weights
    from ..runtime import RuntimeOptions, TorchReconstructor, load_model
    from .peers import PlainUNet, ReleaseNbsn

    threads = args.threads or os.cpu_count() or 1
    opts = dict(compute=args.device, threads=threads)
    rt_net, full_net = load_weights("ssml-rt")[0], load_weights("ssml-full")[0]
    ours = "fp16" if args.device == "cuda" else "fp32"
    methods = {"ssml-rt (ours)": Method(load_model("ssml-rt", **opts), rt_net, ours),
               "ssml-full (ours)": Method(load_model("ssml-full", **opts), full_net, ours, True)}
    if args.device == "cpu":
        methods["ssml-full (ours, bf16)"] = Method(load_model("ssml-full", precision="bf16", **opts), full_net,
                                                   "bf16 autocast, fp32 head", True)
    release = ReleaseNbsn(load_weights("ssml-full")[0], args.device)
    methods["SSML release NBSN (re-impl.)"] = Method(release, full_net, "fp32 eager, numpy features", True)
    torch.manual_seed(0)
    unet = PlainUNet()
    unet_eager = copy.deepcopy(unet).eval().to(args.device)

    @torch.no_grad()
    def run_unet_eager(window):
        return unet_eager(torch.from_numpy(window).to(args.device).float()[None])[0, 0].cpu().numpy()

    methods["plain U-Net stand-in, eager"] = Method(run_unet_eager, unet, "fp32 eager")
    standin = TorchReconstructor(copy.deepcopy(unet), "unet-standin", RuntimeOptions(**opts))
    methods["plain U-Net stand-in, our runtime"] = Method(standin, unet, ours)
    torch.set_num_threads(threads)  # every row runs with the same thread count
    return methods


def make_window(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((41, height, width), dtype=np.float32) < 0.2).astype(np.uint8)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from .model import gmac_per_frame, time_interleaved
    from .report import report

    methods = build_methods(args)
    window = make_window(args.height, args.width)
    timed = time_interleaved({name: (lambda m=m: m.run(window)) for name, m in methods.items()}, args.iters,
                             warmup=1)
    full_out = methods["ssml-full (ours)"].run(window)
    rt_ms, full_ms = timed["ssml-rt (ours)"][1], timed["ssml-full (ours)"][1]
    rows = []
    for name, m in methods.items():
        median, best = timed[name]
        diff = float(np.abs(m.run(window) - full_out).max()) if m.same_network_as_full else float("nan")
        rows.append({"method": name, "precision": m.precision,
                     "params": sum(p.numel() for p in m.cost_model.parameters()),
                     "gmac": gmac_per_frame(m.cost_model, args.height, args.width),
                     "ms_median": round(median, 2), "ms_best": round(best, 2),
                     "x_ssml_rt": round(best / rt_ms, 3), "x_ssml_full": round(best / full_ms, 3),
                     "max_abs_diff_vs_full": diff})
    release = next(r for r in rows if "release" in r["method"])
    full_row = next(r for r in rows if r["method"] == "ssml-full (ours)")
    report("compare", rows, args.json, extra={
        "shape": [41, args.height, args.width], "device": args.device, "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "note": "ms_best is the best of --iters rounds; ratios use ms_best; the U-Net stand-in has random weights"})
    print(f"the release's inference path takes {release['ms_best'] / full_row['ms_best']:.2f}x the time of ssml-full "
          f"(same weights, max abs diff {release['max_abs_diff_vs_full']:.1e}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0
