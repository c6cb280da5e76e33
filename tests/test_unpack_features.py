import numpy as np
import pytest

import ssml_stream as ss
from ssml_stream.unpack import SlidingWindows, unpack_into


def reference_unpack(packed, h, w):
    bits = np.unpackbits(packed, axis=1, bitorder="little").reshape(-1, h, w)
    return bits[:, ::-1, :]


@pytest.mark.parametrize("h,w", [(250, 400), (7, 16), (4, 6), (3, 8)])
def test_unpack_matches_unpackbits(rng, h, w):
    packed = rng.integers(0, 256, (5, h * w // 8), dtype=np.uint8)
    out = np.empty((5, h, w), np.uint8)
    unpack_into(packed, out)
    np.testing.assert_array_equal(out, reference_unpack(packed, h, w))
    out2 = np.empty_like(out)
    unpack_into(packed, out2, parallel=True)
    np.testing.assert_array_equal(out2, out)


def reference_tfi(window, search, fallback):
    n = window.shape[0]
    c = n // 2
    out = np.empty(window.shape[1:], np.float32)
    for idx in np.ndindex(*window.shape[1:]):
        s = window[(slice(None),) + idx]
        before = [f for f in range(max(0, c - search), c + 1) if s[f]]
        after = [f for f in range(c + 1, min(n, c + search + 1)) if s[f]]
        iv = after[0] - before[-1] if before and after else fallback
        out[idx] = 1.0 / iv
    return out


def test_tfp_tfi_match_numpy(rng):
    win = (rng.random((41, 9, 11)) < 0.15).astype(np.uint8)
    np.testing.assert_allclose(ss.tfp(win), win.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ss.tfi(win), reference_tfi(win, 20, 40), rtol=1e-6)
    np.testing.assert_allclose(ss.tfi(win, 12, 24), reference_tfi(win, 12, 24), rtol=1e-6)


def test_all_frame_variants_match_single(rng):
    frames = (rng.random((120, 6, 8)) < 0.2).astype(np.uint8)
    tfp_all = ss.tfp_all(frames, 41)
    tfi_all = ss.tfi_all(frames, 12, 24)
    for c in (20, 57, 99):
        win = frames[c - 20:c + 21]
        np.testing.assert_allclose(tfp_all[c - 20], ss.tfp(win), rtol=1e-6)
        np.testing.assert_allclose(tfi_all[c], reference_tfi(win, 12, 24), rtol=1e-6)


@pytest.mark.parametrize("stride,chunk", [(1, 7), (10, 50), (1333, 500), (3, 1000)])
def test_sliding_windows_match_direct(rng, stride, chunk):
    h, w, n = 6, 8, 41
    frames = (rng.random((3000, h, w)) < 0.3).astype(np.uint8)
    packed = ss.pack_frames(frames)
    sw = SlidingWindows(h, w, n, stride)
    got = []
    for s in range(0, len(frames), chunk):
        for center, win in sw.feed(packed[s:s + chunk], s):
            np.testing.assert_array_equal(win, frames[center - 20:center + 21])
            got.append(center)
    assert got == list(range(20, 3000 - 20, stride))
    if stride > n:  # frames outside every window are never unpacked
        assert sw.frames_unpacked < len(frames) * (n + chunk) / stride + n


def test_sliding_windows_gap_restarts(rng):
    frames = (rng.random((300, 2, 8)) < 0.3).astype(np.uint8)
    packed = ss.pack_frames(frames)
    sw = SlidingWindows(2, 8, 5, 1)
    centers = [c for c, _ in sw.feed(packed[:100], 0)]
    centers += [c for c, win in sw.feed(packed[150:], 150)]
    assert 97 in centers and not any(98 <= c <= 151 for c in centers) and 152 in centers
