"""Parallel lanes for lossless replays: every window comes out once, in grid order, with the same
numbers as one window at a time; an error or a stop ends the run instead of hanging. Waits are
bounded joins; nothing asserts on speed."""
import os
import random
import threading
import time

import numpy as np
import pytest

from ssml_stream.cli import sim_main
from ssml_stream.lanes import Lanes
from ssml_stream.pipeline import Pipeline, PipelineConfig

TIMEOUT_S = 60.0


def run_lanes(count, n, reconstruct, stop=None):
    stop = stop or threading.Event()
    out = []
    lanes = Lanes(count, reconstruct, lambda frame, center, ns: out.append((center, int(frame[0, 0]), ns)), stop)
    window = np.zeros((3, 2, 2), np.uint8)
    for k in range(n):
        window[:] = k % 251  # the buffer is reused, as SlidingWindows does: lanes must copy it
        if not lanes.submit(k, window, 1000 + k):
            break
    done = threading.Thread(target=lanes.finish, daemon=True)
    done.start()
    done.join(TIMEOUT_S)
    assert not done.is_alive(), "Lanes.finish did not return"
    return lanes, out


def jittery(window):
    time.sleep(random.random() * 0.002)  # lanes finish out of order
    return window[0].astype(np.float32)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_window_once_in_order(count):
    _, out = run_lanes(count, 200, jittery)
    assert [c for c, _, _ in out] == list(range(200))
    assert [v for _, v, _ in out] == [k % 251 for k in range(200)]   # each result belongs to its window
    assert [ns for _, _, ns in out] == [1000 + k for k in range(200)]


def test_a_failing_lane_stops_the_run_and_its_error_surfaces():
    def fails_at_7(window):
        if window[0, 0, 0] == 7:
            raise ValueError("broken window")
        return window[0].astype(np.float32)

    stop = threading.Event()
    lanes = Lanes(2, fails_at_7, lambda *a: None, stop)
    window = np.zeros((3, 2, 2), np.uint8)
    for k in range(50):
        window[:] = k
        if not lanes.submit(k, window, 0):
            break
    with pytest.raises(ValueError, match="broken window"):
        lanes.finish()
    assert stop.is_set()


def test_stop_ends_the_lanes_without_hanging():
    stop = threading.Event()
    lanes = Lanes(2, jittery, lambda *a: stop.set(), stop)  # the first output stops the run
    window = np.zeros((3, 2, 2), np.uint8)
    refused = 0
    for k in range(100):
        refused += not lanes.submit(k, window, 0)
    assert refused > 0  # once stopped, submit says so instead of blocking
    done = threading.Thread(target=lanes.finish, daemon=True)
    done.start()
    done.join(TIMEOUT_S)
    assert not done.is_alive()


@pytest.mark.parametrize("model", ["ssml-rt", "tfp"])
def test_lanes_give_the_same_output_as_one_window_at_a_time(tmp_path, model):
    path = tmp_path / "clip.dat"
    assert sim_main([str(path), "--scene", "traffic", "--frames", "160", "--height", "64", "--width", "96"]) == 0
    import torch
    frames = {}
    for threads in (None, 1):  # None: lanes (one per core); 1: one window at a time, one torch thread
        cfg = PipelineConfig(device=f"file:{path}", model=model, stride_frames=1, speed=None, threads=threads,
                             height=64, width=96, save_path=str(tmp_path / f"out-{threads}.npz"),
                             status_interval_s=None, print_summary=False)
        p = Pipeline(cfg)
        threads_before = torch.get_num_threads()  # as the pipeline's model load left it
        summary = p.run()
        assert summary.windows_out == 120 and summary.frames_dropped == 0
        used_lanes = "hand to lanes" in summary.stage_ms
        assert used_lanes == (threads is None and (os.cpu_count() or 1) >= 2)
        if threads is None:
            assert torch.get_num_threads() == threads_before  # the lanes' one-thread setting is undone
        with np.load(tmp_path / f"out-{threads}.npz") as z:
            frames[threads] = (z["frames"].copy(), z["center"].copy())
    assert np.array_equal(frames[None][1], frames[1][1])
    assert np.array_equal(frames[None][1], np.arange(20, 140))
    assert np.array_equal(frames[None][0], frames[1][0])  # bit for bit
