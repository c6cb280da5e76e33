"""Non-blind network (NBSN) of SSML, the paper's full inference network.

Architecture (docs/models.md#full-nbsn):
- Three overlapping 27-frame sub-windows of the 41-frame window, starting at frames 0, 7 and 14.
- Per sub-window, non-blind motion features: TFP over its centred 11/19/27 frames mixed by a learned
  1x1 conv (3 ch) and its centre TFI (search 12, fallback 24), each lifted by a 3x3 conv to 16 ch and
  summed, then gated by CBAM-style channel + spatial attention.
- One shared U-Net per sub-window on [27 frames, 16 gated features] (43 ch) -> 32 ch.
- The three outputs concatenated (96 ch) -> second U-Net -> 384 ch -> 1x1 convs 384 -> 384 -> 96 -> 1.

Implementation choices: the motion module and the first U-Net are shared across the
three sub-windows and run on them as one batch; U-Net widths 48 (first, decoder 96) and 96 (second,
decoder 192); CBAM reduction 4 and 7x7 spatial kernel; linear output (firing rate, no clamp).

Light-level normalisation (`normalize`, as in the rt network; off in files written before it existed):
the TFP/TFI motion inputs are divided by the smooth local firing rate, the log of that rate joins the
first U-Net's input, and the output is multiplied back. The raw spikes stay 0/1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import ChannelSpatialAttention, MotionLift, UNet, fusion_head
from .features import anchor_mean, local_rate, tfi_center, tfp_center


@dataclass
class NbsnConfig:
    frames: int = 41
    sub_frames: int = 27
    sub_offsets: tuple = (0, 7, 14)
    motion_ch: int = 16
    width1: int = 48
    sub_out_ch: int = 32
    width2: int = 96
    tfi_search: int = 12
    tfi_fallback: int = 24
    normalize: bool = True     # divide the motion inputs by the local rate, multiply the output back
    anchor_mean: bool = True   # inference: output mean = the window's mean firing rate (features.anchor_mean)


class NonBlindNet(nn.Module):
    def __init__(self, config: NbsnConfig | None = None):
        super().__init__()
        cfg = config or NbsnConfig()
        offsets = [int(o) for o in cfg.sub_offsets]
        if min(offsets) < 0 or max(offsets) + cfg.sub_frames > cfg.frames:
            raise ValueError(f"sub-windows {offsets} x {cfg.sub_frames} frames do not fit {cfg.frames} frames")
        self.offsets = offsets
        self.sub_frames = cfg.sub_frames
        self.search = cfg.tfi_search
        self.fallback = cfg.tfi_fallback
        self.normalize = cfg.normalize
        self.anchor_mean = cfg.anchor_mean
        self.motion = MotionLift(cfg.motion_ch, blind=False)
        self.attention = ChannelSpatialAttention(cfg.motion_ch)
        self.sub_unet = UNet(cfg.sub_frames + cfg.motion_ch + int(cfg.normalize), cfg.width1, cfg.sub_out_ch)
        self.fuse_unet = UNet(len(offsets) * cfg.sub_out_ch, cfg.width2, 384)
        self.head = fusion_head(384)

    def train(self, mode: bool = True) -> "NonBlindNet":
        """Inference (eval mode) keeps weights and activations channels-last, oneDNN's native layout (no
        reorder around each conv), and applies the activations in place (every one follows a conv
        whose output nothing else reads). Training mode restores the defaults, which the optimiser
        and DDP were set up with. Values and the state_dict's names and shapes are the same either way."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.LeakyReLU):
                module.inplace = not mode
        return self.to(memory_format=torch.contiguous_format if mode else torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        """x: B x 41 x H x W spikes (0/1) -> B x 1 x H x W firing rate."""
        b = x.shape[0]
        if not self.training:
            x = x.contiguous(memory_format=torch.channels_last)
        subs = torch.cat([x[:, o:o + self.sub_frames] for o in self.offsets], dim=0)
        tfp = torch.cat([tfp_center(subs, 11), tfp_center(subs, 19), tfp_center(subs, 27)], dim=1)
        tfi = tfi_center(subs, self.search, self.fallback)
        scale = None
        rate_map = x.mean(dim=1, keepdim=True)
        if self.normalize:
            scale = local_rate(rate_map)
            sub_scale = scale.repeat(len(self.offsets), 1, 1, 1)
            tfp, tfi = tfp / sub_scale, tfi / sub_scale
        motion = self.attention(self.motion(tfp, tfi))
        extra = [torch.log(sub_scale)] if scale is not None else []
        y = self.sub_unet(torch.cat([subs, motion, *extra], dim=1))
        y = torch.cat([y[i * b:(i + 1) * b] for i in range(len(self.offsets))], dim=1)
        y = self.fuse_unet(y)
        out = self._head(y)
        if scale is not None:
            out = out * scale
        # training crops are too small for a precise count; the anchor is part of inference only
        return anchor_mean(out, rate_map) if self.anchor_mean and not self.training else out

    def _head(self, y: Tensor) -> Tensor:
        if self.training:
            return self.head(y)
        if not torch.is_autocast_enabled(y.device.type):
            return self._pointwise_head(y)
        # Inference under bf16/fp16 autocast: the 1x1 head (8 % of the MACs) runs in fp32. In bf16 it
        # moved the output by up to 1.9e-3 from fp32 (the rate itself rounded to 8 bits); in fp32 the
        # rest of the network in bf16 moves it by at most 0.94e-3 (5 windows, shipped weights).
        with torch.autocast(y.device.type, enabled=False):
            return self._pointwise_head(y.float())

    def _pointwise_head(self, y: Tensor) -> Tensor:
        """`self.head` with its 1x1 convs given dilation 2 on CPU: no change to what a 1x1 kernel
        computes, but PyTorch then runs them in oneDNN, which it skips for fp32 1x1 convs on one thread
        (its im2col + GEMM fallback took 1.8x as long here)."""
        dilation = 2 if y.device.type == "cpu" else 1
        for layer in self.head:
            y = F.conv2d(y, layer.weight, layer.bias, dilation=dilation) if isinstance(layer, nn.Conv2d) else layer(y)
        return y
