"""The SSML self-supervised training loop (mutual learning of a BSN and an NBSN).

Per step, on a batch of random 40x40 crops of 41-frame windows (8 rotate/flip augmentations):

    label = TFI at the centre frame (search 12, fallback 24)        # pseudo-label from the spikes
    loss  = MSE(BSN(x), label) + 0.01 * MSE(NBSN(x), BSN(x))        # "L2" = mean squared error
          [+ distill_weight * MSE(NBSN(x), teacher(x))]             # only with --distill-from

Mutual learning: the distillation term is *not* detached on either side, so its gradient flows into
the NBSN (pulled towards the BSN) and into the BSN (pulled towards the NBSN, which sees the centre
pixel and so regularises the blind-spot estimate). The BSN alone cannot copy its input pixel, so it
cannot learn the identity of the noisy TFI label; that is what makes the scheme self-supervised.

Optional teacher (`--distill-from`): a trained full NBSN, frozen, in eval mode. Its output is an
extra target for the NBSN under training only (typically the small rt network):
distill_weight * MSE(NBSN(x), teacher(x)), default weight 1.0. The teacher gets no gradient and the
BSN terms are unchanged.

Fine-tuning (`init`): both networks start from a trainer checkpoint, or from NBSN weights and the
BSN saved beside them (a BSN starts from scratch, with a warning, when there is none); the run ends
by writing RUN_DIR/adapted.pt (+ adapted-bsn.pt), loadable like shipped weights. Without ground
truth nothing is validated and the last step's weights are written.

Optimiser: Adam (0.9, 0.999, eps 1e-8) over both networks, lr 3e-4 on a cosine schedule to 0.
The schedule's progress is max(step / steps, elapsed / max_minutes) when a time budget is given, so a
run that must end on time still anneals fully. Ground truth is read only by `validate`.

Speed (a departure from the paper's fp32 GPU training, `--amp off` restores it): by default the
forward pass runs under bf16 autocast, which made a training step about 4x faster on this 2-core
AVX512-BF16 CPU; master weights, Adam state, the TFI label and the loss are fp32, validation is fp32.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import build_model, model_config
from .checkpoints import NBSN_ARCHS, InitNets, load_init, load_teacher, read_torch_file, write_checkpoint
from .curves import plot_curves
from .data import (CropSampler, DatOptions, SimOptions, ValWindow, load_recordings, load_world_recordings,
                   validation_windows)
from .ddp import barrier, broadcast_flag, init_distributed, pick_device, shutdown, wrap_ddp
from .metrics import psnr, rate_to_intensity, ssim

NBSN_NAMES = {arch: name for name, arch in NBSN_ARCHS.items()}


@dataclass
class TrainConfig:
    run_dir: str = "runs/ssml"
    dat: list = field(default_factory=list)  # .dat files or folders
    sim: list = field(default_factory=list)  # simulator specs: scene names, image/video paths
    nbsn: str | None = "full"  # full | rt; None: the network `init` holds (full without init)
    steps: int = 10_000
    max_minutes: float = 0.0  # 0 = no time budget
    lr: float = 3e-4
    batch_size: int = 4
    crop: int = 40
    window_frames: int = 41
    tfi_search: int = 12
    tfi_fallback: int = 24
    mutual_weight: float = 0.01
    distill_from: tuple | str | None = None  # teacher(s): checkpoint, weights file or shipped name
    distill_weight: float = 1.0
    # per teacher, ((lo, hi), ...): it teaches only crops whose mean rate lies in one of its ranges; None: every crop
    distill_rates: tuple | None = None
    val_every: int = 250
    val_crop: int = 0  # 0 = validate on full frames; else a centred crop of this size
    ckpt_every: int = 0  # 0 = at every validation
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # 0 = torch's default
    amp: str = "bf16"  # bf16: forward under torch.autocast (bfloat16 matmuls/convs, fp32 weights); off: fp32
    device: str = "auto"
    resume: str | None = None  # checkpoint path or "auto" (= RUN_DIR/last.pt)
    init: str | None = None  # fine-tune: start both networks from weights (name or file) or a checkpoint
    height: int = 250
    width: int = 400
    stored_width: int = 0
    gt_frame: int = 150  # a .dat's sibling NAME.png is the intensity at this frame (REDS_BASE: 150)
    sim_frames: int = 301
    sim_height: int = 250
    sim_width: int = 400
    sim_clips: int = 1
    worlds: int = 0  # random world clips (drivers.worlds) added to the training data
    worlds_hard: int = 0  # world clips from the sweep's hard corners (drivers.worlds.hard_spec)
    world_textures: list = field(default_factory=list)  # image files used as textures besides the procedural ones
    world_val: int = 16  # extra world clips (other seeds) for validation only
    label: str = "adaptive"  # adaptive: TFI where bright, spike count where dark; tfi: the paper's TFI label
    light_weighting: bool = True  # weigh each crop's loss by 1 / its mean rate (see light_weight)
    progress: bool = True
    command: str = ""  # the command line, recorded in checkpoints and shipped weights


class MutualPair(nn.Module):
    """The two networks trained together; one module so DDP syncs both."""

    def __init__(self, bsn: nn.Module, nbsn: nn.Module):
        super().__init__()
        self.bsn = bsn
        self.nbsn = nbsn

    def forward(self, x: torch.Tensor):
        return self.bsn(x), self.nbsn(x)


def mutual_loss(bsn_out, nbsn_out, label, mutual_weight: float = 0.01, teacher_out=None,
                distill_weight: float = 1.0, weight=None, distill_mask=None, bsn_teach_mask=None) -> dict:
    """Loss terms (tensors). The mutual term keeps gradients into both networks (no detach).
    `weight` (B x 1 x 1 x 1, mean 1) weighs each sample's squared errors. `bsn_teach_mask` (B x 1 x 1 x 1
    of 0/1): crops on which the BSN (detached) teaches the NBSN with the distillation weight, in place
    of a teacher."""
    def mse(a, b):
        return F.mse_loss(a, b) if weight is None else ((a - b) ** 2 * weight).mean()

    terms = {"loss_bsn": mse(bsn_out, label), "loss_mutual": mse(nbsn_out, bsn_out)}
    loss = terms["loss_bsn"] + mutual_weight * terms["loss_mutual"]
    if teacher_out is not None:
        # distill_mask (B x 1 x 1 x 1 of 0/1): the crops where the teacher is trusted
        terms["loss_distill"] = mse(nbsn_out, teacher_out) if distill_mask is None else \
            mse(nbsn_out * distill_mask, teacher_out * distill_mask)
        loss = loss + distill_weight * terms["loss_distill"]
    if bsn_teach_mask is not None:
        terms["loss_bsn_teach"] = mse(nbsn_out * bsn_teach_mask, bsn_out.detach() * bsn_teach_mask)
        loss = loss + distill_weight * terms["loss_bsn_teach"]
    terms["loss"] = loss
    return terms


def light_weight(x: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weights (B x 1 x 1 x 1, mean 1): 1 / the crop's mean rate, the inverse of a spike
    count's variance, so dark crops count far more than in plain MSE but their noisy labels do not
    drown the bright ones (1 / rate^2, tried first, left the network smoothing bright scenes)."""
    weight = 1.0 / (x.mean(dim=(1, 2, 3), keepdim=True) + 0.01)
    return weight / weight.mean()


def rate_ranges(spec) -> list[tuple[float, float]]:
    """One teacher's ranges as a list of (lo, hi); a single (lo, hi) pair is accepted too."""
    if len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
        return [(float(spec[0]), float(spec[1]))]
    return [(float(lo), float(hi)) for lo, hi in spec]


def teacher_plan(distill_from, distill_rates) -> list[tuple[str, list | None]]:
    """[(teacher spec, its rate ranges or None for every crop)] from a TrainConfig's two fields; a config
    from before several teachers (one spec, one list of ranges) gives one teacher."""
    specs = [distill_from] if isinstance(distill_from, str) else list(distill_from or [])
    if not distill_rates:
        return [(spec, None) for spec in specs]
    depth = 1 if not isinstance(distill_rates[0], (list, tuple)) else 2 if not isinstance(
        distill_rates[0][0], (list, tuple)) else 3  # 1: (lo, hi); 2: ((lo, hi), ...); 3: one of those per teacher
    if len(specs) == 1 and depth < 3:
        return [(specs[0], rate_ranges(distill_rates))]
    if len(distill_rates) != len(specs):
        raise ConfigError(f"{len(specs)} teachers but {len(distill_rates)} sets of distillation rates: "
                          "give one set per teacher, or none")
    return [(spec, rate_ranges(r)) for spec, r in zip(specs, distill_rates)]


def crops_in_ranges(rate: torch.Tensor, ranges) -> torch.Tensor:
    """Boolean mask of the crops (mean rates `rate`, shape B) inside one of `ranges`; None: every crop."""
    if ranges is None:
        return torch.ones_like(rate, dtype=torch.bool)
    inside = torch.zeros_like(rate, dtype=torch.bool)
    for lo, hi in ranges:
        inside |= (rate >= lo) & (rate <= hi)
    return inside


def cosine_lr(base_lr: float, progress: float) -> float:
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class Trainer:
    def __init__(self, config: TrainConfig):
        self.cfg = config
        if config.nbsn is not None and config.nbsn not in NBSN_ARCHS:
            raise ConfigError(f"--nbsn {config.nbsn!r}: use full or rt")
        if config.amp not in ("bf16", "off"):
            raise ConfigError(f"--amp {config.amp!r}: use bf16 or off")
        if config.steps < 1:
            raise ConfigError("--steps must be >= 1")
        if config.crop % 4:
            raise ConfigError(f"--crop {config.crop}: use a multiple of 4 (the U-Nets pool twice)")
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.start_time = time.monotonic()
        env_local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device(config.device, env_local)
        self.dist = init_distributed(self.device)
        self.run_dir = Path(config.run_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._seed_everything(config.seed)

        from ..models.features import adaptive_label, tfi_center

        if config.label not in ("adaptive", "tfi"):
            raise ConfigError(f"label {config.label!r}: use adaptive or tfi")
        self._label = adaptive_label if config.label == "adaptive" else tfi_center
        init = self._load_init(config) if config.init else None
        self.nbsn_arch = init.nbsn_arch if init else NBSN_ARCHS[config.nbsn or "full"]
        self.nbsn_name = NBSN_NAMES[self.nbsn_arch]
        self.nbsn_config = init.nbsn_config if init else model_config(self.nbsn_arch)
        self.bsn_config = init.bsn_config if init else model_config("bsn")
        if init:
            self.pair = MutualPair(init.bsn, init.nbsn).to(self.device)
        else:
            self.pair = MutualPair(build_model("bsn"), build_model(self.nbsn_arch)).to(self.device)
        self.model = wrap_ddp(self.pair, self.dist, self.device)
        self.optimizer = torch.optim.Adam(self.pair.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
        self.teachers = [(load_teacher(spec).to(self.device), ranges)
                         for spec, ranges in teacher_plan(config.distill_from, config.distill_rates)]

        recs = load_recordings(
            config.dat, config.sim,
            DatOptions(config.height, config.width, config.stored_width, config.gt_frame),
            SimOptions(config.sim_frames, config.sim_height, config.sim_width, config.sim_clips, seed=config.seed),
            worlds=config.worlds, world_seed=config.seed, world_textures=config.world_textures,
            worlds_hard=config.worlds_hard)
        # world clips validate on their own seeds (the training clips' centres are trained on)
        val_only = load_world_recordings(config.world_val, config.seed + 7919, config.world_textures) \
            if config.worlds or config.worlds_hard else []
        self.recordings = recs
        self.sampler = CropSampler(recs, config.crop, config.batch_size, config.window_frames,
                                   seed=config.seed * 1000 + self.dist.rank)
        val_recs = [r for r in recs if not r.name.startswith("world-")] + val_only
        self.val_windows = validation_windows(val_recs, config.window_frames) if self.dist.is_main else []
        self.step = 0
        self.elapsed_before_s = 0.0  # training time of earlier runs of a resumed job
        self.best_psnr = -math.inf
        self.commands = [config.command]  # every command that contributed steps (resumes append)
        if config.resume:
            self._resume(config.resume)

    # ----------------------------------------------------------------- setup helpers
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _load_init(self, config: TrainConfig) -> InitNets:
        init = load_init(config.init)
        if config.nbsn is not None and NBSN_ARCHS[config.nbsn] != init.nbsn_arch:
            raise ConfigError(f"{config.init} holds the {NBSN_NAMES[init.nbsn_arch]!r} NBSN, not the "
                              f"{config.nbsn!r} one asked for")
        if init.warning and self.dist.is_main:
            print(f"ssml-train: warning: {init.warning}", file=sys.stderr)
        return init

    def _resume(self, spec: str) -> None:
        path = self.run_dir / "last.pt" if spec == "auto" else Path(spec)
        if not path.is_file():
            raise ConfigError(f"--resume: {path} not found")
        ckpt = read_torch_file(path, self.device)
        if ckpt.get("nbsn_arch") != self.nbsn_arch:
            raise ConfigError(f"--resume: {path} holds an {ckpt.get('nbsn_arch')!r} NBSN, this run trains "
                              f"{self.nbsn_arch!r}; match --nbsn")
        saved = ckpt.get("nbsn_config", self.nbsn_config)
        differ = sorted(k for k in {*saved, *self.nbsn_config} if saved.get(k) != self.nbsn_config.get(k))
        if differ:
            raise ConfigError(f"--resume: the NBSN in {path} was built with other settings ({', '.join(differ)}) "
                              "than this run's (a fine-tuning run resumes with the same --init)")
        self.pair.bsn.load_state_dict(ckpt["bsn"])
        self.pair.nbsn.load_state_dict(ckpt["nbsn"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.elapsed_before_s = float(ckpt.get("elapsed_s", 0.0))
        self.best_psnr = float(ckpt.get("best_psnr", -math.inf))
        earlier = ckpt.get("commands") or [ckpt.get("args", {}).get("command", "")]
        self.commands = [*earlier, f"{self.cfg.command}  # resumed at step {self.step}"]
        if self.dist.rank == 0 and "sampler_state" in ckpt:
            self.sampler.set_state(ckpt["sampler_state"])
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"].cpu())
        self.log({"kind": "resume", "step": self.step, "from": str(path)})

    # ----------------------------------------------------------------- bookkeeping
    def elapsed_s(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self.start_time

    def time_up(self) -> bool:
        return self.cfg.max_minutes > 0 and self.elapsed_s() >= 60.0 * self.cfg.max_minutes

    def progress(self) -> float:
        p = self.step / self.cfg.steps
        if self.cfg.max_minutes > 0:
            p = max(p, self.elapsed_s() / (60.0 * self.cfg.max_minutes))
        return p

    def log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def checkpoint(self, name: str = "last.pt") -> Path:
        path = self.run_dir / name
        write_checkpoint(self.checkpoint_state(), path)
        return path

    def checkpoint_state(self) -> dict:
        return {
            "bsn": self.pair.bsn.state_dict(),
            "nbsn": self.pair.nbsn.state_dict(),
            "nbsn_arch": self.nbsn_arch,
            "nbsn_config": self.nbsn_config,
            "bsn_config": self.bsn_config,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "args": asdict(self.cfg),
            "commands": self.commands,
            "elapsed_s": self.elapsed_s(),
            "best_psnr": self.best_psnr,
            "sampler_state": self.sampler.state(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_adapted(self) -> Path:
        """RUN_DIR/adapted.pt: the NBSN as a weights file (loads with `load_model`/--model PATH), and
        its BSN beside it as adapted-bsn.pt, so a later fine-tuning run continues both."""
        from ..models import bsn_path_for, save_weights
        from .export import weights_meta

        ckpt = self.checkpoint_state()
        meta = weights_meta(ckpt)
        meta["init"] = self.cfg.init
        if not math.isfinite(self.best_psnr):
            meta["train_val_psnr_nbsn_best"] = None  # no ground truth to validate on
        path = self.run_dir / "adapted.pt"
        save_weights(path, self.pair.nbsn, self.nbsn_arch, self.nbsn_config, meta)
        save_weights(bsn_path_for(path), self.pair.bsn, "bsn", self.bsn_config, meta)
        return path

    # ----------------------------------------------------------------- the work
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x T x H x W float windows, B bool: the crop's recording is teacher-free)."""
        windows, free = self.sampler.sample_batch()
        return (torch.from_numpy(windows).to(self.device, torch.float32),
                torch.from_numpy(free).to(self.device))

    def autocast(self):
        """bf16 autocast: about 4x faster training steps on this AVX512-BF16 CPU (measured, 1 thread);
        weights, optimiser state, labels and the loss stay fp32."""
        import contextlib

        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> dict:
        x, free = self.batch()
        lr = cosine_lr(self.cfg.lr, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        label = self._label(x, self.cfg.tfi_search, self.cfg.tfi_fallback)
        weight = light_weight(x) if self.cfg.light_weighting else None
        teacher_out = distill_mask = bsn_teach_mask = None
        with self.autocast():
            bsn_out, nbsn_out = self.model(x)
        bsn_out, nbsn_out = bsn_out.float(), nbsn_out.float()
        if self.teachers:
            # teacher-free crops (the hard world clips) learn from the BSN with the teachers' weight
            teacher_out, distill_mask = self._teach(x, nbsn_out, free)
            bsn_teach_mask = free.float().view(-1, 1, 1, 1)  # (all zero: the term is 0, the log keeps its key)
        terms = mutual_loss(bsn_out, nbsn_out, label, self.cfg.mutual_weight, teacher_out, self.cfg.distill_weight,
                            weight, distill_mask, bsn_teach_mask)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["lr"] = lr
        return out

    def _teach(self, x: torch.Tensor, like: torch.Tensor, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(teacher outputs, B x 1 x 1 x 1 mask of the crops some teacher teaches). Each crop that is not
        `free` is taught by the first teacher whose ranges hold its mean firing rate; a teacher runs only
        on its crops."""
        out = torch.zeros_like(like)
        taught = free.clone()  # teacher-free crops count as taken
        rate = x.mean(dim=(1, 2, 3))
        for teacher, ranges in self.teachers:
            mine = ~taught & crops_in_ranges(rate, ranges)
            if bool(mine.any()):
                with torch.no_grad(), self.autocast():
                    out[mine] = teacher(x[mine]).float()
            taught |= mine
        return out, (taught & ~free).float().view(-1, 1, 1, 1)

    def _val_input(self, vw: ValWindow) -> tuple[torch.Tensor, np.ndarray]:
        win, gt = vw.window, vw.gt
        c = self.cfg.val_crop
        if c:
            h, w = gt.shape
            y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
            win, gt = win[:, y:y + c, x:x + c], gt[y:y + c, x:x + c]
        return torch.from_numpy(np.ascontiguousarray(win)).to(self.device, torch.float32)[None], gt

    @torch.no_grad()
    def validate(self) -> dict:
        """PSNR/SSIM of BSN and NBSN (rate / gain vs ground-truth intensity) on every val window."""
        self.pair.eval()
        per = {}
        try:
            for vw in self.val_windows:
                x, gt = self._val_input(vw)
                bsn, nbsn = self.pair(x)
                row = {}
                for name, rate in (("bsn", bsn), ("nbsn", nbsn)):
                    img = rate_to_intensity(rate[0, 0].float().cpu().numpy(), vw.rate_gain)
                    row[f"psnr_{name}"] = psnr(img, gt)
                    row[f"ssim_{name}"] = ssim(img, gt)
                per[vw.name] = row
        finally:
            self.pair.train()
        summary = {"kind": "val", "step": self.step, "elapsed_s": round(self.elapsed_s(), 1), "windows": per}
        for key in ("psnr_bsn", "psnr_nbsn", "ssim_bsn", "ssim_nbsn"):
            vals = [r[key] for r in per.values()]
            summary[key] = float(np.mean(vals)) if vals else float("nan")
        return summary

    def baselines(self) -> dict:
        """TFP41 PSNR of each val window: the classical reference line on the curves."""
        from ..features import tfp

        per = {}
        for vw in self.val_windows:
            x, gt = self._val_input(vw)
            img = rate_to_intensity(tfp(x[0].cpu().numpy().astype(np.uint8)), vw.rate_gain)
            per[vw.name] = psnr(img, gt)
        return {"kind": "baseline", "tfp41_psnr": float(np.mean(list(per.values()))) if per else float("nan"),
                "windows": per}

    def run(self) -> dict:
        cfg = self.cfg
        main = self.dist.is_main
        if main and self.step == 0:
            self.log({"kind": "config", "config": asdict(cfg), "world_size": self.dist.world_size,
                      "recordings": [r.name for r in self.recordings], "device": str(self.device),
                      "threads": torch.get_num_threads()})
            self.log(self.baselines())
        bar = None
        if main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=f"ssml-train {self.nbsn_name}", unit="step",
                       dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0,
                       file=sys.stderr)
        last_val = None
        running = []
        ckpt_every = cfg.ckpt_every or cfg.val_every
        stop = False
        while self.step < cfg.steps and not stop:
            terms = self.train_step()
            running.append(terms)
            if main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                avg = {k: float(np.mean([t[k] for t in running])) for k in running[0]}
                avg.update(kind="train", step=self.step, elapsed_s=round(self.elapsed_s(), 1))
                self.log(avg)
                running = []
                if bar is not None:
                    post = {"loss": f"{avg['loss']:.2e}"}  # the self-supervised loss
                    if last_val and math.isfinite(last_val["psnr_nbsn"]):
                        post["psnr"] = f"{last_val['psnr_nbsn']:.2f}"
                    bar.set_postfix(post, refresh=False)
            if bar is not None:
                bar.update(1)
            stop = broadcast_flag(main and self.step < cfg.steps and self.time_up(), self.dist, self.device)
            done = self.step >= cfg.steps or stop
            if main and (self.step % cfg.val_every == 0 or done):
                last_val = self.validate()
                self.log(last_val)
                if last_val["psnr_nbsn"] > self.best_psnr:
                    self.best_psnr = last_val["psnr_nbsn"]
                    self.checkpoint("best.pt")
                if bar is not None and math.isfinite(last_val["psnr_nbsn"]):
                    bar.set_postfix(loss=f"{terms['loss']:.2e}", psnr=f"{last_val['psnr_nbsn']:.2f}")
                plot_curves(self.run_dir)
            if main and (self.step % ckpt_every == 0 or done):
                self.checkpoint("last.pt")
            if self.step % ckpt_every == 0 or done:
                barrier(self.dist)
        if bar is not None:
            bar.close()
        result = {"step": self.step, "elapsed_s": self.elapsed_s(), "stopped_by_time": stop,
                  "last_val": last_val, "run_dir": str(self.run_dir)}
        if main and cfg.init:
            result["adapted"] = str(self.save_adapted())
        if main:
            self.log({"kind": "done", **{k: v for k, v in result.items() if k != "last_val"}})
        return result

    def close(self) -> None:
        shutdown(self.dist)
