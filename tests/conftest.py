import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from ssml_stream.data_paths import shared_data

TESTS = Path(__file__).resolve().parent
REDS_TEST = shared_data() / "reds_base" / "test" / "200_part1_key_id151"
# Frames 130..170 of REDS_TEST with its ground truth, committed so a fresh clone has real camera bits
# (provenance and licence: tests/fixtures/README.md).
REDS_EXCERPT = TESTS / "fixtures" / "reds_200_part1_frames130-170"
REDS_FRAME_BYTES = 250 * 400 // 8


def _read_gt_png(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


class RedsSample(NamedTuple):
    """A real 250x400 recording and its ground-truth intensity in [0, 1] at its centre frame."""

    dat: Path
    gt: np.ndarray

    @property
    def frames(self) -> int:
        return self.dat.stat().st_size // REDS_FRAME_BYTES

    @property
    def gt_frame(self) -> int:
        """The ground truth is the centre frame: 150 of the full 301-frame file, 20 of the excerpt."""
        return self.frames // 2


@pytest.fixture
def reds_test() -> RedsSample:
    """The REDS_BASE development test file from the shared data folder, or else its committed
    41-frame excerpt. Use it only where real camera bits matter; simulate everything else."""
    stem = REDS_TEST if REDS_TEST.with_suffix(".dat").exists() else REDS_EXCERPT
    return RedsSample(stem.with_suffix(".dat"), _read_gt_png(stem.with_suffix(".png")))


class SimRecording(NamedTuple):
    """A simulated recording laid out like a REDS_BASE file: NAME.dat (250x400, 301 frames) and
    NAME.png, the 8-bit ground-truth intensity of the centre frame 150."""

    dat: Path
    gt: np.ndarray  # the PNG as read back, intensity in [0, 1]
    gt_frame: int
    frames: int


@pytest.fixture(scope="session")
def sim_recording(tmp_path_factory) -> SimRecording:
    """For tests that need a full-size .dat file but not real camera bits. Do not modify the files."""
    import cv2

    from ssml_stream.drivers.sim import simulate
    from ssml_stream.formats import DatWriter

    frames, gt_frame = 301, 150
    res = simulate("spin", frames, height=250, width=400, seed=7, gt_frames=[gt_frame])
    stem = tmp_path_factory.mktemp("sim_recording") / "spin"
    with DatWriter(stem.with_suffix(".dat"), 250, 400) as writer:
        writer.write_packed(np.asarray(res.packed))
    cv2.imwrite(str(stem.with_suffix(".png")), np.round(np.clip(res.gt[gt_frame], 0, 1) * 255).astype(np.uint8))
    return SimRecording(stem.with_suffix(".dat"), _read_gt_png(stem.with_suffix(".png")), gt_frame, frames)


class CheckedThread(threading.Thread):
    """A daemon thread whose result() re-raises what the target raised, and fails (instead of hanging)
    when the target has not finished within the timeout."""

    def __init__(self, target, *args, **kwargs):
        super().__init__(name=f"test-{getattr(target, '__name__', 'thread')}", daemon=True)
        self._call = (target, args, kwargs)
        self._value = None
        self._error: BaseException | None = None

    def run(self):
        target, args, kwargs = self._call
        try:
            self._value = target(*args, **kwargs)
        except BaseException as e:  # handed to result() in the test's thread
            self._error = e

    def result(self, timeout: float = 30.0):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"{self.name} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture
def spawn():
    """spawn(fn, *args) starts fn in a CheckedThread; call .result(timeout) on it to join and re-raise."""
    def start(target, *args, **kwargs) -> CheckedThread:
        t = CheckedThread(target, *args, **kwargs)
        t.start()
        return t
    return start


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
