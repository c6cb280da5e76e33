import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ssml_stream.features import psnr
from ssml_stream.stream_cli import main


def run_cli(capsys, *args):
    rc = main(list(args))
    return rc, capsys.readouterr()


def test_offline_reds_ground_truth_frame(reds_test, tmp_path, capsys):
    """Real camera bits (the full REDS file, or its committed 41-frame excerpt) through the CLI."""
    dat, gt = reds_test
    out = tmp_path / "out.npz"
    rc, cap = run_cli(capsys, "--device", f"file:{dat}", "--model", "tfp", "--speed", "max", "--stride", "10",
                      "--save", str(out), "--no-publish", "--quiet")
    assert rc == 0
    z = np.load(out)
    k = reds_test.gt_frame  # 150 in the full file, 20 in the excerpt: both on the grid 20 + 10 k
    assert z["frames"].shape == (len(z["center"]), 250, 400) and k in z["center"]
    assert psnr(z["frames"][list(z["center"]).index(k)] / 0.6, gt) >= 31.5
    windows = len(range(20, reds_test.frames - 20, 10))
    summary = [line for line in cap.err.splitlines() if line.startswith("summary:")]
    assert len(summary) == 1 and f"frames in {reds_test.frames}, frames dropped 0, windows out {windows}" in summary[0]


@pytest.mark.parametrize("args, message", [
    (["--window", "40"], "window length must be a positive odd number"),
    (["--device", "missing.dat"], "missing.dat"),
    (["--device", "bogus:x"], "unknown device"),
    (["--stride", "0"], "--stride"),
    (["--fps", "fast"], "--fps"),
    (["--stride", "5", "--fps", "5"], "not allowed"),
    (["--speed", "-1"], "--speed"),
    (["--model", "nope"], "unknown model"),
    (["--model", "missing.pt"], "not found"),
    (["--height", "7", "--width", "7"], "7x7"),
    (["--save", "/nonexistent/dir/out.npz"], "does not exist"),
    (["--compute", "gpu"], "--compute"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys, reds_test):
    dat, _ = reds_test
    base = ["--device", f"file:{dat}", "--model", "tfp", "--no-publish", "--duration", "0.01"]
    rc, cap = run_cli(capsys, *base, *args)
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ssml-stream: error:") and message in err[0], cap.err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--speed max --stride 10" in out and "--publish" in out


@pytest.mark.system
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_and_flushes_save(sig, reds_test, tmp_path):
    dat, _ = reds_test
    out = tmp_path / "live.npz"
    rec = tmp_path / "live.dat"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssml_stream.stream_cli", "--device", f"file:{dat}", "--loop", "--model", "tfp",
         "--fps", "30", "--save", str(out), "--record", str(rec), "--publish", f"ipc://{tmp_path}/s.ipc"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stderr.readline()          # the first status line: the pipeline is running
        assert line.startswith("["), line
        proc.send_signal(sig)
        rest = proc.communicate(timeout=60)[1]  # (the process exit alone, torch's teardown, can take seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (proc.returncode, rest)
    assert "summary: frames in" in rest and "Traceback" not in rest
    z = np.load(out)
    assert len(z["center"]) == z["frames"].shape[0] >= 20
    assert np.all(np.diff(z["center"]) > 0)
    assert rec.stat().st_size > 0 and rec.stat().st_size % 12500 == 0


@pytest.mark.system
def test_view_starts_a_viewer_and_stops_with_it(reds_test, tmp_path, capsys, monkeypatch):
    """--view runs ssml-view as a child on the first endpoint; when the viewer exits, the run ends.
    (The window itself needs a display; here the child is the same viewer, headless.)"""
    from ssml_stream import stream_cli
    from ssml_stream.viewer import ViewerProcess
    dat, _ = reds_test
    shots = tmp_path / "shots"
    seen = []

    def headless_viewer(endpoint, *args, **kwargs):
        seen.append(endpoint)
        return ViewerProcess(endpoint, *args, "--headless", "--max-frames", "10", "--snapshots", str(shots),
                             "--snapshot-interval", "0.1", **kwargs)

    monkeypatch.setattr(stream_cli, "ViewerProcess", headless_viewer)
    endpoint = f"ipc://{tmp_path}/v.ipc"
    t0 = time.perf_counter()
    rc, cap = run_cli(capsys, "--device", f"file:{dat}", "--loop", "--model", "tfp", "--duration", "60", "--view",
                      "--publish", endpoint, "--quiet")
    assert rc == 0 and seen == [endpoint]
    assert time.perf_counter() - t0 < 30          # ended with the viewer, not after 60 s
    assert len(list(shots.glob("*.png"))) >= 1


def test_view_without_display_fails_cleanly(reds_test, tmp_path, capsys, monkeypatch):
    if os.environ.get("DISPLAY"):
        pytest.skip("a display is available")
    dat, _ = reds_test
    rc, cap = run_cli(capsys, "--device", f"file:{dat}", "--loop", "--model", "tfp", "--duration", "30", "--view",
                      "--publish", f"ipc://{tmp_path}/v.ipc", "--quiet")
    assert rc == 2


def test_demo_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from ssml_stream import demo
    assert demo.main(["--seconds", "-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssml-demo: error: argument --seconds") and "\n" not in err, err


@pytest.mark.slow
@pytest.mark.system
def test_demo_records_video_and_contact_sheet(tmp_path, capsys):
    import cv2

    from ssml_stream import demo
    from ssml_stream.media import video_frames
    rc = demo.main(["--seconds", "3", "--out", str(tmp_path), "--scene", "spin"])
    out = capsys.readouterr().out
    assert rc == 0, out
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape == (750, 1200) and sheet.std() > 10
    assert video_frames(str(tmp_path / "out.mp4")) >= 10
    assert "frames dropped 0" in out and "windows out" in out


@pytest.mark.slow
@pytest.mark.system
def test_bench_pipeline_smoke(tmp_path, capsys):
    import json

    from ssml_stream.bench import pipeline as bench
    path = tmp_path / "pipeline.json"
    assert bench.main(["--seconds", "1", "--segments", "1", "--rows", "tfp-0", "tfp-4", "--device", "sim:spin", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["model"], r["subscribers"]) for r in rows] == [("tfp", 0), ("tfp", 4)]
    assert all(r["frames_in"] == 40_000 and r["windows_out"] > 10 for r in rows), rows
    assert "tfp fps ratio 4 subscribers / none" in capsys.readouterr().out
