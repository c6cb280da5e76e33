"""`ssml-export`: the trained NBSN as a TorchScript file or a torch.export `.pt2` program.

Both artefacts need only torch to load (no ssml_stream import):
- torchscript: `torch.jit.script` (falls back to `torch.jit.trace` on a 41 x H x W example), then
  `torch.jit.freeze`; load with `torch.jit.load(path)`. The live pipeline's artefact.
- export: `torch.export.export` with dynamic batch, height and width (any size >= 2), saved
  with `torch.export.save`; load with `torch.export.load(path).module()`. TorchScript is deprecated
  upstream since torch 2.11; this is the forward-looking format.
Input: B x 41 x H x W float spikes (0/1); output: B x 1 x H x W firing rate (spikes per frame).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ..cli_common import cli_entry
from ..errors import ConfigError, ModelError

FORMATS = ("torchscript", "export")

EXAMPLES = """examples:
  ssml-export runs/rt/best.pt --format torchscript --out ssml-rt.ts
  ssml-export runs/full/last.pt --format export --out ssml-full.pt2
  ssml-export ssml --format torchscript --out shipped-rt.ts      # shipped weights by name
"""


def load_nbsn(spec: str) -> tuple[nn.Module, str]:
    """(NBSN in eval mode, float32, CPU; arch) from a trainer checkpoint, weights file or shipped name."""
    from .loop import is_checkpoint, load_nbsn_checkpoint

    if Path(spec).is_file() and is_checkpoint(spec):
        model, ckpt = load_nbsn_checkpoint(spec)
        return model.float().eval(), ckpt["nbsn_arch"]
    from ..models import load_weights

    model, meta = load_weights(spec)
    return model.float().eval(), str(meta.get("arch", "?"))


def example_input(height: int = 64, width: int = 64, frames: int = 41, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, frames, height, width, generator=g) < 0.3).float()


def to_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.* is deprecated upstream and says so
        try:
            scripted = torch.jit.script(model)
        except Exception:  # noqa: BLE001 - not scriptable: tracing is exact for these shape-static nets
            scripted = torch.jit.trace(model, example, check_trace=False)
        return torch.jit.freeze(scripted.eval())


def save_torchscript(model: nn.Module, out: Path, example: torch.Tensor) -> None:
    ts = to_torchscript(model, example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(ts, str(out))


def to_exported(model: nn.Module, example: torch.Tensor, dynamic: bool = True):
    from torch.export import Dim, export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(prog, str(out))
    return is_dynamic


def export_nbsn(spec: str, fmt: str, out: str | Path, height: int = 250, width: int = 400,
                dynamic: bool = True) -> dict:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use torchscript or export")
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    model, arch = load_nbsn(spec)
    example = example_input(height, width)
    try:
        if fmt == "torchscript":
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
    p = argparse.ArgumentParser(prog="ssml-export", description=__doc__, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="ssml-train checkpoint (.pt), shipped-weights file, or name (ssml, ssml-full)")
    p.add_argument("--format", choices=FORMATS, default="torchscript")
    p.add_argument("--out", required=True, help="output file (.ts/.pt for torchscript, .pt2 for export)")
    p.add_argument("--height", type=int, default=250, help="example height used to trace/export")
    p.add_argument("--width", type=int, default=400, help="example width used to trace/export")
    p.add_argument("--static", action="store_true", help="export: fix H x W to the example size")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    info = export_nbsn(args.ckpt, args.format, args.out, args.height, args.width, dynamic=not args.static)
    shape = "any H x W" if info["dynamic_hw"] else f"{args.height}x{args.width} only"
    print(f"ssml-export: {info['arch']} NBSN -> {info['out']} ({info['format']}, {shape}, "
          f"{info['bytes'] / 1e6:.1f} MB)")
    return 0
