"""Firing rate -> 8-bit display image, applied only at the edge (publisher u1 format, viewer, PNG, video).

Reconstructions are firing rates in spikes per frame (docs/formats.md#windows-and-firing-rate). For
display a rate is divided by a rate norm (default: the rate gain `formats.RATE_GAIN`, so a fully lit
pixel maps to 1.0), multiplied by a gain, clipped to [0, 1] and raised to 1 / gamma (> 1 brightens darks):

    u1 = round(255 * clip(gain * rate / rate_norm, 0, 1) ** (1 / gamma))

(with a gamma, the clipped value is quantised to 4096 levels first and the curve is a table lookup).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from .errors import ConfigError
from .formats import RATE_GAIN

DEFAULT_RATE_NORM = RATE_GAIN


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


RATE_LEVELS = 4096   # normalised rates are quantised to this many levels before the gamma table


@functools.lru_cache(maxsize=16)
def _level_lut(gamma: float) -> np.ndarray:
    """u1 value of each of RATE_LEVELS normalised levels in [0, 1], gamma applied."""
    x = np.linspace(0.0, 1.0, RATE_LEVELS)
    if gamma != 1.0:
        x = x ** (1.0 / gamma)
    return np.floor(x * 255.0 + 0.5).astype(np.uint8)


@numba.njit(nogil=True, cache=True)
def _rate_to_u1_kernel(rate: np.ndarray, scale: np.float32, out: np.ndarray) -> None:
    for i in range(rate.shape[0]):
        x = rate[i] * scale
        x = x if x > 0.0 else np.float32(0.0)     # also maps NaN to 0
        x = x if x < 1.0 else np.float32(1.0)
        out[i] = np.uint8(x * np.float32(255.0) + np.float32(0.5))


@numba.njit(nogil=True, cache=True)
def _rate_to_u1_gamma_kernel(rate: np.ndarray, scale: np.float32, lut: np.ndarray, out: np.ndarray) -> None:
    top = np.float32(lut.shape[0] - 1)
    for i in range(rate.shape[0]):
        x = rate[i] * scale
        x = x if x > 0.0 else np.float32(0.0)
        x = x if x < 1.0 else np.float32(1.0)
        out[i] = lut[np.int32(x * top + np.float32(0.5))]


def rate_to_u1(rate: np.ndarray, scale: DisplayScale = DisplayScale(), out: np.ndarray | None = None) -> np.ndarray:
    """Firing rate (any float array) -> uint8 display image of the same shape, in one pass (Numba)."""
    flat = np.ascontiguousarray(rate, dtype=np.float32).reshape(-1)
    if out is None:
        out = np.empty(np.shape(rate), np.uint8)
    elif out.dtype != np.uint8 or out.shape != np.shape(rate) or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous uint8 array of the rate's shape")
    factor = np.float32(scale.gain / scale.rate_norm)
    if scale.gamma == 1.0:
        _rate_to_u1_kernel(flat, factor, out.reshape(-1))
    else:
        _rate_to_u1_gamma_kernel(flat, factor, _level_lut(float(scale.gamma)), out.reshape(-1))
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
