"""Real-time non-blind network ("rt" profile) for live reconstruction on a small CPU.

Target: >= 30 fps at 250 x 400, batch 1, TorchScript on a 2-core CPU, with headroom for capture
(aim <= 25 ms per frame). Same contract as the other networks: B x 41 x H x W spikes -> B x 1 x H x W
firing rate; trained by the same mutual loss (it just replaces the NBSN).

Design (beyond the paper, where the issue leaves it open):
- Reduce the 41 frames to a few full-resolution channels first, cheaply: a learned 1x1 conv over the
  frames whose first filters start as centred TFP box filters (11/19/27/41 frames) and TFI at the
  centre (search 12, fallback 24). Nothing else touches all 41 frames.
- Pixel-unshuffle by 2, so every 3x3 conv runs at half or quarter resolution (a 2-level mini U-Net:
  stride-2 conv down, 1x1 + pixel-shuffle up, skip by concatenation).
- Output = pixel-shuffled residual + a learned 1x1 over the full-resolution features (starts as
  TFP41), so fine detail at full resolution is never lost through the downsampling.
- Inputs are padded (replicate) at the bottom/right to a multiple of 4 and cropped back.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LEAKY_SLOPE
from .features import tfi_center

TFP_INIT_LENGTHS = (11, 19, 27, 41)


@dataclass
class RtConfig:
    frames: int = 41
    temporal_ch: int = 8       # learned 1x1 over frames (the first 4 start as TFP 11/19/27/41)
    width: int = 24            # half-resolution width
    deep_width: int = 48       # quarter-resolution width
    tfi_search: int = 12
    tfi_fallback: int = 24


def _act() -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE)


class RealTimeNet(nn.Module):
    def __init__(self, config: RtConfig | None = None):
        super().__init__()
        cfg = config or RtConfig()
        if cfg.temporal_ch < len(TFP_INIT_LENGTHS):
            raise ValueError(f"temporal_ch must be >= {len(TFP_INIT_LENGTHS)}")
        if cfg.width % 2:
            raise ValueError("width must be even")
        self.search = cfg.tfi_search
        self.fallback = cfg.tfi_fallback
        self.temporal = nn.Conv2d(cfg.frames, cfg.temporal_ch, 1)
        self._init_temporal(cfg.frames)
        feat_ch = cfg.temporal_ch + 1  # + TFI
        w, dw = cfg.width, cfg.deep_width
        self.enc1 = nn.Sequential(nn.Conv2d(4 * feat_ch, w, 3, padding=1), _act())
        self.enc2 = nn.Sequential(nn.Conv2d(w, dw, 3, stride=2, padding=1), _act(),
                                  nn.Conv2d(dw, dw, 3, padding=1), _act())
        self.up = nn.Sequential(nn.Conv2d(dw, 4 * (w // 2), 1), nn.PixelShuffle(2))
        self.dec1 = nn.Sequential(nn.Conv2d(w + w // 2, w, 3, padding=1), _act())
        self.to_full = nn.Sequential(nn.Conv2d(w, 4, 1), nn.PixelShuffle(2))
        self.skip = nn.Conv2d(feat_ch, 1, 1)
        with torch.no_grad():  # start as TFP41 + residual
            self.skip.weight.zero_()
            self.skip.bias.zero_()
            self.skip.weight[0, TFP_INIT_LENGTHS.index(41)] = 1.0

    def _init_temporal(self, frames: int) -> None:
        with torch.no_grad():
            self.temporal.bias.zero_()
            c = frames // 2
            for i, n in enumerate(TFP_INIT_LENGTHS):
                n = min(n, frames - (1 - frames % 2))
                self.temporal.weight[i].zero_()
                self.temporal.weight[i, c - n // 2:c + n // 2 + 1] = 1.0 / n

    def forward(self, x: Tensor) -> Tensor:
        """x: B x 41 x H x W spikes (0/1) -> B x 1 x H x W firing rate."""
        h, w = x.shape[-2], x.shape[-1]
        feats = torch.cat([self.temporal(x), tfi_center(x, self.search, self.fallback)], dim=1)
        feats = F.pad(feats, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        s1 = self.enc1(F.pixel_unshuffle(feats, 2))
        y = self.up(self.enc2(s1))
        y = self.dec1(torch.cat([s1, y], dim=1))
        out = self.to_full(y) + self.skip(feats)
        return out[..., :h, :w]
