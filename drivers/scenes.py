"""Light intensity for the simulated camera: procedural scenes, images with synthetic motion, videos.

Every source is a `Scene` with `intensity(t_s) -> H x W float32` in [0, 1] (image orientation,
row 0 = top). Procedural scenes and image motion are periodic in `period_s`, so a pre-rendered loop
of exactly one period wraps without a jump in the picture. Objects are textured patches drawn with
OpenCV and placed with sub-pixel affine warps, so slow motion stays smooth between key frames.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import ConfigError, DriverError

TAU = 2.0 * math.pi
DEFAULT_PERIOD_S = 0.5
MAX_VIDEO_FRAMES = 4000  # frames held in memory (as H x W float32)


@dataclass(frozen=True)
class SceneConfig:
    height: int = 250
    width: int = 400
    period_s: float = DEFAULT_PERIOD_S  # motion repeats exactly after this much scene time
    seed: int = 0


@runtime_checkable
class Scene(Protocol):
    """What the simulator renders; any object with this method is a scene."""

    def intensity(self, t_s: float) -> np.ndarray:
        """H x W float32 light intensity in [0, 1] at scene time t_s (image orientation)."""
        ...


class SceneBase(Scene):
    """The built-in scenes' common part: their config, size and motion phase."""

    name = "scene"

    def __init__(self, cfg: SceneConfig):
        self.cfg = cfg
        self.h, self.w = cfg.height, cfg.width

    def phase(self, t_s: float) -> float:
        """Fraction of the period at time t (exactly periodic)."""
        return (t_s / self.cfg.period_s) % 1.0


# ------------------------------------------------------------------------------------------- textures

def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size float32 texture in [0, 1] drawn with OpenCV."""
    img = np.zeros((size, size), np.float32)
    if kind == "stripes":
        step = max(3, size // 8)
        for x in range(-size, 2 * size, step):
            cv2.line(img, (x, 0), (x + size, size), 0.9, max(1, step // 2), cv2.LINE_AA)
        img += 0.1
    elif kind == "checker":
        step = max(2, size // 6)
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    cv2.rectangle(img, (x, y), (x + step - 1, y + step - 1), 0.95, -1)
        img = img * 0.85 + 0.1
    elif kind == "rings":
        for r in range(size // 2, 0, -max(2, size // 14)):
            cv2.circle(img, (size // 2, size // 2), r, float(0.2 + 0.75 * ((r // max(2, size // 14)) % 2)),
                       -1, cv2.LINE_AA)
    elif kind == "sectors":
        c = size // 2
        for k in range(12):
            a0, a1 = k * 30, k * 30 + 15
            cv2.ellipse(img, (c, c), (c, c), 0, a0, a1, 0.95, -1, cv2.LINE_AA)
        cv2.circle(img, (c, c), max(2, size // 10), 0.5, -1, cv2.LINE_AA)
        img += 0.05
    elif kind == "text":
        canvas = np.full((size, size), 38, np.uint8)  # putText draws on 8-bit images only
        scale = size / 110.0
        cv2.putText(canvas, "SSML", (int(4 * scale), int(size * 0.62)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    242, max(1, int(3 * scale)), cv2.LINE_AA)
        img = canvas.astype(np.float32) / 255.0
    else:  # smooth noise
        noise = rng.random((max(2, size // 8), max(2, size // 8))).astype(np.float32)
        img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0.0, 1.0)


def _mask(shape: str, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    c = size / 2.0
    if shape == "disk":
        cv2.circle(m, (size // 2, size // 2), size // 2 - 1, 1.0, -1, cv2.LINE_AA)
    elif shape == "square":
        m[1:-1, 1:-1] = 1.0
    else:  # triangle / star polygons
        n, inner = (3, 1.0) if shape == "triangle" else (5, 0.45)
        pts = []
        for k in range(2 * n if inner < 1 else n):
            r = (c - 1) * (1.0 if k % 2 == 0 or inner == 1 else inner)
            a = TAU * k / (2 * n if inner < 1 else n) - math.pi / 2
            pts.append((c + r * math.cos(a), c + r * math.sin(a)))
        cv2.fillPoly(m, [np.round(np.array(pts) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    return m


class _Sprite:
    """A textured object: premultiplied texture * alpha and alpha patches placed by an affine warp.

    (Two 1-channel warps: OpenCV's 2-channel float warpAffine is ~50x slower than 1-channel here.)"""

    def __init__(self, texture: np.ndarray, mask: np.ndarray):
        self.size = texture.shape[0]
        self.premultiplied = np.ascontiguousarray(texture * mask, dtype=np.float32)
        self.alpha = np.ascontiguousarray(mask, dtype=np.float32)

    def draw(self, frame: np.ndarray, cx: float, cy: float, angle_deg: float, scale: float = 1.0) -> None:
        c = (self.size - 1) / 2.0
        m = cv2.getRotationMatrix2D((c, c), angle_deg, scale)
        m[0, 2] += cx - c
        m[1, 2] += cy - c
        # warp only into the patch's bounding box (clipped to the frame): 4-10x less work than full frame
        half = self.size * scale * 0.7072 + 2
        x0, x1 = max(0, int(cx - half)), min(frame.shape[1], int(math.ceil(cx + half)))
        y0, y1 = max(0, int(cy - half)), min(frame.shape[0], int(math.ceil(cy + half)))
        if x1 <= x0 or y1 <= y0:
            return
        m[0, 2] -= x0
        m[1, 2] -= y0
        size = (x1 - x0, y1 - y0)
        alpha = cv2.warpAffine(self.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        color = cv2.warpAffine(self.premultiplied, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        roi = frame[y0:y1, x0:x1]
        roi *= 1.0 - alpha
        roi += color


def _background(h: int, w: int, rng: np.random.Generator, level: float = 0.35) -> np.ndarray:
    coarse = rng.random((max(2, h // 25), max(2, w // 25))).astype(np.float32)
    bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    return np.clip(level * (0.5 + 0.5 * bg) + 0.2 * ramp, 0.02, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------- procedural scenes

class ShapesScene(SceneBase):
    """Textured disk, square, triangle and star on Lissajous paths, each turning a whole number of
    times per period."""

    name = "shapes"

    def __init__(self, cfg: SceneConfig):
        super().__init__(cfg)
        rng = np.random.default_rng(cfg.seed)
        self.bg = _background(self.h, self.w, rng)
        s = max(8, int(min(self.h, self.w) * 0.32))
        kinds = [("disk", "stripes"), ("square", "checker"), ("triangle", "noise"), ("star", "rings")]
        self.sprites = [_Sprite(_texture(tex, s, rng), _mask(shape, s)) for shape, tex in kinds]
        # (x freq, y freq, phase, turns per period) - integers keep the motion exactly periodic
        self.paths = [(1, 2, 0.0, 1), (2, 1, 1.3, -1), (1, 3, 2.1, 2), (3, 2, 0.7, -2)]

    def intensity(self, t_s: float) -> np.ndarray:
        ph = self.phase(t_s)
        frame = self.bg.copy()
        ax, ay = self.w * 0.36, self.h * 0.32
        for sprite, (fx, fy, p0, turns) in zip(self.sprites, self.paths):
            cx = self.w / 2 + ax * math.sin(TAU * fx * ph + p0)
            cy = self.h / 2 + ay * math.sin(TAU * fy * ph + 2 * p0)
            sprite.draw(frame, cx, cy, 360.0 * turns * ph)
        return frame


class SpinScene(SceneBase):
    """A large rotating sector wheel, a counter-rotating ring target and an orbiting text patch."""

    name = "spin"

    def __init__(self, cfg: SceneConfig):
        super().__init__(cfg)
        rng = np.random.default_rng(cfg.seed + 1)
        self.bg = _background(self.h, self.w, rng, level=0.25)
        big = max(8, int(min(self.h, self.w) * 0.8))
        small = max(8, int(min(self.h, self.w) * 0.36))
        self.wheel = _Sprite(_texture("sectors", big, rng), _mask("disk", big))
        self.target = _Sprite(_texture("checker", small, rng), _mask("disk", small))
        self.label = _Sprite(_texture("text", small, rng), _mask("square", small))

    def intensity(self, t_s: float) -> np.ndarray:
        ph = self.phase(t_s)
        frame = self.bg.copy()
        self.wheel.draw(frame, self.w * 0.32, self.h / 2, 360.0 * ph)
        self.target.draw(frame, self.w * 0.78, self.h * 0.3, -720.0 * ph)
        orbit = TAU * ph
        self.label.draw(frame, self.w * 0.72 + 0.12 * self.w * math.cos(orbit),
                        self.h * 0.68 + 0.12 * self.h * math.sin(orbit), 0.0)
        return frame


class TrafficScene(SceneBase):
    """Textured cars crossing the frame at different speeds (wrapping around) over a drifting,
    horizontally periodic background."""

    name = "traffic"

    def __init__(self, cfg: SceneConfig):
        super().__init__(cfg)
        rng = np.random.default_rng(cfg.seed + 2)
        bg = _background(self.h, self.w, rng, level=0.3)
        self.bg = 0.5 * (bg + bg[:, ::-1])  # left and right edges match, so wrapping is seamless
        s = max(8, int(self.h * 0.28))
        self.cars = [_Sprite(_texture(tex, s, rng), _mask("square", s)) for tex in ("checker", "stripes", "text")]
        # (lane y fraction, laps per period, direction)
        self.lanes = [(0.22, 1, 1), (0.52, 2, -1), (0.8, 1, -1)]

    def intensity(self, t_s: float) -> np.ndarray:
        ph = self.phase(t_s)
        shift = self.w * ph  # background drifts one width per period
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        frame = cv2.warpAffine(self.bg, m, (self.w, self.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        span = self.w + self.cars[0].size
        for car, (y, laps, d) in zip(self.cars, self.lanes):
            x = (d * span * laps * ph + span * y) % span - car.size / 2
            car.draw(frame, x, self.h * y, 0.0)
        return frame


SCENE_CLASSES = {c.name: c for c in (ShapesScene, SpinScene, TrafficScene)}


# ------------------------------------------------------------------------------------ image and video

def _to_gray_float(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    return np.clip(img.astype(np.float32) / scale, 0.0, 1.0)


class ImageScene(SceneBase):
    """A still image with periodic synthetic motion: pan, zoom and a small rotation."""

    name = "image"

    def __init__(self, cfg: SceneConfig, path: str, pan: float = 0.08, zoom: float = 0.1, rotate_deg: float = 8.0):
        super().__init__(cfg)
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DriverError(f"{path}: OpenCV cannot read this image")
        img = _to_gray_float(img)
        # cover the frame with a margin so motion never shows the border
        cover = 1.0 + 2 * pan + zoom
        fit = max(self.h * cover / img.shape[0], self.w * cover / img.shape[1])
        self.img = cv2.resize(img, (max(1, round(img.shape[1] * fit)), max(1, round(img.shape[0] * fit))),
                              interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR)
        self.pan, self.zoom, self.rotate_deg = pan, zoom, rotate_deg

    def intensity(self, t_s: float) -> np.ndarray:
        a = TAU * self.phase(t_s)
        ih, iw = self.img.shape
        scale = 1.0 + self.zoom * 0.5 * (1 - math.cos(a))
        m = cv2.getRotationMatrix2D((iw / 2, ih / 2), self.rotate_deg * math.sin(a), scale)
        m[0, 2] += self.w / 2 - iw / 2 + self.pan * self.w * math.sin(a)
        m[1, 2] += self.h / 2 - ih / 2 + self.pan * self.h * math.sin(2 * a)
        return cv2.warpAffine(self.img, m, (self.w, self.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class VideoScene(SceneBase):
    """Frames of a video (gray, resized), intensity interpolated linearly between video frames.

    Scene time t maps to video frame t * video_fps; past the end the video starts again.
    """

    name = "video"

    def __init__(self, cfg: SceneConfig, path: str, duration_s: float, video_fps: float | None = None):
        super().__init__(cfg)
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise DriverError(f"{path}: OpenCV cannot open this as an image or a video")
        fps = video_fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        if not fps > 0:
            raise ConfigError(f"video fps must be positive, got {fps}")
        self.fps = float(fps)
        want = min(MAX_VIDEO_FRAMES, int(math.ceil(duration_s * self.fps)) + 2)
        frames = []
        while len(frames) < want:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(_to_gray_float(img), (self.w, self.h), interpolation=cv2.INTER_AREA))
        cap.release()
        if not frames:
            raise DriverError(f"{path}: the video has no readable frames")
        self.frames = frames

    def intensity(self, t_s: float) -> np.ndarray:
        u = t_s * self.fps
        k = int(math.floor(u))
        a = np.float32(u - k)
        n = len(self.frames)
        f0, f1 = self.frames[k % n], self.frames[(k + 1) % n]
        return f0 + a * (f1 - f0)


def make_scene(spec: str, cfg: SceneConfig, duration_s: float = 1.0, **extra) -> Scene:
    """spec = built-in scene name, an image path or a video path (anything OpenCV can read)."""
    if spec in SCENE_CLASSES:
        return SCENE_CLASSES[spec](cfg)
    if not os.path.exists(spec):
        raise DriverError(f"unknown scene {spec!r}: use one of {', '.join(SCENE_CLASSES)} or the path of an "
                          "image or video file")
    if cv2.haveImageReader(spec):
        keys = ("pan", "zoom", "rotate_deg")
        return ImageScene(cfg, spec, **{k: float(v) for k, v in extra.items() if k in keys})
    return VideoScene(cfg, spec, duration_s, extra.get("video_fps"))
