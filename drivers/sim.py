"""Simulated spiking camera: integrate-and-fire over a scene's light intensity, as packed `.dat` frames.

Each frame every pixel adds `rate_gain * intensity` (+ dark current, optionally as Poisson photon
counts) to its accumulator; when the accumulator reaches the pixel's threshold (1.0, optionally with a
fixed-pattern variation) the pixel fires and the threshold is subtracted. Accumulators start at random
values. So the mean firing rate is rate_gain * intensity spikes per frame, the REDS_BASE convention
(docs/formats.md#ground-truth).

Intensity comes from a `Scene` rendered at `key_hz` key frames per second of scene time and
interpolated linearly for every spike frame; the kernel writes packed bits directly
(docs/formats.md#dat-spike-files).

The live driver (`open_driver("sim...")`) pre-renders one motion period as a loop at start-up and
replays it paced like a file; at the wrap each pixel's spike phase jumps once (the picture does not).
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Sequence

import numba
import numpy as np

from ..errors import ConfigError
from ..formats import DEFAULT_HEIGHT, DEFAULT_RATE_HZ, DEFAULT_WIDTH, RATE_GAIN, FrameGeometry
from .base import Driver, DriverOptions, SourceInfo, check_ring
from .pacing import check_speed, replay
from .scenes import DEFAULT_PERIOD_S, SCENE_CLASSES, Scene, SceneConfig, make_scene

SCENES = tuple(SCENE_CLASSES)
DEFAULT_SCENE = "shapes"
DEFAULT_KEY_HZ = 1000.0


@dataclass(frozen=True)
class SimNoise:
    """Sensor non-idealities (all off by default)."""

    dark_rate: float = 0.0          # dark current, spikes per frame added to every pixel
    threshold_sigma: float = 0.0    # fixed-pattern threshold variation (relative std of the 1.0 threshold)
    photons_per_spike: float = 0.0  # > 0: Poisson photon noise with this many photons per threshold

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"noise {f.name} must be a finite number >= 0, got {v}")

    @classmethod
    def from_dict(cls, d: dict) -> "SimNoise":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown noise option(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}")
        try:
            return cls(**{k: float(v) for k, v in d.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"noise options must be numbers, got {d}") from None


@dataclass(frozen=True)
class SimConfig:
    """The simulated camera; change one with `dataclasses.replace(config, seed=1)`."""

    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    rate_hz: float = DEFAULT_RATE_HZ     # spike frames per second
    rate_gain: float = RATE_GAIN          # firing rate (spikes per frame) at intensity 1
    seed: int = 0
    noise: SimNoise = SimNoise()
    key_hz: float = DEFAULT_KEY_HZ        # scene key frames per second of scene time
    period_s: float = DEFAULT_PERIOD_S    # built-in scenes and image motion repeat after this
    start_frame: int = 0                  # first frame simulated (the scene continues from there)

    def __post_init__(self):
        FrameGeometry(self.height, self.width)  # positive, whole bytes per frame
        if not (self.rate_hz > 0 and self.key_hz > 0 and self.period_s > 0):
            raise ConfigError(f"rate_hz, key_hz and period_s must be positive, got {self.rate_hz}, {self.key_hz}, "
                              f"{self.period_s}")
        if not 0 < self.rate_gain <= 1:
            raise ConfigError(f"rate_gain must be in (0, 1] spikes per frame, got {self.rate_gain}")
        if self.start_frame < 0:
            raise ConfigError(f"start_frame must be >= 0, got {self.start_frame}")


@dataclass
class SimResult:
    packed: np.ndarray                           # n x frame_bytes uint8, .dat layout
    gt: dict = field(default_factory=dict)       # frame index in `packed` -> H x W float32 intensity [0, 1]
    rate_gain: float = RATE_GAIN


# ------------------------------------------------------------------------------------------------ kernel

_PACK8 = np.uint64(0x0102040810204080)  # (eight 0/1 bytes as a little-endian word * this) >> 56 = LSB-first bits
SMALL_LAMBDA = 1.0                       # Poisson by inversion below this mean, normal approximation above


@numba.njit(nogil=True, cache=True, inline="always")
def _hash(key):
    """splitmix64 finaliser: a well-mixed 64-bit value for each counter."""
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(nogil=True, cache=True, inline="always")
def _normal(z):
    """An approximately standard normal from a 64-bit hash: the sum of four 16-bit uniforms
    (Irwin-Hall; mean and variance exact, tails cut at 3.5 sigma), branch-free so loops vectorise."""
    m = np.uint64(0xFFFF)
    total = (z & m) + ((z >> np.uint64(16)) & m) + ((z >> np.uint64(32)) & m) + (z >> np.uint64(48))
    return np.float32((np.float64(total) + 2.0) * (1.0 / 65536.0) - 2.0) * np.float32(1.7320508)


@numba.njit(nogil=True, cache=True, inline="always")
def _poisson_small(lam, z):
    """Exact Poisson(lam) by inversion from the uniform in hash z (for small lam)."""
    u = ((z >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740994.0)
    p = math.exp(-lam)
    cdf = p
    k = 0
    while u > cdf and k < 60:
        k += 1
        p *= lam / k
        cdf += p
    return np.float32(k)


@numba.njit(nogil=True, cache=True, inline="always")
def _photon_noise(inc, lam, photons, base_key):
    """Replace each mean increment inc[c] by Poisson(lam) / photons with lam = inc[c] * photons, drawn
    from the hashed counter base_key + c: exact inversion below SMALL_LAMBDA; above, a normal with the
    same mean and variance (not rounded: the accumulator only needs the first two moments to be right).
    Two passes (normal everywhere, then exact where lam is small) so the common case vectorises."""
    small = 0
    for c in range(inc.shape[0]):
        lam[c] = inc[c] * photons
        small += lam[c] < SMALL_LAMBDA
        g = _normal(_hash(base_key + np.uint64(c)))
        inc[c] = (lam[c] + math.sqrt(max(lam[c], np.float32(0.0))) * g) / photons
    if small:
        for c in range(inc.shape[0]):
            if lam[c] < SMALL_LAMBDA:
                inc[c] = _poisson_small(lam[c], _hash(base_key + np.uint64(c))) / photons


def _fire_rows_impl(key0, key1, alphas, frame_ids, acc, threshold, dark, gain, photons, seed, out):
    """Simulate len(alphas) frames into out (n x H * ceil(W/8) bytes: the file rows of each frame, each
    padded to whole bytes), row by row: rows are independent (parallel-safe) and a row's state stays
    in L1 across frames.

    Intensity of frame i = key0 + alphas[i] * (key1 - key0) (H x W, image orientation). acc, threshold
    and dark (H x W float32) are per-pixel state; photons > 0 draws photon counts keyed by
    (seed, frame_ids[i], pixel), so results do not depend on how a run is split into calls.
    """
    h, w = key0.shape
    n = alphas.shape[0]
    n_pix = np.uint64(h * w)
    seed_key = seed * np.uint64(0xA24BAED4963EE407)
    row_bytes = (w + 7) >> 3
    for fr in numba.prange(h):  # file row fr holds image row h - 1 - fr
        r = h - 1 - fr
        spikes = np.zeros(row_bytes * 8, np.uint8)
        words = spikes.view(np.uint64)
        inc = np.zeros(w, np.float32)
        lam = np.zeros(w, np.float32)
        k0, k1, ac, th, dk = key0[r], key1[r], acc[r], threshold[r], dark[r]
        o = fr * row_bytes
        for i in range(n):
            a = np.float32(alphas[i])
            for c in range(w):
                inc[c] = gain * (k0[c] + a * (k1[c] - k0[c])) + dk[c]
            if photons > 0.0:
                _photon_noise(inc, lam, photons, ((np.uint64(frame_ids[i]) * n_pix) ^ seed_key) + np.uint64(fr * w))
            for c in range(w):
                v = ac[c] + inc[c]
                s = v >= th[c]
                ac[c] = v - th[c] * s
                spikes[c] = s
            dst = out[i]
            for j in range(row_bytes):
                dst[o + j] = (words[j] * _PACK8) >> np.uint64(56)


fire_rows = numba.njit(nogil=True, cache=True)(_fire_rows_impl)
fire_rows_parallel = numba.njit(nogil=True, cache=True, parallel=True)(_fire_rows_impl)


# ------------------------------------------------------------------------------------------------ simulate

class Simulator:
    """Stateful integrate-and-fire over a scene; `run(n)` continues where the last call stopped.

    spec: a name in SCENES, an image or video path (`scene_options`: pan, zoom, rotate_deg or
    video_fps; a video is read for `duration_s` of scene time), or a `Scene`.
    """

    def __init__(self, spec: str | Scene = DEFAULT_SCENE, config: SimConfig = SimConfig(), *,
                 duration_s: float = 1.0, scene_options: dict | None = None, parallel: bool = True):
        self.config = c = config
        self.parallel = parallel
        self.geometry = FrameGeometry(c.height, c.width)
        if isinstance(spec, Scene):
            self.scene = spec
        else:
            self.scene = make_scene(spec, SceneConfig(c.height, c.width, c.period_s, c.seed),
                                    duration_s=duration_s + c.start_frame / c.rate_hz, **(scene_options or {}))
        rng = np.random.default_rng(c.seed)
        thr = np.ones((c.height, c.width), np.float32)
        if c.noise.threshold_sigma > 0:
            thr += c.noise.threshold_sigma * rng.standard_normal((c.height, c.width)).astype(np.float32)
            thr = np.maximum(thr, 0.2).astype(np.float32)
        self.threshold = thr
        self.acc = (rng.random((c.height, c.width), dtype=np.float32) * thr).astype(np.float32)
        self.dark = np.full((c.height, c.width), c.noise.dark_rate, np.float32)
        self.frame = c.start_frame  # next frame index to simulate
        self._keys: dict[int, np.ndarray] = {}

    @property
    def frames_per_key(self) -> float:
        return self.config.rate_hz / self.config.key_hz

    def _key(self, k: int) -> np.ndarray:
        if k not in self._keys:
            if len(self._keys) > 4:
                self._keys.pop(min(self._keys))
            img = self.scene.intensity(k / self.config.key_hz)
            self._keys[k] = np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
        return self._keys[k]

    def run(self, n_frames: int, out: np.ndarray | None = None, gt_frames: Sequence[int] = ()) -> SimResult:
        """Simulate the next n_frames; gt_frames are indices into this result (0 .. n_frames - 1)."""
        c = self.config
        fb = self.geometry.frame_bytes
        if out is None:
            out = np.empty((n_frames, fb), np.uint8)
        if out.shape != (n_frames, fb) or out.dtype != np.uint8:
            raise ValueError(f"out must be {n_frames} x {fb} uint8, got {out.shape} {out.dtype}")
        want_gt = {}
        for g in gt_frames:
            if not 0 <= int(g) < n_frames:
                raise ConfigError(f"ground-truth frame {g} is outside the {n_frames} simulated frames")
            want_gt.setdefault(int(g), None)
        kernel = fire_rows_parallel if self.parallel else fire_rows
        row_bytes = -(-c.width // 8)
        fpk = self.frames_per_key
        pos = 0
        gt = {}
        while pos < n_frames:
            f = self.frame + pos
            k = int(math.floor(f / fpk))
            end = min(n_frames, int(math.floor((k + 1) * fpk - 1e-9)) + 1 - self.frame)  # frames up to key k+1
            end = max(end, pos + 1)
            ids = np.arange(self.frame + pos, self.frame + end, dtype=np.int64)
            alphas = (ids / fpk - k).astype(np.float32)
            k0, k1 = self._key(k), self._key(k + 1)
            # rows of a width that is not a multiple of 8 share bytes: simulate byte-padded rows, then pack
            rows = out[pos:end] if c.width % 8 == 0 else np.empty((end - pos, c.height * row_bytes), np.uint8)
            kernel(k0, k1, alphas, ids, self.acc, self.threshold, self.dark, np.float32(c.rate_gain),
                   np.float32(c.noise.photons_per_spike), np.uint64(c.seed & 0xFFFFFFFFFFFFFFFF), rows)
            if c.width % 8:
                bits = np.unpackbits(rows.reshape(end - pos, c.height, row_bytes), axis=2, count=c.width,
                                     bitorder="little")
                out[pos:end] = np.packbits(bits.reshape(end - pos, -1), axis=1, bitorder="little")
            for g in want_gt:
                if pos <= g < end:
                    a = np.float32(alphas[g - pos])
                    gt[g] = (k0 + a * (k1 - k0)).astype(np.float32)
            pos = end
        self.frame += n_frames
        return SimResult(out, gt, c.rate_gain)


def simulate(spec: str, n_frames: int, config: SimConfig = SimConfig(), *, gt_frames: Sequence[int] = (),
             scene_options: dict | None = None, **changes) -> SimResult:
    """Simulate frames start_frame .. start_frame + n_frames - 1 of a scene; `changes` are SimConfig
    fields (height=..., seed=...) replaced in `config`.

    spec: a name in SCENES, an image path (periodic pan/zoom/rotate) or a video path. gt maps indices
    into the result (0-based, like packed) to the intensity used for that frame. Deterministic for a seed.
    """
    if n_frames < 0:
        raise ConfigError(f"n_frames must be >= 0, got {n_frames}")
    config = dataclasses.replace(config, **changes)
    sim = Simulator(spec, config, duration_s=n_frames / config.rate_hz, scene_options=scene_options)
    return sim.run(n_frames, gt_frames=gt_frames)


# ------------------------------------------------------------------------------------------------ live driver

SIM_EXTRA_KEYS = {"loop_s", "key_hz", "rate_gain", "noise", "scene", "pan", "zoom", "rotate_deg", "video_fps"}


class SimCamera(Driver):
    """A live simulated camera: one pre-rendered loop of `loop_s` (= the scene's motion period),
    replayed at camera rate x speed.

    DriverOptions.extra: loop_s (default 0.5), key_hz, rate_gain, noise (dict of SimNoise fields),
    and image-motion options pan, zoom, rotate_deg, or video_fps for videos.
    """

    def __init__(self, spec: str, options: DriverOptions | None = None):
        options = options or DriverOptions()
        extra = dict(options.extra or {})
        unknown = set(extra) - SIM_EXTRA_KEYS
        if unknown:
            raise ConfigError(f"unknown simulator option(s) {', '.join(sorted(unknown))}; "
                              f"use {', '.join(sorted(SIM_EXTRA_KEYS))}")
        self.options = options
        self.speed = check_speed(options.speed)
        loop_s = float(extra.get("loop_s", DEFAULT_PERIOD_S))
        n_loop = int(round(loop_s * options.rate_hz))
        if n_loop < 1:
            raise ConfigError(f"loop_s={loop_s} is shorter than one frame")
        noise = extra.get("noise") or {}
        config = SimConfig(options.height, options.width, options.rate_hz, float(extra.get("rate_gain", RATE_GAIN)),
                           options.seed, noise if isinstance(noise, SimNoise) else SimNoise.from_dict(noise),
                           float(extra.get("key_hz", DEFAULT_KEY_HZ)), period_s=n_loop / options.rate_hz)
        t0 = time.perf_counter()
        scene_options = {k: extra[k] for k in ("pan", "zoom", "rotate_deg", "video_fps") if k in extra}
        sim = Simulator(spec, config, duration_s=loop_s, scene_options=scene_options)
        self.loop = sim.run(n_loop).packed
        self.startup_s = time.perf_counter() - t0
        self.frames_out = 0
        self.info = SourceInfo(name=f"sim:{spec}", height=options.height, width=options.width,
                               rate_hz=float(options.rate_hz), live=self.speed is not None,
                               frame_bytes=sim.geometry.frame_bytes, stored_width=sim.geometry.stored_width)

    def run(self, ring, stop: threading.Event) -> None:
        check_ring(self, ring)
        o = self.options
        replay(self, self.loop, ring, stop, rate_hz=o.rate_hz, speed=self.speed, loop=True, max_frames=o.max_frames)

    def close(self) -> None:
        self.loop = np.empty((0, self.info.frame_bytes), np.uint8)  # release the pre-rendered loop


def open_sim(uri: str, options: DriverOptions) -> SimCamera:
    """sim -> the default scene; sim:NAME -> a built-in scene; sim:PATH -> an image or a video."""
    spec = uri[4:] if uri.startswith("sim:") else ""
    return SimCamera(spec or DEFAULT_SCENE, options)
