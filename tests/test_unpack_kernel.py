"""The word-at-a-time unpack kernel against np.unpackbits: every width class (whole 64-bit words, an
8-pixel tail, tails only), stored rows wider than the image, strided input, and no write outside `out`."""
import numpy as np
import pytest

from ssml_stream.unpack import unpack_into


def reference(packed, h, w, stored_w):
    bits = np.unpackbits(packed, axis=1, bitorder="little").reshape(-1, h, stored_w)
    return bits[:, ::-1, :w]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("h,w,stored_w", [(5, 64, 64), (4, 128, 128), (3, 72, 72), (6, 8, 8), (2, 56, 56),
                                          (250, 400, 416), (7, 136, 200), (1, 512, 512)])
def test_word_kernel_matches_unpackbits(rng, h, w, stored_w, parallel):
    n = 6
    packed = rng.integers(0, 256, (n, h * stored_w // 8), dtype=np.uint8)
    buf = np.full((n + 2, h, w), 7, np.uint8)  # a frame of sentinels on each side of the target
    unpack_into(packed, buf[1:n + 1], stored_width=stored_w, parallel=parallel)
    np.testing.assert_array_equal(buf[1:n + 1], reference(packed, h, w, stored_w))
    assert (buf[0] == 7).all() and (buf[n + 1] == 7).all()


def test_strided_and_non_uint8_input(rng):
    h, w = 4, 80
    wide = rng.integers(0, 256, (3, 2 * h * w // 8), dtype=np.uint8)
    strided = wide[:, ::2]                       # every other byte: not contiguous within a frame
    out = np.empty((3, h, w), np.uint8)
    unpack_into(strided, out)
    np.testing.assert_array_equal(out, reference(np.ascontiguousarray(strided), h, w, w))
    unpack_into(strided.astype(np.int64), out)   # bytes held in a wider integer type
    np.testing.assert_array_equal(out, reference(np.ascontiguousarray(strided), h, w, w))
