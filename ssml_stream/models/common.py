"""Building blocks shared by the SSML networks: plain and half-plane ("shifted") convolutions and
pools, a two-level U-Net, motion-feature lifting and CBAM-style attention.

Half-plane shift trick (Laine et al. 2019, used by the SSML BSN): every 3x3 conv and every 2x2 pool
first shifts its input one row down (pad one zero row on top, drop the bottom row). A 3x3 conv at
row r then reads rows r-2..r only, a pool followed by nearest upsampling never mixes in a lower row,
so the whole U-Net sees only rows <= r. One more shift at the end makes that rows < r: the strict
upper half-plane. Four rotations of the input give the four half-planes, whose union is every pixel
except the centre one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.1
UNET_MULTIPLE = 4  # two 2x downsamplings: U-Net inputs are padded to a multiple of 4


def shift_down(x: Tensor, rows: int = 1) -> Tensor:
    """Move content `rows` rows down: zero rows on top, the bottom rows dropped."""
    h = x.shape[-2]
    return F.pad(x, (0, 0, rows, 0))[..., :h, :]


class ShiftConv2d(nn.Conv2d):
    """3x3 conv whose output row r depends on input rows <= r only.

    Same as shift_down then a padded 3x3 conv, done in one pad: two zero rows on top (none at the
    bottom) and an unpadded conv, so output row r reads input rows r-2..r."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch, 3, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (1, 1, 2, 0)))


class ShiftMaxPool2d(nn.Module):
    """2x2 max pool after a one-row shift, so nearest upsampling never looks at a lower row.
    (Inputs have even height: the pool's floor drops the bottom row the shift pushed out.)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.pad(x, (0, 0, 1, 0)), 2)


def conv3x3(in_ch: int, out_ch: int, blind: bool) -> nn.Module:
    return ShiftConv2d(in_ch, out_ch) if blind else nn.Conv2d(in_ch, out_ch, 3, padding=1)


def conv_act(in_ch: int, out_ch: int, blind: bool) -> nn.Sequential:
    return nn.Sequential(conv3x3(in_ch, out_ch, blind), nn.LeakyReLU(LEAKY_SLOPE))


class UNet(nn.Module):
    """Two max-pool downsamplings, nearest upsampling, skip connections, LeakyReLU 0.1.

    Encoder width `width` at every level (48 in the SSML BSN), decoder width 2 * width (96); the last
    conv maps to `out_ch` and is followed by the activation as well (the result feeds further layers).
    Any H x W: the input is padded at the bottom/right to a multiple of 4 and the output cropped back
    (bottom/right padding cannot break the blind spot, which only looks upwards).
    """

    def __init__(self, in_ch: int, width: int, out_ch: int, blind: bool = False):
        super().__init__()
        pool: nn.Module = ShiftMaxPool2d() if blind else nn.MaxPool2d(2)
        self.enc0 = nn.Sequential(conv_act(in_ch, width, blind), conv_act(width, width, blind))
        self.pool1 = pool
        self.enc1 = conv_act(width, width, blind)
        self.pool2 = pool
        self.enc2 = conv_act(width, width, blind)
        self.dec1 = nn.Sequential(conv_act(2 * width, 2 * width, blind), conv_act(2 * width, 2 * width, blind))
        self.dec0 = nn.Sequential(conv_act(3 * width, 2 * width, blind), conv_act(2 * width, out_ch, blind))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = F.pad(x, (0, (-w) % UNET_MULTIPLE, 0, (-h) % UNET_MULTIPLE))
        s0 = self.enc0(x)
        s1 = self.enc1(self.pool1(s0))
        y = self.enc2(self.pool2(s1))
        y = self.dec1(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s1], dim=1))
        y = self.dec0(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s0], dim=1))
        return y[..., :h, :w]


class MotionLift(nn.Module):
    """SSML motion features: TFP stack (3 ch) mixed by a learned 1x1 conv, then TFP mix and TFI
    each lifted by a 3x3 conv to `out_ch` channels and summed. Blind: the 3x3 lifts are shifted."""

    def __init__(self, out_ch: int = 16, blind: bool = False):
        super().__init__()
        self.mix_tfp = nn.Conv2d(3, 3, 1)
        self.lift_tfp = conv3x3(3, out_ch, blind)
        self.lift_tfi = conv3x3(1, out_ch, blind)

    def forward(self, tfp: Tensor, tfi: Tensor) -> Tensor:
        return self.lift_tfp(self.mix_tfp(tfp)) + self.lift_tfi(tfi)


class ChannelSpatialAttention(nn.Module):
    """CBAM-style gate: channel attention (shared MLP over global average and max pooling), then
    spatial attention (7x7 conv over the channel-wise mean and max)."""

    def __init__(self, channels: int, reduction: int = 4, kernel: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(stats))


def fusion_head(in_ch: int) -> nn.Sequential:
    """1x1 convs in_ch -> 384 -> 96 -> 1 (the SSML output head), linear output = firing rate."""
    return nn.Sequential(nn.Conv2d(in_ch, 384, 1), nn.LeakyReLU(LEAKY_SLOPE),
                         nn.Conv2d(384, 96, 1), nn.LeakyReLU(LEAKY_SLOPE),
                         nn.Conv2d(96, 1, 1))
