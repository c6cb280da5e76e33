"""Clips of the world users film: natural-statistics textures, fast motion, any light level, sensor faults.

One `ClipSpec` describes a short simulated recording: a texture (dead leaves, 1/f noise, or an image
file), its motion (translation in pixels per spike frame, or a textured disk spinning at some rpm),
the mean firing rate (light level) and the sensor's non-idealities. `render_clip` turns it into unpacked
spike frames plus ground truth. Training (`train/data.py`) draws random specs with `random_spec`; the
evaluation sweep (`train/sweep.py`) lists fixed ones at seeds training never uses.

Motion is rendered exactly at every spike frame (the scene is a key frame per spike frame), so even
1 px per frame is a real displacement, not a cross-fade between distant key frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from ..unpack import unpack
from .scenes import SceneBase, SceneConfig, _to_gray_float
from .sim import SimConfig, SimNoise, Simulator

CAMERA_HZ = 40000.0
TEXTURES = ("leaves", "pink")
EVAL_SEED_LIMIT = 1 << 20  # evaluation clips use seeds below this; training clips never do


# ------------------------------------------------------------------------------------------- textures

def dead_leaves(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Occluding disks with power-law radii (the dead-leaves model: natural-image edge and scale
    statistics), each with a flat grey, a gradient or stripes, plus faint grain. float32 in [0, 1]."""
    img = np.full((h, w), rng.uniform(0.2, 0.8), np.float32)
    r_min, r_max = 2.0, max(h, w) / 4.0
    # enough disks to cover the canvas about four times: E[r^2] = c ln(r_max / r_min) for this density
    c = 2.0 / (r_min ** -2 - r_max ** -2)
    n = int(4 * h * w / (math.pi * c * math.log(r_max / r_min))) + 20
    for _ in range(n):
        # radius density ~ r^-3 between r_min and r_max (inverse transform)
        u = rng.random()
        r = 1.0 / math.sqrt((1 - u) / r_min ** 2 + u / r_max ** 2)
        cx, cy = rng.uniform(-r, w + r), rng.uniform(-r, h + r)
        level = float(rng.beta(1.5, 1.5))
        cv2.circle(img, (int(cx * 16), int(cy * 16)), int(r * 16), level, -1, cv2.LINE_AA, shift=4)
    # a few striped and graded patches so that edges of every orientation and frequency appear
    for _ in range(max(1, (h * w) // 20000)):
        ph, pw = int(rng.integers(h // 8 + 2, h // 3 + 3)), int(rng.integers(w // 8 + 2, w // 3 + 3))
        y, x = int(rng.integers(0, max(1, h - ph))), int(rng.integers(0, max(1, w - pw)))
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        a, period = rng.uniform(0, math.pi), rng.uniform(3, 24)
        stripes = 0.5 + 0.4 * np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
        img[y:y + ph, x:x + pw] = stripes[: img[y:y + ph].shape[0], : img[:, x:x + pw].shape[1]]
    img += rng.normal(0, 0.02, (h, w)).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def pink_noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Random-phase noise with a 1/f amplitude spectrum (natural images' average spectrum), [0, 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f
    spectrum[0, 0] = 0.0
    img = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    img = (img - img.mean()) / (img.std() + 1e-8)
    return np.clip(0.5 + 0.17 * img, 0.0, 1.0)


def make_texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """`leaves`, `pink`, or the path of an image (grey, resized to cover h x w)."""
    if kind == "leaves":
        return dead_leaves(h, w, rng)
    if kind == "pink":
        return pink_noise(h, w, rng)
    img = cv2.imread(kind, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ConfigError(f"{kind}: not a texture name ({', '.join(TEXTURES)}) nor a readable image")
    img = _to_gray_float(img)
    fit = max(h / img.shape[0], w / img.shape[1])
    if fit > 1:
        img = cv2.resize(img, (math.ceil(img.shape[1] * fit), math.ceil(img.shape[0] * fit)),
                         interpolation=cv2.INTER_CUBIC)
    y0, x0 = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
    return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w], dtype=np.float32)


# ------------------------------------------------------------------------------------------- scenes

class MovingTexture(SceneBase):
    """A texture translating at (vx, vy) pixels per spike frame (wrapping), or, with rpm > 0, a textured
    disk of diameter `disk` spinning at rpm over the still texture."""

    name = "moving-texture"

    def __init__(self, cfg: SceneConfig, texture: np.ndarray, vx: float = 0.0, vy: float = 0.0,
                 rpm: float = 0.0, disk: int = 0, disk_texture: np.ndarray | None = None):
        super().__init__(cfg)
        self.texture = texture
        self.vx, self.vy, self.rpm = vx * CAMERA_HZ, vy * CAMERA_HZ, rpm  # stored per second of scene time
        self.disk = disk
        if rpm:
            d = disk or int(0.8 * min(self.h, self.w))
            self.disk = d
            yy, xx = np.mgrid[0:d, 0:d].astype(np.float32)
            c = (d - 1) / 2.0
            self.alpha = np.clip(c - np.hypot(yy - c, xx - c) + 0.5, 0, 1).astype(np.float32)
            self.disk_tex = disk_texture if disk_texture is not None else texture[:d, :d]

    def intensity(self, t_s: float) -> np.ndarray:
        th, tw = self.texture.shape
        m = np.float32([[1, 0, -self.vx * t_s], [0, 1, -self.vy * t_s]])
        frame = cv2.warpAffine(self.texture, m, (self.w, self.h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_WRAP) if (self.vx or self.vy) else self.texture[:self.h, :self.w].copy()
        if self.rpm:
            d, c = self.disk, (self.disk - 1) / 2.0
            angle = 360.0 * self.rpm / 60.0 * t_s
            r = cv2.getRotationMatrix2D((c, c), angle, 1.0)
            tex = cv2.warpAffine(self.disk_tex, r, (d, d), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            y0, x0 = (self.h - d) // 2, (self.w - d) // 2
            roi = frame[y0:y0 + d, x0:x0 + d]
            roi *= 1.0 - self.alpha
            roi += tex * self.alpha
        return frame


# ------------------------------------------------------------------------------------------- clips

@dataclass(frozen=True)
class ClipSpec:
    texture: str = "leaves"         # leaves | pink | image path
    seed: int = 0
    speed: float = 0.0              # translation, pixels per spike frame
    direction_deg: float = 0.0
    rpm: float = 0.0                # > 0: spinning disk instead of translation
    mean_rate: float = 0.3          # mean firing rate (spikes per pixel per frame) = light level
    dark_rate: float = 0.0          # dark-current spikes per pixel per frame
    hot_fraction: float = 0.0       # fraction of pixels that fire at a high, constant rate
    threshold_sigma: float = 0.0    # fixed-pattern threshold variation (relative)
    photons_per_spike: float = 0.0  # > 0: Poisson photon noise
    height: int = 128
    width: int = 128
    n_frames: int = 81

    def label(self) -> str:
        return (f"{self.texture.split('/')[-1]} v{self.speed:g} rpm{self.rpm:g} r{self.mean_rate:g} "
                f"dark{self.dark_rate:g} hot{self.hot_fraction:g} fpn{self.threshold_sigma:g} "
                f"ph{self.photons_per_spike:g} s{self.seed}")


@dataclass
class Clip:
    spec: ClipSpec
    frames: np.ndarray     # T x H x W uint8 0/1, row 0 = top
    gt: dict               # frame index -> H x W intensity in [0, 1]
    rate_gain: float       # firing rate = rate_gain x intensity (+ dark current)


def _light(texture: np.ndarray, mean_rate: float) -> tuple[np.ndarray, float]:
    """(intensity, rate_gain) with rate_gain x mean(intensity) = mean_rate and rate_gain <= 1: dim scenes
    lower the gain; very bright ones (mean rate above the texture's mean) compress the texture towards 1."""
    if not 0 < mean_rate <= 0.98:
        raise ConfigError(f"mean_rate must be in (0, 0.98], got {mean_rate}")
    m = float(texture.mean())
    if mean_rate <= m:
        return texture, mean_rate / m
    squeeze = (1.0 - mean_rate) / (1.0 - m)
    return (1.0 - (1.0 - texture) * squeeze).astype(np.float32), 1.0


def render_clip(spec: ClipSpec, gt_frames=None) -> Clip:
    """Simulate a clip; ground truth at `gt_frames` (default: the centre frame)."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    if spec.rpm:
        texture = make_texture(spec.texture, h, w, rng)
        disk = min(200, int(0.8 * min(h, w)))
        disk_tex = make_texture(spec.texture, disk, disk, rng)
    else:
        # a canvas larger than the frame so that translation wraps rarely within a clip
        pad = int(math.ceil(spec.speed * spec.n_frames)) + 8
        texture = make_texture(spec.texture, h + pad, w + pad, rng)
        disk, disk_tex = 0, None
    intensity_tex, gain = _light(texture, spec.mean_rate)
    if disk_tex is not None:
        disk_tex, _ = _light(disk_tex, spec.mean_rate) if gain == 1.0 else (disk_tex, gain)
    a = math.radians(spec.direction_deg)
    cfg = SceneConfig(h, w, period_s=1e9, seed=spec.seed)
    scene = MovingTexture(cfg, intensity_tex, spec.speed * math.cos(a), spec.speed * math.sin(a),
                          spec.rpm, disk, disk_tex)
    noise = SimNoise(dark_rate=spec.dark_rate, threshold_sigma=spec.threshold_sigma,
                     photons_per_spike=spec.photons_per_spike)
    sim = Simulator(scene, SimConfig(h, w, CAMERA_HZ, gain, spec.seed, noise, key_hz=CAMERA_HZ))
    centre = spec.n_frames // 2
    result = sim.run(spec.n_frames, gt_frames=sorted(gt_frames) if gt_frames is not None else [centre])
    frames = unpack(np.asarray(result.packed), h, w)
    if spec.hot_fraction > 0:
        add_hot_pixels(frames, spec.hot_fraction, rng)
    return Clip(spec, frames, {int(k): np.asarray(v, np.float32) for k, v in result.gt.items()}, gain)


def add_hot_pixels(frames: np.ndarray, fraction: float, rng: np.random.Generator) -> None:
    """Make `fraction` of the pixels hot: each fires in a random 50-100 % of the frames (in place)."""
    t, h, w = frames.shape
    n = int(round(fraction * h * w))
    if n == 0:
        return
    idx = rng.choice(h * w, n, replace=False)
    p = rng.uniform(0.5, 1.0, n)
    flat = frames.reshape(t, h * w)
    flat[:, idx] |= (rng.random((t, n)) < p).astype(np.uint8)


def training_seed(rng: np.random.Generator) -> int:
    """A clip seed at or above EVAL_SEED_LIMIT, which the sweep never uses (a redraw, not a narrower
    range: earlier runs' clips stay the same)."""
    seed = int(rng.integers(1 << 30))
    while seed < EVAL_SEED_LIMIT:
        seed = int(rng.integers(1 << 30))
    return seed


def random_spec(rng: np.random.Generator, textures=TEXTURES, height: int = 128, width: int = 128,
                n_frames: int = 81) -> ClipSpec:
    """A training clip drawn across the conditions users meet: log-uniform light 0.008-0.95, motion
    from still to 1.2 px per frame (or spinning up to 8,000 rpm), and sensor faults in half the clips."""
    still = rng.random() < 0.15
    spin = not still and rng.random() < 0.2
    faulty = rng.random() < 0.5
    seed = training_seed(rng)
    return ClipSpec(
        texture=str(rng.choice(textures)), seed=seed,
        speed=0.0 if still or spin else float(np.exp(rng.uniform(math.log(0.02), math.log(1.2)))),
        direction_deg=float(rng.uniform(0, 360)),
        rpm=float(rng.uniform(500, 8000)) if spin else 0.0,
        mean_rate=float(np.exp(rng.uniform(math.log(0.008), math.log(0.95)))),
        dark_rate=float(rng.uniform(0, 0.005)) if faulty and rng.random() < 0.5 else 0.0,
        hot_fraction=float(rng.uniform(0, 0.002)) if faulty and rng.random() < 0.5 else 0.0,
        threshold_sigma=float(rng.uniform(0, 0.1)) if faulty and rng.random() < 0.5 else 0.0,
        photons_per_spike=float(rng.uniform(2, 50)) if faulty and rng.random() < 0.5 else 0.0,
        height=height, width=width, n_frames=n_frames)


def hard_spec(rng: np.random.Generator, textures=TEXTURES, height: int = 128, width: int = 128,
                n_frames: int = 81) -> ClipSpec:
    """A training clip from the corners where the blind-spot teacher beats networks trained on
    `random_spec` clips by 2-4 dB (measured on the sweep): fast translation (0.4-1.3 px per frame) or
    strong photon noise (2-10 photons per spike) with slow motion, half each; light log-uniform in
    0.1-0.6. With `--worlds-hard` their crops learn from the BSN (docs/models.md), which so far cost the
    small rt network more on static scenes than it gained here (README, "the sweep")."""
    fast = bool(rng.random() < 0.5)
    seed = training_seed(rng)
    return ClipSpec(
        texture=str(rng.choice(textures)), seed=seed,
        speed=float(rng.uniform(0.4, 1.3)) if fast else float(rng.uniform(0.0, 0.3)),
        direction_deg=float(rng.uniform(0, 360)),
        mean_rate=float(np.exp(rng.uniform(math.log(0.1), math.log(0.6)))),
        photons_per_spike=0.0 if fast else float(np.exp(rng.uniform(math.log(2), math.log(10)))),
        height=height, width=width, n_frames=n_frames)
