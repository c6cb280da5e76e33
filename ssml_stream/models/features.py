"""Per-pixel temporal features of a spike window in pure torch (the Numba kernels in
`ssml_stream.features` are the reference; these run on any device, inside `forward`, and trace/script).

Input windows are float tensors B x T x H x W with values 0/1 (T odd). Both functions are vectorised
over pixels: a handful of reductions over the frame axis, no Python loop over pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def tfp_center(x: Tensor, n: int) -> Tensor:
    """Mean firing rate of the centred n-frame sub-window: B x T x H x W -> B x 1 x H x W."""
    t = x.shape[1]
    if n < 1 or n > t or n % 2 == 0:
        raise ValueError("tfp_center: n must be odd and at most the window length")
    c = t // 2
    half = n // 2
    return x[:, c - half:c + half + 1].mean(dim=1, keepdim=True)


def tfi_center(x: Tensor, search: int = 12, fallback: int = 24) -> Tensor:
    """Texture from interval at the centre frame c = T // 2 (the SSML pseudo-label).

    1 / (first spike in (c, c + search] - last spike in [c - search, c]); `fallback` replaces the
    interval when either spike is missing, so values lie in [1 / fallback, 1].
    B x T x H x W -> B x 1 x H x W.
    """
    t = x.shape[1]
    if search < 1 or fallback < 1:
        raise ValueError("tfi_center: search and fallback must be >= 1")
    c = t // 2
    lo = max(0, c - search)
    hi = min(t - 1, c + search)
    n_past = c - lo + 1
    n_future = hi - c
    # Frame k of the past block gets weight k + 1, so the max marks the latest spike (0: none).
    past_rank = torch.arange(1, n_past + 1, dtype=x.dtype, device=x.device).view(1, n_past, 1, 1)
    last = (x[:, lo:c + 1] * past_rank).amax(dim=1, keepdim=True)
    # Future frames get decreasing weights, so the max marks the earliest spike (0: none).
    future_rank = torch.arange(n_future, 0, -1, dtype=x.dtype, device=x.device).view(1, n_future, 1, 1)
    first = (x[:, c + 1:hi + 1] * future_rank).amax(dim=1, keepdim=True)
    # last frame = lo + last - 1; first frame = c + 1 + n_future - first.
    interval = float(c + 2 + n_future - lo) - first - last
    found = (last > 0) & (first > 0)
    interval = torch.where(found, interval, torch.full_like(interval, float(fallback)))
    return 1.0 / interval


def motion_inputs(x: Tensor, tfp_lengths: tuple[int, int, int] = (11, 19, 27),
                  search: int = 12, fallback: int = 24) -> tuple[Tensor, Tensor]:
    """(TFP stack B x 3 x H x W over the centred sub-windows, TFI B x 1 x H x W) of one window."""
    tfp = torch.cat([tfp_center(x, n) for n in tfp_lengths], dim=1)
    return tfp, tfi_center(x, search, fallback)


def adaptive_label(x: Tensor, search: int = 12, fallback: int = 24, min_count: int = 5) -> Tensor:
    """The training pseudo-label at every light level: TFI where the pixel fired at least `min_count`
    times in the window, else the window's spike count / T (TFP over the whole window).

    TFI alone is biased in the dark: with no spike within `search` frames its interval becomes
    `fallback`, so a pixel firing every 40 frames reads 1/24 instead of 1/40 (67 % too bright).
    min_count = 5 in 41 frames means intervals of at most ~8 frames, where TFI always finds both
    spikes; below that the count is the unbiased (if motion-blurred) estimate.
    """
    counts = x.sum(dim=1, keepdim=True)
    return torch.where(counts >= min_count, tfi_center(x, search, fallback), counts / x.shape[1])


def local_rate(rate: Tensor) -> Tensor:
    """Smooth local mean of a B x 1 x H x W rate map: 4x4 means, a 7x7 box over those (~28 px),
    bilinear back to full size, plus a floor of 1e-3 so dark regions stay finite. Any H x W (padded
    by replication to a multiple of 4 inside, cropped back). The light-level normalisation of the
    NBSNs divides by it (docs/models.md)."""
    h, w = rate.shape[-2], rate.shape[-1]
    padded = F.pad(rate, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
    quarter = F.avg_pool2d(padded, 4)
    quarter = F.avg_pool2d(quarter, 7, stride=1, padding=3, count_include_pad=False)
    full = F.interpolate(quarter, scale_factor=4.0, mode="bilinear", align_corners=False)
    return full[..., :h, :w] + 1e-3


def anchor_mean(out: Tensor, rate_map: Tensor) -> Tensor:
    """Scale each output image (B x 1 x H x W) so that its mean equals its window's mean firing rate,
    given as the window's per-pixel rate map (B x 1 x H x W, TFP over the whole window, which the
    networks compute anyway).

    The spike count of a window is an unbiased estimate of the light that fell on the sensor (the
    integrator keeps its residue), and over a whole frame it is precise: even at 0.01 spikes per pixel
    per frame a 250 x 400 window holds 41,000 spikes (0.5 % noise). The networks decide where light
    goes; the count decides how much there is. Measured on the sweep, this removed the networks'
    systematic -0.7 % gain error and rt's +6 % in the dark (docs/models.md); it costs where the count
    itself is wrong (dark-current spikes add their light). Negative outputs (no light is negative) are
    clipped to 0 first, so the mean is a sum of light.
    """
    out = out.clamp_min(0.0)
    rate = rate_map.float().mean(dim=(1, 2, 3), keepdim=True)
    mean = out.float().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return out * (rate / mean).to(out.dtype)
