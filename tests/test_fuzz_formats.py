"""Property-based fuzzing of the `.dat` reader: any bytes, any frame size, any truncation either read back
exactly as the packed layout says or raise SpikeFormatError/ConfigError, nothing else."""
import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssml_stream.errors import ConfigError, SpikeFormatError
from ssml_stream.formats import read_dat, write_dat

FUZZ = settings(max_examples=300, deadline=None, database=None)  # deadline: the first call loads Numba kernels
_names = itertools.count()


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _fresh_path(folder: Path) -> Path:
    return folder / f"f{next(_names)}.dat"  # never reused: an earlier example's memory map stays valid


def _write(folder: Path, data: bytes) -> Path:
    path = _fresh_path(folder)
    path.write_bytes(data)
    return path


def reference_frames(data: bytes, height: int, width: int, stored_width: int) -> np.ndarray:
    """The layout, decoded independently: row-major from the bottom row up, LSB first, extra columns dropped."""
    frame_bytes = height * stored_width // 8
    n = len(data) // frame_bytes
    packed = np.frombuffer(data[:n * frame_bytes], np.uint8).reshape(n, frame_bytes)
    bits = np.unpackbits(packed, axis=1, bitorder="little")
    return bits.reshape(n, height, stored_width)[:, ::-1, :width]


def expected_error(size: int, height: int, width: int, stored_width: int, allow_truncated: bool) -> bool:
    stored = stored_width or width
    if height <= 0 or width <= 0 or stored < width or (height * stored) % 8:
        return True
    frame_bytes = height * stored // 8
    return size < frame_bytes or (size % frame_bytes != 0 and not allow_truncated)


sizes = st.integers(-3, 40) | st.sampled_from([250, 400, 416, 10 ** 9])


@st.composite
def anything(draw):
    """Arbitrary bytes and geometry: mostly rejected."""
    return (draw(st.binary(max_size=4096)), draw(sizes), draw(sizes),
            draw(st.sampled_from([0, -8]) | st.integers(1, 64)), draw(st.booleans()))


@st.composite
def near_valid(draw):
    """A whole-byte frame size (stored rows possibly wider than the image) and random bytes of some whole
    frames plus a few more: mostly readable."""
    height = draw(st.integers(1, 24))
    step = 8 // math.gcd(height, 8)  # stored widths that make whole-byte frames
    stored = step * draw(st.integers(1, 48 // step))
    width = max(1, stored - draw(st.sampled_from([0, 0, 0, 1, 8, 16])))
    frame_bytes = height * stored // 8
    size = draw(st.integers(0, 6)) * frame_bytes + draw(st.sampled_from([0, 0, 1, frame_bytes - 1]))
    data = draw(st.binary(min_size=size, max_size=size))
    return data, height, width, 0 if stored == width else stored, draw(st.booleans())


@FUZZ
@given(case=anything() | near_valid())
def test_any_bytes_and_geometry_read_exactly_or_raise_a_format_error(folder, case):
    data, height, width, stored_width, allow_truncated = case
    path = _write(folder, data)
    try:
        f = read_dat(path, height, width, stored_width=stored_width, allow_truncated=allow_truncated)
    except (SpikeFormatError, ConfigError) as e:
        assert expected_error(len(data), height, width, stored_width, allow_truncated), e
        assert str(e) and "\n" not in str(e)
        return
    assert not expected_error(len(data), height, width, stored_width, allow_truncated)
    with f:
        ref = reference_frames(data, height, width, stored_width or width)
        frame_bytes = height * (stored_width or width) // 8
        assert len(f) == len(ref) >= 1 and f.truncated_bytes == len(data) % frame_bytes
        np.testing.assert_array_equal(f[:], ref)
        np.testing.assert_array_equal(f[-1], ref[-1])
        np.testing.assert_array_equal(np.concatenate(list(f.chunks(3))), ref)


frame_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24)).filter(lambda hw: hw[0] * hw[1] % 8 == 0)


@FUZZ
@given(shape=frame_shapes, n=st.integers(1, 12), density=st.floats(0, 1), seed=st.integers(0, 2 ** 32 - 1),
       cut=st.floats(0, 1), allow_truncated=st.booleans())
def test_written_files_cut_anywhere_keep_their_whole_frames(folder, shape, n, density, seed, cut, allow_truncated):
    h, w = shape
    frames = (np.random.default_rng(seed).random((n, h, w)) < density).astype(np.uint8)
    whole = _fresh_path(folder)
    write_dat(whole, frames)
    data = whole.read_bytes()
    assert len(data) == n * h * w // 8
    kept = int(round(cut * len(data)))
    path = _write(folder, data[:kept])
    frame_bytes = h * w // 8
    try:
        f = read_dat(path, h, w, allow_truncated=allow_truncated)
    except SpikeFormatError:
        assert kept < frame_bytes or (kept % frame_bytes and not allow_truncated)
        return
    with f:
        assert len(f) == kept // frame_bytes and f.truncated_bytes == kept % frame_bytes
        np.testing.assert_array_equal(f[:], frames[:len(f)])


def _small_file(folder, n, seed):
    frames = (np.random.default_rng(seed).random((n, 4, 6)) < 0.5).astype(np.uint8)
    path = _fresh_path(folder)
    write_dat(path, frames)
    return read_dat(path, 4, 6), frames


bounds = st.integers(-12, 12) | st.none()


@FUZZ
@given(n=st.integers(1, 9), start=bounds, stop=bounds, index=st.integers(-12, 12), seed=st.integers(0, 2 ** 32 - 1))
def test_indexing_follows_python_sequence_rules(folder, n, start, stop, index, seed):
    f, frames = _small_file(folder, n, seed)
    with f:
        np.testing.assert_array_equal(f[start:stop], frames[start:stop])
        if -n <= index < n:
            np.testing.assert_array_equal(f[index], frames[index])
        else:
            with pytest.raises(IndexError):
                f[index]


@FUZZ
@given(n=st.integers(1, 9), start=bounds, stop=bounds, step=st.integers(-3, 3).filter(bool),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stepped_slices_follow_python_sequence_rules(folder, n, start, stop, step, seed):
    f, frames = _small_file(folder, n, seed)
    with f:
        np.testing.assert_array_equal(f[start:stop:step], frames[start:stop:step])
