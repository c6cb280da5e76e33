"""Two real-time networks blended per pixel by how much the scene moves ("duo" profile, `ssml-duo`).

Why: one 43 k-parameter rt network cannot hold both ends of the sweep. Taught by the blind-spot network
where the scene moves fast or photon noise is strong, it gains 2-3 dB there and loses 4-8 dB on still,
clean scenes (measured, README). So the duo keeps two: `still`, the shipped `ssml-rt`, and `motion`, an
rt fine-tuned with that teaching, and lets the spikes decide per pixel which one to trust.

The gate is classical and has no weights: the spike counts of the window's first and last 20 frames
differ where the scene moves (or photon noise makes the spike train irregular) and agree on a still
pixel up to about one spike at any light level (an integrate-and-fire pixel fires at its own regular
pace). Their absolute difference in spikes, box-averaged over `gate_size` pixels, ramps the weight of
`motion` from 0 at `gate_low` spikes to 1 at `gate_high`. The two networks run unanchored; the blend
is anchored once (features.anchor_mean). The 41 frames are read once: the two networks' temporal maps,
the half-window difference and the window rate come out of one matrix multiply, and TFI is shared; the
rest of each network runs in full, so the duo costs about two rt forwards (README: 31.7 vs 14.1 ms).
The gate defaults are the ones `train/duo.py pick` chose for the shipped file.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .features import anchor_mean, tfi_center
from .rt import RealTimeNet, RtConfig


@dataclass
class DuoConfig:
    frames: int = 41
    temporal_ch: int = 7       # both networks: the rt config (rt.RtConfig)
    width: int = 24
    deep_width: int = 48
    up_ch: int = 8
    tfi_search: int = 12
    tfi_fallback: int = 24
    normalize: bool = True
    anchor_mean: bool = True   # inference: the blend's mean = the window's mean firing rate
    gate_size: int = 21        # box (pixels) over which the half-window difference is averaged; odd
    gate_low: float = 0.75     # mean count difference (spikes) at which `motion` starts to count
    gate_high: float = 2.25    # ... and above which `motion` alone is used

    def rt_config(self) -> RtConfig:
        return RtConfig(frames=self.frames, temporal_ch=self.temporal_ch, width=self.width,
                        deep_width=self.deep_width, up_ch=self.up_ch, tfi_search=self.tfi_search,
                        tfi_fallback=self.tfi_fallback, normalize=self.normalize, anchor_mean=False)


class DuoNet(nn.Module):
    def __init__(self, config: DuoConfig | None = None):
        super().__init__()
        cfg = config or DuoConfig()
        if cfg.gate_size < 1 or cfg.gate_size % 2 == 0:
            raise ValueError(f"gate_size must be odd and >= 1, got {cfg.gate_size}")
        if not 0 <= cfg.gate_low < cfg.gate_high:
            raise ValueError(f"need 0 <= gate_low < gate_high, got {cfg.gate_low}, {cfg.gate_high}")
        self.still = RealTimeNet(cfg.rt_config())
        self.motion = RealTimeNet(cfg.rt_config())
        half = cfg.frames // 2
        # rows of the shared read: count of the first half minus the last, and the window mean
        reads = torch.zeros(2, cfg.frames)
        reads[0, :half], reads[0, -half:], reads[1] = 1.0, -1.0, 1.0 / cfg.frames
        self.register_buffer("extra_reads", reads, persistent=False)
        self.gate_size = cfg.gate_size
        self.gate_low, self.gate_high = cfg.gate_low, cfg.gate_high
        self.anchor_mean = cfg.anchor_mean

    def read_frames(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One pass over the 41 frames: (still's temporal maps, motion's, count change, window rate)."""
        b, t, h, w = x.shape
        ch = self.still.temporal.weight.shape[0]
        weight = torch.cat([self.still.temporal.weight.view(ch, t), self.motion.temporal.weight.view(ch, t),
                            self.extra_reads], dim=0)
        bias = torch.cat([self.still.temporal.bias, self.motion.temporal.bias, self.extra_reads.new_zeros(2)])
        maps = (torch.matmul(weight, x.reshape(b, t, h * w)) + bias.view(1, -1, 1)).view(b, -1, h, w)
        return maps[:, :ch], maps[:, ch:2 * ch], maps[:, 2 * ch:2 * ch + 1], maps[:, 2 * ch + 1:]

    def gate_from(self, change: Tensor) -> Tensor:
        """Weight of `motion` in [0, 1] from the per-pixel count change (separable box average)."""
        k, p = self.gate_size, self.gate_size // 2
        box = F.avg_pool2d(change.abs(), (k, 1), stride=1, padding=(p, 0), count_include_pad=False)
        box = F.avg_pool2d(box, (1, k), stride=1, padding=(0, p), count_include_pad=False)
        return ((box - self.gate_low) / (self.gate_high - self.gate_low)).clamp(0.0, 1.0)

    def gate(self, x: Tensor) -> Tensor:
        """B x 1 x H x W weight of `motion` in [0, 1]."""
        return self.gate_from(self.read_frames(x)[2])

    def forward(self, x: Tensor) -> Tensor:
        """x: B x 41 x H x W spikes (0/1) -> B x 1 x H x W firing rate."""
        still_maps, motion_maps, change, rate_map = self.read_frames(x)
        tfi = tfi_center(x, self.still.search, self.still.fallback)
        g = self.gate_from(change)
        out = (self.still.from_features(still_maps, tfi, rate_map) * (1 - g)
               + self.motion.from_features(motion_maps, tfi, rate_map) * g)
        return anchor_mean(out, rate_map) if self.anchor_mean and not self.training else out
