"""Assemble `ssml-duo` (models/duo.py) from two trained rt networks, and pick its gate.

    python -m ssml_stream.train.duo pick ssml-rt train/results/rt-hard-gpu.pt
    python -m ssml_stream.train.duo build ssml-rt train/results/rt-hard-gpu.pt OUT.pt \\
        --gate-size 21 --gate-low 0.75 --gate-high 2.25

`pick` scores a grid of gates on validation clips drawn exactly like training clips (`random_spec`,
training seeds, 160 x 160): ground truth scores the candidates, as in the trainer's validation, and
never enters a loss. The sweep's clips (evaluation seeds) are not used to choose. `build` writes a
weights file loadable with `--model`, `ssml-eval` and `ssml-export`, with both sources and the gate
in its metadata.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..cli_common import OneLineParser, cli_entry, positive_int
from ..errors import ModelError
from ..models.duo import DuoConfig

PICK_SEED = 4242          # rng seed of the validation clips (the clips' own seeds are training seeds)
GATE_GRID = [(size, low, low + span) for size in (9, 21) for low in (0.75, 1.0, 1.5, 2.0) for span in (0.5, 1.5)]


def assemble(still: str, motion: str, gate_size: int, gate_low: float, gate_high: float):
    """(duo network in eval mode, its config) from two rt weights files or shipped names."""
    from ..models import build_model, load_weights, model_config

    nets = {}
    for role, spec in (("still", still), ("motion", motion)):
        net, meta = load_weights(spec)
        if meta["arch"] != "rt":
            raise ModelError(f"{spec} holds a {meta['arch']!r} network; the duo blends two rt networks")
        nets[role] = (net, meta)
    rt_config = nets["still"][1]["config"]
    if nets["motion"][1]["config"] != rt_config:
        raise ModelError(f"{still} and {motion} have different rt configs; the duo needs one config for both")
    keep = {k: v for k, v in rt_config.items() if k != "anchor_mean"}
    config = model_config("duo", **keep, gate_size=gate_size, gate_low=gate_low, gate_high=gate_high)
    duo = build_model("duo", **config).eval()
    duo.still.load_state_dict(nets["still"][0].state_dict())
    duo.motion.load_state_dict(nets["motion"][0].state_dict())
    return duo, config


def validation_clips(n: int, size: int = 160):
    """(41-frame float window, ground truth, rate gain) of `n` clips drawn like training clips."""
    from ..drivers.worlds import random_spec, render_clip

    rng = np.random.default_rng(PICK_SEED)
    out = []
    for _ in range(n):
        clip = render_clip(random_spec(rng, height=size, width=size, n_frames=81), gt_frames=[40])
        out.append((np.asarray(clip.frames[20:61], np.float32), clip.gt[40], clip.rate_gain))
    return out


def pick(still: str, motion: str, n_clips: int) -> list[dict]:
    """Mean PSNR of `still` alone and of each gate in GATE_GRID on the validation clips, best first."""
    import torch

    from .metrics import psnr, rate_to_intensity

    clips = validation_clips(n_clips)
    candidates = {"still alone": assemble(still, motion, 9, 1e6, 2e6)[0]}  # a gate that never opens
    for size, low, high in GATE_GRID:
        candidates[f"gate {size} px, {low:g}-{high:g} spikes"] = assemble(still, motion, size, low, high)[0]
    rows = []
    for name, net in candidates.items():
        with torch.inference_mode():
            scores = [psnr(rate_to_intensity(net(torch.from_numpy(w)[None])[0, 0].numpy(), gain), gt)
                      for w, gt, gain in clips]
        rows.append({"candidate": name, "mean_psnr": round(float(np.mean(scores)), 3)})
    return sorted(rows, key=lambda r: -r["mean_psnr"])


def build(still: str, motion: str, out: Path, gate_size: int, gate_low: float, gate_high: float,
          pick_table: Path | None) -> None:
    from ..models import load_weights, save_weights

    duo, config = assemble(still, motion, gate_size, gate_low, gate_high)
    meta = {"still": {"source": still, "meta": _summary(load_weights(still)[1])},
            "motion": {"source": motion, "meta": _summary(load_weights(motion)[1])},
            "gate": {"size": gate_size, "low": gate_low, "high": gate_high},
            "loss": "none of its own: two rt networks trained by the SSML loss, no ground truth"}
    if pick_table:
        meta["gate_pick"] = json.loads(pick_table.read_text())
    save_weights(out, duo, "duo", config, meta)
    print(f"wrote {out}")


def _summary(meta: dict) -> dict:
    return {k: meta[k] for k in ("steps", "wall_time_min", "data", "loss", "stages", "command") if k in meta}


@cli_entry("duo")
def main(argv=None) -> int:
    p = OneLineParser(prog="python -m ssml_stream.train.duo", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("pick", help="score gates on validation clips drawn like training clips")
    b = sub.add_parser("build", help="write the duo weights file")
    for q in (k, b):
        q.add_argument("still", help="rt weights for still, clean scenes (e.g. ssml-rt)")
        q.add_argument("motion", help="rt weights for motion and photon noise")
    k.add_argument("--clips", type=positive_int, default=60)
    k.add_argument("--json", type=Path, help="write the table here")
    b.add_argument("out", type=Path)
    b.add_argument("--gate-size", type=int, default=DuoConfig.gate_size)
    b.add_argument("--gate-low", type=float, default=DuoConfig.gate_low)
    b.add_argument("--gate-high", type=float, default=DuoConfig.gate_high)
    b.add_argument("--pick-table", type=Path, help="the JSON `pick --json` wrote, kept in the metadata")
    args = p.parse_args(argv)
    if args.command == "pick":
        rows = pick(args.still, args.motion, args.clips)
        for r in rows:
            print(f"{r['candidate']:<32} {r['mean_psnr']:.3f} dB")
        if args.json:
            args.json.write_text(json.dumps({"clips": args.clips, "seed": PICK_SEED, "rows": rows}, indent=1) + "\n")
    else:
        build(args.still, args.motion, args.out, args.gate_size, args.gate_low, args.gate_high, args.pick_table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
