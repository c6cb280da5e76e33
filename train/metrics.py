"""Image quality against ground truth: PSNR (from ssml_stream.features) and SSIM.

SSIM is our own implementation of Wang et al. (2004): local statistics under an 11x11 Gaussian
window (sigma 1.5) computed with OpenCV's `GaussianBlur` (border: reflect), constants
C1 = (0.01 L)^2, C2 = (0.03 L)^2, mean of the SSIM map over the whole image.
"""
from __future__ import annotations

import numpy as np

from ..features import psnr
from ..formats import RATE_GAIN

__all__ = ["psnr", "ssim", "rate_to_intensity"]


def rate_to_intensity(rate: np.ndarray, rate_gain: float = RATE_GAIN) -> np.ndarray:
    """Firing rate (spikes/frame) -> intensity in [0, 1] under the rate = gain x intensity model."""
    return np.clip(np.asarray(rate, np.float32) / rate_gain, 0.0, 1.0)


def ssim(estimate: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> float:
    import cv2

    x = np.clip(np.asarray(estimate, np.float64), 0, peak)
    y = np.clip(np.asarray(truth, np.float64), 0, peak)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two images of the same H x W shape, got {x.shape} and {y.shape}")

    def blur(img):
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())
