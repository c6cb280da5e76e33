"""ssml-view: draining and counting (in process), then the real command against a publisher process:
headless recording, SIGTERM, waiting, malformed messages, and the window under Xvfb."""
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from ssml_stream import schema
from ssml_stream.display import DisplayScale, rate_to_u1
from ssml_stream.viewer import Subscriber, display_zoom, main, zoom_image

H, W = 96, 128
TIMEOUT_S = 60.0  # waits end on their event (frames shown, a file written); this is only for failures

# A small publisher process: pattern frames at ~fps, optionally a malformed message every N frames.
PUBLISHER = textwrap.dedent("""
    import sys, time, numpy as np, msgpack
    from ssml_stream.publish import Publisher
    endpoint, fmt, duration_s, bad_every, moving = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    with Publisher([endpoint], fmt=fmt) as pub:
        print(pub.endpoints[0], flush=True)
        sock = pub._sock
        t0, seq = time.monotonic(), 0
        while time.monotonic() - t0 < duration_s:
            shift = seq if moving else 0
            rate = (0.6 * (0.25 + 0.5 * (((xx + shift) // 16 + yy // 16) % 2) + 0.25 * xx / w)).astype(np.float32)
            pub.send_frame(rate, seq=seq, center=20 + seq * 1333, first=seq * 1333, last=40 + seq * 1333,
                           capture_ns=time.time_ns(), model="pattern", dropped=0, skipped=seq // 10)
            if bad_every and seq % bad_every == 0:
                sock.send_multipart([b"frame", msgpack.packb({"v": 99}), b"junk"])
            if seq % 30 == 0:
                pub.send_stats({"fps": 30.0})
            seq += 1
            time.sleep(1 / 30)
""")


def pattern_rate(shift=0):
    yy, xx = np.mgrid[0:H, 0:W]
    return (0.6 * (0.25 + 0.5 * (((xx + shift) // 16 + yy // 16) % 2) + 0.25 * xx / W)).astype(np.float32)


def start_publisher(endpoint, fmt="u1", duration_s=2 * TIMEOUT_S, bad_every=0, moving=True):
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, endpoint, fmt, str(duration_s), str(bad_every),
                             "1" if moving else "0"], stdout=subprocess.PIPE, text=True)
    bound = proc.stdout.readline().strip()
    assert bound.startswith(("tcp://", "ipc://")), f"publisher did not start: {bound!r}"
    return proc, bound


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def viewer_command(*args):
    script = Path(sys.executable).parent / "ssml-view"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "ssml_stream.viewer"]
    return base + list(args)


def run_viewer(*args, timeout=TIMEOUT_S, env=None):
    return subprocess.run(viewer_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


def summary_number(text, label):
    import re
    m = re.search(rf"{label} (\d+)", text)
    assert m, f"{label!r} not in {text!r}"
    return int(m.group(1))


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


# ---------------------------------------------------------------- in process

@pytest.mark.system
def test_subscriber_drains_to_newest_and_counts_everything(tmp_path):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/v.ipc"
    pub.bind(endpoint)
    sub = Subscriber([endpoint], rcvhwm=1000)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not sub.wait(20):           # wait until the subscription is through
            pub.send_multipart(schema.encode_stats({"probe": 1}))
            assert time.monotonic() < deadline
        sub.drain()
        stats0 = sub.stats

        def frame(seq):
            header = schema.FrameHeader(seq=seq, center=seq, first=seq, last=seq, capture_ns=time.time_ns(),
                                        publish_ns=time.time_ns(), shape=(4, 6), dtype="u1", model="m")
            return schema.encode_frame(header, np.full((4, 6), seq, np.uint8))

        good = frame(0)
        bad = [[b"frame", msgpack.packb({"v": 2}), b"x"], [b"frame", b"\xc1", good[2]], [b"frame"],
               [good[0], good[1], bytes(10)], [b"nope", b"", b""]]
        for parts in [frame(1), bad[0], frame(2), bad[1], bad[2], frame(5), bad[3], bad[4], frame(6)]:
            pub.send_multipart(parts)
        pub.send_multipart(schema.encode_stats({"fps": 1.0}))
        got, deadline = None, time.monotonic() + TIMEOUT_S
        while sub.received < 10 + stats0 and time.monotonic() < deadline:
            if sub.wait(50):
                got = sub.drain() or got
        assert got is not None and got.header.seq == 6 and got.image[0, 0] == 6
        assert sub.malformed == 5 and sub.last_error
        assert sub.gaps == 2               # seq 3 and 4 never arrived
        assert sub.frames == 4 and sub.stats == stats0 + 1 and sub.last_stats["fps"] == 1.0
    finally:
        sub.close()
        pub.close()
        ctx.term()


def test_command_line_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cases = [(["--headless"], "shows nothing"),
             (["--duration", "0.1"], "no display"),
             (["--headless", "--duration", "-1"], "--duration"),
             (["--connect", "nonsense", "--headless", "--duration", "0.1"], "cannot connect"),
             (["--headless", "--record", "/no/such/dir/out.mp4", "--duration", "0.1"], "does not exist")]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and err.startswith("ssml-view: error:") and "\n" not in err, err


def make_frame(seq, image, dtype="f4"):
    header = schema.FrameHeader(seq=seq, center=seq, first=seq, last=seq, capture_ns=time.time_ns(),
                                publish_ns=time.time_ns(), shape=image.shape, dtype=dtype, model="m")
    return schema.Frame(header, image)


def test_keys_change_gain_gamma_pause_snapshot_and_recording(tmp_path, monkeypatch):
    from ssml_stream.viewer import Viewer, ViewerConfig
    monkeypatch.chdir(tmp_path)
    viewer = Viewer(ViewerConfig(connect=[f"ipc://{tmp_path}/none.ipc"], headless=True,
                                 snapshots=str(tmp_path / "snaps"), record=str(tmp_path / "keys.mp4")))
    try:
        rate = pattern_rate()
        viewer.show(make_frame(3, rate), time.monotonic())
        np.testing.assert_array_equal(viewer.current, rate_to_u1(rate))
        viewer.handle_key(ord("+"), 0.0)
        assert viewer.gain == pytest.approx(1.25)
        viewer.handle_key(ord("-"), 0.0)
        viewer.handle_key(ord("-"), 0.0)
        assert viewer.gain == pytest.approx(0.8)
        viewer.handle_key(ord("g"), 0.0)
        assert viewer.gamma == 1.5
        np.testing.assert_array_equal(viewer.current, rate_to_u1(rate, DisplayScale(gain=0.8, gamma=1.5)))
        viewer.show(make_frame(4, rate), time.monotonic())
        viewer.handle_key(ord(" "), 0.0)
        assert viewer.paused
        viewer.handle_key(ord("s"), 0.0)
        snap = cv2.imread(str(tmp_path / "snaps" / "ssml-view-00000004.png"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(snap, viewer.current)
        canvas = viewer.render(time.monotonic())
        assert canvas.shape[1] >= 480 and canvas.dtype == np.uint8 and canvas.ndim == 3
        viewer.handle_key(ord("r"), 0.0)                    # stops the --record recording
        assert viewer.recorder is None and len(read_video(tmp_path / "keys.mp4")) == 2
        viewer.handle_key(ord("r"), 0.0)                    # starts a new one next to it
        assert viewer.recorder is not None and viewer.recorder.path != str(tmp_path / "keys.mp4")
        assert viewer.recorder.path.startswith(str(tmp_path / "keys-"))
        viewer.handle_key(ord("q"), 0.0)
        assert viewer.stop_reason == "key"
    finally:
        if viewer.recorder is not None:
            viewer.recorder.close()
        viewer.sub.close()


def test_panel_shows_adapt_counters_only_when_the_stream_adapts(tmp_path):
    from ssml_stream.viewer import Viewer, ViewerConfig, adapt_line
    plain = {"t_s": 12.0, "fps": 30.0, "latency_p50_ms": 5.0, "latency_p99_ms": 9.0, "frames_in": 480_000,
             "dropped": 0, "skipped": 1, "windows_out": 360, "model": "ssml-rt"}
    # what `ssml-stream --adapt` adds to the stats map (docs/formats.md#stats-message)
    adapting = {**plain, "adapt_steps": 162, "adapt_loss": 1.234e-3, "adapt_live_score": 4e-3, "adapt_swaps": 12,
                "adapt_since_swap_s": 34.2, "adapt_poisoned": 3}
    viewer = Viewer(ViewerConfig(connect=[f"ipc://{tmp_path}/none.ipc"], headless=True, duration_s=1.0))
    try:
        viewer.show(make_frame(1, pattern_rate()), time.monotonic())

        def panel(stats):
            viewer.sub.last_stats = schema.decode(schema.encode_stats(stats)).values   # as received
            return [text for text, _ in viewer.overlay_lines(time.monotonic())]

        without = panel(plain)
        assert not any("adapt" in line for line in without), without
        with_adapt = panel(adapting)
        assert len(with_adapt) == len(without) + 1
        assert [line for line in with_adapt if "adapt" in line] == [
            "adapt steps 162  loss 1.23e-03  swaps 12 (last 34 s ago)  poisoned 3"], with_adapt
    finally:
        viewer.sub.close()
    # before the first step and the first swap the adapter sends NaN; values from a foreign publisher
    # that are not numbers show as "-" instead of stopping the viewer
    assert adapt_line({**adapting, "adapt_loss": math.nan, "adapt_swaps": 0, "adapt_since_swap_s": math.nan}) == \
        "adapt steps 162  loss -  swaps 0  poisoned 3"
    assert adapt_line({"adapt_steps": "many", "adapt_loss": [1], "adapt_since_swap_s": True}) == \
        "adapt steps -  loss -  swaps -  poisoned -"
    assert adapt_line(plain) is None
    # with a pixel gain map in use (its spread), and NaN while there is none
    assert adapt_line({**adapting, "adapt_gain_std": 0.085}).endswith("poisoned 3  pixel gain ±8.5 %")
    assert adapt_line({**adapting, "adapt_gain_std": math.nan}).endswith("poisoned 3")


# ---------------------------------------------------------------- processes

@pytest.mark.system
def test_headless_recording_against_a_publisher_process(tmp_path):
    pub, endpoint = start_publisher("tcp://127.0.0.1:*", fmt="f4", bad_every=10)
    try:
        out, sheet = tmp_path / "out.mp4", tmp_path / "sheet.png"
        result = run_viewer("--connect", endpoint, "--headless", "--record", str(out), "--max-frames", "30",
                            "--contact-sheet", str(sheet), "--snapshots", str(tmp_path / "shots"),
                            "--snapshot-interval", "0.1")
    finally:
        stop(pub)
    summary = result.stdout.strip()
    assert result.returncode == 0, result.stderr + summary
    assert "\n" not in summary and summary.startswith("ssml-view: shown")
    shown = summary_number(summary, "shown")
    assert shown == 30, summary
    # 30 frames received in a row carry at least 2 of the malformed messages sent after every 10th
    assert summary_number(summary, "malformed") >= 2, summary   # counted, never fatal
    frames = read_video(out)
    assert len(frames) == shown == summary_number(summary, "recorded")
    assert frames[0].shape == (H, W, 3)
    # The pattern moves by one pixel per frame: the recording is not a still.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5
    contact = cv2.imread(str(sheet), cv2.IMREAD_GRAYSCALE)
    assert contact is not None and contact.shape == (3 * H, 4 * W)
    shots = sorted((tmp_path / "shots").glob("ssml-view-*.png"))
    assert len(shots) >= 2  # the publisher sends at most 30 fps: 30 frames span ~1 s, snapshots every 0.1 s
    # f4 frames are scaled by display.py exactly like the publisher's u1 format (PNG is lossless).
    seq = int(shots[-1].stem.split("-")[-1])
    np.testing.assert_array_equal(cv2.imread(str(shots[-1]), cv2.IMREAD_GRAYSCALE), rate_to_u1(pattern_rate(seq)))


@pytest.mark.system
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_flushes_the_recording(tmp_path, signum):
    pub, endpoint = start_publisher(f"ipc://{tmp_path}/p.ipc", fmt="u1")
    out, shots = tmp_path / "sig.mp4", tmp_path / "shots"
    viewer = subprocess.Popen(viewer_command("--connect", endpoint, "--headless", "--record", str(out),
                                             "--snapshots", str(shots), "--snapshot-interval", "0.1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(shots.glob("*.png")):   # the first snapshot: frames are being shown
            assert viewer.poll() is None and time.monotonic() < deadline, "the viewer showed no frame"
            time.sleep(0.05)
        viewer.send_signal(signum)
        stdout, stderr = viewer.communicate(timeout=TIMEOUT_S)
    finally:
        stop(viewer)
        stop(pub)
    assert viewer.returncode == 0, stderr
    assert "Traceback" not in stderr
    shown = summary_number(stdout, "shown")
    assert shown > 0
    assert len(read_video(out)) == shown


@pytest.mark.system
def test_waits_for_a_publisher_and_says_so(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody.ipc"
    result = run_viewer("--connect", endpoint, "--headless", "--duration", "3")  # it says so after 0.5 s
    assert f"waiting for a publisher on {endpoint}" in result.stderr
    assert result.returncode == 1 and "no frames from" in result.stdout
    assert "Traceback" not in result.stderr


EXAMPLE_MARK = "# ssml-stream subscriber example"


def readme_example(readme=Path(__file__).resolve().parents[1] / "README.md"):
    """The ~20-line subscriber from the README (pyzmq + msgpack + numpy only), or None."""
    text = readme.read_text() if readme.exists() else ""
    for block in text.split("```python")[1:]:
        code = block.split("```")[0]
        if EXAMPLE_MARK in code:
            return code
    return None


@pytest.mark.system
def test_readme_subscriber_example_runs_against_a_publisher(tmp_path):
    code = readme_example()
    if code is None:
        pytest.skip(f"README.md has no python block marked {EXAMPLE_MARK!r} yet")
    import ast
    tree = ast.parse(code)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"sys", "time", "msgpack", "numpy", "zmq"}, imported   # nothing from ssml_stream
    script = tmp_path / "sub.py"
    script.write_text(code)
    pub, endpoint = start_publisher("tcp://127.0.0.1:*", fmt="u1", bad_every=3)
    try:
        result = subprocess.run([sys.executable, str(script), endpoint, "5"], capture_output=True, text=True,
                                timeout=60)
    finally:
        stop(pub)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and all(f"({H}, {W}) uint8" in line for line in lines), result.stdout


# ---------------------------------------------------------------- the window, under Xvfb

def read_xvfb_screen(path):
    """Xvfb -fbdir keeps the live screen in an XWD file: header (big-endian), colormap, then pixels."""
    raw = Path(path).read_bytes()
    fields = np.frombuffer(raw[:100], ">u4")
    header_size, depth, width, height = int(fields[0]), int(fields[3]), int(fields[4]), int(fields[5])
    bits_per_pixel, bytes_per_line, ncolors = int(fields[11]), int(fields[12]), int(fields[19])
    assert depth == 24 and bits_per_pixel == 32, (depth, bits_per_pixel)
    pixels = np.frombuffer(raw, np.uint8, count=bytes_per_line * height, offset=header_size + 12 * ncolors)
    return pixels.reshape(height, bytes_per_line // 4, 4)[:, :width, :3]   # BGRX, little-endian server


def _x_display_in_use(n):
    """Lock file, or a socket in /proc/net/unix: the abstract-namespace one is shared by every container
    in the same network namespace even when /tmp is not, and X clients try it first."""
    if Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
        return True
    try:
        return f"/tmp/.X11-unix/X{n}\n" in Path("/proc/net/unix").read_text()
    except OSError:
        return False


@pytest.fixture
def xvfb(tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (apt-get install xvfb); the window path is tested only under Xvfb")
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    rng = np.random.default_rng(os.getpid())
    for n in rng.choice(np.arange(200, 1000), size=20, replace=False):
        if _x_display_in_use(n):
            continue
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "800x600x24", "-fbdir", str(fbdir),
                                 "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT_S
        while proc.poll() is None and not Path(f"/tmp/.X11-unix/X{n}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("could not start Xvfb on any free display")
    try:
        yield f":{n}", fbdir / "Xvfb_screen0"
    finally:
        proc.terminate()
        proc.wait(10)


def _watch_screen(viewer, screen_file, expected, timeout_s):
    """Poll the live Xvfb screen until `expected` appears on it; returns the best mean abs difference."""
    best, deadline = np.inf, time.monotonic() + timeout_s
    while time.monotonic() < deadline and viewer.poll() is None:
        time.sleep(0.3)
        if not screen_file.exists():
            continue
        screen = np.ascontiguousarray(read_xvfb_screen(screen_file))
        _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(screen, expected, cv2.TM_SQDIFF))
        crop = screen[y:y + expected.shape[0], x:x + expected.shape[1]].astype(int)
        best = min(best, float(np.abs(crop - expected).mean()))
        if best < 1.0:
            break
    return best


@pytest.mark.system
def test_window_under_xvfb_shows_the_frame(tmp_path, xvfb):
    display, screen_file = xvfb
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    pub, endpoint = start_publisher(f"ipc://{tmp_path}/w.ipc", fmt="u1", moving=False)
    shot = tmp_path / "drawn.png"
    expected = cv2.cvtColor(zoom_image(rate_to_u1(pattern_rate()), display_zoom((H, W), None)), cv2.COLOR_GRAY2BGR)
    attempts = []
    try:
        # Qt on an X server without a window manager occasionally never paints its window (it misses the
        # MapNotify; with the viewer's warm-up window and early redraws about 1 start in 11 here, see
        # ssml_stream/viewer.py). Such a start shows a black screen while Qt reports the window visible;
        # only then is the viewer started again.
        for _ in range(3):
            viewer = subprocess.Popen(viewer_command("--connect", endpoint, "--screenshot", str(shot),
                                                     "--duration", "40"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            try:
                best = _watch_screen(viewer, screen_file, expected, timeout_s=TIMEOUT_S / 2)
                viewer.send_signal(signal.SIGTERM)
                stdout, stderr = viewer.communicate(timeout=TIMEOUT_S)
            finally:
                stop(viewer)
            attempts.append((best, stdout, stderr, viewer.returncode))
            screen_black = screen_file.exists() and read_xvfb_screen(screen_file).max() == 0
            if best < 1.0 or not (screen_black and "window visible" in stdout):
                break
    finally:
        stop(pub)
    best, stdout, stderr, returncode = attempts[-1]
    print(f"window test: {len(attempts)} start(s), best mean abs diff per start "
          f"{[round(a[0], 1) for a in attempts]}")
    if best >= 1.0 and screen_file.exists():
        cv2.imwrite(str(tmp_path / "screen.png"), read_xvfb_screen(screen_file))
    assert best < 1.0, (f"the expected frame never appeared on the screen in {len(attempts)} start(s) "
                        f"(mean abs diff {best:.1f}, screen in {tmp_path}); viewer said: {stdout} {stderr}")
    assert returncode == 0, stderr
    assert "window visible" in stdout and summary_number(stdout, "shown") > 0, stdout
    drawn = cv2.imread(str(shot))
    assert drawn is not None
    np.testing.assert_array_equal(drawn[:expected.shape[0], :expected.shape[1]], expected)
    # The overlay panel below the image carries text.
    assert drawn[expected.shape[0]:].max() > 100
