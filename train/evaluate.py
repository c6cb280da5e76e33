"""`ssml-eval`: PSNR and SSIM against ground truth for models and the classical baselines.

Sources:
- REDS_BASE `.dat` files (default: reds_base/test in $SSML_SHARED_DATA, else ../shared/data): the
  window centred on frame 150 against the sibling PNG (intensity in [0, 1]).
- simulated moving scenes (default: every built-in scene of drivers.sim) with a seed different
  from training's (other textures and object paths): the window centred on frame 150 of a 301-frame
  clip against the simulator's intensity for that frame.

Reconstructions are firing rates, compared as intensity = clip(rate / rate_gain, 0, 1) (rate_gain 0.6).
Baselines: TFP41 (mean of the 41 frames) and TFI (nearest spikes around the centre, search 20,
fallback 40). "Best classical baseline" is, per source, the better of the two; a model's margin is
its PSNR minus that, averaged over sources. SSIM: Wang et al. 2004 with a Gaussian 11x11 window
(sigma 1.5) computed through OpenCV GaussianBlur (train/metrics.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..cli_common import OneLineParser, check_output_path, cli_entry
from ..data_paths import shared_data
from ..errors import ConfigError
from ..formats import RATE_GAIN
from .data import WINDOW_FRAMES, DatOptions, load_dat_recording, find_dat_files
from .metrics import psnr, rate_to_intensity, ssim

EVAL_SIM_SEED = 100  # training uses seeds 0.. (sim clips); evaluation draws other scenes
BASELINES = ("TFP41", "TFI")

EXAMPLES = """examples:
  ssml-eval ssml-rt ssml-full                      # shipped weights on REDS test + simulated scenes
  ssml-eval runs/rt/best.pt rt.ts --data ../shared/data/reds_base/test --json eval.json --png eval.png
  ssml-eval --sim shapes --sim spin --no-data      # baselines only, simulated scenes only
  ssml-eval --suite sweep ssml-rt ssml-full --png sweep.png   # motion / light / sensor sweep at unseen seeds
"""


@dataclass
class EvalSource:
    name: str
    window: np.ndarray  # 41 x H x W uint8
    gt: np.ndarray  # H x W intensity [0, 1]
    rate_gain: float = RATE_GAIN


def reds_sources(paths, options: DatOptions = DatOptions()) -> list[EvalSource]:
    out = []
    for path in find_dat_files(paths):
        rec = load_dat_recording(path, options)
        if options.gt_frame not in rec.gt:
            raise ConfigError(f"{path}: no ground truth (expected {path.with_suffix('.png').name} = intensity "
                              f"at frame {options.gt_frame})")
        out.append(EvalSource(rec.name, rec.window(options.gt_frame), rec.gt[options.gt_frame]))
    return out


def sim_sources(scenes, seed: int = EVAL_SIM_SEED, height: int = 250, width: int = 400) -> list[EvalSource]:
    from ..drivers import sim
    from ..unpack import unpack

    out = []
    n = 301
    centre = n // 2
    for scene in scenes:
        res = sim.simulate(scene, n, height=height, width=width, seed=seed, gt_frames=[centre])
        frames = unpack(np.asarray(res.packed), height, width)
        half = WINDOW_FRAMES // 2
        label = Path(scene).stem if os.path.sep in scene or "." in scene else scene
        out.append(EvalSource(f"sim-{label}", frames[centre - half: centre + half + 1],
                              np.asarray(res.gt[centre], np.float32), float(res.rate_gain)))
    return out


def baseline_fns() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    from ..features import tfi, tfp

    return {"TFP41": lambda w: tfp(w), "TFI": lambda w: tfi(w, search=20, fallback=40)}


def load_model_fn(spec: str, threads: int = 0) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(display name, window -> rate) for anything `runtime.load_model` takes (shipped names, weights,
    TorchScript, .pt2) or an ssml-train checkpoint, run on the CPU in fp32 like every shipped figure."""
    from ..runtime import RuntimeOptions, TorchReconstructor, load_model
    from .checkpoints import net_from_checkpoint, read_checkpoint

    path = Path(spec)
    name = spec if not path.exists() else "/".join(path.resolve().parts[-2:])
    options = RuntimeOptions(compute="cpu", precision="fp32", threads=threads or None)
    ckpt = read_checkpoint(spec)
    if ckpt is None:
        return name, load_model(spec, options=options)
    rec = TorchReconstructor(net_from_checkpoint(ckpt, "nbsn", spec), name, options)
    rec.probe()
    return name, rec


def evaluate(sources: list[EvalSource], methods: dict[str, Callable[[np.ndarray], np.ndarray]]) -> dict:
    """Scores per source and method, plus per-method summaries and margins over the best baseline."""
    per_source = {}
    images = {}
    for src in sources:
        row = {}
        images[src.name] = {"GT": src.gt}
        for mname, fn in methods.items():
            img = rate_to_intensity(fn(src.window), src.rate_gain)
            images[src.name][mname] = img
            row[mname] = {"psnr": psnr(img, src.gt), "ssim": ssim(img, src.gt)}
        best = max(BASELINES, key=lambda b: row[b]["psnr"])
        row["best_baseline"] = {"method": best, "psnr": row[best]["psnr"]}
        per_source[src.name] = row
    summary = {}
    for mname in methods:
        ps = [per_source[s][mname]["psnr"] for s in per_source]
        ss = [per_source[s][mname]["ssim"] for s in per_source]
        margins = [per_source[s][mname]["psnr"] - per_source[s]["best_baseline"]["psnr"] for s in per_source]
        summary[mname] = {"psnr_mean": float(np.mean(ps)), "ssim_mean": float(np.mean(ss)),
                          "margin_over_best_baseline_db": float(np.mean(margins)),
                          "margin_min_db": float(np.min(margins))}
    return {"sources": per_source, "summary": summary, "images": images}


def side_by_side(images: dict, out: Path, scores: dict) -> None:
    """One row per source: GT, baselines, models; each tile labelled with its PSNR/SSIM."""
    import cv2

    rows = []
    for src, tiles in images.items():
        cells = []
        for mname, img in tiles.items():
            tile = cv2.cvtColor((np.clip(img, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
            label = mname if mname == "GT" else \
                f"{mname} {scores[src][mname]['psnr']:.2f}dB {scores[src][mname]['ssim']:.3f}"
            for color, thick in (((0, 0, 0), 3), ((0, 255, 255), 1)):
                cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, thick, cv2.LINE_AA)
            if mname == "GT":
                cv2.putText(tile, src, (4, tile.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1,
                            cv2.LINE_AA)
            cells.append(tile)
        rows.append(cells)
    width = max(len(r) for r in rows)
    h = max(c.shape[0] for r in rows for c in r)
    w = max(c.shape[1] for r in rows for c in r)
    canvas = np.zeros((h * len(rows), w * width, 3), np.uint8)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            canvas[i * h: i * h + c.shape[0], j * w: j * w + c.shape[1]] = c
    if not cv2.imwrite(str(out), canvas):
        raise ConfigError(f"--png {out}: could not write the image (check the folder and the .png suffix)")


def format_table(result: dict, methods: list[str]) -> str:
    lines = []
    head = f"{'source':<24}" + "".join(f"{m[:18]:>20}" for m in methods) + f"{'best classical':>18}"
    lines.append("PSNR dB / SSIM")
    lines.append(head)
    for src, row in result["sources"].items():
        cells = "".join(f"{row[m]['psnr']:>11.2f} / {row[m]['ssim']:.3f}" for m in methods)
        lines.append(f"{src:<24}{cells}{row['best_baseline']['method']:>18}")
    mean = "".join(f"{result['summary'][m]['psnr_mean']:>11.2f} / {result['summary'][m]['ssim_mean']:.3f}"
                   for m in methods)
    lines.append(f"{'mean':<24}{mean}")
    margin = "".join(f"{result['summary'][m]['margin_over_best_baseline_db']:>+20.2f}" for m in methods)
    lines.append(f"{'margin vs best classical':<24}{margin}")
    return "\n".join(lines)


def _run_sweep(args, argv, default_data: Path) -> int:
    from .sweep import format_sweep, plot_sweep, run_sweep

    data = [] if args.no_data else [Path(d) for d in (args.data or [str(default_data)])]
    data = [d for d in data if d.exists()]
    real = next((str(p) for d in data for p in find_dat_files([d]) if p.with_suffix(".png").exists()), None) \
        if data else None
    methods = {}
    for spec in args.models or ["ssml-rt"]:
        name, fn = load_model_fn(spec, args.threads)
        methods[name if name not in methods else f"{name}#{len(methods)}"] = fn
    result = run_sweep(methods, data_dirs=data, real_dat=real)
    print(format_sweep(result))
    if not real:
        print("(no REDS test recording found: the real-spikes row and the natural texture are missing; "
              "1/f noise stands in for the photograph)")
    if args.png:
        plot_sweep(result, args.png)
        print(f"wrote {args.png}")
    if args.json:
        from ..bench.report import machine

        result.update(models=args.models, machine=machine(), command="ssml-eval " + " ".join(argv))
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


@cli_entry("ssml-eval")
def main(argv=None) -> int:
    default_data = shared_data() / "reds_base" / "test"
    p = OneLineParser(prog="ssml-eval", description=__doc__, epilog=EXAMPLES,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="shipped names (ssml-rt, ssml-full, ssml-duo), weights files, ssml-train "
                   "checkpoints, TorchScript files or .pt2 exports")
    p.add_argument("--data", action="append", help=".dat files or folders with NAME.png ground truth "
                   f"(default: {default_data.resolve()})")
    p.add_argument("--no-data", action="store_true", help="skip .dat sources")
    p.add_argument("--sim", action="append", help="simulated scene (repeatable; default: all built-in scenes)")
    p.add_argument("--no-sim", action="store_true", help="skip simulated sources")
    p.add_argument("--sim-seed", type=int, default=EVAL_SIM_SEED)
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--png", help="write a side-by-side comparison image here")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--suite", choices=["basic", "sweep"], default="basic",
                   help="basic: REDS + built-in scenes; sweep: motion, light, sensor faults and content at "
                   "unseen seeds (train/sweep.py), --png draws PSNR vs speed and vs light")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    inputs = [*args.models, *(args.data or [])]
    if args.json:
        check_output_path(args.json, "results file", inputs=inputs)
    if args.png:
        check_output_path(args.png, "comparison image", inputs=inputs, others=[args.json])
    if args.suite == "sweep":
        return _run_sweep(args, sys.argv[1:] if argv is None else argv, default_data)

    sources: list[EvalSource] = []
    if not args.no_data:
        data = args.data or [str(default_data)]
        if not args.data and not default_data.exists():
            raise ConfigError(f"default data {default_data.resolve()} not found; pass --data or --no-data")
        sources += reds_sources(data)
    if not args.no_sim:
        from ..drivers import sim

        sources += sim_sources(args.sim or list(sim.SCENES), seed=args.sim_seed)
    if not sources:
        raise ConfigError("nothing to evaluate: drop --no-data or --no-sim")
    methods = dict(baseline_fns())
    for spec in args.models:
        name, fn = load_model_fn(spec, args.threads)
        if name in methods:
            name = f"{name}#{len(methods)}"
        methods[name] = fn
    result = evaluate(sources, methods)
    names = list(methods)
    print(format_table(result, names))
    for m in names[len(BASELINES):]:
        s = result["summary"][m]
        print(f"{m}: {s['psnr_mean']:.2f} dB mean, {s['margin_over_best_baseline_db']:+.2f} dB over the best "
              f"classical baseline per source (worst source {s['margin_min_db']:+.2f} dB)")
    if args.png:
        side_by_side(result["images"], Path(args.png), result["sources"])
        print(f"wrote {args.png}")
    if args.json:
        from ..bench.report import machine

        out = {k: v for k, v in result.items() if k != "images"}
        out.update(models=args.models, methods=names, machine=machine(), command="ssml-eval " + " ".join(
            sys.argv[1:] if argv is None else argv))
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0
