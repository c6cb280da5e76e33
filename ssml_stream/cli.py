"""`ssml-sim`, `ssml-record`, `ssml-info`: simulate, record and inspect spike files: `.dat`, and `.npy`/`.npz`
arrays (docs/formats.md)."""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

from .cli_common import (OneLineParser, check_output_path, cli_entry, int_at_least, nonneg_float, nonneg_int,
                         positive_float, positive_int, say, speed, stop_signals)
from .errors import ConfigError
from .arrays import SpikeArray
from .formats import DEFAULT_RATE_HZ, RATE_GAIN, DatWriter, FrameGeometry, open_writer, read_spikes, stored_width_for


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated frame indices, got {text!r}") from None


def _parser(prog: str, description: str, examples: str) -> OneLineParser:
    return OneLineParser(prog=prog, description=description, epilog="examples:\n" + examples,
                         formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_geometry(p: argparse.ArgumentParser, stored: bool = True) -> None:
    p.add_argument("--height", type=positive_int, default=250, help="frame height (default 250)")
    p.add_argument("--width", type=positive_int, default=400, help="frame width (default 400)")
    if stored:
        p.add_argument("--stored-width", type=nonneg_int, default=0, metavar="W",
                       help="columns per stored row, e.g. 416 for raw captures (default: --width)")
    p.add_argument("--rate", type=positive_float, default=DEFAULT_RATE_HZ, metavar="HZ",
                   help="camera frame rate (default 40000)")


# ------------------------------------------------------------------------------------------------ ssml-sim

SIM_EXAMPLES = """  ssml-sim out.dat                                   # 0.5 s of the 'shapes' scene, ground truth in out.npz
  ssml-sim spin.dat --scene spin --frames 4001 --gt-frames 2000
  ssml-sim photo.dat --scene photo.jpg --seconds 1 --gt-every 1000
  ssml-sim noisy.dat --scene traffic --dark-rate 0.002 --threshold-sigma 0.05 --photons-per-spike 50 --seed 3
  ssml-sim small.dat --height 64 --width 96 --frames 2000"""


SIM_CHUNK_BYTES = 64 << 20  # packed frames simulated per step


def _sim_parser() -> OneLineParser:
    from .drivers.sim import DEFAULT_KEY_HZ, SCENES
    p = _parser("ssml-sim", "Simulate an integrate-and-fire spiking camera: write a .dat and ground-truth "
                            "intensity (.npz with frames, intensity, rate_gain).", SIM_EXAMPLES)
    p.add_argument("out", metavar="OUT.dat", help="spike file to write")
    p.add_argument("--scene", default="shapes",
                   help=f"built-in scene ({', '.join(SCENES)}), an image or a video path (default shapes)")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--frames", type=positive_int, help="number of spike frames")
    n.add_argument("--seconds", type=positive_float, help="stream time to simulate (default 0.5)")
    p.add_argument("--start-frame", type=nonneg_int, default=0, help="first frame index of the scene (default 0)")
    _add_geometry(p, stored=False)
    p.add_argument("--rate-gain", type=positive_float, default=RATE_GAIN,
                   help=f"spikes per frame at intensity 1 (default {RATE_GAIN})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--key-hz", type=positive_float, default=DEFAULT_KEY_HZ,
                   help=f"scene key frames per second, interpolated in between (default {DEFAULT_KEY_HZ:g})")
    p.add_argument("--period", type=positive_float, default=0.5, metavar="S",
                   help="motion period of procedural scenes and image motion (default 0.5)")
    noise = p.add_argument_group("noise (all off by default)")
    noise.add_argument("--dark-rate", type=nonneg_float, default=0.0, help="dark current, spikes per frame")
    noise.add_argument("--threshold-sigma", type=nonneg_float, default=0.0,
                       help="fixed-pattern threshold variation (relative std)")
    noise.add_argument("--photons-per-spike", type=nonneg_float, default=0.0,
                       help="Poisson photon noise with this many photons per threshold (0 = off)")
    gt = p.add_argument_group("ground truth")
    g = gt.add_mutually_exclusive_group()
    g.add_argument("--gt-frames", type=_int_list, metavar="I,J,...",
                   help="frame indices (0-based in OUT.dat) to save intensity for (default: the middle frame)")
    g.add_argument("--gt-every", type=positive_int, metavar="N", help="save the intensity of every N-th frame")
    gt.add_argument("--gt", metavar="PATH.npz", help="ground-truth file (default: OUT with .npz)")
    return p


@cli_entry("ssml-sim")
def sim_main(argv=None) -> int:
    from .drivers.pacing import check_rate
    from .drivers.sim import SimConfig, SimNoise, Simulator
    from .pipeline import check_buffer_bytes, npz_path
    args = _sim_parser().parse_args(argv)
    n_frames = args.frames or max(1, int(round((args.seconds or 0.5) * args.rate)))
    if args.gt_every:
        gt_frames = list(range(0, n_frames, args.gt_every))
    elif args.gt_frames is not None:
        gt_frames = args.gt_frames
    else:
        gt_frames = [n_frames // 2]
    bad = [g for g in gt_frames if not 0 <= g < n_frames]
    if bad:
        raise ConfigError(f"--gt-frames {bad[0]} is outside the {n_frames} simulated frames (0..{n_frames - 1})")
    gt_path = npz_path(args.gt or os.path.splitext(args.out)[0])
    check_rate(args.rate)
    frame_bytes = FrameGeometry(args.height, args.width).frame_bytes
    check_buffer_bytes(len(gt_frames) * args.height * args.width * 4,
                       f"ground truth for {len(gt_frames)} frame(s) of {args.height}x{args.width}")
    check_output_path(args.out, "spike file", inputs=[args.scene], size=n_frames * frame_bytes)
    check_output_path(gt_path, "ground truth", inputs=[args.scene], others=[args.out])
    noise = SimNoise(args.dark_rate, args.threshold_sigma, args.photons_per_spike)
    t0 = time.perf_counter()
    config = SimConfig(args.height, args.width, args.rate, args.rate_gain, args.seed, noise, args.key_hz, args.period,
                       args.start_frame)
    sim = Simulator(args.scene, config, duration_s=n_frames / args.rate)
    chunk = max(1, min(4096, SIM_CHUNK_BYTES // frame_bytes))
    buf = np.empty((chunk, frame_bytes), np.uint8)
    gt_idx, gt_img = [], []
    spikes = 0
    signals: list[int] = []
    with DatWriter(args.out, args.height, args.width) as writer, stop_signals(lambda s, _f: signals.append(s)):
        for start in range(0, n_frames, chunk):
            if signals:  # stop between chunks: the file ends on a whole frame, ground truth so far is kept
                n_frames = start
                break
            k = min(chunk, n_frames - start)
            local = [g - start for g in gt_frames if start <= g < start + k]
            res = sim.run(k, out=buf[:k], gt_frames=local)
            writer.write_packed(res.packed)
            spikes += int(np.bitwise_count(res.packed).sum(dtype=np.int64))
            for g in sorted(res.gt):
                gt_idx.append(start + g)
                gt_img.append(res.gt[g])
    order = np.argsort(gt_idx, kind="stable")
    np.savez_compressed(gt_path, frames=np.asarray(gt_idx, np.int64)[order],
                        intensity=np.asarray(gt_img, np.float32).reshape(-1, args.height, args.width)[order],
                        rate_gain=np.float32(args.rate_gain), rate_hz=np.float64(args.rate),
                        start_frame=np.int64(args.start_frame), scene=np.str_(args.scene), seed=np.int64(args.seed))
    rate = spikes / max(1, n_frames * args.height * args.width)
    print(f"ssml-sim: wrote {n_frames} frames of {args.height}x{args.width} ({n_frames / args.rate:.3f} s) to "
          f"{args.out}, mean firing rate {rate:.4f}; ground truth for {len(gt_idx)} frame(s) in {gt_path} "
          f"({time.perf_counter() - t0:.1f} s){' (interrupted)' if signals else ''}")
    return 130 if signals else 0


# ------------------------------------------------------------------------------------------------ ssml-record

RECORD_EXAMPLES = """  ssml-record tcp://192.168.1.20:7000 capture.dat --seconds 10
  ssml-record fifo:/tmp/camera.fifo capture.dat          # until the writer closes, or Ctrl-C
  camera-sdk-dump | ssml-record - capture.dat
  ssml-record sim:spin spin.dat --seconds 2               # simulated camera, lossless
  ssml-record file:rec.dat copy.dat --frames 1000         # lossless copy of the first 1000 frames
  ssml-record spikes.npz spikes.npy                       # array (any frame size) -> .npy, N x H x W uint8
  ssml-record rec.dat rec.npy                             # .dat -> .npy"""


def _record_parser() -> OneLineParser:
    p = _parser("ssml-record", "Record a spike source to a .dat file (packed) or a .npy file (N x H x W uint8, "
                               "any frame size); reports frames written and dropped. Ctrl-C stops, flushes and "
                               "exits 0.", RECORD_EXAMPLES)
    p.add_argument("device", metavar="URI", help="sim[:SCENE], file:PATH, PATH.dat, PATH.npy, PATH.npz, /dev/NODE, "
                                                 "fifo:PATH, tcp://HOST:PORT or - (stdin)")
    p.add_argument("out", metavar="OUT.dat|OUT.npy", help="a .npy name writes an array, any other a .dat file")
    n = p.add_mutually_exclusive_group()
    n.add_argument("--seconds", type=positive_float, help="stop after this much stream time")
    n.add_argument("--frames", type=positive_int, help="stop after this many frames")
    p.add_argument("--speed", type=speed, default=None, metavar="max|X",
                   help="replay pace for file and sim sources (default max = lossless)")
    p.add_argument("--loop", action="store_true", help="loop a file source (with --seconds/--frames)")
    p.add_argument("--allow-truncated", action="store_true", help="ignore a partial last frame")
    p.add_argument("--ring-frames", type=int_at_least(2), default=8192,
                   help="ring capacity for live sources (frames, default 8192)")
    _add_geometry(p)
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    return p


@cli_entry("ssml-record")
def record_main(argv=None) -> int:
    from .drivers import DriverOptions, open_driver
    from .drivers.pacing import check_rate
    from .pipeline import SilenceWatch, check_buffer_bytes, device_paths
    from .ring import Ring
    args = _record_parser().parse_args(argv)
    duration_s = args.seconds if args.seconds else (args.frames / args.rate if args.frames else None)
    opts = DriverOptions(height=args.height, width=args.width, stored_width=args.stored_width, rate_hz=args.rate,
                         speed=args.speed, loop=args.loop, allow_truncated=args.allow_truncated, seed=args.seed,
                         duration_s=duration_s)
    if args.loop and duration_s is None:
        raise ConfigError("--loop needs --seconds or --frames, or the recording never ends")
    check_rate(args.rate)
    frame_bytes = FrameGeometry(args.height, args.width, args.stored_width).frame_bytes
    check_buffer_bytes(args.ring_frames * frame_bytes, f"a ring of {args.ring_frames} frames of {frame_bytes} bytes")
    check_output_path(args.out, "recording", inputs=device_paths(args.device))
    stop = threading.Event()
    signals: list[int] = []
    ring = None

    def on_signal(signum, _frame):
        # never raises once recording: the loop below ends on a whole frame after writing what was captured
        signals.append(signum)
        stop.set()
        if ring is None:
            if len(signals) > 1:
                raise KeyboardInterrupt  # still opening the source: nothing captured yet
            return
        ring.close()  # wakes a lossless producer waiting for room
        if len(signals) == 2:
            say("ssml-record", "already stopping; writing out the frames already captured")

    with stop_signals(on_signal):
        driver = open_driver(args.device, opts)
        info = driver.info
        stored_width = stored_width_for(info.height, info.width, info.frame_bytes)
        ring = Ring(info.frame_bytes, capacity=args.ring_frames if info.live else 4096, lossless=not info.live)
        if stop.is_set():
            ring.close()
        cursor = ring.cursor()
        failure: list[BaseException] = []

        def produce():
            try:
                driver.run(ring, stop)
            except BaseException as e:  # re-raised in the main thread
                failure.append(e)
            finally:
                ring.close()

        producer = threading.Thread(target=produce, name="ssml-record-driver", daemon=True)
        buf = np.empty((1024, info.frame_bytes), np.uint8)
        silence = SilenceWatch(info.name, lambda m: say("ssml-record", m)) if info.live else None
        t0 = time.perf_counter()
        with open_writer(args.out, info.height, info.width, stored_width) as writer:
            producer.start()
            while True:
                cursor.wait(1, timeout=0.1)
                _, count = cursor.read(buf)
                if count:
                    writer.write_packed(buf[:count])
                elif ring.closed and cursor.available == 0:
                    break
                if silence is not None:
                    silence.check(ring.head)
            written = writer.frames_written
        producer.join(2.0)
        driver.close()
    interrupted = bool(signals)
    if failure and not interrupted:
        raise failure[0]
    elapsed = time.perf_counter() - t0
    end = getattr(driver, "end_reason", "")
    print(f"ssml-record: {written} frames written to {args.out} ({written / args.rate:.3f} s at {args.rate:g} Hz), "
          f"{cursor.dropped} dropped, {elapsed:.1f} s{' (interrupted)' if interrupted else ''}"
          f"{'; ' + end if end else ''}")
    return 0


# ------------------------------------------------------------------------------------------------ ssml-info

INFO_EXAMPLES = """  ssml-info rec.dat
  ssml-info spikes.npy                                   # arrays carry their own frame size
  ssml-info capture.dat --height 250 --width 400 --stored-width 416
  ssml-info big.dat --height 1000 --width 1000 --rate 20000"""


@cli_entry("ssml-info")
def info_main(argv=None) -> int:
    p = _parser("ssml-info", "Frames, duration, mean firing rate and size of a .dat spike file or a .npy/.npz "
                             "spike array (which carries its own size: --height/--width/--stored-width apply to "
                             ".dat files).", INFO_EXAMPLES)
    p.add_argument("path", metavar="FILE.dat|FILE.npy|FILE.npz")
    _add_geometry(p)
    p.add_argument("--allow-truncated", action="store_true", help="ignore a partial last frame")
    p.add_argument("--rate-gain", type=positive_float, default=RATE_GAIN,
                   help=f"firing rate at intensity 1, for the mean intensity line (default {RATE_GAIN})")
    args = p.parse_args(argv)
    spikes = read_spikes(args.path, args.height, args.width, stored_width=args.stored_width,
                         allow_truncated=args.allow_truncated)
    with spikes:
        n = len(spikes)
        g: FrameGeometry = spikes.geometry
        total = _count_spikes(spikes)
        rate = total / (n * g.height * g.width)
        size = os.path.getsize(spikes.path)
        if isinstance(spikes, SpikeArray):
            layout, ignored = f", {spikes.frames.dtype} array ({spikes.source})", ""
        else:
            layout = ((f" (stored {g.stored_width} wide)" if g.stored_width != g.width else "")
                      + f", {g.frame_bytes} bytes each")
            ignored = f", {spikes.truncated_bytes} trailing bytes ignored" if spikes.truncated_bytes else ""
        lines = [
            f"file            {spikes.path}",
            f"frames          {n} of {g.height}x{g.width}{layout}",
            f"duration        {n / args.rate:.6g} s at {args.rate:g} Hz",
            f"mean firing     {rate:.4f} spikes per pixel per frame (intensity ~ {rate / args.rate_gain:.3f} "
            f"at rate gain {args.rate_gain:g})",
            f"size            {size:,} bytes ({size / 2**20:.1f} MiB){ignored}",
        ]
    print("\n".join(lines))
    return 0


def _count_spikes(spikes, chunk: int = 4096) -> int:
    """Spikes in the file's visible columns (extra stored columns are not counted); reading an array
    this way also checks all its values."""
    g = spikes.geometry
    total = 0
    if g.stored_width == g.width:
        for start in range(0, len(spikes), chunk):
            total += int(np.bitwise_count(np.asarray(spikes.packed[start:start + chunk])).sum(dtype=np.int64))
        return total
    buf = np.empty((chunk, g.height, g.width), np.uint8)
    for start in range(0, len(spikes), chunk):
        k = min(chunk, len(spikes) - start)
        spikes.read(start, start + k, buf[:k])
        total += int(buf[:k].sum(dtype=np.int64))
    return total


if __name__ == "__main__":  # pragma: no cover
    sys.exit(info_main())
