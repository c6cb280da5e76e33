"""ssml-sim, ssml-record and ssml-info run as console scripts (subprocesses)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssml_stream.drivers.sim import simulate
from ssml_stream.formats import read_dat, write_dat

pytestmark = pytest.mark.system

BIN = Path(sys.executable).parent
GEOM = ["--height", "16", "--width", "32"]


def run(script, *args, **kw):
    return subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_sim_writes_dat_and_ground_truth(tmp_path):
    out = tmp_path / "s.dat"
    p = run("ssml-sim", out, "--scene", "spin", "--frames", 5000, *GEOM, "--gt-frames", "0,4500", "--seed", 2)
    assert p.returncode == 0, p.stderr
    assert "wrote 5000 frames" in p.stdout
    spikes = read_dat(out, 16, 32)
    ref = simulate("spin", 5000, height=16, width=32, seed=2, gt_frames=[0, 4500])
    np.testing.assert_array_equal(np.asarray(spikes.packed), ref.packed)  # chunked writing = one run
    gt = np.load(tmp_path / "s.npz")
    assert list(gt["frames"]) == [0, 4500] and gt["intensity"].shape == (2, 16, 32)
    np.testing.assert_allclose(gt["intensity"][1], ref.gt[4500])
    assert float(gt["rate_gain"]) == pytest.approx(0.6)


def test_sim_noise_options_and_bad_inputs(tmp_path):
    p = run("ssml-sim", tmp_path / "n.dat", "--seconds", 0.01, *GEOM, "--dark-rate", 0.01,
            "--threshold-sigma", 0.05, "--photons-per-spike", 30, "--gt-every", 100)
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "n.npz")["intensity"].shape == (4, 16, 32)
    assert_one_line_error(run("ssml-sim", tmp_path / "x.dat", "--frames", "-3"), "--frames")
    assert_one_line_error(run("ssml-sim", tmp_path / "x.dat", "--scene", "nope", *GEOM), "unknown scene")
    assert_one_line_error(run("ssml-sim", tmp_path / "x.dat", "--frames", 10, "--gt-frames", 99, *GEOM), "outside")
    assert_one_line_error(run("ssml-sim", tmp_path / "no" / "dir" / "x.dat", "--frames", 10, *GEOM), "cannot write")


def test_info_reports_frames_duration_rate(tmp_path, rng):
    frames = (rng.random((400, 16, 32)) < 0.25).astype(np.uint8)
    write_dat(tmp_path / "a.dat", frames)
    p = run("ssml-info", tmp_path / "a.dat", *GEOM, "--rate", 20000)
    assert p.returncode == 0, p.stderr
    assert "400 of 16x32" in p.stdout and "0.02 s at 20000 Hz" in p.stdout
    assert f"{frames.mean():.4f} spikes" in p.stdout
    assert "25,600 bytes" in p.stdout


def test_info_bad_inputs_are_one_line(tmp_path):
    assert_one_line_error(run("ssml-info", tmp_path / "missing.dat"), "missing.dat", "no such file")
    (tmp_path / "odd.dat").write_bytes(b"\0" * 12501)
    assert_one_line_error(run("ssml-info", tmp_path / "odd.dat"), "12501", "12500", "--allow-truncated")
    p = run("ssml-info", tmp_path / "odd.dat", "--allow-truncated")
    assert p.returncode == 0 and "1 trailing bytes ignored" in p.stdout
    (tmp_path / "empty.dat").write_bytes(b"")
    assert_one_line_error(run("ssml-info", tmp_path / "empty.dat"), "empty")
    assert_one_line_error(run("ssml-info", tmp_path / "odd.dat", "--width", "399"), "whole number of bytes")
    assert_one_line_error(run("ssml-info"), "FILE.dat")


def test_record_file_is_lossless_and_stdin_works(tmp_path, rng):
    frames = (rng.random((3000, 16, 32)) < 0.3).astype(np.uint8)
    write_dat(tmp_path / "src.dat", frames)
    p = run("ssml-record", f"file:{tmp_path / 'src.dat'}", tmp_path / "copy.dat", *GEOM)
    assert p.returncode == 0, p.stderr
    assert "3000 frames written" in p.stdout and "0 dropped" in p.stdout
    assert (tmp_path / "copy.dat").read_bytes() == (tmp_path / "src.dat").read_bytes()
    p = run("ssml-record", "-", tmp_path / "stdin.dat", *GEOM, input=None,
            stdin=open(tmp_path / "src.dat", "rb"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "stdin.dat").read_bytes() == (tmp_path / "src.dat").read_bytes()
    assert "end of stream after 3000 frames" in p.stdout
    assert_one_line_error(run("ssml-record", tmp_path / "nothere.dat", tmp_path / "o.dat"), "no such file")
    assert_one_line_error(run("ssml-record", "tcp://127.0.0.1:1", tmp_path / "o.dat", *GEOM), "cannot connect")


def test_record_ctrl_c_flushes_and_exits_0(tmp_path):
    out = tmp_path / "live.dat"
    proc = subprocess.Popen([str(BIN / "ssml-record"), "sim:spin", str(out), *GEOM, "--speed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 64 * 4000):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    size = out.stat().st_size
    assert size % 64 == 0 and size >= 64 * 4000
    assert f"{size // 64} frames written" in stdout and "interrupted" in stdout and "0 dropped" in stdout


@pytest.mark.parametrize("script", ["ssml-sim", "ssml-record", "ssml-info"])
def test_help_has_examples(script):
    p = run(script, "--help")
    assert p.returncode == 0 and "examples:" in p.stdout and script in p.stdout
