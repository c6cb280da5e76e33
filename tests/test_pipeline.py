"""The pipeline: offline grids, live scheduling with skipped windows, ring overruns, record, save,
publish, the stream() API. Every wait ends on an event (a count of windows, the source's progress,
the end of the stream) and fails after TIMEOUT_S instead of hanging; nothing asserts on speed."""
import threading
import time

import numpy as np
import pytest

import ssml_stream as ss
from ssml_stream.errors import ConfigError
from ssml_stream.features import psnr, tfp
from ssml_stream.pipeline import Pipeline, PipelineConfig

QUIET = dict(status_interval_s=None, print_summary=False)
TIMEOUT_S = 60.0  # only reached when something is broken; a busy machine just takes longer


class Collect:
    """on_output callback keeping every output; with stop_after, stops the pipeline after that many."""

    def __init__(self, stop_after=None):
        self.outputs = []
        self.stop_after = stop_after
        self.pipeline = None

    def __call__(self, out):
        self.outputs.append(out)
        if self.stop_after and len(self.outputs) >= self.stop_after:
            self.pipeline.stop()


def run_until(config, n_outputs, reconstructor=None):
    """Run until n_outputs windows came out; returns (pipeline, summary, outputs)."""
    got = Collect(stop_after=n_outputs)
    p = Pipeline(config, on_output=got, reconstructor=reconstructor)
    got.pipeline = p
    watchdog = threading.Timer(TIMEOUT_S, p.stop)
    watchdog.start()
    try:
        summary = p.run()
    finally:
        watchdog.cancel()
    assert len(got.outputs) >= n_outputs, f"only {len(got.outputs)} of {n_outputs} windows in {TIMEOUT_S} s"
    return p, summary, got.outputs


class WaitForSource:
    """A model slower than any source: it returns TFP only once the source has pushed `lead_frames`
    more frames, so windows fall behind the source by construction, whatever the machine's load."""

    name, window_frames, device = "wait-for-source", None, "cpu"

    def __init__(self, lead_frames):
        self.lead_frames = lead_frames
        self.ring = None  # the pipeline's ring, set once the pipeline exists

    def warm_up(self, *args):
        pass

    def __call__(self, window, out=None):
        target, deadline = self.ring.head + self.lead_frames, time.monotonic() + TIMEOUT_S
        while self.ring.head < target and not self.ring.closed:
            assert time.monotonic() < deadline, f"the source stalled while the model waited ({self.ring.head})"
            time.sleep(0.001)
        return tfp(window, out=out)


def pipeline_with(config, reconstructor, on_output=None):
    p = Pipeline(config, on_output=on_output, reconstructor=reconstructor)
    reconstructor.ring = p.ring
    return p


def test_offline_every_window_on_the_grid(sim_recording, tmp_path):
    dat = sim_recording.dat
    save = tmp_path / "out.npz"
    got = Collect()
    cfg = PipelineConfig(device=f"file:{dat}", model="tfp", speed=None, stride_frames=10, save_path=str(save), **QUIET)
    summary = Pipeline(cfg, on_output=got).run()
    z = np.load(save)
    assert list(z["center"]) == list(range(20, 281, 10)) == [o.center for o in got.outputs]
    assert z["frames"].shape == (27, 250, 400) and z["frames"].dtype == np.float32
    assert (summary.frames_in, summary.frames_dropped, summary.windows_out, summary.windows_skipped) == (301, 0, 27, 0)
    spikes = ss.read_dat(dat)
    for i in (0, 13, 26):
        c = int(z["center"][i])
        np.testing.assert_array_equal(z["frames"][i], tfp(spikes.window(c, 41)))
        assert (z["first"][i], z["last"][i]) == (c - 20, c + 20)


def test_offline_reds_window_reaches_the_published_tfp41_figure(reds_test):
    """Real camera bits through file driver, ring and windows: 31.6 dB at the ground-truth frame."""
    got = Collect()
    cfg = PipelineConfig(device=f"file:{reds_test.dat}", model="tfp", speed=None, stride_frames=10, **QUIET)
    summary = Pipeline(cfg, on_output=got).run()
    assert summary.frames_in == reds_test.frames and summary.frames_dropped == 0
    (at_gt,) = [o for o in got.outputs if o.center == reds_test.gt_frame]
    assert psnr(at_gt.frame / 0.6, reds_test.gt) == pytest.approx(31.60, abs=0.01)


def test_live_never_slows_the_source_and_counts_skipped_windows(sim_recording):
    stride = 400  # 40 kHz / 100 fps
    model = WaitForSource(lead_frames=5 * stride)  # the source must run on while the model works
    got = Collect()
    cfg = PipelineConfig(device=f"file:{sim_recording.dat}", model="tfp", speed=1.0, loop=True, fps=100,
                         duration_s=1.5, **QUIET)
    summary = pipeline_with(cfg, model, on_output=got).run()
    assert summary.frames_in == 60_000 and summary.frames_dropped == 0   # every frame of the 1.5 s arrived
    centers = np.array([o.center for o in got.outputs])
    assert len(centers) == summary.windows_out >= 3
    assert np.all(np.diff(centers) > 0)
    assert all(o.last - o.first == 40 and o.center == o.first + 20 for o in got.outputs)
    assert np.all(np.diff([o.capture_ns for o in got.outputs]) > 0)
    grid = (centers[-1] - centers[0] + stride // 2) // stride + 1
    assert summary.windows_skipped > 0
    assert abs(summary.windows_out + summary.windows_skipped - grid) <= 1


def test_live_windows_hold_the_right_frames(sim_recording):
    looped = ss.read_dat(sim_recording.dat)[:]
    cfg = PipelineConfig(device=f"file:{sim_recording.dat}", model="tfp", loop=True, fps=50, **QUIET)
    _, _, outputs = run_until(cfg, 5)
    for o in outputs:
        idx = np.arange(o.first, o.last + 1) % sim_recording.frames
        np.testing.assert_array_equal(o.frame, tfp(looped[idx]))


def test_lossless_grid_on_a_live_source_counts_ring_overruns(sim_recording):
    looped = ss.read_dat(sim_recording.dat)[:]
    ring_frames = 2048
    model = WaitForSource(lead_frames=2 * ring_frames)  # every wait overruns the ring
    got = Collect()
    cfg = PipelineConfig(device=f"file:{sim_recording.dat}", model="tfp", loop=True, stride_frames=41,
                         duration_s=0.5, ring_frames=ring_frames, **QUIET)
    p = pipeline_with(cfg, model, on_output=got)
    summary = p.run()
    assert summary.frames_in == 20_000
    assert summary.frames_dropped > 0 and summary.frames_dropped == p.rec_cursor.dropped
    centers = [o.center for o in got.outputs]
    assert all((c - 20) % 41 == 0 for c in centers) and centers == sorted(set(centers))
    assert summary.windows_skipped > 0
    assert summary.windows_out + summary.windows_skipped == (centers[-1] - 20) // 41 + 1
    for o in got.outputs[::5]:  # windows next to an overrun are still exact (no torn frames)
        np.testing.assert_array_equal(o.frame, tfp(looped[np.arange(o.first, o.last + 1) % sim_recording.frames]))


def test_record_writes_every_frame(sim_recording, tmp_path):
    rec = tmp_path / "copy.dat"
    cfg = PipelineConfig(device=f"file:{sim_recording.dat}", model="tfp", speed=None, stride_frames=50,
                         record_path=str(rec), **QUIET)
    summary = Pipeline(cfg).run()
    assert summary.frames_recorded == 301 and summary.record_dropped == 0
    assert rec.read_bytes() == sim_recording.dat.read_bytes()


def _pipeline_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("ssml-")]


def test_stream_api_yields_frames_and_stops_when_left(sim_recording):
    assert not _pipeline_threads()
    centers = []
    # duration: a backstop, the stream ends by itself if frames stop coming
    for out in ss.stream(f"file:{sim_recording.dat}", model="tfp", fps=40, duration=TIMEOUT_S, loop=True):
        assert out.frame.shape == (250, 400) and out.frame.dtype == np.float32
        assert out.capture_ns > 0 and out.last - out.first == 40
        centers.append(out.center)
        if len(centers) == 5:
            break
    assert len(centers) == 5 and centers == sorted(set(centers))
    deadline = time.monotonic() + TIMEOUT_S
    while _pipeline_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pipeline_threads()


def test_stream_api_offline_stride(sim_recording):
    centers = [o.center for o in ss.stream(f"file:{sim_recording.dat}", model="tfp", stride=100, speed=None)]
    assert centers == [20, 120, 220]


def test_bad_config_is_a_config_error(tmp_path):
    for kwargs in (dict(window_frames=40), dict(stride_frames=0), dict(fps=-1), dict(stride_frames=5, fps=10),
                   dict(fmt="png"), dict(save_path=str(tmp_path / "nope" / "x.npz")), dict(duration_s=0)):
        with pytest.raises(ConfigError):
            PipelineConfig(**kwargs).validate()


def test_model_window_mismatch_is_reported(sim_recording):
    class Fixed(WaitForSource):
        window_frames = 41

    with pytest.raises(ConfigError, match="takes 41-frame windows, not 21"):
        Pipeline(PipelineConfig(device=f"file:{sim_recording.dat}", window_frames=21, **QUIET),
                 reconstructor=Fixed(0))


@pytest.mark.system
def test_published_frames_decode(sim_recording, tmp_path, spawn):
    import zmq

    from ssml_stream import schema
    endpoint = f"ipc://{tmp_path}/pub.ipc"
    cfg = PipelineConfig(device=f"file:{sim_recording.dat}", model="tfp", loop=True, fps=30, publish=[endpoint],
                         fmt="f4", **QUIET)
    p = Pipeline(cfg)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    frames = []
    runner = spawn(p.run)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(frames) < 20 and runner.is_alive() and time.monotonic() < deadline:
            if sub.poll(100):
                msg = schema.decode(sub.recv_multipart())
                if isinstance(msg, schema.Frame):
                    frames.append(msg)
    finally:
        p.stop()
        sub.close(0)
        ctx.term()
    runner.result(TIMEOUT_S)
    assert len(frames) >= 20, f"{len(frames)} frames decoded in {TIMEOUT_S} s"
    h = frames[-1].header
    assert h.dtype == "f4" and tuple(h.shape) == (250, 400) and h.model == "tfp"
    assert [f.header.seq for f in frames] == sorted(f.header.seq for f in frames)
    assert frames[-1].image.dtype == np.float32 and 0 <= frames[-1].image.max() <= 1


def test_live_sim_frames_arrive_in_order_with_consistent_counts():
    cfg = PipelineConfig(device="sim:spin", model="tfp", fps=30, driver_extra={"loop_s": 0.1}, **QUIET)
    _, summary, outputs = run_until(cfg, 10)
    centers = np.array([o.center for o in outputs])
    assert summary.frames_dropped == 0 and summary.frames_in > centers[-1] + 20
    assert len(centers) == summary.windows_out
    assert np.all(np.diff(centers) > 0)
    slots = (centers - centers[0] + 1333 // 2) // 1333  # grid slot of each output, jitter rounded away
    assert summary.windows_skipped == slots[-1] + 1 - len(np.unique(slots))  # every empty slot, once
    rate = np.mean([o.frame.mean() for o in outputs])
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
