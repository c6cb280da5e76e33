"""Training data: spike recordings held in memory, random augmented crops, validation windows.

A *recording* is a stretch of unpacked spike frames (T x H x W uint8, image orientation) plus the
ground truth it may carry (frame index -> H x W intensity in [0, 1]). Sources:

- `.dat` files (any H x W via `DatOptions`), `.npy`/`.npz` spike arrays (their own H x W), or
  directories of them; a sibling `NAME.png` is the ground-truth intensity at frame `gt_frame`
  (REDS_BASE convention: frame 150);
- simulated streams from `drivers.sim.simulate` (built-in scene names, image or video paths);
- random "world" clips from `drivers.worlds` (natural-statistics textures, motion up to 1.2 px per
  frame, light levels 0.008-0.95, sensor faults), the distribution users' cameras meet.

Every valid centre of a recording is a training window (T - 40 of them for 41-frame windows). Ground
truth never reaches the loss: `CropSampler` returns spikes only; `validation_windows` pairs full
frames with ground truth for PSNR/SSIM during validation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, SpikeFormatError
from ..formats import RATE_GAIN, SPIKE_FILE_SUFFIXES, read_spikes
from ..unpack import unpack

WINDOW_FRAMES = 41
REDS_GT_FRAME = 150  # REDS_BASE: the .png is the intensity at frame 150 (0-based)


@dataclass
class Recording:
    """Unpacked spike frames of one source and the ground truth it carries (never used by the loss)."""

    name: str
    frames: np.ndarray  # T x H x W uint8, values 0/1
    gt: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> H x W intensity [0, 1]
    rate_gain: float = RATE_GAIN
    # crops of this recording learn from the BSN alone, never from a distillation teacher (loop.Trainer)
    teacher_free: bool = False

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    def centres(self, window_frames: int = WINDOW_FRAMES) -> range:
        """Every frame index on which a full window can be centred."""
        half = window_frames // 2
        return range(half, self.n_frames - half)

    def window(self, centre: int, window_frames: int = WINDOW_FRAMES) -> np.ndarray:
        half = window_frames // 2
        return self.frames[centre - half: centre + half + 1]


@dataclass(frozen=True)
class DatOptions:
    height: int = 250
    width: int = 400
    stored_width: int = 0
    gt_frame: int = REDS_GT_FRAME


@dataclass(frozen=True)
class SimOptions:
    n_frames: int = 301
    height: int = 250
    width: int = 400
    clips: int = 1  # clips per spec, each a later stretch of the scene (start_frame) with its own seed
    gt_every_frames: int = 0  # also keep gt every k frames (0 = only the clip's centre frame)
    seed: int = 0


def find_dat_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (searched recursively) into a sorted list of spike files
    (.dat, .npy, .npz)."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in SPIKE_FILE_SUFFIXES and f.is_file())
            # an array beside a same-named .dat is its ground truth (ssml-sim writes X.dat and X.npz)
            found.extend(f for f in files if f.suffix.lower() == ".dat" or not f.with_suffix(".dat").is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise ConfigError(f"{p}: no such file or directory (give .dat/.npy/.npz files or folders holding them)")
    if paths and not found:
        raise ConfigError(f"no .dat/.npy/.npz files found in {', '.join(map(str, paths))}")
    return found


def _read_gt_png(png: Path, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SpikeFormatError(f"{png}: not a readable image")
    if img.shape != shape:
        raise SpikeFormatError(f"{png}: ground truth is {img.shape[0]}x{img.shape[1]}, spikes are "
                               f"{shape[0]}x{shape[1]}; check --height/--width")
    return img.astype(np.float32) / 255.0


def load_dat_recording(path: str | os.PathLike, options: DatOptions = DatOptions()) -> Recording:
    path = Path(path)
    spikes = read_spikes(path, options.height, options.width, stored_width=options.stored_width)
    try:
        frames = spikes.read(0, len(spikes))
    finally:
        spikes.close()
    if frames.shape[0] < WINDOW_FRAMES:
        raise SpikeFormatError(f"{path}: {frames.shape[0]} frames, need at least {WINDOW_FRAMES} for one window")
    gt = {}
    png = path.with_suffix(".png")
    if png.exists() and options.gt_frame < frames.shape[0]:
        gt[options.gt_frame] = _read_gt_png(png, frames.shape[1:])
    return Recording(path.stem, frames, gt)


def load_sim_recordings(spec: str, options: SimOptions = SimOptions()) -> list[Recording]:
    """Simulate `options.clips` stretches of a scene; gt is kept at each clip's centre (and every
    `gt_every_frames` frames) for validation only."""
    from ..drivers import sim  # imported on use: numba compiles its kernels at first call

    out = []
    for clip in range(options.clips):
        centre = options.n_frames // 2
        gt_frames = {centre}
        if options.gt_every_frames:
            half = WINDOW_FRAMES // 2
            gt_frames.update(range(half, options.n_frames - half, options.gt_every_frames))
        result = sim.simulate(spec, options.n_frames, height=options.height, width=options.width,
                              seed=options.seed + clip, gt_frames=sorted(gt_frames),
                              start_frame=clip * options.n_frames)
        frames = unpack(np.asarray(result.packed), options.height, options.width)
        gt = {int(k): np.asarray(v, np.float32) for k, v in result.gt.items()}
        label = Path(spec).stem if os.path.sep in spec or "." in spec else spec
        name = f"sim-{label}" + (f"-{clip}" if options.clips > 1 else "")
        out.append(Recording(name, frames, gt, float(result.rate_gain)))
    return out


def load_world_recordings(n_clips: int, seed: int, textures: Sequence[str] = (), size: int = 128,
                          n_frames: int = 81, hard: bool = False) -> list[Recording]:
    """`n_clips` random clips (`drivers.worlds.random_spec`, or `hard_spec` with `hard`, from a seed of
    their own); `textures` adds image files to the procedural ones. Ground truth is kept at each clip's
    centre for validation only."""
    from ..drivers import worlds

    draw = worlds.hard_spec if hard else worlds.random_spec
    rng = np.random.default_rng(seed + 104729 if hard else seed)
    kinds = (*worlds.TEXTURES, *map(str, textures))
    out = []
    for i in range(n_clips):
        clip = worlds.render_clip(draw(rng, kinds, size, size, n_frames))
        out.append(Recording(f"world-{'hard-' if hard else ''}{seed}-{i}", clip.frames, clip.gt, clip.rate_gain,
                             teacher_free=hard))
    return out


def load_recordings(dat_paths: Sequence[str] = (), sim_specs: Sequence[str] = (),
                    dat_options: DatOptions = DatOptions(), sim_options: SimOptions = SimOptions(),
                    exclude_test: bool = True, worlds: int = 0, world_seed: int = 0,
                    world_textures: Sequence[str] = (), worlds_hard: int = 0) -> list[Recording]:
    """All training recordings (+ `worlds` random world clips and `worlds_hard` ones from the hard
    corners). `exclude_test` refuses files under a `test` folder of reds_base."""
    recs = []
    for path in find_dat_files(dat_paths):
        if exclude_test and "test" in path.resolve().parts and "reds_base" in path.resolve().parts:
            raise ConfigError(f"{path} is REDS_BASE test data; training on it would make the test "
                              "meaningless (use the train/ files)")
        recs.append(load_dat_recording(path, dat_options))
    for spec in sim_specs:
        recs.extend(load_sim_recordings(spec, sim_options))
    if worlds:
        recs.extend(load_world_recordings(worlds, world_seed, world_textures))
    if worlds_hard:
        recs.extend(load_world_recordings(worlds_hard, world_seed, world_textures, hard=True))
    if not recs:
        raise ConfigError("no training data: give recordings, simulated scenes or world clips")
    return recs


# The 8 symmetries of the square: k quarter turns, optionally followed by a left-right flip.
def dihedral(x: np.ndarray, index: int) -> np.ndarray:
    """Apply augmentation `index` in 0..7 to the last two axes of x."""
    y = np.rot90(x, index % 4, axes=(-2, -1))
    if index >= 4:
        y = y[..., ::-1]
    return y


class CropSampler:
    """Random training batches: B x window x crop x crop uint8 spike windows (no ground truth).

    A recording is drawn with probability proportional to its number of windows times its area;
    then a centre, a crop position and one of the 8 rotate/flip augmentations, all uniform.
    """

    def __init__(self, recordings: Sequence[Recording], crop: int = 40, batch_size: int = 4,
                 window_frames: int = WINDOW_FRAMES, seed: int = 0):
        if not recordings:
            raise ConfigError("no recordings to sample from")
        for r in recordings:
            if r.frames.shape[1] < crop or r.frames.shape[2] < crop:
                raise ConfigError(f"{r.name}: frames {r.frames.shape[1]}x{r.frames.shape[2]} are smaller "
                                  f"than the {crop}x{crop} crop; lower --crop")
            if len(r.centres(window_frames)) == 0:
                raise ConfigError(f"{r.name}: fewer than {window_frames} frames")
        self.recordings = list(recordings)
        self.crop = crop
        self.batch_size = batch_size
        self.window_frames = window_frames
        self.rng = np.random.default_rng(seed)
        weights = np.array([len(r.centres(window_frames)) * r.frames.shape[1] * r.frames.shape[2]
                            for r in self.recordings], np.float64)
        self.weights = weights / weights.sum()

    def sample(self) -> np.ndarray:
        return self.sample_batch()[0]

    def sample_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows, bool per crop: its recording is `teacher_free`)."""
        half = self.window_frames // 2
        out = np.empty((self.batch_size, self.window_frames, self.crop, self.crop), np.uint8)
        free = np.zeros(self.batch_size, bool)
        for b in range(self.batch_size):
            rec = self.recordings[self.rng.choice(len(self.recordings), p=self.weights)]
            free[b] = rec.teacher_free
            t, h, w = rec.frames.shape
            c = int(self.rng.integers(half, t - half))
            y = int(self.rng.integers(0, h - self.crop + 1))
            x = int(self.rng.integers(0, w - self.crop + 1))
            win = rec.frames[c - half: c + half + 1, y: y + self.crop, x: x + self.crop]
            out[b] = dihedral(win, int(self.rng.integers(0, 8)))
        return out, free

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


@dataclass
class ValWindow:
    """A full-frame window with ground truth, for validation only."""

    name: str
    window: np.ndarray  # window_frames x H x W uint8
    gt: np.ndarray  # H x W intensity in [0, 1]
    rate_gain: float = RATE_GAIN


def validation_windows(recordings: Sequence[Recording], window_frames: int = WINDOW_FRAMES,
                       per_recording: int = 1) -> list[ValWindow]:
    """Up to `per_recording` gt frames of each recording that carries ground truth (nearest the middle)."""
    out = []
    for rec in recordings:
        valid = [k for k in rec.gt if k in rec.centres(window_frames)]
        valid.sort(key=lambda k: abs(k - rec.n_frames // 2))
        for k in valid[:per_recording]:
            suffix = f"@{k}" if per_recording > 1 else ""
            out.append(ValWindow(rec.name + suffix, rec.window(k, window_frames), rec.gt[k], rec.rate_gain))
    return out
