"""`ssml-train`: self-supervised SSML training (BSN + NBSN mutual learning) on spike recordings."""
from __future__ import annotations

import argparse
import shlex
import signal
import sys

from ..cli_common import OneLineParser, cli_entry, stop_signals

EXAMPLES = """examples:
  # rt NBSN on the REDS_BASE train files plus three simulated scenes, at most 55 minutes
  ssml-train ../shared/data/reds_base/train --sim shapes --sim spin --sim traffic \\
      --nbsn rt --steps 3000 --max-minutes 55 --threads 1 --run-dir runs/rt

  # full NBSN, resumed from its last checkpoint
  ssml-train ../shared/data/reds_base/train --nbsn full --steps 20000 --run-dir runs/full --resume

  # fine-tune the shipped rt NBSN (and its BSN) on your own camera's recordings for 20 minutes;
  # writes runs/mine/adapted.pt, then: ssml-stream --model runs/mine/adapted.pt
  ssml-train my_recordings/ --init ssml --lr 1e-4 --max-minutes 20 --run-dir runs/mine

  # rt NBSN distilled from a trained full NBSN
  ssml-train data/ --nbsn rt --distill-from runs/full/best.pt --run-dir runs/rt-distill

  # two CPU processes (DDP, gloo)
  torchrun --nproc-per-node 2 -m ssml_stream.train.cli data/ --steps 1000 --run-dir runs/ddp
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="ssml-train", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="*", help=".dat/.npy/.npz spike files or folders of them (searched recursively); "
                   "a sibling NAME.png is ground truth at --gt-frame, used for validation only")
    p.add_argument("--sim", action="append", default=[], metavar="SPEC",
                   help="simulated stream: built-in scene name, image or video path (repeatable)")
    p.add_argument("--nbsn", choices=["full", "rt"],
                   help="which non-blind network to train (default: full, or the one --init holds)")
    p.add_argument("--init", metavar="NAME|PATH",
                   help="fine-tune: start both networks from weights (ssml, ssml-full, a weights file; the BSN "
                        "from NAME-bsn.pt beside it) or a checkpoint; writes RUN_DIR/adapted.pt at the end")
    p.add_argument("--run-dir", default="runs/ssml", help="folder for checkpoints, log.jsonl, curves.png")
    p.add_argument("--steps", type=int, default=10_000, help="optimiser steps (cosine schedule length)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="time budget: stop (with the schedule fully annealed) after this many minutes")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=40, help="training crop size (pixels, multiple of 4)")
    p.add_argument("--mutual-weight", type=float, default=0.01, help="weight of MSE(NBSN, BSN)")
    p.add_argument("--distill-from", action="append", default=[], metavar="CKPT_OR_WEIGHTS",
                   help="a trained network (checkpoint, weights file or name) as an extra, frozen teacher; repeatable")
    p.add_argument("--distill-rates", action="append", default=[], metavar="LO,HI[;LO,HI...]",
                   help="one per --distill-from, in order: that teacher teaches only crops whose mean firing rate "
                        "lies in one of these ranges (where it is trusted); a crop goes to the first teacher that "
                        "takes it")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of MSE(NBSN, teacher)")
    p.add_argument("--val-every", type=int, default=250, help="validate (PSNR/SSIM) every N steps")
    p.add_argument("--val-crop", type=int, default=0, help="validate on a centred crop (0 = full frames)")
    p.add_argument("--ckpt-every", type=int, default=0, help="checkpoint every N steps (0 = at validation)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0 = default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", default="bf16", choices=["bf16", "off"],
                   help="bf16: forward under bfloat16 autocast (about 4x faster on AVX512-BF16 CPUs); off: fp32")
    p.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                   help="continue from CKPT (default: RUN_DIR/last.pt)")
    p.add_argument("--height", type=int, default=250, help=".dat frame height")
    p.add_argument("--width", type=int, default=400, help=".dat frame width")
    p.add_argument("--stored-width", type=int, default=0, help="columns stored per row (e.g. 416), 0 = width")
    p.add_argument("--gt-frame", type=int, default=150,
                   help="frame index that a .dat's NAME.png ground truth shows (REDS_BASE: 150)")
    p.add_argument("--sim-frames", type=int, default=301, help="frames per simulated clip")
    p.add_argument("--sim-size", default="250x400", help="simulated frame size HxW")
    p.add_argument("--sim-clips", type=int, default=1, help="clips per --sim spec (later stretches of the scene)")
    p.add_argument("--worlds", type=int, default=0, metavar="N",
                   help="add N random simulated clips: natural-statistics textures, motion, light levels, sensor faults")
    p.add_argument("--worlds-hard", type=int, default=0, metavar="N",
                   help="add N clips of fast motion or strong photon noise; with --distill-from their crops "
                        "learn from the BSN instead of the teachers")
    p.add_argument("--world-texture", action="append", default=[], metavar="IMAGE",
                   help="an image used as a world texture besides the procedural ones (repeatable)")
    p.add_argument("--label", choices=["adaptive", "tfi"], default="adaptive",
                   help="pseudo-label: adaptive (TFI where bright, spike count where dark) or tfi (the paper's)")
    p.add_argument("--no-light-weighting", action="store_true",
                   help="plain MSE instead of weighing each crop by 1 / its mean firing rate")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]):
    from ..errors import ConfigError
    from .loop import TrainConfig

    try:
        sim_h, sim_w = (int(v) for v in args.sim_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--sim-size {args.sim_size!r}: use HxW, e.g. 250x400") from None
    distill_rates = []
    for spec in args.distill_rates:
        try:
            ranges = tuple(tuple(float(v) for v in part.split(",")) for part in spec.split(";"))
        except ValueError:
            ranges = ((),)
        if any(len(r) != 2 for r in ranges):
            raise ConfigError(f"--distill-rates {spec!r}: use LO,HI or LO,HI;LO,HI, e.g. 0,0.08;0.7,1")
        distill_rates.append(ranges)
    if distill_rates and len(distill_rates) != len(args.distill_from):
        raise ConfigError(f"--distill-rates: give one per --distill-from ({len(args.distill_from)}), "
                          f"got {len(distill_rates)}")
    return TrainConfig(
        run_dir=args.run_dir, dat=list(args.data), sim=list(args.sim), nbsn=args.nbsn, steps=args.steps,
        max_minutes=args.max_minutes, lr=args.lr, batch_size=args.batch_size, crop=args.crop,
        mutual_weight=args.mutual_weight, distill_from=tuple(args.distill_from) or None, distill_weight=args.distill_weight,
        distill_rates=tuple(distill_rates) or None,
        val_every=args.val_every, val_crop=args.val_crop, ckpt_every=args.ckpt_every, log_every=args.log_every,
        seed=args.seed, threads=args.threads, amp=args.amp, device=args.device, resume=args.resume, init=args.init,
        height=args.height,
        width=args.width, stored_width=args.stored_width, gt_frame=args.gt_frame, sim_frames=args.sim_frames, sim_height=sim_h,
        sim_width=sim_w, sim_clips=args.sim_clips, worlds=args.worlds, worlds_hard=args.worlds_hard,
        world_textures=list(args.world_texture), label=args.label, light_weighting=not args.no_light_weighting, progress=not args.no_progress,
        command="ssml-train " + shlex.join(argv))


@cli_entry("ssml-train")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not args.data and not args.sim and not args.worlds and not args.worlds_hard:
        build_parser().error("give training data: .dat files/folders and/or --sim SCENE")
    from .loop import Trainer

    # SIGTERM as Ctrl-C (also when started in the background, where SIGINT comes in ignored): the run ends
    # with "interrupted", exit 130; checkpoints are written atomically, so last.pt stays whole
    with stop_signals(signal.default_int_handler):
        trainer = Trainer(config_from_args(args, argv))
        try:
            result = trainer.run()
        finally:
            trainer.close()
    if trainer.dist.is_main:
        val = result["last_val"] or {}
        print(f"ssml-train: {result['step']} steps in {result['elapsed_s'] / 60:.1f} min"
              + (" (time budget reached)" if result["stopped_by_time"] else "")
              + (f"; val PSNR BSN {val['psnr_bsn']:.2f} dB, NBSN {val['psnr_nbsn']:.2f} dB" if val and val["windows"]
                 else "; no ground truth for validation")
              + f"; checkpoints in {result['run_dir']}"
              + (f"; weights (--model) {result['adapted']}" if "adapted" in result else ""))
    return 0


if __name__ == "__main__":  # torchrun -m ssml_stream.train.cli
    main()
