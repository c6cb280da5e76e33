import numpy as np

from ssml_stream.ring import Ring

TIMEOUT_S = 60.0


def frames_with_ids(start, k, nbytes=16):
    out = np.zeros((k, nbytes), np.uint8)
    ids = np.arange(start, start + k, dtype=np.int64)
    out[:, :8] = ids.view(np.uint8).reshape(k, 8)
    out[:, 8:] = (ids % 251)[:, None]  # the rest of the frame must agree with the id
    return out, ids


def check_frames(buf, first, count):
    ids = buf[:count, :8].copy().view(np.int64).ravel()
    np.testing.assert_array_equal(ids, np.arange(first, first + count))
    assert (buf[:count, 8:] == (ids % 251)[:, None]).all()


def read_all(ring, cur, batch):
    """Consumer thread body: read and check every frame until the ring is closed and drained; returns the
    frame count. The cursor is closed on the way out, so a failed check cannot block a lossless producer."""
    buf = np.zeros((batch, ring.frame_bytes), np.uint8)
    seen = 0
    try:
        while True:
            first, count = cur.read(buf)
            if count == 0:
                if ring.closed and cur.available == 0:
                    return seen
                cur.wait(1, 0.01)
                continue
            check_frames(buf, first, count)
            seen += count
    finally:
        cur.close()


def test_overrun_counts_exact_drops():
    ring = Ring(16, capacity=100)
    cur = ring.cursor()
    p, ids = frames_with_ids(0, 250)
    ring.write(p, ids)
    buf = np.zeros((500, 16), np.uint8)
    first, count = cur.read(buf)
    assert (first, count) == (150, 100) and cur.dropped == 150
    check_frames(buf, first, count)


def test_concurrent_live_producer_no_torn_frames(spawn):
    ring = Ring(16, capacity=64)
    total = 200_000
    cursors = [ring.cursor() for _ in range(2)]
    threads = [spawn(read_all, ring, cur, 7 + 13 * i) for i, cur in enumerate(cursors)]
    try:
        for s in range(0, total, 5):
            ring.write(*frames_with_ids(s, 5))
    finally:
        ring.close()
    for t, cur in zip(threads, cursors):
        assert t.result(TIMEOUT_S) + cur.dropped == total  # every frame either delivered or counted


def test_lossless_blocks_producer_and_loses_nothing(spawn):
    ring = Ring(16, capacity=32, lossless=True)
    cur = ring.cursor()
    total = 20_000
    consumer = spawn(read_all, ring, cur, 9)
    try:
        for s in range(0, total, 50):
            ring.write(*frames_with_ids(s, 50))
    finally:
        ring.close()
    assert consumer.result(TIMEOUT_S) == total and cur.dropped == 0


def test_read_latest_skips_to_newest_window():
    ring = Ring(16, capacity=100)
    cur = ring.cursor()
    ring.write(*frames_with_ids(0, 90))
    buf = np.zeros((41, 16), np.uint8)
    first, skipped = cur.read_latest(41, buf)
    assert (first, skipped) == (49, 49)
    check_frames(buf, 49, 41)
    assert cur.read_latest(41, buf)[1] == -1  # nothing new
