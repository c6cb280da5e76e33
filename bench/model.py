"""`ssml-bench model`: milliseconds per frame and fps of the NBSNs (rt and full) at 250 x 400, batch 1.

Variants: eager fp32; traced + frozen (TorchScript, what the live pipeline runs on CPU); the same with
channels-last tensors; bfloat16 autocast (eager, and traced under autocast); fp16 weights and
activations (`--device cuda` only, what the runtime uses there). The full NBSN keeps channels-last
weights and activations in eval mode by itself, and its bf16 row is the runtime's `--precision bf16`
path (eager under autocast). Each CPU row sets the torch thread count explicitly. The variants of
one model run interleaved (round-robin), so load changes hit all alike. Median and best-of-N are both
reported: on a shared machine the best time is the better estimate of the model's own cost, the
median shows what contention does.
Also reports the max abs difference of each variant's output from eager fp32 (random weights unless
--weights gives weights for that arch).
"""
from __future__ import annotations

import os
import time

from ..cli_common import positive_int
from ..runtime import trace_frozen
from .args import add_device, add_frame_size, add_threads, bench_parser

VARIANTS = ("eager", "traced", "traced-cl", "eager-bf16", "traced-bf16", "traced-bf16-cl", "eager-fp16-cl")
CPU_VARIANTS = VARIANTS[:-1]
FULL_VARIANTS = ("eager", "traced", "eager-bf16")   # the full NBSN costs ~240 GMAC per frame: fewer rows
CUDA_VARIANTS = ("eager", "eager-bf16", "eager-fp16-cl")


def parse_args(argv):
    p = bench_parser("model", __doc__, "ssml-bench model", "ssml-bench model --arch rt --threads 2 --iters 100",
                     "ssml-bench model --weights ssml-rt ssml-full --json out/model.json",
                     "ssml-bench model --device cuda --full-iters 10")
    p.add_argument("--arch", nargs="+", default=["rt", "nbsn"], choices=["rt", "duo", "nbsn"],
                   help="duo: two rt networks and a motion gate (timed like rt)")
    add_threads(p, "1 2; one set of rows each", nargs="+", default=[1, 2])
    add_frame_size(p)
    p.add_argument("--iters", type=positive_int, default=40, help="timed runs per rt variant")
    p.add_argument("--full-iters", type=positive_int, default=3, help="timed runs per full-NBSN variant")
    p.add_argument("--variants", nargs="+", choices=VARIANTS,
                   help=f"rt variants (default: {' '.join(CPU_VARIANTS)}; on cuda {' '.join(CUDA_VARIANTS)})")
    p.add_argument("--full-variants", nargs="+", choices=VARIANTS,
                   help=f"full-NBSN variants (default: {' '.join(FULL_VARIANTS)}; on cuda as for rt)")
    add_device(p)
    p.add_argument("--weights", nargs="+", default=[],
                   help="weights names/paths; each is used for the rows of its arch (default: random init)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.variants = args.variants or list(CUDA_VARIANTS if cuda else CPU_VARIANTS)
    args.full_variants = args.full_variants or list(CUDA_VARIANTS if cuda else FULL_VARIANTS)
    fp16 = [v for v in args.variants + args.full_variants if "fp16" in v]
    if fp16 and not cuda:
        p.error(f"variant {fp16[0]} needs --device cuda (fp16 convolutions are slow or missing on CPU)")
    return args


def time_interleaved(fns: dict, iters: int, warmup: int) -> dict:
    """{name: (median ms, best ms)}; the callables run in turn, round after round, so load changes on a
    shared machine hit every variant alike and their ratios stay comparable."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = (1e3 * ts[len(ts) // 2], 1e3 * ts[0])
    return out


def gmac_per_frame(model, height: int, width: int) -> float:
    """Multiply-accumulates per frame, counted on a small input and scaled by pixel count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    h, w = 48, 64
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 41, h, w))
    return counter.get_total_flops() / 2 / (h * w) * height * width / 1e9


def make_variant(model, x, variant: str):
    """A no-argument callable running `variant` of the model on x (returns the float32 output); on
    CUDA it waits for the GPU, so wall time is the forward's time."""
    import contextlib
    import copy
    import torch
    bf16 = "bf16" in variant
    if variant.endswith("-cl"):
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if "fp16" in variant:
        model, x = copy.deepcopy(model).half(), x.half()
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def context():
        return torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    with torch.no_grad(), context():
        fn = trace_frozen(model, x) if variant.startswith("traced") else model

    def run():
        with torch.no_grad(), context():
            y = fn(x).float()
        sync()
        return y
    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from ..models import build_model, load_weights
    from .report import report

    x = (torch.rand(1, 41, args.height, args.width, generator=torch.Generator().manual_seed(0)) < 0.15).float()
    x = x.to(args.device)
    weights = {}
    for name in args.weights:
        model, meta = load_weights(name)
        weights[meta["arch"]] = (model, name)
    rows = []
    for arch in args.arch:
        torch.manual_seed(0)
        model = weights[arch][0] if arch in weights else build_model(arch).eval()
        params = sum(p.numel() for p in model.parameters())
        gmac = gmac_per_frame(model, args.height, args.width)
        model = model.to(args.device)
        small = arch in ("rt", "duo")
        iters = args.iters if small else args.full_iters
        variants = args.variants if small else args.full_variants
        for threads in args.threads if args.device == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            fns = {v: make_variant(model, x, v) for v in variants}
            timed = time_interleaved(fns, iters, warmup=3 if small else 1)
            reference = fns["eager"]() if "eager" in fns else None
            for variant, fn in fns.items():
                median, best = timed[variant]
                diff = float((fn() - reference).abs().max()) if reference is not None else float("nan")
                rows.append({"arch": arch, "variant": variant, "device": args.device, "threads": threads,
                             "params": params, "gmac": gmac,
                             "ms_median": round(median, 2), "ms_best": round(best, 2),
                             "fps_best": round(1e3 / best, 1), "max_abs_diff": diff})
    report("model", rows, args.json, extra={"shape": [1, 41, args.height, args.width], "device": _device_name(args),
                                            "weights": {a: w for a, (_, w) in weights.items()} or "random init",
                                            "load_average": list(os.getloadavg())})
    return 0


def _device_name(args) -> str:
    import torch
    return torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
