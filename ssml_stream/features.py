"""Classical reconstructions as Numba kernels (docs/formats.md#windows-and-firing-rate). Values are
firing rate in spikes per frame.

TFP: mean of the window's frames. TFI: 1 / (first spike after the centre - last spike at or before
it), searching `search` frames each side; `fallback` is the interval used when either spike is missing.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _tfp_into(window, out):
    n, h, w = window.shape
    acc = np.zeros((h, w), np.uint16)
    for f in range(n):
        fr = window[f]
        for r in range(h):
            for c in range(w):
                acc[r, c] += fr[r, c]
    inv = np.float32(1.0 / n)
    for r in range(h):
        for c in range(w):
            out[r, c] = acc[r, c] * inv


@numba.njit(nogil=True, cache=True)
def _tfp_all_into(frames, n, out):
    """Running sum: out[k] = mean(frames[k : k + n])."""
    t, h, w = frames.shape
    acc = np.zeros((h, w), np.int32)
    inv = np.float32(1.0 / n)
    for f in range(n):
        acc += frames[f]
    for k in range(t - n + 1):
        if k > 0:
            for r in range(h):
                for c in range(w):
                    acc[r, c] += np.int32(frames[k + n - 1, r, c]) - np.int32(frames[k - 1, r, c])
        for r in range(h):
            for c in range(w):
                out[k, r, c] = acc[r, c] * inv


@numba.njit(nogil=True, cache=True)
def _tfi_into(window, center, search, fallback, out):
    n, h, w = window.shape
    lo = max(0, center - search)
    hi = min(n - 1, center + search)
    for r in range(h):
        for c in range(w):
            prev = -1
            for f in range(center, lo - 1, -1):
                if window[f, r, c]:
                    prev = f
                    break
            nxt = -1
            for f in range(center + 1, hi + 1):
                if window[f, r, c]:
                    nxt = f
                    break
            interval = fallback
            if prev >= 0 and nxt >= 0:
                interval = nxt - prev
            out[r, c] = np.float32(1.0) / np.float32(interval)


@numba.njit(nogil=True, cache=True)
def _tfi_all_into(frames, search, fallback, out):
    """out[t] = TFI centred on frame t of the chunk; spikes are searched within the chunk only."""
    t_len, h, w = frames.shape
    big = 1 << 30
    for r in range(h):
        for c in range(w):
            prev = -big
            nxt = -big
            # nxt = first spike index > t (scan ahead lazily)
            k = 0
            for t in range(t_len):
                if frames[t, r, c]:
                    prev = t
                if nxt <= t:
                    k = max(k, t + 1)
                    nxt = big
                    while k < t_len:
                        if frames[k, r, c]:
                            nxt = k
                            break
                        k += 1
                interval = fallback
                if prev >= t - search and prev >= 0 and nxt <= t + search:
                    interval = nxt - prev
                out[t, r, c] = np.float32(1.0) / np.float32(interval)


def _as_frames(window) -> np.ndarray:
    window = np.asarray(window)
    if window.ndim != 3:
        raise ValueError(f"expected frames as n x H x W, got shape {window.shape}")
    if window.dtype != np.uint8:
        window = (window != 0).astype(np.uint8)
    return np.ascontiguousarray(window)


def tfp(window, out: np.ndarray | None = None) -> np.ndarray:
    """Texture from playback: mean firing rate over the window (n x H x W -> H x W float32)."""
    window = _as_frames(window)
    if out is None:
        out = np.empty(window.shape[1:], np.float32)
    _tfp_into(window, out)
    return out


def tfp_all(frames, n: int = 41) -> np.ndarray:
    """TFP for every complete n-frame window of a chunk: T x H x W -> (T - n + 1) x H x W."""
    frames = _as_frames(frames)
    if frames.shape[0] < n:
        raise ValueError(f"need at least {n} frames, got {frames.shape[0]}")
    out = np.empty((frames.shape[0] - n + 1,) + frames.shape[1:], np.float32)
    _tfp_all_into(frames, n, out)
    return out


def _tfi_params(n_or_none: int | None, search: int | None, fallback: int | None) -> tuple[int, int]:
    if search is None:
        search = n_or_none // 2 if n_or_none else 20
    if fallback is None:
        fallback = 2 * search
    if search < 1 or fallback < 1:
        raise ValueError(f"TFI search ({search}) and fallback ({fallback}) must be >= 1")
    return search, fallback


def tfi(window, search: int | None = None, fallback: int | None = None,
        out: np.ndarray | None = None) -> np.ndarray:
    """Texture from interval at the window's centre frame (n x H x W -> H x W float32).

    search defaults to n // 2, fallback to 2 * search (so values lie in [1/fallback, 1]).
    """
    window = _as_frames(window)
    search, fallback = _tfi_params(window.shape[0], search, fallback)
    if out is None:
        out = np.empty(window.shape[1:], np.float32)
    _tfi_into(window, window.shape[0] // 2, search, fallback, out)
    return out


def tfi_all(frames, search: int = 20, fallback: int | None = None) -> np.ndarray:
    """TFI centred on every frame of a chunk (T x H x W -> T x H x W float32)."""
    frames = _as_frames(frames)
    search, fallback = _tfi_params(None, search, fallback)
    out = np.empty(frames.shape, np.float32)
    _tfi_all_into(frames, search, fallback, out)
    return out


def psnr(estimate: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of `estimate` against `truth` (both clipped to [0, peak])."""
    est = np.clip(np.asarray(estimate, np.float64), 0, peak)
    ref = np.clip(np.asarray(truth, np.float64), 0, peak)
    mse = float(np.mean((est - ref) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
