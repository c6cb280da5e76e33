import threading

import numpy as np

from ssml_stream.ring import Ring


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


def test_overrun_counts_exact_drops():
    ring = Ring(16, capacity=100)
    cur = ring.cursor()
    p, ids = frames_with_ids(0, 250)
    ring.write(p, ids)
    buf = np.zeros((500, 16), np.uint8)
    first, count = cur.read(buf)
    assert (first, count) == (150, 100) and cur.dropped == 150
    check_frames(buf, first, count)


def test_concurrent_live_producer_no_torn_frames():
    ring = Ring(16, capacity=64)
    total = 200_000
    cursors = [ring.cursor() for _ in range(2)]
    seen = [0, 0]

    def consume(i):
        buf = np.zeros((7 + 13 * i, 16), np.uint8)
        cur = cursors[i]
        while True:
            first, count = cur.read(buf)
            if count == 0:
                if ring.closed and cur.available == 0:
                    return
                cur.wait(1, 0.01)
                continue
            check_frames(buf, first, count)
            seen[i] += count

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for s in range(0, total, 5):
        ring.write(*frames_with_ids(s, 5))
    ring.close()
    for t in threads:
        t.join(10)
    for i in range(2):
        assert seen[i] + cursors[i].dropped == total  # every frame either delivered or counted


def test_lossless_blocks_producer_and_loses_nothing():
    ring = Ring(16, capacity=32, lossless=True)
    cur = ring.cursor()
    total = 20_000
    got = []

    def consume():
        buf = np.zeros((9, 16), np.uint8)
        while True:
            first, count = cur.read(buf)
            if count == 0:
                if ring.closed and cur.available == 0:
                    return
                cur.wait(1, 0.01)
                continue
            check_frames(buf, first, count)
            got.append(count)

    t = threading.Thread(target=consume)
    t.start()
    for s in range(0, total, 50):
        ring.write(*frames_with_ids(s, 50))
    ring.close()
    t.join(10)
    assert sum(got) == total and cur.dropped == 0


def test_read_latest_skips_to_newest_window():
    ring = Ring(16, capacity=100)
    cur = ring.cursor()
    ring.write(*frames_with_ids(0, 90))
    buf = np.zeros((41, 16), np.uint8)
    first, skipped = cur.read_latest(41, buf)
    assert (first, skipped) == (49, 49)
    check_frames(buf, 49, 41)
    assert cur.read_latest(41, buf)[1] == -1  # nothing new
