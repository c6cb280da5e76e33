"""Reference re-implementations of peer methods' inference paths, used only by `ssml-bench compare`.

Written for this benchmark from architecture descriptions (the NBSN's: docs/models.md), not taken from
any peer's code:

- `ReleaseNbsn`: the original SSML public release's way of running the full NBSN, i.e. the same
  network as ours (same weights) run in eager fp32 with NCHW tensors, its motion features (TFP
  over 11/19/27 frames, TFI search 12 / fallback 24) computed on the host in numpy, vectorised over
  pixels, and the shared U-Net run once per 27-frame sub-window (three passes, not one batch).
- `PlainUNet`: a size/compute stand-in for a supervised peer of similar size (Spk2ImgNet-class:
  the 41-frame window in, an image out). A plain 4-level U-Net (two 3x3 convs per level, max-pool
  down, nearest up, skip connections, ReLU), 2.9 M parameters, 17 GMAC per 250 x 400 frame.
  Random weights: it says what such a network costs to run, nothing about what a trained one
  would reconstruct.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.features import anchor_mean, local_rate

TFP_LENGTHS = (11, 19, 27)


def numpy_tfp(window: np.ndarray, n: int) -> np.ndarray:
    """Mean of the centred n frames of a T x H x W 0/1 window -> H x W float32."""
    c = window.shape[0] // 2
    return window[c - n // 2:c + n // 2 + 1].mean(axis=0, dtype=np.float32)


def numpy_tfi(window: np.ndarray, search: int = 12, fallback: int = 24) -> np.ndarray:
    """1 / (first spike after the centre frame - last spike at or before it), both within `search`
    frames; `fallback` frames when either is missing. T x H x W 0/1 -> H x W float32."""
    t = window.shape[0]
    c = t // 2
    past = window[max(0, c - search):c + 1][::-1]         # row 0 = the centre frame, going back
    future = window[c + 1:min(t, c + search + 1)]         # row 0 = the frame after the centre
    interval = np.argmax(past, axis=0) + np.argmax(future, axis=0) + 1
    found = past.any(axis=0) & future.any(axis=0)
    return (1.0 / np.where(found, interval, fallback)).astype(np.float32)


class ReleaseNbsn:
    """Callable: 41 x H x W uint8 window -> H x W float32 firing rate, the release's inference path."""

    def __init__(self, net: nn.Module, device: str = "cpu"):
        nn.Module.train(net, False)  # eval flags only: keep the network's default (NCHW) layout
        self.net = net.to(device)
        self.device = device

    def features(self, window: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per sub-window: TFP stack (3 x H x W) and TFI (1 x H x W), in numpy."""
        net, tfps, tfis = self.net, [], []
        for o in net.offsets:
            sub = window[o:o + net.sub_frames]
            tfps.append(np.stack([numpy_tfp(sub, n) for n in TFP_LENGTHS]))
            tfis.append(numpy_tfi(sub, net.search, net.fallback)[None])
        return tfps, tfis

    @torch.no_grad()
    def __call__(self, window: np.ndarray) -> np.ndarray:
        net = self.net
        tfps, tfis = self.features(window)
        x = torch.from_numpy(window).to(self.device).float()[None]
        # networks trained with light-level normalisation or the brightness anchor (which the release did
        # not have) get them here too, so the same weights compute the same image
        scale = local_rate(x.mean(dim=1, keepdim=True)) if net.normalize else None
        outs = []
        for o, tfp, tfi in zip(net.offsets, tfps, tfis):
            tfp = torch.from_numpy(tfp)[None].to(self.device)
            tfi = torch.from_numpy(tfi)[None].to(self.device)
            extra = []
            if scale is not None:
                tfp, tfi, extra = tfp / scale, tfi / scale, [torch.log(scale)]
            motion = net.attention(net.motion(tfp, tfi))
            outs.append(net.sub_unet(torch.cat([x[:, o:o + net.sub_frames], motion, *extra], dim=1)))
        y = net.head(net.fuse_unet(torch.cat(outs, dim=1)))
        if scale is not None:
            y = y * scale
        if net.anchor_mean:
            y = anchor_mean(y, x.mean(dim=1, keepdim=True))
        return y[0, 0].cpu().numpy()


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))


class PlainUNet(nn.Module):
    """41 x H x W window -> 1 x H x W; widths 32/64/128/160 and a 224-wide bottom (2.9 M parameters)."""

    def __init__(self, in_ch: int = 41, widths: tuple = (32, 64, 128, 160), bottom: int = 224):
        super().__init__()
        self.down = nn.ModuleList()
        ch = in_ch
        for w in widths:
            self.down.append(_double_conv(ch, w))
            ch = w
        self.bottom = _double_conv(ch, bottom)
        self.up = nn.ModuleList()
        ch = bottom
        for w in reversed(widths):
            self.up.append(_double_conv(ch + w, w))
            ch = w
        self.out = nn.Conv2d(ch, 1, 1)
        self.multiple = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1))
        return self.out(x)[..., :h, :w]
