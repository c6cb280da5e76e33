"""File replay, raw streams (FIFO, TCP, stdin) and third-party entry points."""
import threading
import time

import numpy as np
import pytest

from ssml_stream.drivers import DriverOptions, open_driver
from ssml_stream.errors import ConfigError, DriverError, SpikeFormatError
from ssml_stream.formats import pack_frames, write_dat
from ssml_stream.ring import Ring

H, W = 16, 32  # small frames: 64 bytes


def _random_frames(rng, n, h=H, w=W, p=0.3):
    return (rng.random((n, h, w)) < p).astype(np.uint8)


def consume(driver, ring, timeout_s=10.0, max_frames=None):
    """Run the driver in a thread and read everything from a cursor; returns (packed, first, dropped)."""
    cursor = ring.cursor()
    stop = threading.Event()
    errors = []

    def produce():
        try:
            driver.run(ring, stop)
        except Exception as e:  # surfaced to the test below
            errors.append(e)
        finally:
            ring.close()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    chunks, firsts = [], []
    buf = np.empty((256, ring.frame_bytes), np.uint8)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cursor.wait(1, timeout=0.05)
        first, count = cursor.read(buf)
        if count:
            chunks.append(buf[:count].copy())
            firsts.append((first, count))
        elif ring.closed and cursor.available == 0:
            break
        if max_frames and sum(c for _, c in firsts) >= max_frames:
            stop.set()
    stop.set()
    t.join(5)
    assert not t.is_alive(), "driver did not stop"
    if errors:
        raise errors[0]
    packed = np.concatenate(chunks) if chunks else np.empty((0, ring.frame_bytes), np.uint8)
    return packed, firsts, cursor.dropped


def assert_contiguous(firsts):
    pos = firsts[0][0]
    for first, count in firsts:
        assert first == pos
        pos += count


# ---------------------------------------------------------------- file replay

@pytest.fixture
def small_dat(tmp_path, rng):
    frames = _random_frames(rng, 50)
    path = tmp_path / "small.dat"
    write_dat(path, frames)
    return path, pack_frames(frames)


def test_file_lossless_loop_is_exact_and_contiguous(small_dat):
    path, packed = small_dat
    opts = DriverOptions(height=H, width=W, speed=None, loop=True, duration_s=130 / 40000)
    with open_driver(f"file:{path}", opts) as d:
        assert not d.info.live and d.info.frame_bytes == H * W // 8
        ring = Ring(d.info.frame_bytes, capacity=16, lossless=True)  # much smaller than the data
        got, firsts, dropped = consume(d, ring)
    assert dropped == 0 and d.frames_out == 130
    assert_contiguous(firsts)
    np.testing.assert_array_equal(got, np.concatenate([packed, packed, packed[:30]]))


def test_file_paced_at_camera_rate(small_dat):
    path, packed = small_dat
    opts = DriverOptions(height=H, width=W, speed=0.5, loop=True, duration_s=0.2, rate_hz=40000)
    d = open_driver(str(path), opts)
    ring = Ring(d.info.frame_bytes, capacity=20000)
    t0 = time.perf_counter()
    got, firsts, dropped = consume(d, ring)
    elapsed = time.perf_counter() - t0
    assert d.frames_out == 8000 and got.shape[0] == 8000 and dropped == 0
    # 0.2 s of stream at half speed = 0.4 s of wall clock
    assert 0.38 < elapsed < 0.8, elapsed
    np.testing.assert_array_equal(got[:50], packed)
    np.testing.assert_array_equal(got[50:100], packed)


def test_file_paced_capture_times_follow_the_schedule(small_dat):
    path, _ = small_dat
    d = open_driver(str(path), DriverOptions(height=H, width=W, loop=True, duration_s=0.1))
    ring = Ring(d.info.frame_bytes, capacity=8192)
    consume(d, ring)
    ns = ring.capture_ns[:4000].astype(np.float64)
    # frame k is pushed about k / 40 kHz after frame 0 (chunks of ~1 ms)
    lag_s = (ns - ns[0]) / 1e9 - np.arange(4000) / 40000
    assert np.all(lag_s > -0.0015) and np.median(np.abs(lag_s)) < 0.005


def test_file_without_loop_ends_at_the_last_frame(small_dat):
    path, packed = small_dat
    d = open_driver(str(path), DriverOptions(height=H, width=W, speed=4.0))
    got, _, _ = consume(d, Ring(d.info.frame_bytes, 1000))
    np.testing.assert_array_equal(got, packed)


def test_file_stored_width_416_ring_carries_stored_frames(tmp_path, rng):
    frames = _random_frames(rng, 5, 8, 416)
    write_dat(tmp_path / "raw.dat", frames)
    d = open_driver(f"file:{tmp_path / 'raw.dat'}",
                    DriverOptions(height=8, width=400, stored_width=416, speed=None))
    assert d.info.frame_bytes == 8 * 416 // 8 and d.info.width == 400
    got, _, _ = consume(d, Ring(d.info.frame_bytes, 8, lossless=True))
    from ssml_stream.unpack import unpack
    np.testing.assert_array_equal(unpack(got, 8, 400, stored_width=416), frames[:, :, :400])


def test_file_errors(tmp_path, small_dat):
    path, _ = small_dat
    with pytest.raises(SpikeFormatError, match="no such file"):
        open_driver(str(tmp_path / "missing.dat"))
    with pytest.raises(ConfigError, match="speed"):
        open_driver(str(path), DriverOptions(height=H, width=W, speed=0))
    d = open_driver(str(path), DriverOptions(height=H, width=W))
    with pytest.raises(DriverError, match="ring holds"):
        d.run(Ring(10, 4), threading.Event())
    trunc = tmp_path / "trunc.dat"
    trunc.write_bytes(path.read_bytes() + b"\0" * 7)
    with pytest.raises(SpikeFormatError, match="allow-truncated"):
        open_driver(str(trunc), DriverOptions(height=H, width=W))
    d = open_driver(str(trunc), DriverOptions(height=H, width=W, allow_truncated=True, speed=None))
    got, _, _ = consume(d, Ring(d.info.frame_bytes, 64, lossless=True))
    assert got.shape[0] == 50


def test_file_stop_event_ends_an_endless_loop(small_dat):
    path, _ = small_dat
    d = open_driver(str(path), DriverOptions(height=H, width=W, loop=True))
    got, firsts, _ = consume(d, Ring(d.info.frame_bytes, 4096), max_frames=2000)
    assert got.shape[0] >= 2000
    assert_contiguous(firsts)
