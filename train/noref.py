"""Quality of reconstructions without ground truth (real cameras): brightness bias, flicker, blind scores.

A method is a callable taking an n x H x W uint8 spike window (0/1, row 0 = top) and returning an H x W
firing rate (spikes per frame), like `ssml_stream.features.tfp` or a loaded model. `frames` is anything
with len() whose slices `frames[a:b]` are n x H x W spike frames: an array or a `SpikeFile`
(`ssml_stream.formats.read_dat`). Only the frames a measure needs are read.

- brightness bias: the mean of the output over the image relative to the mean firing rate of the
  recording around that moment (TFP over up to `long_window` frames), minus 1. A reconstruction should be
  neither brighter nor darker than the light the sensor saw: 0 is right, +0.1 means 10 % too bright.
- temporal flicker: on pixels that do not change during a stretch of the recording, how much the output
  changes between consecutive non-overlapping windows, relative to the mean rate (so it compares across
  light levels). Lower is better; TFP41 on simulated scenes at 0.2-0.3 spikes/frame gives 0.04 to 0.08.
- blind scores (scikit-image, optional): blur and noise of the output image alone.
"""
from __future__ import annotations

from importlib.util import find_spec
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import ConfigError, ModelError
from ..features import tfp

Method = Callable[[np.ndarray], np.ndarray]

WINDOW = 41
LONG_WINDOW = 401
FLICKER_WINDOWS = 8
# A pixel is static when its rates over STATIC_PARTS equal parts of the flicker stretch (fewer when
# there are fewer windows, so a part is never shorter than a window) differ by at most STATIC_COUNTS
# spikes of a part (an integrate-and-fire pixel's count over a fixed span varies by one spike with the
# accumulator's phase, so two parts may differ by two) plus STATIC_RELATIVE of its mean rate (room for
# sensor noise). Several parts, not two halves, so that texture moving across a pixel, whose mean can
# be the same in both halves, is caught. What passes changes little: on the simulated `shapes` scene
# the exact intensity at the static pixels flickers about 0.01 (TFP41: 0.06).
STATIC_PARTS = 4
STATIC_COUNTS = 2
STATIC_RELATIVE = 0.05


class Flicker(NamedTuple):
    value: float            # RMS of consecutive-output differences / (sqrt(2) x mean rate), static pixels
    static_fraction: float  # fraction of pixels judged static


class BlindScores(NamedTuple):
    blur: float   # scikit-image blur_effect: 0 = sharp .. 1 = fully blurred
    noise: float  # scikit-image estimate_sigma (wavelet) / mean of the image: relative noise std


def _check_window(window: int) -> None:
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"window length must be odd and positive, got {window}")


def _read(frames, start: int, stop: int) -> np.ndarray:
    chunk = np.asarray(frames[start:stop])
    if chunk.ndim != 3 or chunk.shape[0] != stop - start:
        raise ConfigError(f"frames[{start}:{stop}] should be {stop - start} x H x W spike frames, "
                          f"got shape {chunk.shape}")
    return chunk


def _run(method: Method, window: np.ndarray) -> np.ndarray:
    out = np.asarray(method(window), np.float32)
    if out.shape != window.shape[1:]:
        raise ModelError(f"method returned shape {out.shape} for a {window.shape[0]} x "
                         f"{window.shape[1]} x {window.shape[2]} window; expected {window.shape[1:]}")
    return out


def _outputs(method: Method, frames, centres: Sequence[int], window: int) -> list[np.ndarray]:
    _check_window(window)
    if len(centres) == 0:
        raise ConfigError("no centres given")
    half, total = window // 2, len(frames)
    outputs = []
    for c in centres:
        if not half <= c < total - half:
            raise ConfigError(f"a {window}-frame window centred on {c} does not fit in {total} frames "
                              f"(centres must lie in {half}..{total - half - 1})")
        outputs.append(_run(method, _read(frames, c - half, c + half + 1)))
    return outputs


def _bias(outputs: list[np.ndarray], frames, centres: Sequence[int], long_window: int) -> float:
    _check_window(long_window)
    half, total = long_window // 2, len(frames)
    biases = []
    for out, c in zip(outputs, centres):
        start, stop = max(0, c - half), min(total, c + half + 1)
        mean_rate = float(tfp(_read(frames, start, stop)).mean())
        if mean_rate <= 0:
            raise ConfigError(f"frames {start}..{stop - 1} hold no spikes: brightness bias is undefined there")
        biases.append(float(out.mean()) / mean_rate - 1.0)
    return float(np.mean(biases))


def brightness_bias(method: Method, frames, centres: Sequence[int], window: int = WINDOW,
                    long_window: int = LONG_WINDOW) -> float:
    """Mean over `centres` of mean(method output) / mean(long-window TFP) - 1.

    The reference is the TFP over the frames within long_window // 2 of the centre that exist (all
    frames of a recording shorter than `long_window`): with that many frames it is unbiased and its
    noise averages out over the image. 0 = right brightness, > 0 too bright, < 0 too dark.
    """
    return _bias(_outputs(method, frames, centres, window), frames, centres, long_window)


def temporal_flicker(method: Method, frames, window: int = WINDOW, n_windows: int = FLICKER_WINDOWS,
                     start: int = 0) -> Flicker:
    """Flicker of `method` over `n_windows` consecutive non-overlapping windows from frame `start`.

    Static pixels: rates over min(STATIC_PARTS, n_windows) equal parts of the stretch differ by at
    most STATIC_COUNTS spikes of a part plus STATIC_RELATIVE x their mean (see the constants). Flicker
    is the RMS of the differences between consecutive outputs at static pixels, divided by sqrt(2) and
    by the mean rate of those pixels: the relative temporal std of an output that varies independently
    from window to window. Value is NaN when no pixel is static. Use 4 or more windows: with 2 or 3 the
    mask has only 2 or 3 parts and lets more texture motion through (the exact `shapes` intensity then
    flickers 0.03 to 0.045 instead of 0.01).
    """
    if n_windows < 2:
        raise ConfigError(f"flicker needs at least 2 windows, got {n_windows}")
    _check_window(window)
    stop = start + n_windows * window
    if start < 0 or stop > len(frames):
        raise ConfigError(f"{n_windows} windows of {window} frames from frame {start} need frames "
                          f"{start}..{stop - 1}, but there are {len(frames)}")
    stretch = _read(frames, start, stop)
    outputs = np.stack([_run(method, stretch[k * window:(k + 1) * window]) for k in range(n_windows)])
    parts = min(STATIC_PARTS, n_windows)
    part = stretch.shape[0] // parts
    part_rates = np.stack([tfp(stretch[k * part:(k + 1) * part]) for k in range(parts)])
    mean_rate = part_rates.mean(axis=0)
    spread = part_rates.max(axis=0) - part_rates.min(axis=0)
    static = spread <= STATIC_COUNTS / part + STATIC_RELATIVE * mean_rate
    static_rate = float(mean_rate[static].mean()) if static.any() else 0.0
    if static_rate <= 0:
        return Flicker(float("nan"), float(static.mean()))
    steps = np.diff(outputs, axis=0)[:, static]
    rms = float(np.sqrt(np.mean(np.square(steps, dtype=np.float64))))
    return Flicker(float(rms / np.sqrt(2.0) / static_rate), float(static.mean()))


def blind_scores(rate: np.ndarray) -> BlindScores:
    """Blur and noise of one reconstruction, from the image alone (scikit-image; needs PyWavelets).

    blur: `skimage.measure.blur_effect` (Crete et al. 2007), 0 = sharp .. 1 = fully blurred; lower is
    sharper, but noise also lowers it, so read it with `noise`. noise: `skimage.restoration.estimate_sigma`
    (wavelet median-absolute-deviation estimate of the noise std, Donoho & Johnstone) divided by the
    image mean, so it compares across light levels; lower is better, NaN for an all-dark image.
    Both are scale-free, so a rate image and the same image / 0.6 score alike.
    """
    try:
        from skimage.measure import blur_effect
        from skimage.restoration import estimate_sigma
        import pywt  # noqa: F401  estimate_sigma needs it but imports it only when called
    except ImportError as e:
        raise ConfigError(f"blind scores need scikit-image and PyWavelets ({e}); "
                          "install them with pip install 'ssml-stream[train]'") from None
    image = np.asarray(rate, np.float64)
    if image.ndim != 2:
        raise ConfigError(f"blind scores need one H x W image, got shape {image.shape}")
    mean = float(image.mean())
    noise = float(estimate_sigma(image)) / mean if mean > 0 else float("nan")
    return BlindScores(float(blur_effect(image)), noise)


def blind_available() -> bool:
    """Whether `blind_scores` can run here (scikit-image and PyWavelets installed)."""
    return find_spec("skimage") is not None and find_spec("pywt") is not None


def noref_table(methods: Mapping[str, Method], frames, centres: Sequence[int], *, window: int = WINDOW,
                long_window: int = LONG_WINDOW, n_windows: int = FLICKER_WINDOWS, flicker_start: int = 0,
                blind: bool | None = None) -> dict[str, dict[str, float]]:
    """Per method: bias, flicker, static (fraction), and blur, noise (blind scores averaged over
    `centres`) when `blind` is True, or None and scikit-image is installed."""
    if blind is None:
        blind = blind_available()
    table = {}
    for name, method in methods.items():
        outputs = _outputs(method, frames, centres, window)
        flicker = temporal_flicker(method, frames, window, n_windows, flicker_start)
        row = {"bias": _bias(outputs, frames, centres, long_window),
               "flicker": flicker.value, "static": flicker.static_fraction}
        if blind:
            scores = [blind_scores(out) for out in outputs]
            row["blur"] = float(np.mean([s.blur for s in scores]))
            row["noise"] = float(np.mean([s.noise for s in scores]))
        table[name] = row
    return table


_HEADERS = {"bias": "bias", "flicker": "flicker", "static": "static px", "blur": "blur", "noise": "noise"}


def format_noref_table(result: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of a `noref_table` result (bias signed, all to 3 decimals)."""
    if not result:
        return ""
    columns = [k for k in _HEADERS if k in next(iter(result.values()))]

    def cell(key: str, value: float) -> str:
        if np.isnan(value):
            return "n/a"
        return f"{value:+.3f}" if key == "bias" else f"{value:.3f}"

    lines = ["| method | " + " | ".join(_HEADERS[k] for k in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, row in result.items():
        lines.append(f"| {name} | " + " | ".join(cell(k, row[k]) for k in columns) + " |")
    return "\n".join(lines)
