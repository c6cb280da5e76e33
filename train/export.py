"""`ssml-export`: the trained NBSN as a TorchScript file or a torch.export `.pt2` program.

Both artefacts need only torch to load (no ssml_stream import):
- torchscript: `torch.jit.script` (falls back to `torch.jit.trace` on a 41 x H x W example), then
  `torch.jit.freeze`; load with `torch.jit.load(path)`. The live pipeline's artefact.
- weights: the fp16 shipped-weights file (`models.save_weights`, loads with `models.load_weights` or
  `--model PATH`), with metadata taken from the checkpoint (training command, data, steps, wall time,
  validation PSNR) and, with `--eval-json`, the PSNR/SSIM that ssml-eval measured for it.
- export: `torch.export.export` with dynamic batch, height and width (any size >= 2), saved
  with `torch.export.save`; load with `torch.export.load(path).module()`. TorchScript is deprecated
  upstream since torch 2.11; this is the forward-looking format.
Input: B x 41 x H x W float spikes (0/1); output: B x 1 x H x W firing rate (spikes per frame).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from ..cli_common import OneLineParser, check_output_path, cli_entry
from ..errors import ConfigError, ModelError
from ..runtime import quiet_torch, trace_frozen
from .checkpoints import load_nbsn, load_nbsn_checkpoint

FORMATS = ("torchscript", "export", "weights")

EXAMPLES = """examples:
  ssml-export runs/rt/best.pt --format torchscript --out ssml-rt.ts
  ssml-export runs/full/last.pt --format export --out ssml-full.pt2
  ssml-export ssml --format torchscript --out shipped-rt.ts      # shipped weights by name
  ssml-export runs/rt/last.pt --format weights --out ssml_stream/models/weights/ssml-rt.pt \
      --eval-json eval.json --eval-name last.pt
"""


def example_input(height: int = 64, width: int = 64, frames: int = 41, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, frames, height, width, generator=g) < 0.3).float()


def to_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with quiet_torch():
        try:
            scripted = torch.jit.script(model)
        except Exception:  # noqa: BLE001 - not scriptable: tracing is exact for these shape-static nets
            return trace_frozen(model, example)
        return torch.jit.freeze(scripted.eval())


def save_torchscript(model: nn.Module, out: Path, example: torch.Tensor) -> None:
    ts = to_torchscript(model, example)
    with quiet_torch():
        torch.jit.save(ts, str(out))


def to_exported(model: nn.Module, example: torch.Tensor, dynamic: bool = True):
    from torch.export import Dim, export

    with quiet_torch():
        if dynamic:
            # Dim.DYNAMIC lets export derive the constraints (the nets pad H and W to a multiple of 4).
            shapes = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
            try:
                return export(model, (example.expand(2, -1, -1, -1).contiguous(),), dynamic_shapes=shapes)
            except Exception:  # noqa: BLE001 - some shape logic does not export symbolically; go static
                pass
        return export(model, (example,))


def save_exported(model: nn.Module, out: Path, example: torch.Tensor, dynamic: bool = True) -> bool:
    """Write the .pt2; returns whether height/width stayed dynamic."""
    prog = to_exported(model, example, dynamic)
    is_dynamic = bool(prog.range_constraints)
    prog.example_inputs = None  # otherwise the sample window (16 MB at 250x400) is stored in the file
    with quiet_torch():
        torch.export.save(prog, str(out))
    return is_dynamic


def _loss_text(args: dict) -> str:
    """The training loss of a run, as text, from its checkpoint's arguments (train/loop.py's terms)."""
    from .loop import teacher_plan

    weight = args.get("distill_weight", 1.0)
    teachers = teacher_plan(args.get("distill_from"), args.get("distill_rates"))
    text = "MSE(BSN, %s label) + %g * MSE(NBSN, BSN)" % (args.get("label", "tfi"), args.get("mutual_weight", 0.01))
    if args.get("light_weighting"):
        text += ", each crop weighted by 1 / (mean rate + 0.01)"
    for spec, ranges in teachers:
        where = "" if ranges is None else " on crops with mean rate in " + " or ".join(f"[{lo:g}, {hi:g}]"
                                                                                       for lo, hi in ranges)
        text += " + %g * MSE(NBSN, teacher %s%s)" % (weight, spec, where)
    if teachers and args.get("worlds_hard"):
        text += " + %g * MSE(NBSN, BSN detached) on crops of the %d --worlds-hard clips, which skip the teachers" % (
            weight, args["worlds_hard"])
    return text


def weights_meta(ckpt: dict, eval_json: str | None = None, eval_name: str | None = None) -> dict:
    """Metadata for shipped weights: how they were trained and what they measured."""
    import platform
    import time

    args = ckpt.get("args", {})
    meta = {
        "training_command": " && ".join(ckpt.get("commands") or [args.get("command", "")]),
        "data": {"dat": args.get("dat", []), "sim": args.get("sim", []), "sim_frames": args.get("sim_frames"),
                 "worlds": args.get("worlds", 0), "worlds_hard": args.get("worlds_hard", 0), "seed": args.get("seed")},
        "steps": int(ckpt.get("step", 0)),
        "wall_time_min": round(float(ckpt.get("elapsed_s", 0.0)) / 60.0, 1),
        "threads": args.get("threads"), "amp": args.get("amp"), "batch_size": args.get("batch_size"),
        "crop": args.get("crop"), "lr": args.get("lr"),
        "loss": _loss_text(args),
        "train_val_psnr_nbsn_best": ckpt.get("best_psnr"),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", torch {torch.__version__}",
    }
    if eval_json:
        res = json.loads(Path(eval_json).read_text())
        name = eval_name or next((m for m in res.get("methods", []) if m not in ("TFP41", "TFI")), None)
        if name not in res.get("summary", {}):
            raise ConfigError(f"--eval-name {name!r} not in {eval_json} (methods: {', '.join(res['summary'])})")
        meta["eval"] = {
            "command": res.get("command"),
            "summary": res["summary"][name],
            "per_source": {s: {"psnr": row[name]["psnr"], "ssim": row[name]["ssim"],
                               "best_baseline": row["best_baseline"]} for s, row in res["sources"].items()},
        }
    return meta


def export_nbsn(spec: str, fmt: str, out: str | Path, height: int = 250, width: int = 400,
                dynamic: bool = True, eval_json: str | None = None, eval_name: str | None = None) -> dict:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use {', '.join(FORMATS)}")
    out = Path(out)
    check_output_path(out, "exported model", inputs=[spec, *([eval_json] if eval_json else [])])
    if fmt == "weights":
        model, ckpt = load_nbsn_checkpoint(spec)
        arch = ckpt["nbsn_arch"]
    else:
        model, arch = load_nbsn(spec)
    example = example_input(height, width)
    try:
        if fmt == "weights":
            from ..models import model_config, save_weights

            config = ckpt.get("nbsn_config") or model_config(arch)
            save_weights(out, model, arch, config, weights_meta(ckpt, eval_json, eval_name))
            is_dynamic = True
        elif fmt == "torchscript":
            save_torchscript(model, out, example)
            is_dynamic = True
        else:
            is_dynamic = save_exported(model, out, example, dynamic)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ModelError(f"could not export the {arch} NBSN from {spec} as {fmt}: {e}") from e
    return {"out": str(out), "format": fmt, "arch": arch, "dynamic_hw": is_dynamic,
            "bytes": out.stat().st_size}


@cli_entry("ssml-export")
def main(argv=None) -> int:
    p = OneLineParser(prog="ssml-export", description=__doc__, epilog=EXAMPLES,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="ssml-train checkpoint (.pt), shipped-weights file, or name (ssml, ssml-full)")
    p.add_argument("--format", choices=FORMATS, default="torchscript")
    p.add_argument("--out", required=True, help="output file (.ts/.pt for torchscript, .pt2 for export, "
                   ".pt for weights)")
    p.add_argument("--height", type=int, default=250, help="example height used to trace/export")
    p.add_argument("--width", type=int, default=400, help="example width used to trace/export")
    p.add_argument("--static", action="store_true", help="export: fix H x W to the example size")
    p.add_argument("--eval-json", help="weights: add the scores from this ssml-eval --json file to the metadata")
    p.add_argument("--eval-name", help="weights: the model's column name in --eval-json (default: first model)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    info = export_nbsn(args.ckpt, args.format, args.out, args.height, args.width, dynamic=not args.static,
                       eval_json=args.eval_json, eval_name=args.eval_name)
    shape = "any H x W" if info["dynamic_hw"] else f"{args.height}x{args.width} only"
    print(f"ssml-export: {info['arch']} NBSN -> {info['out']} ({info['format']}, {shape}, "
          f"{info['bytes'] / 1e6:.1f} MB)")
    return 0
