"""File replay, raw streams (FIFO, TCP, stdin) and third-party entry points. Pacing is checked only
in the direction load cannot break: a paced source is never ahead of its schedule."""
import threading
import time

import numpy as np
import pytest

from ssml_stream.drivers import DriverOptions, open_driver
from ssml_stream.errors import ConfigError, DriverError, SpikeFormatError
from ssml_stream.formats import pack_frames, write_dat
from ssml_stream.ring import Ring

H, W = 16, 32  # small frames: 64 bytes
TIMEOUT_S = 60.0  # waits end on their event; this is only reached when something is broken


def _random_frames(rng, n, h=H, w=W, p=0.3):
    return (rng.random((n, h, w)) < p).astype(np.uint8)


def consume(driver, ring, timeout_s=TIMEOUT_S, max_frames=None):
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
    t.join(timeout_s)
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
    # 0.2 s of stream at half speed takes at least 0.4 s (less one 1 ms chunk); load only adds to that
    assert elapsed >= 0.399, elapsed
    np.testing.assert_array_equal(got[:50], packed)
    np.testing.assert_array_equal(got[50:100], packed)


def test_file_paced_capture_times_never_run_ahead_of_the_schedule(small_dat):
    path, _ = small_dat
    d = open_driver(str(path), DriverOptions(height=H, width=W, loop=True, duration_s=0.1))
    ring = Ring(d.info.frame_bytes, capacity=8192)
    start_ns = time.time_ns()
    consume(d, ring)
    ns = ring.capture_ns[:4000]
    assert d.frames_out == 4000 and np.all(np.diff(ns) >= 0)
    # frame k is pushed once it is due, k / 40 kHz after the start (a stalled producer catches up later)
    due_ns = start_ns + np.arange(4000) * 25_000
    assert np.all(ns >= due_ns), np.flatnonzero(ns < due_ns)[:5]
    # pushed in chunks of ~1 ms that share a stamp: 10 chunks, + 8 writes split at the 50-frame loop wrap
    # (a producer catching up pushes bigger chunks, i.e. fewer stamps)
    assert len(np.unique(ns[:400])) <= 20


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


# ---------------------------------------------------------------- raw streams

def _raw_opts(**kw):
    return DriverOptions(height=H, width=W, **kw)


@pytest.mark.system
def test_fifo_short_writes_are_assembled_and_end_is_clean(tmp_path, rng, spawn):
    import os
    packed = pack_frames(_random_frames(rng, 40))
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    d = open_driver(f"fifo:{fifo}", _raw_opts())  # opening does not wait for a writer

    def writer():
        time.sleep(0.2)  # the driver is already polling a FIFO with no writer: it must keep waiting
        with open(fifo, "wb", buffering=0) as f:
            data = packed.tobytes()
            for i in range(0, len(data), 37):  # chunks that split frames
                f.write(data[i:i + 37])

    w = spawn(writer)
    got, firsts, dropped = consume(d, Ring(d.info.frame_bytes, 1000))
    d.close()
    w.result(TIMEOUT_S)
    np.testing.assert_array_equal(got, packed)
    assert dropped == 0 and "end of stream after 40 frames" in d.end_reason


@pytest.mark.system
def test_fifo_partial_last_frame_is_an_error_unless_allowed(tmp_path, rng, spawn):
    import os
    packed = pack_frames(_random_frames(rng, 3))
    for allow in (False, True):
        fifo = tmp_path / f"p{allow}.fifo"
        os.mkfifo(fifo)
        d = open_driver(f"fifo:{fifo}", _raw_opts(allow_truncated=allow))

        def writer():
            with open(fifo, "wb") as f:
                f.write(packed.tobytes() + b"\1" * 10)

        w = spawn(writer)
        if allow:
            got, _, _ = consume(d, Ring(d.info.frame_bytes, 100))
            assert got.shape[0] == 3 and "partial frame of 10 bytes" in d.end_reason
        else:
            with pytest.raises(DriverError, match="ended inside a frame"):
                consume(d, Ring(d.info.frame_bytes, 100))
        d.close()
        w.result(TIMEOUT_S)


@pytest.mark.system
def test_silent_fifo_honours_stop(tmp_path, spawn):
    import os
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    d = open_driver(f"fifo:{fifo}", _raw_opts())
    stop = threading.Event()
    ring = Ring(d.info.frame_bytes, 10)
    t = spawn(d.run, ring, stop)
    time.sleep(0.3)
    assert t.is_alive()  # no writer: still waiting, not ended
    stop.set()
    t.result(TIMEOUT_S)
    assert ring.head == 0
    d.close()


@pytest.mark.system
def test_tcp_client_reads_frames_and_reports_disconnect(rng, spawn):
    import socket
    packed = pack_frames(_random_frames(rng, 100))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            data = packed.tobytes()
            for i in range(0, len(data), 1000):
                conn.sendall(data[i:i + 1000])
                time.sleep(0.001)
        server.close()

    server_thread = spawn(serve)
    d = open_driver(f"tcp://127.0.0.1:{port}", _raw_opts())
    ring = Ring(d.info.frame_bytes, 1000)
    got, firsts, dropped = consume(d, ring)
    d.close()
    server_thread.result(TIMEOUT_S)
    np.testing.assert_array_equal(got, packed)
    assert_contiguous(firsts)
    assert "end of stream after 100 frames" in d.end_reason
    assert np.all(np.diff(ring.capture_ns[:100]) >= 0) and ring.capture_ns[99] > 0


@pytest.mark.system
def test_tcp_errors():
    import socket
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(DriverError, match="cannot connect"):
        open_driver(f"tcp://127.0.0.1:{port}", _raw_opts())
    with pytest.raises(ConfigError, match="HOST:PORT"):
        open_driver("tcp://localhost", _raw_opts())


@pytest.mark.system
def test_stdin_from_a_subprocess_pipe(tmp_path, rng):
    """A child process reads raw frames on its stdin through open_driver('-')."""
    import subprocess
    import sys
    packed = pack_frames(_random_frames(rng, 30))
    code = (
        "import threading, hashlib, numpy as np\n"
        "from ssml_stream.drivers import open_driver, DriverOptions\n"
        "from ssml_stream.ring import Ring\n"
        f"d = open_driver('-', DriverOptions(height={H}, width={W}))\n"
        "r = Ring(d.info.frame_bytes, 100)\n"
        "d.run(r, threading.Event())\n"
        "print(d.frames_out, hashlib.sha1(r.frames[:d.frames_out].tobytes()).hexdigest(), d.end_reason)\n")
    proc = subprocess.run([sys.executable, "-c", code], input=packed.tobytes(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    import hashlib
    n, digest, *reason = proc.stdout.decode().split()
    assert int(n) == 30 and digest == hashlib.sha1(packed.tobytes()).hexdigest()
    assert "end of stream" in " ".join(reason)


def test_fifo_uri_ending_in_dat_is_a_fifo(tmp_path):
    import os
    os.mkfifo(tmp_path / "cam.dat")
    d = open_driver(f"fifo:{tmp_path / 'cam.dat'}", _raw_opts())
    assert type(d).__name__ == "RawStream"
    d.close()


def test_raw_path_errors(tmp_path):
    with pytest.raises(DriverError, match="no such file"):
        open_driver(f"fifo:{tmp_path / 'missing'}", _raw_opts())
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(DriverError, match="not a FIFO"):
        open_driver(f"fifo:{tmp_path / 'plain'}", _raw_opts())


# ---------------------------------------------------------------- third-party entry points

def test_third_party_driver_through_an_entry_point(tmp_path, monkeypatch):
    """A real dist-info with entry_points.txt on sys.path registers scheme 'toycam'."""
    import sys
    (tmp_path / "toycam_driver.py").write_text(
        "from ssml_stream.drivers import Driver, SourceInfo\n"
        "import numpy as np\n"
        "class ToyCam(Driver):\n"
        "    def __init__(self, uri, options):\n"
        "        self.uri = uri\n"
        "        self.info = SourceInfo('toycam', options.height, options.width, options.rate_hz, True,\n"
        "                               options.height * options.width // 8)\n"
        "    def run(self, ring, stop):\n"
        "        ring.write(np.full((5, self.info.frame_bytes), 7, np.uint8), 1)\n"
        "        self.frames_out = 5\n"
        "def open_toycam(uri, options):\n"
        "    return ToyCam(uri, options)\n")
    dist = tmp_path / "toycam-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toycam\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ssml_stream.drivers]\ntoycam = toycam_driver:open_toycam\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    d = open_driver("toycam:/dev/whatever", DriverOptions(height=H, width=W))
    assert type(d).__name__ == "ToyCam" and d.uri == "toycam:/dev/whatever"
    got, _, _ = consume(d, Ring(d.info.frame_bytes, 10))
    assert got.shape == (5, H * W // 8) and (got == 7).all()
    sys.modules.pop("toycam_driver", None)
    with pytest.raises(DriverError, match="unknown device"):
        open_driver("nocam:1", DriverOptions(height=H, width=W))
