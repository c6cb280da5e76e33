"""Spike arrays (.npy / .npz, any H x W) through the reader, the file driver, the pipeline and the tools."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ssml_stream as ss
from ssml_stream import arrays
from ssml_stream.cli import info_main, record_main
from ssml_stream.drivers import DriverOptions, open_driver
from ssml_stream.errors import SpikeFormatError
from ssml_stream.formats import stored_width_for
from ssml_stream.ring import Ring
from ssml_stream.unpack import unpack
from test_drivers import consume

BIN = Path(sys.executable).parent


def random_spikes(rng, n, h, w, dtype=np.uint8, p=0.3):
    return (rng.random((n, h, w)) < p).astype(dtype)


def reference_pack(frames):
    """The .dat layout written out independently: bottom row first, LSB first, zero-padded to bytes."""
    n = frames.shape[0]
    return np.packbits(frames[:, ::-1, :].reshape(n, -1) != 0, axis=1, bitorder="little")


def unpack_ring_frames(packed, h, w):
    """What the pipeline does with ring frames: stored width from the frame size, then unpack."""
    return unpack(packed, h, w, stored_width_for(h, w, packed.shape[1]))


def replay_lossless(path, **options):
    with open_driver(str(path), DriverOptions(speed=None, **options)) as d:
        got, firsts, dropped = consume(d, Ring(d.info.frame_bytes, capacity=64, lossless=True))
    assert dropped == 0
    return d.info, got


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("shape", [(250, 250), (250, 400)])
@pytest.mark.parametrize("dtype", [np.uint8, np.bool_])
@pytest.mark.parametrize("uri", ["file:{}", "{}"])
def test_array_through_the_ring_unpacks_to_the_array(tmp_path, rng, shape, dtype, uri):
    frames = random_spikes(rng, 40, *shape, dtype=dtype)
    path = tmp_path / "spikes.npy"
    np.save(path, frames)
    info, got = replay_lossless(uri.format(path))
    assert (info.height, info.width) == shape and info.frame_bytes == -(-shape[0] * shape[1] // 8)
    np.testing.assert_array_equal(got, reference_pack(frames))
    np.testing.assert_array_equal(unpack_ring_frames(got, *shape), frames.astype(np.uint8))


def test_npz_key_spk_or_the_only_array(tmp_path, rng):
    frames = random_spikes(rng, 30, 25, 30, dtype=np.bool_)
    np.savez_compressed(tmp_path / "named.npz", gt=np.zeros(3), spk=frames, other=np.ones((2, 2)))
    np.savez(tmp_path / "single.npz", anything=frames)
    for name in ("named.npz", "single.npz"):
        with ss.read_spikes(tmp_path / name) as s:
            assert (len(s), s.height, s.width) == (30, 25, 30)
            np.testing.assert_array_equal(s[:], frames)
        info, got = replay_lossless(tmp_path / name)
        np.testing.assert_array_equal(unpack_ring_frames(got, 25, 30), frames)


def test_row_zero_is_the_top_of_the_image(tmp_path):
    # the bottom-left pixel is bit 0 of byte 0 in the packed layout, as in .dat files
    frame = np.zeros((1, 3, 5), np.uint8)
    frame[0, 2, 0] = 1
    frame[0, 0, 4] = 1  # top row, last column: p = 2 * 5 + 4 = 14 -> byte 1, bit 6
    np.save(tmp_path / "f.npy", frame)
    _, got = replay_lossless(tmp_path / "f.npy")
    assert got.tolist() == [[1, 64]]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.uint8, np.bool_]), fortran=st.booleans())
def test_any_size_round_trips(tmp_path_factory, n, h, w, seed, dtype, fortran):
    frames = random_spikes(np.random.default_rng(seed), n, h, w, dtype=dtype)
    folder = tmp_path_factory.mktemp("any")
    np.save(folder / "x.npy", np.asfortranarray(frames) if fortran else frames)
    with ss.read_spikes(folder / "x.npy") as s:
        np.testing.assert_array_equal(s[:], frames)
        packed = s.packed[0:n]
    np.testing.assert_array_equal(packed, reference_pack(frames))
    np.testing.assert_array_equal(unpack_ring_frames(packed, h, w), frames)
    with ss.open_writer(folder / "back.npy", h, w) as writer:
        writer.write_packed(packed[: n // 2])
        writer.write(frames[n // 2:])
    back = np.load(folder / "back.npy")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, frames)


@pytest.mark.parametrize("dtype, shape", [(np.uint8, (0, 250, 400)), (np.dtype(">f4"), (10**19, 1000, 1000)),
                                          (np.float32, (3,))])
def test_npy_header_has_a_fixed_size_and_numpy_reads_it(dtype, shape):
    """Writers rewrite the header in place when the frame count is known, so its size must not change."""
    header = arrays.npy_header(dtype, shape)
    assert len(header) == arrays.NPY_HEADER_BYTES
    fp = io.BytesIO(header)
    assert np.lib.format.read_magic(fp) == (1, 0)
    assert np.lib.format.read_array_header_1_0(fp) == (shape, False, np.dtype(dtype))
    with pytest.raises(ValueError, match="does not fit"):
        arrays.npy_header(dtype, (10**60, 10**20, 10**20))


def test_same_interface_and_values_as_a_dat_file(tmp_path, rng):
    frames = random_spikes(rng, 60, 16, 24)
    ss.write_dat(tmp_path / "x.dat", frames)
    np.save(tmp_path / "x.npy", frames)
    dat = ss.read_spikes(tmp_path / "x.dat", 16, 24)
    arr = ss.read_spikes(tmp_path / "x.npy", 250, 400, stored_width=416)  # .dat options: ignored by arrays
    assert isinstance(dat, ss.SpikeFile) and isinstance(arr, arrays.SpikeArray)
    for s in (dat, arr):
        with s:
            assert len(s) == 60 and (s.height, s.width) == (16, 24)
            np.testing.assert_array_equal(s[7], frames[7])
            np.testing.assert_array_equal(s[-1], frames[-1])
            np.testing.assert_array_equal(s[10:20], frames[10:20])
            np.testing.assert_array_equal(s[::7], frames[::7])
            np.testing.assert_array_equal(s.window(30, 41), frames[10:51])
            np.testing.assert_array_equal(s.read(5, 9), frames[5:9])
            np.testing.assert_array_equal(np.concatenate(list(s.chunks(25))), frames)
            np.testing.assert_array_equal(np.asarray(s.packed[3:9]), reference_pack(frames[3:9]))
            with pytest.raises(IndexError, match="does not fit"):
                s.window(5, 41)


def test_paced_replay_loops_like_a_dat_file(tmp_path, rng):
    frames = random_spikes(rng, 50, 9, 13)
    np.save(tmp_path / "x.npy", frames)
    opts = DriverOptions(speed=1.0, loop=True, duration_s=2000 / 40000)
    with open_driver(f"file:{tmp_path / 'x.npy'}", opts) as d:
        assert d.info.live
        got, _, dropped = consume(d, Ring(d.info.frame_bytes, capacity=4096))
    assert dropped == 0 and d.frames_out == 2000
    np.testing.assert_array_equal(unpack_ring_frames(got, 9, 13), np.concatenate([frames] * 40))


# ---------------------------------------------------------------- bad input

class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _bad_files(tmp, rng):
    ok = random_spikes(rng, 4, 5, 6)
    pickled = np.empty(1, object)
    pickled[0] = _RunsCodeWhenUnpickled(tmp / "code-ran")
    files = {
        "2d.npy": np.zeros((5, 6), np.uint8),
        "4d.npy": np.zeros((2, 3, 5, 6), np.uint8),
        "float.npy": ok.astype(np.float32),
        "int64.npy": ok.astype(np.int64),
        "empty.npy": np.zeros((0, 5, 6), np.uint8),
        "zero-width.npy": np.zeros((4, 5, 0), np.bool_),
        "pickled.npy": pickled,
    }
    for name, a in files.items():
        np.save(tmp / name, a, allow_pickle=True)
    np.savez(tmp / "several.npz", a=ok, b=ok)
    np.savez(tmp / "none.npz")
    np.savez(tmp / "pickled.npz", spk=pickled, allow_pickle=True)
    np.savez(tmp / "float.npz", spk=ok.astype(np.float64))
    (tmp / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp / "text.npy").write_bytes(b"frames,height,width\n")
    np.save(tmp / "truncated.npy", ok)
    (tmp / "truncated.npy").write_bytes((tmp / "truncated.npy").read_bytes()[:-10])


BAD_INPUTS = [
    ("2d.npy", "shape (5, 6), expected 3 dimensions"),
    ("4d.npy", "shape (2, 3, 5, 6), expected 3 dimensions"),
    ("float.npy", "dtype float32, expected uint8 or bool"),
    ("int64.npy", "dtype int64, expected uint8 or bool"),
    ("empty.npy", "empty array of shape (0, 5, 6)"),
    ("zero-width.npy", "empty array of shape (4, 5, 0)"),
    ("pickled.npy", "Python objects (pickled data), which are never loaded"),
    ("several.npz", "holds 2 arrays (a, b) and none named 'spk'"),
    ("none.npz", "holds no arrays"),
    ("pickled.npz", "['spk']: holds Python objects"),
    ("float.npz", "['spk']: dtype float64"),
    ("garbage.npz", "not a readable .npz archive"),
    ("text.npy", "not a .npy array"),
    ("truncated.npy", "the file is truncated"),
    ("missing.npy", "no such file"),
]


@pytest.mark.parametrize("name, message", BAD_INPUTS)
def test_bad_arrays_are_one_line_errors(tmp_path, rng, capsys, name, message):
    _bad_files(tmp_path, rng)
    with pytest.raises(SpikeFormatError) as e:
        ss.read_spikes(tmp_path / name)
    assert message in str(e.value) and str(tmp_path / name) in str(e.value)
    assert "\n" not in str(e.value) and "--" not in str(e.value)  # one line, no CLI flags from the API
    assert not (tmp_path / "code-ran").exists()
    assert info_main([str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssml-info: error:") and message in err[0]


def test_values_other_than_0_1_small_array_fails_at_open(tmp_path, rng):
    frames = random_spikes(rng, 20, 5, 6)
    frames[7, 2, 3] = 2
    np.save(tmp_path / "x.npy", frames)
    with pytest.raises(SpikeFormatError, match="x.npy: frame 7 holds the value 2; spike arrays must hold only 0 and 1"):
        ss.read_spikes(tmp_path / "x.npy")


def test_values_of_a_large_array_are_checked_per_chunk_as_read(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(arrays, "FULL_CHECK_BYTES", 0)  # behave as for an array too large to check at open
    frames = random_spikes(rng, 20, 5, 6)
    frames[7, 0, 0] = 255
    np.save(tmp_path / "x.npy", frames)
    with ss.read_spikes(tmp_path / "x.npy") as s:
        np.testing.assert_array_equal(s[0:7], frames[:7])
        np.testing.assert_array_equal(s.packed[8:20], reference_pack(frames[8:]))
        for read in (lambda: s[7], lambda: s.window(9, 5), lambda: s.packed[0:20]):
            with pytest.raises(SpikeFormatError, match="frame 7 holds the value 255"):
                read()
    with pytest.raises(SpikeFormatError, match="frame 7 holds the value 255"):
        replay_lossless(tmp_path / "x.npy")


def test_frames_not_whole_bytes_cannot_go_to_a_dat_file(tmp_path, rng):
    with pytest.raises(SpikeFormatError, match=r"250x250 frames are 62500 bits.*write a .npy file instead"):
        ss.open_writer(tmp_path / "x.dat", 250, 250)
    with pytest.raises(SpikeFormatError, match="cannot record to a .npz archive"):
        ss.open_writer(tmp_path / "x.npz", 16, 16)


# ---------------------------------------------------------------- command line

def run(script, *args):
    return subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.system
@pytest.mark.parametrize("shape", [(32, 30), (25, 30)])  # 25 x 30 frames are 93.75 bytes: padded
def test_stream_offline_from_npz_equals_tfp_and_records_npy(tmp_path, rng, shape):
    frames = random_spikes(rng, 300, *shape, dtype=np.bool_)
    np.savez_compressed(tmp_path / "x.npz", spk=frames)
    p = run("ssml-stream", "--device", f"file:{tmp_path / 'x.npz'}", "--model", "tfp", "--speed", "max",
            "--stride", "10", "--save", tmp_path / "out.npz", "--record", tmp_path / "rec.npy", "--no-publish",
            "--quiet")
    assert p.returncode == 0, p.stderr
    z = np.load(tmp_path / "out.npz")
    centers = list(range(20, 300 - 20, 10))
    assert z["center"].tolist() == centers and z["frames"].shape == (len(centers), *shape)
    for frame, c in zip(z["frames"], centers):
        np.testing.assert_array_equal(frame, ss.tfp(frames[c - 20:c + 21].astype(np.uint8)))
    np.testing.assert_array_equal(np.load(tmp_path / "rec.npy"), frames)


@pytest.mark.system
def test_info_on_npy(tmp_path, rng):
    frames = random_spikes(rng, 300, 25, 30, p=0.2)
    np.save(tmp_path / "x.npy", frames)
    p = run("ssml-info", tmp_path / "x.npy", "--rate", 20000)
    assert p.returncode == 0, p.stderr
    assert "300 of 25x30, uint8 array (.npy, memory-mapped)" in p.stdout
    assert "0.015 s at 20000 Hz" in p.stdout and f"{frames.mean():.4f} spikes" in p.stdout
    assert f"{(tmp_path / 'x.npy').stat().st_size:,} bytes" in p.stdout


@pytest.mark.system
def test_record_array_to_npy_and_dat(tmp_path, rng):
    frames = random_spikes(rng, 500, 25, 30)
    np.save(tmp_path / "odd.npy", frames)
    p = run("ssml-record", tmp_path / "odd.npy", tmp_path / "copy.npy")
    assert p.returncode == 0 and "500 frames written" in p.stdout and "0 dropped" in p.stdout, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "copy.npy"), frames)
    p = run("ssml-record", tmp_path / "odd.npy", tmp_path / "copy.dat")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "not a whole number of bytes" in p.stderr and "write a .npy file instead" in p.stderr
    whole = frames[:, :, :24]
    ss.write_dat(tmp_path / "w.dat", whole)
    assert record_main([str(tmp_path / "w.dat"), str(tmp_path / "w.npy"), "--height", "25", "--width", "24",
                        "--frames", "300"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), whole[:300])
    assert record_main([str(tmp_path / "w.npy"), str(tmp_path / "w2.dat")]) == 0
    np.testing.assert_array_equal(ss.read_dat(tmp_path / "w2.dat", 25, 24)[:], whole[:300])
    raw = random_spikes(rng, 50, 4, 416)  # raw captures: the extra stored columns are not recorded
    ss.write_dat(tmp_path / "raw.dat", raw)
    assert record_main([str(tmp_path / "raw.dat"), str(tmp_path / "raw.npy"), "--height", "4", "--width", "400",
                        "--stored-width", "416"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "raw.npy"), raw[:, :, :400])
