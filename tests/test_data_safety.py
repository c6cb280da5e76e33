"""Data is never destroyed and errors are one line: outputs checked up front (never onto an input,
never two outputs on one path), resource limits, signals (a second Ctrl-C, SIGTERM, SIGKILL, SIGINT
inherited as ignored), a silent source. The console scripts run as subprocesses."""
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from ssml_stream.formats import write_dat
from ssml_stream.npzstream import NpzStream, crc32_combine

BIN = Path(sys.executable).parent
H, W = 16, 32
GEOM = ["--height", str(H), "--width", str(W)]
FRAME_BYTES = H * W // 8
TIMEOUT_S = 60.0  # waits end on their event; this is only for failures
LIFETIME_S = 180.0  # a started process is killed after this, so a wait on its output cannot hang
MAX_FILE_BYTES = 256 << 20  # a child writing more is stopped (SIGXFSZ): a broken check cannot fill the disk


def _child_limits(ignore_sigint: bool = False):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return apply


def run(script, *args, **kw):
    return subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, timeout=180,
                          preexec_fn=_child_limits(), **kw)


def start(script, *args, ignore_sigint=False):
    proc = subprocess.Popen([str(BIN / script), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=_child_limits(ignore_sigint))
    proc.watchdog = threading.Timer(LIFETIME_S, proc.kill)
    proc.watchdog.daemon = True
    proc.watchdog.start()
    return proc


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def wait_for_line(stream, prefix: str) -> str:
    """The first line starting with `prefix` (if it never comes, the watchdog's kill ends the stream)."""
    for line in stream:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"the process ended without a line starting with {prefix!r}")


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(proc):
    """(stdout, stderr) still unread once the process has ended; kills it if it does not end."""
    try:
        return proc.communicate(timeout=TIMEOUT_S)
    finally:
        proc.watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def small_dat(tmp_path, rng):
    path = tmp_path / "in.dat"
    write_dat(path, (rng.random((2000, H, W)) < 0.3).astype(np.uint8))
    return path


# ---------------------------------------------------------------- the .npz written while frames arrive

def test_crc32_combine_matches_zlib(rng):
    for len_a, len_b in [(0, 0), (0, 9), (9, 0), (1, 1), (100, 12345), (3, 1 << 20)]:
        a, b = rng.bytes(len_a), rng.bytes(len_b)
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len_b) == zlib.crc32(a + b), (len_a, len_b)


@pytest.mark.parametrize("n", [0, 1, 37])
def test_npz_stream_is_a_valid_npz(tmp_path, rng, n):
    frames = rng.random((n, 5, 7)).astype(np.float32)
    writer = NpzStream(tmp_path / "s.npz", (5, 7))
    for frame in frames:
        writer.append(frame)
    assert not (tmp_path / "s.npz").exists() and (tmp_path / "s.npz.part").exists()
    writer.close(center=np.arange(n, dtype=np.int64) * 10, capture_ns=np.full(n, 2**62, np.int64))
    assert os.listdir(tmp_path) == ["s.npz"]
    with zipfile.ZipFile(tmp_path / "s.npz") as z:
        assert z.testzip() is None  # every member's CRC-32 is right
    z = np.load(tmp_path / "s.npz")
    assert sorted(z.files) == ["capture_ns", "center", "frames"]
    np.testing.assert_array_equal(z["frames"], frames)
    np.testing.assert_array_equal(z["center"], np.arange(n) * 10)
    assert z["capture_ns"].dtype == np.int64 and np.all(z["capture_ns"] == 2**62)


# ---------------------------------------------------------------- outputs checked before any work

@pytest.mark.system
@pytest.mark.parametrize("how", ["same path", "other spelling", "symlink"])
def test_stream_record_onto_its_input_is_refused(small_dat, tmp_path, how):
    before = small_dat.read_bytes()
    out = {"same path": small_dat, "other spelling": tmp_path / "." / small_dat.name,
           "symlink": tmp_path / "link.dat"}[how]
    if how == "symlink":
        out.symlink_to(small_dat)
    p = run("ssml-stream", "--device", f"file:{small_dat}", *GEOM, "--model", "tfp", "--speed", "max",
            "--record", out, "--no-publish", "--quiet")
    assert_one_line_error(p, "is also the input", "destroy")
    assert small_dat.read_bytes() == before


@pytest.mark.system
def test_ssml_record_onto_its_input_is_refused(small_dat):
    before = small_dat.read_bytes()
    assert_one_line_error(run("ssml-record", f"file:{small_dat}", small_dat, *GEOM), "is also the input")
    with open(small_dat, "rb") as stdin:
        assert_one_line_error(run("ssml-record", "-", small_dat, *GEOM, stdin=stdin), "is also the input")
    assert small_dat.read_bytes() == before


@pytest.mark.system
def test_two_outputs_on_one_path_are_refused(small_dat, tmp_path):
    # --save adds .npz, so "--save rec" lands on rec.npz, the recording
    p = run("ssml-stream", "--device", f"file:{small_dat}", *GEOM, "--model", "tfp", "--speed", "max",
            "--record", tmp_path / "rec.npz", "--save", tmp_path / "rec", "--no-publish", "--quiet")
    assert_one_line_error(p, "another output", "rec.npz")
    assert not (tmp_path / "rec.npz").exists()
    p = run("ssml-view", "--headless", "--duration", "1", "--screenshot", tmp_path / "a.png",
            "--contact-sheet", tmp_path / "a.png")
    assert_one_line_error(p, "another output")


@pytest.mark.system
@pytest.mark.parametrize("script, args, words", [
    ("ssml-stream", ["--device", "sim", "--model", "tfp", "--no-publish", "--duration", "1",
                     "--save", "{tmp}/folder.npz"], ["folder.npz", "is a folder"]),
    ("ssml-stream", ["--device", "sim", "--model", "tfp", "--no-publish", "--duration", "1",
                     "--record", "{tmp}/no/x.dat"], ["does not exist"]),
    ("ssml-sim", ["{tmp}/s.dat", "--frames", "1000", *GEOM, "--gt", "{tmp}/no/gt.npz"], ["ground truth", "does not exist"]),
    ("ssml-sim", ["{tmp}/s.dat", "--frames", "10000000000000", *GEOM], ["needs", "free"]),
    ("ssml-record", ["sim", "{tmp}/no/x.dat"], ["does not exist"]),
    ("ssml-eval", ["--no-data", "--json", "{tmp}/no/r.json"], ["results file", "does not exist"]),
    ("ssml-eval", ["--no-data", "--png", "{tmp}/no/r.png"], ["does not exist"]),
    ("ssml-export", ["ssml", "--out", "{tmp}/no/m.ts"], ["does not exist"]),
    ("ssml-view", ["--headless", "--duration", "1", "--screenshot", "{tmp}/no/s.png"], ["screenshot", "does not exist"]),
    ("ssml-view", ["--headless", "--duration", "1", "--snapshots", "{tmp}/no/shots"], ["snapshot folder"]),
    ("ssml-view", ["--headless", "--duration", "1", "--record", "{tmp}/no/v.mp4"], ["recording", "does not exist"]),
    ("ssml-view", ["--headless", "--duration", "1", "--contact-sheet", "{tmp}/no/c.png"], ["contact sheet"]),
])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, script, args, words):
    (tmp_path / "folder.npz").mkdir()
    p = run(script, *[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(p, *words)
    assert sorted(os.listdir(tmp_path)) == ["folder.npz"]  # nothing written (ssml-sim used to write the .dat first)


@pytest.mark.system
def test_startup_checks_come_before_the_model_load(tmp_path):
    """A missing model would be the error if the model were loaded first."""
    p = run("ssml-stream", "--device", "sim", "--model", tmp_path / "missing.pt", "--no-publish",
            "--save", tmp_path / "no" / "out.npz")
    assert "missing.pt" not in assert_one_line_error(p, "does not exist")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = run("ssml-stream", "--device", "sim", "--model", tmp_path / "missing.pt",
                "--publish", f"tcp://127.0.0.1:{port}")
    assert "missing.pt" not in assert_one_line_error(p, str(port))


# ---------------------------------------------------------------- resource limits and usage errors

@pytest.mark.system
@pytest.mark.parametrize("script, args, words", [
    ("ssml-stream", ["--window", "100001"], ["100001-frame", "GB of memory needed", "limit"]),
    ("ssml-stream", ["--height", "100000", "--width", "100000"], ["100000x100000", "TB of memory needed", "limit"]),
    ("ssml-stream", ["--rate", "1e12"], ["1e+12 Hz", "1e+06"]),
    ("ssml-sim", ["{tmp}/s.dat", "--height", "100000", "--width", "100000"], ["GB of memory needed", "limit"]),
    ("ssml-record", ["sim", "{tmp}/r.dat", "--ring-frames", "1", "--seconds", "0.1"], ["--ring-frames", ">= 2"]),
    ("ssml-record", ["sim", "{tmp}/r.dat", "--ring-frames", "1000000000", "--seconds", "0.1"],
     ["TB of memory needed", "limit"]),
])
def test_resource_limits_are_refused_up_front(tmp_path, script, args, words):
    extra = ["--device", "sim", "--model", "tfp", "--no-publish", "--duration", "1"] if script == "ssml-stream" else []
    p = run(script, *extra, *[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(p, *words)
    assert os.listdir(tmp_path) == []


@pytest.mark.system
@pytest.mark.parametrize("script", ["ssml-view", "ssml-train", "ssml-export", "ssml-eval", "ssml-stream",
                                    "ssml-sim", "ssml-record", "ssml-info"])
def test_usage_errors_are_one_line(script):
    assert_one_line_error(run(script, "--no-such-option"), f"{script}: error:")


# ---------------------------------------------------------------- signals

def _live_save(tmp_path):
    return start("ssml-stream", "--device", "sim:spin", *GEOM, "--model", "tfp", "--fps", "200",
                 "--save", tmp_path / "out.npz", "--no-publish")


@pytest.mark.system
def test_second_sigint_while_stopping_keeps_every_frame(tmp_path):
    proc = _live_save(tmp_path)
    try:
        wait_for_line(proc.stderr, "[")  # a status line: frames are being saved
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)                 # lands while the first one is being handled (it used to abort)
        proc.send_signal(signal.SIGINT)
    finally:
        _, err = finish(proc)
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err)
    windows = int(re.search(r"windows out (\d+)", err)[1])
    z = np.load(tmp_path / "out.npz")
    assert windows > 0 and z["frames"].shape == (windows, H, W) and len(z["center"]) == windows
    assert os.listdir(tmp_path) == ["out.npz"]  # no temporary file left


@pytest.mark.system
def test_sigkill_during_save_leaves_only_the_visible_part_file(tmp_path):
    proc = _live_save(tmp_path)
    try:
        wait_for_line(proc.stderr, "[")
        proc.kill()
    finally:
        finish(proc)
    assert os.listdir(tmp_path) == ["out.npz.part"]  # named after the output, not hidden


@pytest.mark.system
def test_record_sigterm_ends_on_a_whole_frame(tmp_path):
    out = tmp_path / "live.dat"
    proc = start("ssml-record", "sim:spin", out, *GEOM, "--speed", "1")
    try:
        wait_until(lambda: out.exists() and out.stat().st_size >= 4000 * FRAME_BYTES, "frames in the recording")
        proc.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = finish(proc)
    size = out.stat().st_size
    assert proc.returncode == 0, (proc.returncode, stderr)
    assert size % FRAME_BYTES == 0 and f"{size // FRAME_BYTES} frames written" in stdout and "interrupted" in stdout


@pytest.mark.system
@pytest.mark.parametrize("script", ["ssml-stream", "ssml-record", "ssml-sim", "ssml-view"])
def test_sigint_stops_scripts_started_with_sigint_ignored(tmp_path, script):
    """A shell script's background job inherits SIGINT ignored; `kill -INT` must still stop it cleanly."""
    out = tmp_path / "out.dat"
    args = {"ssml-stream": ["--device", "sim:spin", *GEOM, "--model", "tfp", "--no-publish", "--record", out],
            "ssml-record": ["sim:spin", out, *GEOM, "--speed", "1"],
            "ssml-sim": [out, *GEOM, "--frames", "100000000"],
            "ssml-view": ["--headless", "--connect", f"ipc://{tmp_path}/nobody.ipc", "--duration", "120"]}[script]
    proc = start(script, *args, ignore_sigint=True)
    try:
        if script == "ssml-view":
            wait_for_line(proc.stderr, "ssml-view: waiting for a publisher")
        else:
            wait_until(lambda: out.exists() and out.stat().st_size > 0, "frames written")
        proc.send_signal(signal.SIGINT)
    finally:
        stdout, stderr = finish(proc)
    expected = 130 if script == "ssml-sim" else 0  # an interrupted simulation is incomplete
    assert proc.returncode == expected and "Traceback" not in stderr, (proc.returncode, stderr)
    if script != "ssml-view":
        assert out.stat().st_size % FRAME_BYTES == 0


# ---------------------------------------------------------------- a source that delivers nothing

@pytest.mark.system
def test_silent_tcp_source_is_reported_once_and_the_run_goes_on(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(TIMEOUT_S)
        uri = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        proc = start("ssml-stream", "--device", uri, *GEOM, "--model", "tfp", "--no-publish", "--quiet")
        try:
            conn, _ = server.accept()  # accepted, never sends
            with conn:
                wait_for_line(proc.stderr, f"no frames from {uri} for 5 s")
                proc.send_signal(signal.SIGINT)
        finally:
            _, rest = finish(proc)
    assert proc.returncode == 0 and "no frames from" not in rest and "summary: frames in 0" in rest, rest


@pytest.mark.system
def test_record_from_an_empty_fifo_says_so(tmp_path):
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    proc = start("ssml-record", f"fifo:{fifo}", tmp_path / "out.dat", *GEOM)
    try:
        wait_for_line(proc.stderr, f"ssml-record: no frames from fifo:{fifo} for 5 s")
        proc.send_signal(signal.SIGINT)
    finally:
        stdout, _ = finish(proc)
    assert proc.returncode == 0 and "0 frames written" in stdout
