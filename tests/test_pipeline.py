import threading
import time

import numpy as np
import pytest

import ssml_stream as ss
from ssml_stream.errors import ConfigError
from ssml_stream.features import psnr, tfp
from ssml_stream.pipeline import Pipeline, PipelineConfig

QUIET = dict(status_interval_s=None, print_summary=False)


class Collect:
    def __init__(self):
        self.outputs = []

    def __call__(self, out):
        self.outputs.append(out)


class SlowTfp:
    """A reconstructor that takes `delay_s` per window (a model slower than the requested fps)."""

    name, window_frames, device = "slow-tfp", None, "cpu"

    def __init__(self, delay_s):
        self.delay_s = delay_s

    def warm_up(self, *args):
        pass

    def __call__(self, window, out=None):
        time.sleep(self.delay_s)
        return tfp(window, out=out)


def test_offline_reds_every_window_and_center_150(reds_test, tmp_path):
    dat, gt = reds_test
    save = tmp_path / "out.npz"
    got = Collect()
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", speed=None, stride_frames=10, save_path=str(save), **QUIET)
    summary = Pipeline(cfg, on_output=got).run()
    z = np.load(save)
    assert list(z["center"]) == list(range(20, 281, 10)) == [o.center for o in got.outputs]
    assert z["frames"].shape == (27, 250, 400) and z["frames"].dtype == np.float32
    assert (summary.frames_in, summary.frames_dropped, summary.windows_out, summary.windows_skipped) == (301, 0, 27, 0)
    assert psnr(z["frames"][list(z["center"]).index(150)] / 0.6, gt) >= 31.5
    spikes = ss.read_dat(dat)
    for i in (0, 13, 26):
        c = int(z["center"][i])
        np.testing.assert_array_equal(z["frames"][i], tfp(spikes.window(c, 41)))
        assert (z["first"][i], z["last"][i]) == (c - 20, c + 20)


def test_live_never_slows_the_source_and_counts_skipped_windows(reds_test):
    dat, _ = reds_test
    got = Collect()
    fps, duration_s = 100.0, 1.5
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", speed=1.0, loop=True, fps=fps, duration_s=duration_s, **QUIET)
    t0 = time.perf_counter()
    summary = Pipeline(cfg, on_output=got, reconstructor=SlowTfp(0.03)).run()  # model ~30 fps < 100 fps asked
    wall_s = time.perf_counter() - t0
    assert summary.frames_in == 60_000 and summary.frames_dropped == 0   # the source ran at full rate
    assert wall_s < duration_s + 1.5
    centers = np.array([o.center for o in got.outputs])
    assert len(centers) == summary.windows_out >= 10
    assert np.all(np.diff(centers) > 0)
    assert all(o.last - o.first == 40 and o.center == o.first + 20 for o in got.outputs)
    assert np.all(np.diff([o.capture_ns for o in got.outputs]) > 0)
    stride = 400  # 40 kHz / 100 fps
    grid = (centers[-1] - centers[0] + stride // 2) // stride + 1
    assert summary.windows_skipped > 0
    assert abs(summary.windows_out + summary.windows_skipped - grid) <= 1
    assert summary.fps < 50


def test_live_windows_hold_the_right_frames(reds_test):
    dat, _ = reds_test
    spikes = ss.read_dat(dat)
    looped = spikes[0:301]
    got = Collect()
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", loop=True, fps=50, duration_s=0.5, **QUIET)
    Pipeline(cfg, on_output=got).run()
    assert len(got.outputs) >= 5
    for o in got.outputs:
        idx = np.arange(o.first, o.last + 1) % 301
        np.testing.assert_array_equal(o.frame, tfp(looped[idx]))


def test_lossless_grid_on_a_live_source_counts_ring_overruns(reds_test):
    dat, _ = reds_test
    spikes = ss.read_dat(dat)
    looped = spikes[0:301]
    got = Collect()
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", loop=True, stride_frames=41, duration_s=0.5,
                         ring_frames=2048, **QUIET)
    p = Pipeline(cfg, on_output=got, reconstructor=SlowTfp(0.01))
    summary = p.run()
    assert summary.frames_in == 20_000
    assert summary.frames_dropped > 0 and summary.frames_dropped == p.rec_cursor.dropped
    centers = [o.center for o in got.outputs]
    assert all((c - 20) % 41 == 0 for c in centers) and centers == sorted(set(centers))
    assert summary.windows_skipped > 0
    assert summary.windows_out + summary.windows_skipped == (centers[-1] - 20) // 41 + 1
    for o in got.outputs[::5]:  # windows next to an overrun are still exact (no torn frames)
        np.testing.assert_array_equal(o.frame, tfp(looped[np.arange(o.first, o.last + 1) % 301]))


def test_record_writes_every_frame(reds_test, tmp_path):
    dat, _ = reds_test
    rec = tmp_path / "copy.dat"
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", speed=None, stride_frames=50, record_path=str(rec), **QUIET)
    summary = Pipeline(cfg).run()
    assert summary.frames_recorded == 301 and summary.record_dropped == 0
    assert rec.read_bytes() == dat.read_bytes()


def test_stream_api_yields_frames_and_stops_when_left(reds_test):
    dat, _ = reds_test
    threads_before = threading.active_count()
    centers = []
    for out in ss.stream(f"file:{dat}", model="tfp", fps=40, duration=5, loop=True):
        assert out.frame.shape == (250, 400) and out.frame.dtype == np.float32
        assert out.capture_ns > 0 and out.last - out.first == 40
        centers.append(out.center)
        if len(centers) == 5:
            break
    assert centers == sorted(set(centers))
    deadline = time.time() + 2
    while threading.active_count() > threads_before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before


def test_stream_api_offline_stride(reds_test):
    dat, _ = reds_test
    centers = [o.center for o in ss.stream(f"file:{dat}", model="tfp", stride=100, speed=None)]
    assert centers == [20, 120, 220]


def test_bad_config_is_a_config_error(tmp_path):
    for kwargs in (dict(window_frames=40), dict(stride_frames=0), dict(fps=-1), dict(stride_frames=5, fps=10),
                   dict(fmt="png"), dict(save_path=str(tmp_path / "nope" / "x.npz")), dict(duration_s=0)):
        with pytest.raises(ConfigError):
            PipelineConfig(**kwargs).validate()


def test_model_window_mismatch_is_reported(reds_test):
    dat, _ = reds_test

    class Fixed(SlowTfp):
        window_frames = 41

    with pytest.raises(ConfigError, match="--window 41"):
        Pipeline(PipelineConfig(device=f"file:{dat}", window_frames=21, **QUIET), reconstructor=Fixed(0))


@pytest.mark.system
def test_published_frames_decode(reds_test, tmp_path):
    import zmq

    from ssml_stream import schema
    dat, _ = reds_test
    endpoint = f"ipc://{tmp_path}/pub.ipc"
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", loop=True, fps=30, duration_s=2.0, publish=[endpoint],
                         fmt="f4", **QUIET)
    p = Pipeline(cfg)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    time.sleep(0.3)  # let the subscription reach the publisher
    frames = []
    runner = threading.Thread(target=p.run)
    runner.start()
    try:
        while runner.is_alive() or sub.poll(0):
            if sub.poll(100):
                msg = schema.decode(sub.recv_multipart())
                if isinstance(msg, schema.Frame):
                    frames.append(msg)
    finally:
        runner.join()
        sub.close(0)
        ctx.term()
    assert len(frames) >= 20
    h = frames[-1].header
    assert h.dtype == "f4" and tuple(h.shape) == (250, 400) and h.model == "tfp"
    assert [f.header.seq for f in frames] == sorted(f.header.seq for f in frames)
    assert frames[-1].image.dtype == np.float32 and 0 <= frames[-1].image.max() <= 1


def test_live_sim_frames_arrive_in_order_with_consistent_counts():
    got = Collect()
    cfg = PipelineConfig(device="sim:spin", model="tfp", fps=30, duration_s=2.0, driver_extra={"loop_s": 0.1}, **QUIET)
    summary = Pipeline(cfg, on_output=got).run()
    centers = np.array([o.center for o in got.outputs])
    assert summary.frames_in == 80_000 and summary.frames_dropped == 0
    assert len(centers) == summary.windows_out >= 30
    assert np.all(np.diff(centers) > 0) and centers[-1] < 80_000
    grid = (centers[-1] - centers[0] + 1333 // 2) // 1333 + 1
    assert abs(summary.windows_out + summary.windows_skipped - grid) <= 1
    rate = np.mean([o.frame.mean() for o in got.outputs])
    assert 0.02 < rate < 0.6  # a lit scene at rate_gain 0.6, not blank frames


def test_latency_stats_are_bounded_and_match_numpy_percentiles():
    from ssml_stream.pipeline import LatencyStats
    rng = np.random.default_rng(0)
    ms = rng.lognormal(3.0, 0.6, 50_000)
    stats = LatencyStats()
    for i, v in enumerate(ms):
        stats.add(float(v), i / 30.0)
    p50, p99 = LatencyStats.hist_percentiles(stats.hist)
    ref50, ref99 = np.percentile(ms, [50, 99])
    assert abs(p50 / ref50 - 1) < 0.01 and abs(p99 / ref99 - 1) < 0.01
    assert stats.count == 50_000 and abs(stats.fps() - 30.0) < 1e-6
    lat, times = stats.recent()
    assert len(lat) <= 8192 and lat[-1] == ms[-1]  # the status window is bounded
    stats.add(1.0, 50_000 / 30.0)
    assert stats.recent() == ([1.0], [49_999 / 30.0, 50_000 / 30.0])
