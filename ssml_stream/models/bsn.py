"""Blind-spot network (BSN) of SSML (IJCAI 2022): predicts each pixel's firing rate from its
neighbours only, trained against the TFI pseudo-label.

Architecture (docs/models.md#bsn):
- Input per pixel: the 41 frames plus *blind* motion features: TFP over the centred 11/19/27-frame
  sub-windows (mixed by a learned 1x1 conv) and TFI (search 12, fallback 24), each lifted to 16
  channels by a shifted 3x3 conv and summed. These are per-pixel temporal statistics, so they carry
  no neighbour information; no attention here (global pooling or a 7x7 conv would leak the centre).
- Branch: [41 frames, 16 lifted features] (57 ch) -> half-plane U-Net (48/96 channels, every 3x3
  conv and pool shifted one row down) -> 96 ch -> one more one-row shift.
- The branch runs on 4 rotations (0/90/180/270) as one batch; outputs are un-rotated, concatenated
  (4 x 96 = 384) and fused by 1x1 convs 384 -> 384 -> 96 -> 1.

Implementation choices, one of them a deliberate departure from the paper for an exact blind spot:
- Non-square inputs: the paper reflect-pads to square. A reflected copy of a pixel near the
  padded edge lies in its own receptive field, so the blind spot leaks there (tests/test_models.py
  shows it). The default `nonsquare="split"` instead runs rotations 0/180 on H x W and 90/270 on
  W x H (two batches, no padding, exact blind spot everywhere, less compute).
  `nonsquare="reflect"` keeps the paper's behaviour. Training crops are square, so the two agree there.
- U-Net inputs are zero-padded at the bottom/right to a multiple of 4 and cropped back.
- Output is linear (no clamp): firing rate in spikes per frame, like the TFI label.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MotionLift, UNet, fusion_head, shift_down
from .features import tfi_center, tfp_center


@dataclass
class BsnConfig:
    frames: int = 41
    width: int = 48            # U-Net encoder width; decoder and branch output are 2 * width
    motion_ch: int = 16
    tfi_search: int = 12
    tfi_fallback: int = 24
    nonsquare: str = "split"   # "split" (exact blind spot) or "reflect" (paper)


class BlindSpotNet(nn.Module):
    def __init__(self, config: BsnConfig | None = None):
        super().__init__()
        cfg = config or BsnConfig()
        if cfg.nonsquare not in ("split", "reflect"):
            raise ValueError(f"nonsquare must be 'split' or 'reflect', not {cfg.nonsquare!r}")
        self.frames = cfg.frames
        self.search = cfg.tfi_search
        self.fallback = cfg.tfi_fallback
        self.reflect = cfg.nonsquare == "reflect"
        self.motion = MotionLift(cfg.motion_ch, blind=True)
        self.unet = UNet(cfg.frames + cfg.motion_ch, cfg.width, 2 * cfg.width, blind=True)
        self.fuse = fusion_head(4 * 2 * cfg.width)

    def branch(self, x: Tensor) -> Tensor:
        """Upper-half-plane features: output row r depends on input rows < r only.
        x: N x (frames + 4) x h x w = frames, TFP11/19/27, TFI."""
        frames = x[:, :self.frames]
        tfp = x[:, self.frames:self.frames + 3]
        tfi = x[:, self.frames + 3:self.frames + 4]
        y = self.unet(torch.cat([frames, self.motion(tfp, tfi)], dim=1))
        return shift_down(y)

    def _rotated(self, x: Tensor, quarter_turns: list[int]) -> list[Tensor]:
        """Run the branch on the given rotations in one batch; return un-rotated outputs."""
        b = x.shape[0]
        batch = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in quarter_turns], dim=0)
        y = self.branch(batch)
        return [torch.rot90(y[i * b:(i + 1) * b], -k, dims=(2, 3)) for i, k in enumerate(quarter_turns)]

    def forward(self, x: Tensor) -> Tensor:
        """x: B x 41 x H x W spikes (0/1) -> B x 1 x H x W firing rate."""
        h, w = x.shape[-2], x.shape[-1]
        feats = torch.cat([x, tfp_center(x, 11), tfp_center(x, 19), tfp_center(x, 27),
                           tfi_center(x, self.search, self.fallback)], dim=1)
        if h == w:
            outs = self._rotated(feats, [0, 1, 2, 3])
        elif self.reflect:
            side = max(h, w)
            sq = F.pad(feats, (0, side - w, 0, side - h), mode="reflect")
            outs = [o[..., :h, :w] for o in self._rotated(sq, [0, 1, 2, 3])]
        else:
            even = self._rotated(feats, [0, 2])
            odd = self._rotated(feats, [1, 3])
            outs = [even[0], odd[0], even[1], odd[1]]
        return self.fuse(torch.cat(outs, dim=1))
