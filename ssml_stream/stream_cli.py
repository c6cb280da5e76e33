"""`ssml-stream`: spike source -> reconstruction -> ZeroMQ viewers / files (docs/architecture.md)."""
from __future__ import annotations

import argparse

from .cli_common import (OneLineParser, cli_entry, nonneg_int, positive_float, positive_int, say, speed,
                         stop_signals)
from .display import DEFAULT_RATE_NORM
from .errors import ConfigError
from .pipeline import DEFAULT_ENDPOINT, FORMATS, Pipeline, PipelineConfig
from .viewer import ViewerProcess

PROG = "ssml-stream"

EXAMPLES = f"""examples:
  ssml-stream --device sim --model ssml-rt                    # live simulated camera, viewers on {DEFAULT_ENDPOINT}
  ssml-stream --device sim:shapes --model tfp --fps 60 --view # with a viewer window
  ssml-stream --device file:rec.dat --model tfp --speed max --stride 10 --save out.npz   # offline, every 10th window
  ssml-stream --device rec.dat --speed 1 --loop --publish ipc:///tmp/ssml.ipc
  ssml-stream --device tcp://127.0.0.1:7000 --model model.pt --record copy.dat --duration 60
  ssml-stream --device /dev/spike0 --model ssml-rt --adapt --adapt-save mine.pt   # the camera keeps teaching its network

modes: a live source (camera, sim, file at --speed N) is reconstructed at --fps (default 30) from the newest
complete window; windows it cannot keep up with are skipped and counted, the source is never slowed.
--stride N without --fps, or a file at --speed max, reconstructs every N-th window, nothing skipped.
Ctrl-C / SIGTERM stop within 2 s, flush --save/--record and exit 0."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Reconstruct images from a spiking camera stream, live or offline.",
                      epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source")
    src.add_argument("--device", default="sim", metavar="URI",
                     help="sim, sim:SCENE, sim:IMAGE_OR_VIDEO, file:PATH.dat, PATH.dat, /dev/NODE, fifo:PATH, "
                          "tcp://HOST:PORT or - (default: sim)")
    src.add_argument("--speed", type=speed, default=1.0, metavar="1|max",
                     help="file replay pace x camera rate, or max = lossless as fast as consumed (default 1)")
    src.add_argument("--loop", action="store_true", help="replay the file forever")
    src.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds of stream time")
    src.add_argument("--height", type=positive_int, default=250, help="frame height (default 250)")
    src.add_argument("--width", type=positive_int, default=400, help="frame width (default 400)")
    src.add_argument("--stored-width", type=nonneg_int, default=0, metavar="W",
                     help="columns per stored row, e.g. 416 for raw captures (default: --width)")
    src.add_argument("--rate", type=positive_float, default=40_000.0, metavar="HZ",
                     help="camera frame rate (default 40000)")
    src.add_argument("--allow-truncated", action="store_true", help="ignore a partial last frame in a .dat file")
    src.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")

    rec = p.add_argument_group("reconstruction")
    rec.add_argument("--model", default="ssml-rt", metavar="NAME|PATH",
                     help="tfp, tfi, ssml-rt (shipped real-time network; ssml also accepted), ssml-duo (two rt networks "
                          "and a motion gate: better on fast motion and photon noise, half the frame rate), ssml-full, "
                          "or a TorchScript .pt / torch.export .pt2 / weights file (default ssml-rt)")
    rec.add_argument("--window", type=positive_int, default=41, metavar="N", help="window length, odd (default 41)")
    rate = rec.add_mutually_exclusive_group()
    rate.add_argument("--stride", type=positive_int, metavar="N",
                      help="reconstruct every window on the grid window//2 + k*N (lossless, nothing skipped)")
    rate.add_argument("--fps", type=positive_float, metavar="F",
                      help="live output rate: newest window F times a second (default 30)")
    rec.add_argument("--compute", choices=("auto", "cpu", "cuda"), default="auto",
                     help="torch device (auto = cuda when available)")
    rec.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                     help="auto = fp16 on CUDA, fp32 on CPU; bf16 = CPU autocast (faster, slightly different)")
    rec.add_argument("--threads", type=positive_int, metavar="N",
                     help="torch CPU threads (default: cores - 1, so capture keeps a core)")

    out = p.add_argument_group("output")
    out.add_argument("--publish", action="append", metavar="ENDPOINT",
                     help=f"ZeroMQ PUB endpoint, repeatable (default {DEFAULT_ENDPOINT})")
    out.add_argument("--no-publish", action="store_true", help="do not open a publisher")
    out.add_argument("--curve-keys", metavar="DIR",
                     help="encrypt with ZeroMQ CURVE, admit only viewers authorised in DIR (create with ssml-keys)")
    out.add_argument("--format", choices=FORMATS, default="u1",
                     help="u1 = display-ready 8-bit, f4/f2 = firing rate (default u1)")
    out.add_argument("--gamma", type=positive_float, default=1.0, help="gamma for u1 frames (default 1)")
    out.add_argument("--rate-norm", type=positive_float, default=DEFAULT_RATE_NORM, metavar="R",
                     help=f"firing rate shown as white in u1 frames (default {DEFAULT_RATE_NORM})")
    out.add_argument("--save", metavar="OUT.npz", help="write frames (N x H x W float32 firing rate) and center (N)")
    out.add_argument("--record", metavar="OUT.dat", help="also record every packed spike frame to a .dat file")
    out.add_argument("--view", action="store_true", help="start ssml-view on the first endpoint as well")
    out.add_argument("--quiet", action="store_true", help="no status lines (the summary is still printed)")

    adapt = p.add_argument_group("online adaptation (self-supervised, in a background thread)")
    adapt.add_argument("--adapt", action="store_true",
                       help="keep training the network on the live spikes; improved weights replace the running "
                            "ones only when their loss on held-out windows of the stream is lower")
    adapt.add_argument("--adapt-lr", type=positive_float, metavar="LR", help="learning rate (default 1e-4)")
    adapt.add_argument("--adapt-every", type=positive_float, metavar="S",
                       help="seconds between held-out checks, i.e. possible swaps (default 10)")
    adapt.add_argument("--adapt-save", metavar="OUT.pt",
                       help="weights file rewritten at every swap and at exit (loads with --model OUT.pt; "
                            "the BSN is saved beside it as OUT-bsn.pt)")
    return p


def adapt_options(args: argparse.Namespace) -> dict | None:
    """--adapt* flags as PipelineConfig.adapt (None without --adapt)."""
    given = {"lr": args.adapt_lr, "every_s": args.adapt_every, "save_path": args.adapt_save}
    if not args.adapt:
        if any(v is not None for v in given.values()):
            raise ConfigError("--adapt-lr, --adapt-every and --adapt-save need --adapt")
        return None
    return {k: v for k, v in given.items() if v is not None}


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The one place command-line arguments become a PipelineConfig."""
    if args.no_publish and (args.publish or args.view or args.curve_keys):
        raise ConfigError("--no-publish cannot be combined with --publish, --view or --curve-keys")
    publish = [] if args.no_publish else (args.publish or [DEFAULT_ENDPOINT])
    return PipelineConfig(
        device=args.device, model=args.model, window_frames=args.window, stride_frames=args.stride,
        fps=args.fps, duration_s=args.duration, speed=args.speed, loop=args.loop, save_path=args.save,
        record_path=args.record, publish=publish, fmt=args.format, gamma=args.gamma, rate_norm=args.rate_norm,
        curve_keys=args.curve_keys,
        compute=args.compute, precision=args.precision, threads=args.threads, height=args.height,
        width=args.width, stored_width=args.stored_width, allow_truncated=args.allow_truncated,
        rate_hz=args.rate, seed=args.seed, status_interval_s=None if args.quiet else 1.0,
        adapt=adapt_options(args)).validate()


class StopOnSignal:
    """SIGINT/SIGTERM: the first stops the pipeline, which writes out everything captured and
    reconstructed so far (exit 0), also when it arrives while the pipeline is still being built. Once
    the pipeline exists, later signals only say that it is stopping: interrupting the stop would cut
    --record/--save files short and lose frames already computed, and the stop itself is bounded (about
    2 s; --save finishes in milliseconds, see ssml_stream.npzstream). Before that (model load, simulator
    pre-render: nothing computed yet) a second signal interrupts at once (exit 130)."""

    def __init__(self):
        self.pipeline: Pipeline | None = None
        self.signals: list[int] = []

    def handle(self, signum, _frame):
        self.signals.append(signum)
        if self.pipeline is None:
            if len(self.signals) > 1:
                raise KeyboardInterrupt
        elif len(self.signals) == 1:
            self.pipeline.stop()
        elif len(self.signals) == 2:
            say(PROG, "already stopping; writing out what was captured (a few seconds at most)")

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        if self.signals:
            pipeline.stop()


@cli_entry(PROG)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    stopper = StopOnSignal()
    with stop_signals(stopper.handle):
        pipeline = Pipeline(config)
        stopper.attach(pipeline)
        if pipeline.publisher is not None:
            encrypted = " (CURVE)" if pipeline.publisher.encrypted else ""
            print(f"{PROG}: publishing on {' '.join(pipeline.publisher.endpoints)}{encrypted}", flush=True)
        viewer = None
        try:
            if args.view and not stopper.signals:
                keys = ["--curve-keys", config.curve_keys] if config.curve_keys else []
                # closing the viewer window (q / Esc) ends the run as well
                viewer = ViewerProcess(pipeline.publisher.endpoints[0], *keys, on_exit=pipeline.stop)
            pipeline.run()
            if viewer is not None and viewer.proc.poll():
                return 2  # the viewer could not run (it printed why, e.g. no display)
        finally:
            pipeline.close()
            if viewer is not None:
                viewer.stop(wait_s=2)
    return 0


if __name__ == "__main__":
    main()
