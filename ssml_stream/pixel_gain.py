"""Per-pixel gain of the sensor (fixed-pattern threshold variation), learnt from a moving scene.

Each pixel of a spiking camera has its own threshold, so under the same light pixel i fires at
g_i times the rate of a perfect pixel (a few percent of spread is usual, 10 % in the sweep's worst
setting). SSML cannot remove that pattern: the blind-spot network's label is the pixel's own spikes,
gain included, and on a still scene nothing can tell the pattern from texture. Once the scene moves,
it can: the pattern stays on the same pixels while the texture passes over them.

`PixelGainEstimator.add` takes 41-frame windows (the adapter's samples) and `estimate` returns a gain
map or None:
- long-run mean rate m per pixel; its ratio to the 9 x 9 box mean of m, minus 1, is the raw pattern
  estimate r (texture averaged out by motion, the pattern left);
- what is left of the texture in r is smooth along the motion and correlated between neighbours; a
  threshold pattern is independent from pixel to pixel. The share of r's variance that its 4-neighbour
  covariance does not explain (minus the counting noise, estimated from each pixel's variation over
  time) is the pattern's share `s`, and r is shrunk by it: on a moving scene without a pattern s is near
  0, with one near 1 (measured: README);
- only where the scene moved: a pixel's variance over time, box-averaged over 21 px, against the mean
  spatial variance of a window's rates ramps a per-pixel `moving` weight from 0 (still: 0.2) to 1
  (0.5). A still region keeps gain 1 whatever its texture; with too few moving pixels, or nothing to
  correct, there is no map.
- a pixel whose long-run rate is more than 50 % off its neighbours' on a moving scene is a defect (hot
  or dead), not texture: it stays out of those statistics and is corrected in full.
Gain = 1 + s * moving * r (s = 1 for defects), clipped to [0.5, 2]; the reconstruction is divided by it
(pipeline).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConfigError

PATTERN_BOX = 9         # px: the local mean a pixel's long-run rate is compared with
MOTION_BOX = 21         # px: a pixel's variation over time is averaged over this box
MOVING_LOW, MOVING_HIGH = 0.2, 0.5   # variation over time / spatial variance: still below, moving above
MIN_WINDOWS = 100       # windows before any estimate
MIN_MOVING_SHARE = 0.05  # share of the pixels that must have moved
DEFECT = 0.5            # a long-run rate 50 % off its neighbours' on a moving scene: a defect, not texture
GAIN_RANGE = (0.5, 2.0)


def box_mean(img: np.ndarray, k: int) -> np.ndarray:
    """k x k box mean with reflected borders (cv2, the pipeline already depends on it)."""
    import cv2
    return cv2.blur(img, (k, k), borderType=cv2.BORDER_REFLECT)


class PixelGainEstimator:
    def __init__(self, height: int, width: int):
        self.n = 0
        self.sum = np.zeros((height, width), np.float64)
        self.sum_sq = np.zeros((height, width), np.float64)
        self.spatial_var = 0.0  # sum over windows of the variance of the window's rate map

    def add(self, window: np.ndarray) -> None:
        """window: n x H x W 0/1 spikes."""
        rate = window.sum(axis=0, dtype=np.uint16).astype(np.float32) / len(window)
        self.sum += rate
        self.sum_sq += rate.astype(np.float64) ** 2
        self.spatial_var += float(rate.var())
        self.n += 1

    def estimate(self) -> tuple[np.ndarray | None, dict]:
        """(gain map H x W float32 or None, numbers behind it)."""
        info = {"windows": self.n, "pattern_share": 0.0, "moving_share": 0.0, "gain_std": 0.0}
        if self.n < MIN_WINDOWS or self.spatial_var <= 0:
            return None, info
        mean = (self.sum / self.n).astype(np.float32)
        over_time = np.maximum(self.sum_sq / self.n - mean.astype(np.float64) ** 2, 0).astype(np.float32)
        moving = np.clip((box_mean(over_time, MOTION_BOX) / (self.spatial_var / self.n) - MOVING_LOW)
                         / (MOVING_HIGH - MOVING_LOW), 0, 1)
        local = box_mean(mean, PATTERN_BOX)
        lit = local > 1e-4
        raw = np.where(lit, mean / np.maximum(local, 1e-4) - 1, 0).astype(np.float32)
        use = (moving >= 0.5) & lit
        info["moving_share"] = float(use.mean())
        if info["moving_share"] < MIN_MOVING_SHARE:
            return None, info
        defect = np.abs(raw) > DEFECT   # hot or dead pixels: corrected in full, kept out of the statistics
        fair = use & ~defect
        pairs = (fair[1:, :] & fair[:-1, :], fair[:, 1:] & fair[:, :-1])
        share = 0.0
        if pairs[0].any() and pairs[1].any():
            r = np.where(fair, raw - raw[fair].mean(), 0)
            var = float((r[fair] ** 2).mean())
            neighbour = float(np.mean([(r[1:, :] * r[:-1, :])[pairs[0]].mean(),
                                       (r[:, 1:] * r[:, :-1])[pairs[1]].mean()]))
            noise = float((over_time / self.n / np.maximum(local, 1e-4) ** 2)[fair].mean())
            share = float(np.clip((var - max(neighbour, 0.0) - noise) / var, 0, 1)) if var > 0 else 0.0
        info["pattern_share"] = share
        gain = np.clip(1 + np.where(defect, 1.0, share) * moving * raw, *GAIN_RANGE).astype(np.float32)
        if np.all(gain == 1):   # no pattern and no defect: no map, so no division per frame and no file
            return None, info
        info["gain_std"] = float(gain[use].std())
        return gain, info


def gain_path_for(weights_path) -> Path:
    """Where the gain map learnt with adapted weights is kept: `<stem>-gain.npy` beside them."""
    path = Path(weights_path)
    return path.with_name(f"{path.stem}-gain.npy")


def save_gain_atomic(path, gain: np.ndarray) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, gain.astype(np.float32), allow_pickle=False)
    os.replace(tmp, path)


def gain_beside(model: str, height: int, width: int) -> np.ndarray | None:
    """The checked gain map saved beside a model file (`gain_path_for`), or None when there is none."""
    path = gain_path_for(model) if model.endswith(".pt") else None
    return load_gain(path, height, width) if path is not None and path.is_file() else None


def load_gain(path, height: int, width: int) -> np.ndarray:
    """A gain map written by `save_gain_atomic`, checked: H x W float32, finite, within GAIN_RANGE.
    ConfigError in one line otherwise (never unpickles)."""
    try:
        gain = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"gain map {path}: not a .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if gain.dtype != np.float32 or gain.shape != (height, width):
        raise ConfigError(f"gain map {path}: expected {height} x {width} float32 (the sensor's frame size), "
                          f"got {' x '.join(map(str, gain.shape))} {gain.dtype}")
    if not (np.isfinite(gain).all() and gain.min() >= GAIN_RANGE[0] and gain.max() <= GAIN_RANGE[1]):
        raise ConfigError(f"gain map {path}: values must be finite and within {GAIN_RANGE[0]}-{GAIN_RANGE[1]}")
    return gain
