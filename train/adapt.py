"""Online adaptation: a deployed camera keeps teaching its own network while it streams (`--adapt`).

SSML needs no ground truth, so the spikes the camera sees are training data. An `Adapter` works in
one background thread with one torch thread (on CUDA, on a CUDA stream of its own, so that inference
kernels do not queue behind its kernels; that stream is synchronised before a swap):

1. every `sample_every_s` it copies the newest frames out of the ring, whether or not the pipeline
   displays them, through a cursor the ring does not know about: the producer never waits for it,
   not even in a lossless ring. The window is unpacked and cut into `crops_per_window` random
   crops, kept in a pool of the most recent `pool_crops`;
2. the first `holdout_windows` samples are held out instead (fixed crops, no augmentation) and
   replaced by fresh ones every `holdout_refresh_s`;
3. it runs SSML steps on random rotated/flipped batches from the pool, as `ssml-train` does:
   BSN on the adaptive label plus the NBSN<->BSN mutual term (`loop.mutual_loss`), light weighting,
   Adam, bf16 autocast. A step whose loss or gradients are not finite is skipped and counted
   (`poisoned`); weights that stop being finite are reset to the live ones;
4. every `every_s` it scores the NBSN on the held-out crops, blind-spot fashion: in each of 9
   passes, every 3rd pixel of every 3rd row (another phase each pass) gets the spikes of a
   neighbour instead of its own, and the NBSN's rate there is compared with the adaptive label of
   its own spikes (light-weighted squared difference, summed over the passes: every pixel once).
   The NBSN never sees the spikes it is scored against, so their noise is independent of its input,
   and the label is sharp in time (TFI at the window's centre where the pixel fired 5 times, else
   its count), so a lower score means a better NBSN even under fast motion. (The firing rate of
   the 82 frames around the window, used first, is blurred by motion: at 0.6 px per frame it
   rejected every candidate while, by ground truth, they had gained 4 dB. A held-out SSML loss would not do
   either: it is dominated by the BSN term, and a BSN that starts from scratch drags the NBSN down
   while that loss falls.) Only a lower score than the live NBSN's, with every weight finite, makes
   a copy of the NBSN a new reconstructor, traced and warmed up on this thread (off the hot path);
   `install` hands it to the pipeline, which swaps one reference between two windows. `save_path`
   is rewritten atomically (NBSN weights, and the BSN beside them as NAME-bsn.pt) at every swap and
   at close;
5. every sampled window also feeds a `PixelGainEstimator` (ssml_stream/pixel_gain.py): the sensor's
   per-pixel gain (fixed pattern), estimated where the scene moves. At every check a map, once there
   is one, goes to the pipeline through `install_gain` (outputs are divided by it) and is saved beside
   the weights as NAME-gain.npy. From then on steps and scores see what the stream shows: the NBSN's
   output and the labels divided by the map (crops remember where they were cut). Without that, the
   NBSN, pulled towards a BSN that cannot see a pixel's own pattern, learns to remove part of it
   itself, and dividing by the map on top over-corrects (measured: -1.5 dB on the threshold-variation
   scene). For the same reason the first step waits for the first decision on a map (100 samples,
   about 10 s). The live NBSN is re-scored whenever the map changes, so a swap compares like with like.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, ModelError
from ..models import bsn_path_for, save_weights
from ..models.features import adaptive_label
from .. import pixel_gain
from ..pixel_gain import PixelGainEstimator, gain_path_for, save_gain_atomic
from ..ring import Cursor
from ..runtime import CLASSICAL, NETWORK_WINDOW_FRAMES, RuntimeOptions, TorchReconstructor
from ..unpack import unpack_into
from .data import dihedral
from .checkpoints import load_init
from .loop import MutualPair, light_weight, mutual_loss

ADAPT_NICE = 10  # the adapter thread's nice value (Linux): live stages stay at the process's own
WINDOW = NETWORK_WINDOW_FRAMES
# the held-out score's 9 passes: pixels [dy::3, dx::3] are scored with the spikes of their neighbour
# at (+oy, +ox) in place of their own (the 8 directions take turns; a neighbour is never scored in its pass)
NEIGHBOURS = ((-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1), (0, 1))
BLIND_PASSES = [(dy, dx, NEIGHBOURS[3 * dy + dx]) for dy in range(3) for dx in range(3)]


@dataclass
class AdaptOptions:
    lr: float = 1e-4
    every_s: float = 10.0            # held-out check (and possible swap) period
    save_path: str | None = None     # weights file rewritten at every swap and at close
    batch_size: int = 4
    crop: int = 40
    sample_every_s: float = 0.1      # one window copied out of the ring this often
    crops_per_window: int = 4
    pool_crops: int = 512            # training crops kept (the most recent)
    holdout_windows: int = 4
    holdout_refresh_s: float = 600.0
    mutual_weight: float = 0.01
    amp: str = "bf16"                # bf16: forward under bfloat16 autocast, as ssml-train; off: fp32
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> "AdaptOptions":
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown adaptation option(s) {', '.join(sorted(unknown))}")
        return cls(**values).validate()

    def validate(self) -> "AdaptOptions":
        for name in ("lr", "every_s", "sample_every_s", "holdout_refresh_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"adaptation {name} must be a positive number, got {value}")
        for name in ("batch_size", "crops_per_window", "holdout_windows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"adaptation {name} must be >= 1, got {getattr(self, name)}")
        if self.crop < 4 or self.crop % 4:
            raise ConfigError(f"adaptation crop {self.crop}: use a multiple of 4 (the U-Nets pool twice)")
        if self.pool_crops < self.batch_size:
            raise ConfigError(f"adaptation pool_crops must hold at least one batch ({self.batch_size})")
        if self.amp not in ("bf16", "off"):
            raise ConfigError(f"adaptation amp {self.amp!r}: use bf16 or off")
        if self.save_path:
            folder = os.path.dirname(os.path.abspath(self.save_path))
            if not os.path.isdir(folder):
                raise ConfigError(f"cannot write {self.save_path}: folder {folder} does not exist")
        return self


def save_weights_atomic(path, module, arch: str, config: dict, meta: dict) -> None:
    """save_weights under a temporary name, then renamed: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    save_weights(tmp, module, arch, config, meta)
    os.replace(f"{tmp}.json", f"{path}.json")
    os.replace(tmp, path)


class Adapter:
    """Self-supervised training on windows of a live ring; hot-swaps improved NBSNs via `install`."""

    def __init__(self, ring, height: int, width: int, stored_width: int, model: str, *,
                 install: Callable[[TorchReconstructor], None], ready: Callable[[], bool] = lambda: True,
                 install_gain: Callable[[np.ndarray], None] = lambda gain: None, gain: np.ndarray | None = None,
                 runtime: RuntimeOptions | None = None, name: str | None = None,
                 options: AdaptOptions | None = None, log: Callable[[str], None] = print,
                 stop: threading.Event | None = None):
        self.options = o = (options or AdaptOptions()).validate()
        if model in CLASSICAL:
            raise ConfigError(f"adaptation trains an SSML network; {model!r} has none (use ssml, ssml-full "
                              "or a weights file)")
        if ring.capacity < WINDOW:
            raise ConfigError(f"a ring of {ring.capacity} frames is too small to adapt: {WINDOW} needed")
        if height < o.crop or width < o.crop:
            raise ConfigError(f"frames of {height}x{width} are smaller than the {o.crop}x{o.crop} adaptation crop")
        try:
            init = load_init(model)
        except ModelError as e:
            raise ModelError(f"cannot adapt {model}: {e}") from None
        if init.warning:
            log(f"adapt: warning: {init.warning}")
        self.height, self.width, self.stored_width = height, width, stored_width
        self.model, self.name = model, name or os.path.basename(model)
        self.nbsn_arch, self.nbsn_config, self.bsn_config = init.nbsn_arch, init.nbsn_config, init.bsn_config
        self.runtime = runtime or RuntimeOptions(compute="cpu", threads=1)  # compute: "cpu" or "cuda"
        self.install, self.ready, self.log = install, ready, log
        self.install_gain = install_gain
        self.gain_estimator = PixelGainEstimator(height, width)
        self.gain = gain              # the map in use (loaded with the weights, then estimated here)
        self.gain_std = math.nan if gain is None else float(gain.std())
        self._gain_decided = False
        self.rng = np.random.default_rng(o.seed)
        self.pool = np.zeros((o.pool_crops, WINDOW, o.crop, o.crop), np.uint8)
        self.pool_at = np.zeros((o.pool_crops, 2), np.int64)  # where each crop was cut (for the gain map)
        self.pool_count = 0  # crops ever added; slot = count % pool_crops
        self.holdout: list[np.ndarray] = []  # WINDOW x crop x crop each
        self.holdout_at: list[tuple[int, int]] = []
        self.holdout_started = 0.0
        # counters read by stats() from other threads (plain ints/floats: atomic reads)
        self.steps = 0
        self.poisoned = 0
        self.swaps = 0
        self.loss = math.nan
        self.live_score = math.nan    # held-out score of the live NBSN (lower is better)
        self.last_swap = math.nan     # time.monotonic() of the last swap
        self.error: BaseException | None = None
        self.device = torch.device(self.runtime.compute)
        # on CUDA the thread's work queues on its own stream, not the one inference runs on
        self.cuda_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        # the pair the live NBSN came from (never trained in place), and the pair being trained
        self._live = MutualPair(init.bsn, init.nbsn).to(self.device).eval()
        self.pair = copy.deepcopy(self._live).train()
        # built here, not on the thread: the first Adam imports for seconds while holding the GIL
        self.optimizer = self._new_optimizer()
        self.cursor = Cursor(ring, ring.head)  # not registered with the ring: the producer never waits for it
        self.packed = np.empty((WINDOW, ring.frame_bytes), np.uint8)
        self.frames = np.empty((WINDOW, height, width), np.uint8)
        self._save_lock = threading.Lock()
        self._stop = stop or threading.Event()  # the pipeline's: a stop reaches every stage at once
        self._thread: threading.Thread | None = None

    @classmethod
    def for_pipeline(cls, pipeline, options: dict) -> "Adapter":
        """An adapter on a Pipeline's ring that swaps `pipeline.rec` (its reconstruct loop reads that
        reference once per window) and starts training after the first output."""
        c = pipeline.config
        return cls(pipeline.ring, pipeline.height, pipeline.width, pipeline.stored_width, c.model,
                   install=pipeline.install_model, ready=lambda: pipeline.windows_out > 0,
                   install_gain=pipeline.install_gain, gain=pipeline.gain_map,
                   runtime=RuntimeOptions(compute=pipeline.rec.device, precision=c.precision, threads=1),
                   name=pipeline.rec.name, options=AdaptOptions.from_dict(options), log=pipeline.log,
                   stop=pipeline.stop_event)

    # ----- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ssml-adapt", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread, write `save_path` (the live weights, whether or not the thread has
        finished its step yet) and log a summary. Waits for the step in progress: a daemon thread
        still inside a torch op when the interpreter exits aborts the process ("terminate called")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.log(f"adapt: the training thread did not stop within {timeout_s:.0f} s")
        if self.options.save_path:
            self.save()
        self.log(f"adapt: {self.steps} steps, {self.swaps} swaps, {self.poisoned} poisoned steps skipped"
                 + (f", weights in {self.options.save_path}" if self.options.save_path else "")
                 + (f"; stopped early: {self.error}" if self.error else ""))

    def stats(self) -> dict:
        since = time.monotonic() - self.last_swap if self.swaps else math.nan
        return {"adapt_steps": self.steps, "adapt_loss": self.loss, "adapt_live_score": self.live_score,
                "adapt_swaps": self.swaps, "adapt_since_swap_s": round(since, 1),
                "adapt_poisoned": self.poisoned, "adapt_gain_std": self.gain_std}

    @staticmethod
    def status_text(stats: dict) -> str:
        since = stats["adapt_since_swap_s"]
        gain = stats["adapt_gain_std"]
        return (f"  adapt steps {stats['adapt_steps']} loss {stats['adapt_loss']:.2e} swaps {stats['adapt_swaps']}"
                + (f" ({since:.0f} s ago)" if math.isfinite(since) else "")
                + (f" pixel gain ±{100 * gain:.1f} %" if math.isfinite(gain) else ""))

    def save(self) -> None:
        """Write the live pair to `save_path` (NBSN) and its BSN beside it, atomically."""
        live = self._live
        meta = {"adapted_from": self.model, "adapt_steps": self.steps, "adapt_swaps": self.swaps,
                "held_out_score": self.live_score, "adapt_lr": self.options.lr,
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path = Path(self.options.save_path)
        gain = self.gain
        with self._save_lock:
            save_weights_atomic(bsn_path_for(path), live.bsn, "bsn", self.bsn_config, meta)
            if gain is not None:  # before the weights: a reader that sees the new weights sees their map
                save_gain_atomic(gain_path_for(path), gain)
            save_weights_atomic(path, live.nbsn, self.nbsn_arch, self.nbsn_config, meta)

    # ----- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            # torch work waits for the first reconstructed window: a thread takes its intra-op thread
            # count from the global setting at its first op, so the reconstruct thread must have
            # started before this one sets 1
            while not self._stop.is_set() and not self.ready():
                self._stop.wait(0.05)
            torch.set_num_threads(1)
            _lower_this_threads_priority()
            with torch.cuda.stream(self.cuda_stream):  # a no-op for None (CPU)
                self._loop()
        except Exception as e:  # the stream goes on without adaptation; close() reports it
            self.error = e
            self.log(f"adapt: stopped after an error: {type(e).__name__}: {e}")

    def _loop(self) -> None:
        o = self.options
        next_sample = next_check = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + o.sample_every_s
                self._sample()
            if len(self.holdout) < o.holdout_windows * o.crops_per_window or self.pool_count < o.batch_size \
                    or self.gain_estimator.n < pixel_gain.MIN_WINDOWS:  # no step before the first gain decision
                self._stop.wait(min(o.sample_every_s, max(0.0, next_sample - time.monotonic())))
                continue
            if not self._gain_decided:  # the first map, if the scene shows one, before the first step
                self._update_gain()
                self._gain_decided = True
            if math.isnan(self.live_score):  # a new held-out set: score the live NBSN on it
                self.live_score = self._held_out_score(self._live.nbsn)
                next_check = time.monotonic() + o.every_s
            self._step()
            if time.monotonic() >= next_check:
                self._check()
                next_check = time.monotonic() + o.every_s
            if time.monotonic() - self.holdout_started >= o.holdout_refresh_s:
                self.holdout, self.holdout_at, self.live_score = [], [], math.nan

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.pair.parameters(), lr=self.options.lr, betas=(0.9, 0.999), eps=1e-8)

    def _sample(self) -> None:
        _, jumped = self.cursor.read_latest(WINDOW, self.packed)
        if jumped < 0:
            return  # not enough new frames since the last sample
        c, frames = self.options.crop, self.frames
        unpack_into(self.packed, frames, self.stored_width)
        self.gain_estimator.add(frames)
        holding_out = len(self.holdout) < self.options.holdout_windows * self.options.crops_per_window
        if holding_out:
            self.holdout_started = self.holdout_started if self.holdout else time.monotonic()
        for _ in range(self.options.crops_per_window):
            y = int(self.rng.integers(0, self.height - c + 1))
            x = int(self.rng.integers(0, self.width - c + 1))
            if holding_out:
                self.holdout.append(frames[:, y:y + c, x:x + c].copy())
                self.holdout_at.append((y, x))
            else:
                self.pool[self.pool_count % len(self.pool)] = frames[:, y:y + c, x:x + c]
                self.pool_at[self.pool_count % len(self.pool)] = (y, x)
                self.pool_count += 1

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(B x 41 x c x c spikes, B x 1 x c x c gain map under them, or 1.0 while there is no map)."""
        held = min(self.pool_count, len(self.pool))
        picks = self.rng.integers(0, held, self.options.batch_size)
        views = self.rng.integers(0, 8, self.options.batch_size)
        batch = np.stack([dihedral(self.pool[i], int(v)) for i, v in zip(picks, views)])
        return (torch.from_numpy(batch).to(self.device, torch.float32),
                self._gain_under([self.pool_at[i] for i in picks], views))

    def _gain_under(self, places, views=None) -> torch.Tensor | float:
        gain, c = self.gain, self.options.crop
        if gain is None:
            return 1.0
        views = views if views is not None else [0] * len(places)
        crops = np.stack([dihedral(gain[y:y + c, x:x + c], int(v))[None] for (y, x), v in zip(places, views)])
        return torch.from_numpy(crops).to(self.device, torch.float32)

    def _step(self) -> None:
        x, gain = self._batch()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.options.amp == "bf16"):
            bsn_out, nbsn_out = self.pair(x)
        # what the stream shows: the NBSN's output over the pixel gain; the label likewise
        loss = mutual_loss(bsn_out.float(), nbsn_out.float() / gain, adaptive_label(x) / gain,
                           self.options.mutual_weight, weight=light_weight(x))["loss"]
        if not torch.isfinite(loss):
            self.poisoned += 1
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.pair.parameters(), math.inf)
        if not torch.isfinite(grad_norm):
            self.poisoned += 1
            return
        self.optimizer.step()
        self.steps += 1
        value = float(loss.detach())
        self.loss = value if math.isnan(self.loss) else 0.9 * self.loss + 0.1 * value

    @torch.no_grad()
    def _held_out_score(self, nbsn: torch.nn.Module) -> float:
        """Light-weighted MSE (fp32) between the NBSN's rate at pixels whose spikes it does not see
        (a neighbour's instead) and those pixels' adaptive label, both over the pixel gain map in use,
        over the passes of BLIND_PASSES."""
        was_training = nbsn.training
        nbsn.eval()
        try:
            windows = torch.from_numpy(np.stack(self.holdout)).to(self.device, torch.float32)
            label, weight = adaptive_label(windows), light_weight(windows)
            gain = self._gain_under(self.holdout_at)
            padded = F.pad(windows, (1, 1, 1, 1), mode="reflect")  # a border pixel's neighbours are real pixels
            c, chunk = windows.shape[-1], 2 * self.options.batch_size
            total = 0.0
            for dy, dx, (oy, ox) in BLIND_PASSES:
                scored = torch.zeros(c, c, dtype=torch.bool, device=self.device)
                scored[dy::3, dx::3] = True
                x = torch.where(scored, padded[..., 1 + oy:1 + oy + c, 1 + ox:1 + ox + c], windows)
                rate = torch.cat([nbsn(x[i:i + chunk]) for i in range(0, len(x), chunk)])
                total += float((((rate - label) / gain) ** 2 * weight * scored).sum())
            return total / label.numel()
        finally:
            nbsn.train(was_training)

    def _check(self) -> None:
        """Install the newest pixel gain map; swap the trained NBSN in when it scores better on the
        held-out set and every weight is finite."""
        self._update_gain()
        if not all(torch.isfinite(p).all() for p in self.pair.parameters()):
            self._reset_to_live()
            return
        score = self._held_out_score(self.pair.nbsn)
        if not score < self.live_score or self._stop.is_set():  # (not < is also true for NaN)
            return
        live = copy.deepcopy(self.pair).eval()
        rec = TorchReconstructor(copy.deepcopy(live.nbsn), self.name, self.runtime,
                                 meta={"adapted_from": self.model, "window_frames": WINDOW})
        rec.warm_up(self.height, self.width, WINDOW)  # trace here, not on the hot path
        if self.cuda_stream is not None:
            self.cuda_stream.synchronize()  # the copies are complete before inference uses them
        self.install(rec)
        self._live = live
        self.live_score = score
        self.swaps += 1
        self.last_swap = time.monotonic()
        if self.options.save_path:
            self.save()

    def _update_gain(self) -> None:
        """Install the estimator's newest pixel gain map, if it has one, and re-score the live NBSN under it."""
        gain, info = self.gain_estimator.estimate()
        if gain is None:
            return
        self.gain, self.gain_std = gain, info["gain_std"]
        self.install_gain(gain)
        if not math.isnan(self.live_score):
            self.live_score = self._held_out_score(self._live.nbsn)  # under the new map, like the candidate

    def _reset_to_live(self) -> None:
        self.pair.load_state_dict(self._live.state_dict())
        self.optimizer = self._new_optimizer()
        self.poisoned += 1
        self.log("adapt: weights stopped being finite; reset to the live ones")


def _lower_this_threads_priority() -> None:
    """Capture and reconstruction first: on Linux the nice value is per thread, so the scheduler gives
    this one only the CPU time the live stages leave (elsewhere the priority stays as it is)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ADAPT_NICE)
        except OSError:
            pass  # not permitted: run at normal priority
