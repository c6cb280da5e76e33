"""Does `ssml-stream --adapt` pay off where ssml-rt is weakest? A before/after check with ground truth.

    python -m ssml_stream.train.adapt_check render /tmp/adapt       # SCENE.npy + SCENE-gt.npz per scene
    ssml-stream --device file:/tmp/adapt/fast.npy --loop --speed 1 --model ssml-rt --adapt \\
        --adapt-save /tmp/adapt/fast.pt --duration 240 --no-publish 2>&1 | tee /tmp/adapt/fast.log
    python -m ssml_stream.train.adapt_check score /tmp/adapt/fast /tmp/adapt/fast.pt \\
        --log /tmp/adapt/fast.log --record train/results/adapt.json
    python -m ssml_stream.train.adapt_check table train/results/adapt.json

Each scene is a setting of the evaluation sweep (train/sweep.py) rendered the sweep's way on its
dead-leaves texture (the harder of its two; see `leaves_mosaic`), moving at 30 degrees, 250 x 400,
but 4000 frames long (0.1 s, replayed with --loop), at a seed below `EVAL_SEED_LIMIT` that the sweep
does not use, with ground truth at 4 frames. `score` gives the mean PSNR over the 41-frame windows
centred on those frames of ssml-rt (before), the adapted weights (after), TFP41 and TFI; with
`--log` (the stream's output) and `--record` it adds the stream's fps, dropped frames and adaptation
counters to a JSON file, one entry per scene, which `table` prints.
Ground truth scores the result only: the adapter never sees it.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..cli_common import OneLineParser, cli_entry
from ..errors import ConfigError
from .metrics import psnr, rate_to_intensity
from .sweep import N_FRAMES as SWEEP_FRAMES, SIZE, WINDOW, settings

# scene -> the sweep setting it renders
SCENES = {
    "fast": "translate 0.6 px/frame",
    "dark": "rate 0.03",
    "photon": "photon noise (5 photons/spike)",
    "fpn": "threshold variation 10 %",
    "good": "rate 0.3",  # where ssml-rt is already good: adapting should cost nothing
}
FIRST_SEED = 7000  # scene i uses FIRST_SEED + i: eval range, not a sweep seed
GT_FRAMES = (500, 1500, 2500, 3500)


def leaves_mosaic(path: Path, seed: int, speed: float, n_frames: int, size) -> str:
    """Dead leaves for a long clip, as a 16-bit PNG that render_clip takes as its texture: tiles of the
    sweep's canvas (independent textures) covering the canvas render_clip needs for `n_frames`. A
    single dead-leaves canvas that large is mostly striped patches (their number grows with its area,
    their size with its sides): at 0.6 px/frame over 4000 frames, nothing but stripes."""
    import cv2

    from ..drivers.worlds import dead_leaves

    def canvas(frames):  # render_clip's: the frame plus the distance travelled and 8 px
        margin = math.ceil(speed * frames) + 8
        return size[0] + margin, size[1] + margin

    (th, tw), (h, w) = canvas(SWEEP_FRAMES), canvas(n_frames)
    rng = np.random.default_rng(seed)
    rows = [np.hstack([dead_leaves(th, tw, rng) for _ in range(-(-w // tw))]) for _ in range(-(-h // th))]
    cv2.imwrite(str(path), np.round(np.vstack(rows)[:h, :w] * 65535).astype(np.uint16))
    return str(path)


def render(folder: Path, names, n_frames: int = 4000, size=SIZE) -> None:
    from ..drivers.worlds import EVAL_SEED_LIMIT, ClipSpec, render_clip
    from .sweep import sweep_seeds

    if n_frames < WINDOW:
        raise ConfigError(f"a scene needs at least {WINDOW} frames, got {n_frames}")
    changes = {s.name: s.changes for s in settings()}
    gt_frames = [k for k in GT_FRAMES if WINDOW // 2 <= k < n_frames - WINDOW // 2] or [n_frames // 2]
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        seed = FIRST_SEED + list(SCENES).index(name)
        assert seed < EVAL_SEED_LIMIT and seed not in sweep_seeds()
        spec = replace(ClipSpec(seed=seed, speed=0.0, direction_deg=30.0, mean_rate=0.3,
                                height=size[0], width=size[1], n_frames=n_frames), **changes[SCENES[name]])
        texture = leaves_mosaic(folder / f"{name}-texture.png", seed, spec.speed, n_frames, size)
        clip = render_clip(replace(spec, texture=texture), gt_frames=gt_frames)
        np.save(folder / f"{name}.npy", clip.frames)
        np.savez(folder / f"{name}-gt.npz", frames=np.array(gt_frames), rate_gain=clip.rate_gain,
                 gt=np.stack([clip.gt[k] for k in gt_frames]), spec=spec.label())
        print(f"{folder / name}.npy: {spec.label()}, rate gain {clip.rate_gain:.3f}")


def score(base: str, models: dict[str, str]) -> dict[str, float]:
    """Mean PSNR of each model (column -> name or path) over the ground-truth windows of scene `base`
    (BASE.npy, BASE-gt.npz); a pixel gain map saved beside adapted weights is applied, as the stream does."""
    from ..pixel_gain import gain_beside
    from ..runtime import load_model

    frames = np.load(f"{base}.npy", mmap_mode="r")
    gt = np.load(f"{base}-gt.npz")
    half = WINDOW // 2
    out = {}
    for column, spec in models.items():
        model = load_model(spec, "cpu", threads=2)
        gain = gain_beside(spec, *frames.shape[1:])
        gain = 1.0 if gain is None else gain
        out[column] = float(np.mean([psnr(rate_to_intensity(model(np.array(frames[k - half:k + half + 1])) / gain,
                                                          float(gt["rate_gain"])), truth)
                                   for k, truth in zip(gt["frames"], gt["gt"])]))
    return out


def stream_numbers(log_text: str) -> dict:
    """fps, dropped frames and adaptation counters from an `ssml-stream --adapt` run's output."""
    summary = re.search(r"summary: frames in (\d+), frames dropped (\d+), windows out (\d+), fps ([\d.]+)", log_text)
    adapt = re.search(r"adapt: (\d+) steps, (\d+) swaps, (\d+) poisoned", log_text)
    if not (summary and adapt):
        raise ConfigError("no summary and adaptation lines in the stream's output: did the run finish?")
    return {"frames_in": int(summary[1]), "dropped": int(summary[2]), "windows_out": int(summary[3]),
            "fps": float(summary[4]), "steps": int(adapt[1]), "swaps": int(adapt[2]), "poisoned": int(adapt[3])}


def table(record: dict) -> str:
    lines = ["| scene | before | after | delta | TFP41 | TFI | steps / swaps | fps during adaptation | dropped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in record.items():
        p, s = e["psnr"], e.get("stream", {})
        lines.append(f"| {name}: {e['scene']} | {p['before']:.2f} | {p['after']:.2f} | {p['after'] - p['before']:+.2f} "
                     f"| {p['TFP41']:.2f} | {p['TFI']:.2f} | {s.get('steps', '-')} / {s.get('swaps', '-')} "
                     f"| {s.get('fps', '-')} | {s.get('dropped', '-')} |")
    return "\n".join(lines)


@cli_entry("adapt_check")
def main(argv=None) -> int:
    p = OneLineParser(prog="python -m ssml_stream.train.adapt_check", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write SCENE.npy and SCENE-gt.npz for each scene")
    r.add_argument("folder", type=Path)
    r.add_argument("--scenes", nargs="+", choices=list(SCENES), default=list(SCENES))
    r.add_argument("--frames", type=int, default=4000)
    r.add_argument("--size", type=int, nargs=2, default=SIZE, metavar=("H", "W"))
    s = sub.add_parser("score", help="mean PSNR of models over a scene's ground-truth windows")
    s.add_argument("scene", help="FOLDER/SCENE, as written by render")
    s.add_argument("adapted", help="the weights --adapt-save wrote")
    s.add_argument("--before", default="ssml-rt", help="the network the run started from (default ssml-rt)")
    s.add_argument("--key", help="the entry's name in --record (default: the scene's)")
    s.add_argument("--log", type=Path, help="the ssml-stream --adapt run's output: fps, dropped, steps, swaps")
    s.add_argument("--record", type=Path, help="JSON file to add this scene's entry to")
    t = sub.add_parser("table", help="the markdown table of a --record file")
    t.add_argument("record", type=Path)
    args = p.parse_args(argv)
    if args.command == "render":
        render(args.folder, args.scenes, args.frames, tuple(args.size))
    elif args.command == "table":
        print(table(json.loads(args.record.read_text())))
    else:
        models = {"before": args.before, "after": args.adapted, "TFP41": "tfp", "TFI": "tfi"}
        entry = {"scene": str(np.load(f"{args.scene}-gt.npz")["spec"]), "models": models,
                 "psnr": score(args.scene, models)}
        if args.log:
            entry["stream"] = stream_numbers(args.log.read_text())
        print(json.dumps(entry, indent=1))
        if args.record:
            record = json.loads(args.record.read_text()) if args.record.exists() else {}
            record[args.key or Path(args.scene).name] = entry
            args.record.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
