"""Firing rate -> 8-bit display image, applied only at the edge (publisher u1 format, viewer, PNG, video).

Reconstructions are firing rates in spikes per frame (GUIDE 3.2). For display a rate is divided by a
rate norm (0.6 by default, the simulator's and REDS_BASE's rate gain, so a fully lit pixel maps to 1.0),
multiplied by a gain, clipped to [0, 1] and raised to 1 / gamma (gamma > 1 brightens dark regions):

    u1 = round(255 * clip(gain * rate / rate_norm, 0, 1) ** (1 / gamma))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

DEFAULT_RATE_NORM = 0.6


@dataclass(frozen=True)
class DisplayScale:
    rate_norm: float = DEFAULT_RATE_NORM
    gamma: float = 1.0
    gain: float = 1.0

    def __post_init__(self):
        for name in ("rate_norm", "gamma", "gain"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ConfigError(f"display {name} must be a positive number, got {value!r}")

    @property
    def is_identity_for_u1(self) -> bool:
        """True when an already display-ready u1 image needs no further change."""
        return self.gain == 1.0 and self.gamma == 1.0


def rate_to_u1(rate: np.ndarray, scale: DisplayScale = DisplayScale(), out: np.ndarray | None = None) -> np.ndarray:
    """Firing rate (any float array) -> uint8 display image of the same shape."""
    x = np.multiply(rate, np.float32(scale.gain / scale.rate_norm), dtype=np.float32)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    if scale.gamma != 1.0:
        np.power(x, np.float32(1.0 / scale.gamma), out=x)
    x *= 255.0
    x += 0.5  # round half up; values are already in [0, 255]
    if out is None:
        out = np.empty(x.shape, np.uint8)
    np.copyto(out, x, casting="unsafe")
    return out


def u1_lut(gain: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """256-entry table that re-applies gain and gamma to an already display-ready u1 image."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    x = np.clip(levels * np.float32(gain), 0.0, 1.0)
    if gamma != 1.0:
        x = np.power(x, np.float32(1.0 / gamma))
    return (x * 255.0 + 0.5).astype(np.uint8)


def to_display(image: np.ndarray, scale: DisplayScale = DisplayScale()) -> np.ndarray:
    """Any frame from the stream -> uint8 for display: u1 as is (or through a gain/gamma table), float
    firing rates through `rate_to_u1`."""
    if image.dtype == np.uint8:
        if scale.is_identity_for_u1:
            return image
        return u1_lut(scale.gain, scale.gamma)[image]
    return rate_to_u1(image, scale)
