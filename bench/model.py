"""`ssml-bench model`: milliseconds per frame and fps of the NBSNs (rt and full) at 250 x 400, batch 1.

Variants: eager fp32; traced + frozen (TorchScript, what the live pipeline runs); the same with
channels-last tensors; and bfloat16 autocast (eager and traced under autocast). Each row sets the torch
thread count explicitly. Median and best-of-N are both reported: on a shared machine the best
time is the better estimate of the model's own cost, the median shows what contention does.
Also reports the max abs difference of the bf16 output from fp32 (random weights unless --weights).
"""
from __future__ import annotations

import argparse
import time
import warnings

from ..errors import ConfigError

VARIANTS = ("eager", "traced", "traced-cl", "eager-bf16", "traced-bf16", "traced-bf16-cl")
FULL_VARIANTS = ("eager", "traced", "traced-bf16")   # the full NBSN costs ~240 GMAC per frame: fewer rows


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ssml-bench model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  ssml-bench model\n  ssml-bench model --arch rt --threads 2 "
                                       "--iters 100\n  ssml-bench model --weights ssml --json out/model.json")
    p.add_argument("--arch", nargs="+", default=["rt", "nbsn"], choices=["rt", "nbsn"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch thread counts (one row set each)")
    p.add_argument("--height", type=int, default=250)
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--iters", type=int, default=40, help="timed runs per rt variant")
    p.add_argument("--full-iters", type=int, default=3, help="timed runs per full-NBSN variant")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="rt variants")
    p.add_argument("--full-variants", nargs="+", default=list(FULL_VARIANTS), choices=VARIANTS,
                   help="full-NBSN variants")
    p.add_argument("--weights", default=None, help="weights name/path for the rt rows (default: random init)")
    p.add_argument("--json", default="bench-results/model.json")
    args = p.parse_args(argv)
    if min(args.threads) < 1 or args.iters < 1 or args.full_iters < 1:
        raise ConfigError("--threads, --iters and --full-iters must be >= 1")
    if args.height < 4 or args.width < 4:
        raise ConfigError("--height and --width must be >= 4")
    return args


def time_ms(fn, x, iters: int, warmup: int = 3) -> tuple[float, float]:
    """(median, best) milliseconds of fn(x) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2], 1e3 * times[0]


def _trace(model, x):
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.freeze(torch.jit.trace(model, x, check_trace=False).eval())


def gmac_per_frame(model, height: int, width: int) -> float:
    """Multiply-accumulates per frame, counted on a small input and scaled by pixel count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    h, w = 48, 64
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 41, h, w))
    return counter.get_total_flops() / 2 / (h * w) * height * width / 1e9


def run_variant(model, x, variant: str, iters: int, warmup: int = 3):
    """(median ms, best ms, output) of one variant."""
    import contextlib
    import torch
    bf16 = variant.endswith("bf16") or "-bf16-" in variant
    cl = variant.endswith("-cl")
    if cl:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        fn = _trace(model, x) if variant.startswith("traced") else model
        median, best = time_ms(fn, x, iters, warmup)
        out = fn(x).float()
    if cl:
        model.to(memory_format=torch.contiguous_format)
    return median, best, out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from ..models import build_model, load_weights
    from .report import report

    x = (torch.rand(1, 41, args.height, args.width, generator=torch.Generator().manual_seed(0)) < 0.15).float()
    rows = []
    for arch in args.arch:
        torch.manual_seed(0)
        if arch == "rt" and args.weights:
            model, _ = load_weights(args.weights)
        else:
            model = build_model(arch).eval()
        params = sum(p.numel() for p in model.parameters())
        gmac = gmac_per_frame(model, args.height, args.width)
        iters = args.iters if arch == "rt" else args.full_iters
        variants = args.variants if arch == "rt" else args.full_variants
        for threads in args.threads:
            torch.set_num_threads(threads)
            reference = None
            for variant in variants:
                median, best, out = run_variant(model, x, variant, iters, 3 if arch == "rt" else 1)
                if variant == "eager":
                    reference = out
                diff = float((out - reference).abs().max()) if reference is not None else float("nan")
                rows.append({"arch": arch, "variant": variant, "threads": threads, "params": params, "gmac": gmac,
                             "ms_median": round(median, 2), "ms_best": round(best, 2),
                             "fps_best": round(1e3 / best, 1), "max_abs_diff": diff})
    report("model", rows, args.json, extra={"shape": [1, 41, args.height, args.width],
                                            "weights": args.weights or "random init"})
    return 0
