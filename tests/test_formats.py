import numpy as np
import pytest

import ssml_stream as ss
from ssml_stream.errors import SpikeFormatError


def test_reds_conformance_tfp41(reds_test):
    """TFP41 / 0.6 at frame 150 of REDS test/200_part1 is 31.60 dB (frame 20 of the committed excerpt)."""
    spikes = ss.read_dat(reds_test.dat)
    assert len(spikes) == reds_test.frames and spikes[0].shape == (250, 400)
    assert ss.psnr(ss.tfp(spikes.window(reds_test.gt_frame, 41)) / 0.6, reds_test.gt) == pytest.approx(31.60, abs=0.01)


def test_reds_wrong_bit_order_or_no_flip_is_worse(reds_test):
    # the check above can fail: a decoder without the row flip or with MSB-first bits scores far lower
    window = ss.read_dat(reds_test.dat).window(reds_test.gt_frame, 41)
    correct = ss.psnr(ss.tfp(window) / 0.6, reds_test.gt)
    assert ss.psnr(ss.tfp(window[:, ::-1]) / 0.6, reds_test.gt) < correct - 5
    packed = ss.pack_frames(window)
    msb_first = np.unpackbits(packed, axis=1, bitorder="big").reshape(window.shape)[:, ::-1]
    assert ss.psnr(ss.tfp(msb_first) / 0.6, reds_test.gt) < correct - 5


def test_round_trip_bit_exact(tmp_path, rng):
    frames = (rng.random((17, 30, 48)) < 0.3).astype(np.uint8)
    path = tmp_path / "x.dat"
    ss.write_dat(path, frames)
    assert path.stat().st_size == 17 * 30 * 48 // 8
    back = ss.read_dat(path, 30, 48)
    np.testing.assert_array_equal(back[:], frames)
    np.testing.assert_array_equal(back[5], frames[5])
    np.testing.assert_array_equal(back.window(8, 5), frames[6:11])
    np.testing.assert_array_equal(np.concatenate(list(back.chunks(4))), frames)


def test_packed_layout_matches_guide(tmp_path):
    # pixel p counts from the bottom row up, LSB first: bottom-left pixel is bit 0 of byte 0
    frame = np.zeros((2, 8), np.uint8)
    frame[1, 0] = 1   # bottom-left
    frame[0, 3] = 1   # top row, column 3 -> p = 8 + 3 -> byte 1 bit 3
    packed = ss.pack_frames(frame)
    assert packed.tolist() == [[1, 8]]


def test_odd_width_round_trip(tmp_path, rng):
    frames = (rng.random((3, 4, 6)) < 0.5).astype(np.uint8)  # 24 bits per frame, width not /8
    ss.write_dat(tmp_path / "o.dat", frames)
    np.testing.assert_array_equal(ss.read_dat(tmp_path / "o.dat", 4, 6)[:], frames)


def test_strip_raw_columns(tmp_path, rng):
    wide = (rng.random((4, 10, 416)) < 0.5).astype(np.uint8)
    ss.write_dat(tmp_path / "raw.dat", wide)
    f = ss.read_dat(tmp_path / "raw.dat", 10, 400, stored_width=416)
    np.testing.assert_array_equal(f[:], wide[:, :, :400])


def test_errors_name_file_and_sizes(tmp_path):
    with pytest.raises(SpikeFormatError, match="no such file"):
        ss.read_dat(tmp_path / "missing.dat")
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(SpikeFormatError, match="empty.dat: empty file"):
        ss.read_dat(empty)
    odd = tmp_path / "odd.dat"
    odd.write_bytes(bytes(12500 * 2 + 7))
    with pytest.raises(SpikeFormatError, match=r"odd.dat: size 25007 bytes .* 12500 bytes .*2 frames \+ 7 bytes"):
        ss.read_dat(odd)
    f = ss.read_dat(odd, allow_truncated=True)
    assert len(f) == 2 and f.truncated_bytes == 7
    with pytest.raises(SpikeFormatError, match="not a whole number of bytes"):
        ss.read_dat(odd, 3, 3)
