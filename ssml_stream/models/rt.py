"""Real-time non-blind network ("rt" profile) for live reconstruction on a small CPU.

Target: >= 30 fps at 250 x 400, batch 1, TorchScript on a 2-core CPU, with headroom for capture
(aim <= 25 ms per frame). Same contract as the other networks: B x 41 x H x W spikes -> B x 1 x H x W
firing rate; trained by the same mutual loss (it simply replaces the NBSN).

Design (beyond the paper; choices measured with `ssml-bench model` and op-level profiles):
- The 41 frames are reduced to 8 full-resolution channels first: a learned linear map over the frames
  (7 channels; the first four start as centred TFP box filters over 11/19/27/41 frames) and TFI at the
  centre (search 12, fallback 24). Nothing else touches the 41 frames.
- Full-resolution 1x1 maps run as one matmul over flattened pixels (`pointwise`): the CPU convolution
  kernel spends 10-20x longer on layout reorders for so few channels.
- A 4x4 stride-2 conv takes the features to half resolution (cheaper than pixel-unshuffle + 3x3 and
  still sees 4x4 full-resolution pixels); a 2-level mini U-Net follows (stride-2 3x3 down to quarter
  resolution, 1x1 + pixel-shuffle up, skip by concatenation). Channel counts are multiples of 8 (the
  CPU kernels slow down noticeably on odd counts such as 36).
- Output = pixel-shuffled half-resolution residual + a learned 1x1 over the full-resolution features
  (starts as TFP41), so the network begins as the TFP41 baseline and full-resolution detail always
  has a direct path.
- Inputs are padded (replicate) at the bottom/right to a multiple of 4 and the output cropped back.
- Light-level invariance (`normalize`, on for networks trained since the sweep): every rate feature is
  divided by the local mean firing rate (TFP41 averaged over ~28 px, smooth) and the output multiplied
  back, so a dark region looks to the convolutions like a bright one (the firing rate spans two decades
  between dusk and daylight). The log of that local rate is one more input channel: how many spikes
  stand behind a value decides how much to smooth, and the normalised features alone hide it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LEAKY_SLOPE
from .features import anchor_mean, local_rate, tfi_center

TFP_INIT_LENGTHS = (11, 19, 27, 41)


@dataclass
class RtConfig:
    frames: int = 41
    temporal_ch: int = 7       # learned linear maps over the frames (first 4 start as TFP 11/19/27/41)
    width: int = 24            # half-resolution width
    deep_width: int = 48       # quarter-resolution width
    up_ch: int = 8             # channels brought back from quarter to half resolution
    tfi_search: int = 12
    tfi_fallback: int = 24
    normalize: bool = True     # divide features by the window's mean rate, multiply the output back
    anchor_mean: bool = True   # inference: output mean = the window's mean firing rate (features.anchor_mean)


def _act() -> nn.Module:
    return nn.LeakyReLU(LEAKY_SLOPE)


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 conv as one matmul over flattened pixels. On CPU this is 10-20x faster than the
    convolution kernel for few channels at full resolution (no layout reorders)."""
    b, c, h, w = x.shape
    out_ch = conv.weight.shape[0]
    y = torch.matmul(conv.weight.view(out_ch, c), x.reshape(b, c, h * w))
    return (y + conv.bias.view(1, out_ch, 1)).view(b, out_ch, h, w)


class RealTimeNet(nn.Module):
    def __init__(self, config: RtConfig | None = None):
        super().__init__()
        cfg = config or RtConfig()
        if cfg.temporal_ch < len(TFP_INIT_LENGTHS):
            raise ValueError(f"temporal_ch must be >= {len(TFP_INIT_LENGTHS)}")
        if cfg.frames < max(TFP_INIT_LENGTHS) or cfg.frames % 2 == 0:
            raise ValueError(f"frames must be odd and >= {max(TFP_INIT_LENGTHS)}")
        self.search = cfg.tfi_search
        self.fallback = cfg.tfi_fallback
        self.normalize = cfg.normalize
        self.anchor_mean = cfg.anchor_mean
        feat_ch = cfg.temporal_ch + 1  # + TFI
        w, dw = cfg.width, cfg.deep_width
        self.temporal = nn.Conv2d(cfg.frames, cfg.temporal_ch, 1)
        self.down = nn.Sequential(nn.Conv2d(feat_ch + int(cfg.normalize), w, 4, stride=2, padding=1), _act())
        self.deep = nn.Sequential(nn.Conv2d(w, dw, 3, stride=2, padding=1), _act(),
                                  nn.Conv2d(dw, dw, 3, padding=1), _act())
        self.up = nn.Sequential(nn.Conv2d(dw, 4 * cfg.up_ch, 1), nn.PixelShuffle(2))
        self.merge = nn.Sequential(nn.Conv2d(w + cfg.up_ch, w, 3, padding=1), _act())
        self.to_full = nn.Sequential(nn.Conv2d(w, 4, 1), nn.PixelShuffle(2))
        self.skip = nn.Conv2d(feat_ch, 1, 1)
        self._init_as_tfp(cfg.frames)

    def _init_as_tfp(self, frames: int) -> None:
        with torch.no_grad():
            c = frames // 2
            for i, n in enumerate(TFP_INIT_LENGTHS):
                self.temporal.weight[i].zero_()
                self.temporal.weight[i, c - n // 2:c + n // 2 + 1] = 1.0 / n
                self.temporal.bias[i] = 0.0
            self.skip.weight.zero_()
            self.skip.bias.zero_()
            self.skip.weight[0, TFP_INIT_LENGTHS.index(41)] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        """x: B x 41 x H x W spikes (0/1) -> B x 1 x H x W firing rate."""
        rate_map = x.mean(dim=1, keepdim=True)
        out = self.from_features(pointwise(self.temporal, x), tfi_center(x, self.search, self.fallback), rate_map)
        # training crops are too small for a precise count; the anchor is part of inference only
        return anchor_mean(out, rate_map) if self.anchor_mean and not self.training else out

    def from_features(self, temporal: Tensor, tfi: Tensor, rate_map: Tensor) -> Tensor:
        """Everything after the 41 frames are read (the duo shares that read between two networks):
        B x temporal_ch maps, B x 1 TFI and B x 1 window rate -> B x 1 x H x W rate, unanchored."""
        h, w = rate_map.shape[-2], rate_map.shape[-1]
        feats = F.pad(torch.cat([temporal, tfi], dim=1), (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        net_in = feats
        if self.normalize:
            scale = local_rate(F.pad(rate_map, (0, (-w) % 4, 0, (-h) % 4), mode="replicate"))
            feats = feats / scale
            net_in = torch.cat([feats, torch.log(scale)], dim=1)
        half = self.down(net_in)
        y = self.merge(torch.cat([half, self.up(self.deep(half))], dim=1))
        out = self.to_full(y) + pointwise(self.skip, feats)
        if self.normalize:
            out = out * scale
        return out[..., :h, :w]
