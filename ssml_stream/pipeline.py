"""The streaming pipeline: driver -> ring -> windows -> reconstruction -> publish/save (docs/architecture.md).

Stages run as **threads** in one process, each with one job:

- capture:     `driver.run(ring, stop)` pushes packed frames into `ssml_stream.ring.Ring`;
- record:      (optional, --record) its own ring cursor writes every packed frame to a `.dat` file;
- reconstruct: reads windows from its cursor, unpacks them (Numba) and runs the model;
- sink:        publishes (ZeroMQ), appends to --save, hands outputs to `stream()` and measures latency;
- adapt:       (optional, --adapt) `ssml_stream.train.adapt` trains on windows it copies from the ring
               and swaps an improved model into `self.rec`, which the reconstruct loop reads per window;
- the caller's thread prints a status line about once a second and waits for the end.

Why threads, not processes: the heavy work (Numba unpack with `nogil`, torch kernels, ZeroMQ sends,
file writes) releases the GIL, so threads do run in parallel on the two cores, and they share the ring,
the windows and the output frames without copies or shared-memory plumbing. Torch is limited to
cpu_count - 1 threads (see runtime.py) so capture always has a core.

Where frames get lost, and how it is counted:
- `dropped`: spike frames lost at ingest, i.e. frames the ring overwrote before the reconstruction
  cursor read them (`Cursor.dropped`), plus any the driver itself reports (`frames_dropped`). The
  recorder's cursor counts its own losses (`record_dropped` in the summary).
- `skipped`: windows on the stride grid that were not reconstructed. The live scheduler skips by
  design: it always takes the **newest complete window** (`Cursor.read_latest`) at the target fps, so a
  slow model lowers the output rate but never slows the source or builds a backlog. In lossless mode on
  a live source, grid windows cut by a ring overrun count as skipped too (their frames as dropped).
- Lossless mode (a non-live source such as `file:X.dat --speed max`, or any `--stride` without `--fps`)
  reconstructs every window on the grid `window//2 + k*stride` with `unpack.SlidingWindows`; a lossless
  ring blocks the replay instead of dropping.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .cli_common import check_output_path, format_bytes
from .errors import ConfigError, SsmlError
from .formats import RATE_GAIN, open_writer
from .lanes import Lanes
from .npzstream import NpzSaver
from .pixel_gain import gain_beside, gain_path_for
from .drivers.pacing import check_speed
from .ring import Ring
from .run_stats import LatencyStats, SilenceWatch, StageTimes, Summary
from .runtime import check_threads
from .schema import DTYPES
from .unpack import SlidingWindows, unpack_into

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_FPS = 30.0
RING_BYTES = 256 << 20     # ring memory budget when ring_frames is not given
RING_MAX_FRAMES = 16384
MAX_BUFFER_BYTES = 4 << 30  # ring + unpacked windows of one run: more is a typing error, not a camera
FORMATS = tuple(DTYPES)  # frame formats a run can publish (the schema's)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs; `stream_cli.config_from_args` is the one place CLI args become this.
    Frozen: derive variants with `dataclasses.replace(config, fps=60)`."""

    device: str = "sim"
    model: str = "tfp"
    window_frames: int = 41
    stride_frames: int | None = None     # lossless grid spacing (spike frames)
    fps: float | None = None             # live target rate; default 30 when neither stride nor fps is set
    duration_s: float | None = None      # stream time, passed to the driver
    speed: float | None = 1.0            # replay pace; None = max (lossless)
    loop: bool = False
    save_path: str | None = None
    record_path: str | None = None
    publish: list[str] = field(default_factory=list)
    curve_keys: str | None = None        # CURVE key folder (ssml_stream.keys): encrypt, authorised viewers only
    fmt: str = "u1"
    gamma: float = 1.0
    rate_norm: float = RATE_GAIN
    compute: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    height: int = 250
    width: int = 400
    stored_width: int = 0
    allow_truncated: bool = False
    rate_hz: float = 40_000.0
    seed: int = 0
    driver_extra: dict = field(default_factory=dict)  # driver-specific options (DriverOptions.extra)
    ring_frames: int | None = None       # None: up to RING_BYTES of frames (16384 = 0.4 s at 250x400, 40 kHz)
    status_interval_s: float | None = 1.0  # None: no status lines (the Python API default)
    print_summary: bool = True
    adapt: dict | None = None            # online adaptation (ssml_stream.train.adapt.AdaptOptions fields); None: off

    def validate(self) -> "PipelineConfig":
        if self.window_frames < 1 or self.window_frames % 2 == 0:
            raise ConfigError(f"window length must be a positive odd number of frames, got {self.window_frames}")
        if self.stride_frames is not None and self.stride_frames < 1:
            raise ConfigError(f"stride must be >= 1 spike frame, got {self.stride_frames}")
        if self.stride_frames is not None and self.fps is not None:
            raise ConfigError("give either a stride (every window on a grid) or an fps (live rate), not both")
        if self.fps is not None and not (0 < self.fps <= 10_000):
            raise ConfigError(f"fps must be in (0, 10000], got {self.fps}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.fmt not in FORMATS:
            raise ConfigError(f"frame format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if not self.gamma > 0 or not self.rate_norm > 0:
            raise ConfigError(f"gamma and rate norm must be > 0, got {self.gamma} and {self.rate_norm}")
        if self.ring_frames is not None and self.ring_frames < 2 * self.window_frames:
            raise ConfigError(f"ring of {self.ring_frames} frames is too small for {self.window_frames}-frame windows")
        check_speed(self.speed)
        check_threads(self.threads)
        self._check_memory()
        inputs = device_paths(self.device)
        if self.record_path:
            check_output_path(self.record_path, "recording", inputs=inputs)
        if self.save_path:
            check_output_path(npz_path(self.save_path), "saved-frames file", inputs=inputs, others=[self.record_path])
        return self

    def ring_size(self, frame_bytes: int) -> int:
        return self.ring_frames or max(4 * self.window_frames, min(RING_MAX_FRAMES, RING_BYTES // frame_bytes))

    def _check_memory(self) -> None:
        from .drivers.pacing import check_rate
        from .formats import FrameGeometry
        check_rate(self.rate_hz)
        n, h, w = self.window_frames, self.height, self.width
        frame_bytes = FrameGeometry(h, w, self.stored_width).frame_bytes
        # the ring, and unpacked frames: a lossless run's sliding buffer holds at least 4 windows
        check_buffer_bytes(self.ring_size(frame_bytes) * frame_bytes + 4 * n * h * w,
                           f"{n}-frame windows of {h}x{w} frames")


@dataclass
class Output:
    """One reconstructed frame: firing rate (spikes/frame) and where it sits in the spike stream."""

    frame: np.ndarray    # H x W float32
    center: int          # spike-frame index of the window centre
    first: int
    last: int
    capture_ns: int      # wall clock (time.time_ns) when spike frame `last` was captured
    seq: int = 0
    publish_ns: int = 0


def npz_path(path: str) -> str:
    """Where save_path writes: the path itself if it ends with .npz, else with .npz added (as np.savez)."""
    return path if path.endswith(".npz") else path + ".npz"


def device_paths(uri: str) -> list[str]:
    """Files a device URI reads: an output must not be one of them (opening it truncates the input)."""
    if uri == "-":
        return ["/dev/stdin"]
    for scheme in ("file:", "fifo:", "sim:"):
        if uri.startswith(scheme):
            return [uri[len(scheme):]]
    return [uri]


def check_buffer_bytes(nbytes: int, what: str) -> None:
    """Refuse before allocating anything a run whose buffers would exceed MAX_BUFFER_BYTES."""
    if nbytes > MAX_BUFFER_BYTES:
        raise ConfigError(f"{what}: {format_bytes(nbytes)} of memory needed, the limit is "
                          f"{format_bytes(MAX_BUFFER_BYTES)}")


_STOP_ITEM = object()
STATS_POLL_S = 0.25  # the sink checks for a pending status map at least this often


def _timed(times: StageTimes, stage: str, since_ns: int) -> int:
    """Add the time since `since_ns` to `stage`; return now (the start of the next stage)."""
    now = time.perf_counter_ns()
    times.add(stage, now - since_ns)
    return now


class Pipeline:
    """Build with a PipelineConfig; `run()` blocks until the source ends, `stop()` is called or the
    duration passes; `on_output` (called on the sink thread) receives every Output."""

    def __init__(self, config: PipelineConfig, on_output: Callable[[Output], None] | None = None,
                 reconstructor=None, log=None):
        from .drivers import DriverOptions, open_driver
        self.config = c = config.validate()
        self.on_output = on_output
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stop_event = threading.Event()
        self._closers: list[Callable[[], None]] = []
        self._errors: list[BaseException] = []
        self.summary: Summary | None = None
        self._threads: list[threading.Thread] = []
        self._reconstruct_thread: threading.Thread | None = None
        self._sink_thread: threading.Thread | None = None
        self._pending_stats: dict | None = None  # latest status for the sink to publish (latest wins)
        self.stage_times = StageTimes()
        self._t_start = 0.0
        self._finished = threading.Event()
        try:
            # bind first: a taken port or bad key fails at once; then the model, before a simulator
            # spends seconds pre-rendering
            self.publisher = _open_publisher(c)
            if self.publisher is not None:
                self._closers.append(self.publisher.close)
            if reconstructor is None:
                from .runtime import default_threads, load_model
                # torch gets cores - 1 threads unless told otherwise: capture keeps a core
                reconstructor = load_model(c.model, c.compute, precision=c.precision,
                                           threads=c.threads or default_threads())
            self.install_model(reconstructor)
            wf = getattr(self.rec, "window_frames", None)
            if wf and wf != c.window_frames:
                raise ConfigError(f"model {self.rec.name} takes {wf}-frame windows, not {c.window_frames}")
            self.driver = open_driver(c.device, DriverOptions(
                height=c.height, width=c.width, stored_width=c.stored_width, rate_hz=c.rate_hz, speed=c.speed,
                loop=c.loop, allow_truncated=c.allow_truncated, seed=c.seed, duration_s=c.duration_s,
                extra=dict(c.driver_extra)))
            self._closers.append(self.driver.close)
            info = self.driver.info
            self.height, self.width, self.rate_hz = info.height, info.width, info.rate_hz
            self.stored_width = info.stored_width
            self.lossless = not info.live or (c.stride_frames is not None and c.fps is None)
            self.fps = None if self.lossless else (c.fps or DEFAULT_FPS)
            target_fps = c.fps or DEFAULT_FPS
            self.stride = c.stride_frames or max(1, int(round(self.rate_hz / target_fps)))
            self.ring = Ring(info.frame_bytes, capacity=c.ring_size(info.frame_bytes), lossless=not info.live)
            self.rec_cursor = self.ring.cursor()
            self.rec_cursor_record = self.ring.cursor() if c.record_path else None
            self.record_writer = None
            if c.record_path:
                self.record_writer = open_writer(c.record_path, self.height, self.width, self.stored_width)
                self._closers.append(self.record_writer.close)
            self.saver = NpzSaver(npz_path(c.save_path), self.height, self.width) if c.save_path else None
            if self.saver:
                self._closers.append(self.saver.close)
            # a pixel gain map learnt by --adapt beside the weights (pixel_gain.py): applied to every output
            self.gain_map = gain_beside(c.model, self.height, self.width)
            if self.gain_map is not None:
                self.log(f"pixel gain map from {gain_path_for(c.model)} (spread {100 * float(self.gain_map.std()):.1f} %)")
            self.adapter = None
            if c.adapt is not None:
                from .train.adapt import Adapter  # training code is imported only when adapting
                self.adapter = Adapter.for_pipeline(self, c.adapt)
                self._closers.append(self.adapter.close)
        except BaseException:
            if getattr(self, "saver", None):
                self.saver.close(discard=True)
            self.close()
            raise
        self.sink_queue: queue.Queue = queue.Queue(maxsize=8)
        self.windows_out = 0
        self.skipped = 0
        self.frames_recorded = 0
        self.latency = LatencyStats()
        self._seq = 0

    def install_gain(self, gain: np.ndarray | None) -> None:
        """Divide every output from the next window on by this H x W map (one reference, like the model)."""
        self.gain_map = gain

    def install_model(self, rec) -> None:
        """Use `rec` from the next window on (one reference: the reconstruct loop reads it per window);
        a torch reconstructor reports its to-tensor / forward / to-numpy times into this run's stage_times."""
        if hasattr(rec, "stage_times"):
            rec.stage_times = self.stage_times
        self.rec = rec

    # ----- counters --------------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self.rec_cursor.dropped + int(getattr(self.driver, "frames_dropped", 0) or 0)

    @property
    def frames_in(self) -> int:
        return self.ring.head

    # ----- stages ----------------------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            self.driver.run(self.ring, self.stop_event)
        finally:
            self.ring.close()

    def _record(self) -> None:
        cursor, writer = self.rec_cursor_record, self.record_writer
        buf = np.empty((1024, self.ring.frame_bytes), np.uint8)
        while True:
            first, count = cursor.read(buf)
            if count:
                writer.write_packed(buf[:count])
                self.frames_recorded = writer.frames_written
            elif self.ring.closed:
                break  # closed (end of stream or stop) and everything held has been written
            else:
                cursor.wait(1, 0.05)

    def _emit(self, frame: np.ndarray, center: int, capture_ns: int) -> None:
        gain = self.gain_map
        if gain is not None:
            np.divide(frame, gain, out=frame)
        half = self.config.window_frames // 2
        out = Output(frame, center, center - half, center + half, int(capture_ns))
        while not self.stop_event.is_set():
            try:
                self.sink_queue.put(out, timeout=0.1)
                self.windows_out += 1
                return
            except queue.Full:
                continue

    def _reconstruct_lossless(self) -> None:
        c, cursor = self.config, self.rec_cursor
        windows = SlidingWindows(self.height, self.width, c.window_frames, self.stride, self.stored_width)
        chunk = np.empty((256, self.ring.frame_bytes), np.uint8)
        chunk_ns = np.empty(256, np.int64)
        lanes = self._lanes()
        try:
            self._read_lossless(cursor, windows, chunk, chunk_ns, lanes)
        finally:
            if lanes is not None:
                try:
                    lanes.finish()
                finally:
                    import torch
                    torch.set_num_threads(self._threads_before_lanes)  # no process-wide change left behind

    def _read_lossless(self, cursor, windows, chunk, chunk_ns, lanes) -> None:
        times = self.stage_times
        while not self.stop_event.is_set():
            t0 = time.perf_counter_ns()
            first, count = cursor.read(chunk, chunk_ns)
            if count == 0:
                if self.ring.closed and cursor.available == 0:
                    return
                cursor.wait(1, 0.1)
                continue
            t1 = time.perf_counter_ns()
            times.add("ring read", t1 - t0)
            for center, window in windows.feed(chunk[:count], first):
                t1 = _timed(times, "unpack", t1)   # the sliding buffer unpacks while feed() yields
                capture_ns = chunk_ns[center + windows.half - first]
                if lanes is not None:
                    lanes.submit(center, window, capture_ns)
                    t1 = _timed(times, "hand to lanes", t1)
                else:
                    frame = self.rec(window, np.empty((self.height, self.width), np.float32))
                    t1 = _timed(times, "model", t1)
                    self._emit_grid(frame, center, capture_ns)
                    t1 = _timed(times, "hand to sink", t1)
                if self.stop_event.is_set():
                    return

    def _emit_grid(self, frame: np.ndarray, center: int, capture_ns: int) -> None:
        self._emit(frame, center, capture_ns)
        # grid windows lost because a ring overrun cut them (live source only; else always 0)
        self.skipped = (center - self.config.window_frames // 2) // self.stride + 1 - self.windows_out

    def _lanes(self) -> Lanes | None:
        """Parallel lanes for a lossless replay of a file on CPU (see lanes.py), one per core, when the
        model may run on several threads and no --threads was given; else None (one window at a time)."""
        if self.driver.info.live or self.config.threads or not getattr(self.rec, "thread_safe", False) \
                or getattr(self.rec, "device", "cpu") != "cpu" or (os.cpu_count() or 1) < 2:
            return None
        import torch
        self._threads_before_lanes = torch.get_num_threads()
        torch.set_num_threads(1)  # one torch thread per lane; lanes, not threads, use the cores
        return Lanes(os.cpu_count(), lambda w: self.rec(w, np.empty((self.height, self.width), np.float32)),
                     self._emit_grid, self.stop_event, self.stage_times)

    def _reconstruct_live(self) -> None:
        c, cursor = self.config, self.rec_cursor
        n, half = c.window_frames, c.window_frames // 2
        packed = np.empty((n, self.ring.frame_bytes), np.uint8)
        packed_ns = np.empty(n, np.int64)
        window = np.zeros((n, self.height, self.width), np.uint8)
        period_s = 1.0 / self.fps
        next_t = time.perf_counter()
        first_center = None
        last_slot, slots_hit = -1, 0  # grid slots (centre0 + k*stride, rounded) that got an output
        times = self.stage_times
        while not self.stop_event.is_set():
            now = time.perf_counter()
            if now < next_t:
                self.stop_event.wait(next_t - now)
                continue
            t = time.perf_counter_ns()
            first, jumped = cursor.read_latest(n, packed, packed_ns)
            if jumped < 0:  # fewer than n new frames since the last window
                if self.ring.closed and cursor.available < n:
                    return
                cursor.wait(n, 0.1)
                continue
            next_t = max(next_t + period_s, time.perf_counter() - period_s)  # no catch-up bursts
            t = _timed(times, "ring read", t)
            unpack_into(packed, window, self.stored_width)
            t = _timed(times, "unpack", t)
            frame = self.rec(window, np.empty((self.height, self.width), np.float32))
            t = _timed(times, "model", t)
            center = first + half
            if first_center is None:
                first_center = center
            self._emit(frame, center, packed_ns[-1])
            _timed(times, "hand to sink", t)
            # grid windows (centre0 + k*stride) up to this centre that got no output; jitter of less
            # than half a stride is not a skip. Counted by slot, not by output: two outputs that round
            # to one slot (timing jitter) must not hide a later skip nor count one twice.
            slot = (center - first_center + self.stride // 2) // self.stride
            if slot > last_slot:
                last_slot, slots_hit = slot, slots_hit + 1
            self.skipped = last_slot + 1 - slots_hit

    def _reconstruct(self) -> None:
        try:
            if self.lossless:
                self._reconstruct_lossless()
            else:
                self._reconstruct_live()
        finally:
            self.sink_queue.put(_STOP_ITEM)

    def _sink(self) -> None:
        c = self.config
        model_name = getattr(self.rec, "name", str(c.model))
        times = self.stage_times
        while True:
            self._publish_pending_stats()
            try:
                item = self.sink_queue.get(timeout=STATS_POLL_S)
            except queue.Empty:
                continue
            if item is _STOP_ITEM:
                return
            item.seq = self._seq
            self._seq += 1
            t = time.perf_counter_ns()
            if self.publisher is not None:
                self.publisher.send_frame(item.frame, seq=item.seq, center=item.center, first=item.first,
                                          last=item.last, capture_ns=item.capture_ns, model=model_name,
                                          dropped=self.dropped, skipped=self.skipped)
                t = _timed(times, "publish (display scaling + send)", t)
            item.publish_ns = time.time_ns()  # latency is capture -> publish (saving comes after)
            self.latency.add((item.publish_ns - item.capture_ns) / 1e6, time.perf_counter())
            if self.saver is not None:
                self.saver.append(item)
                t = _timed(times, "save", t)
            if self.on_output is not None:
                self.on_output(item)

    def _publish_pending_stats(self) -> None:
        """Status maps are sent from the sink thread (ZeroMQ sockets are single-thread)."""
        stats, self._pending_stats = self._pending_stats, None
        if stats is not None and self.publisher is not None:
            self.publisher.send_stats(stats)

    def _guard(self, fn):
        def run():
            try:
                fn()
            except BaseException as e:  # surfaced by run(); stop the other stages
                self._errors.append(e)
                self.stop_event.set()
                self.ring.close()
        return run

    # ----- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        n = self.config.window_frames
        # load/compile the Numba kernels and warm the model before the source starts
        unpack_into(np.zeros((n, self.ring.frame_bytes), np.uint8), np.empty((n, self.height, self.width), np.uint8),
                    self.stored_width)
        self.rec.warm_up(self.height, self.width, n)
        self._t_start = time.perf_counter()
        stages = [("capture", self._capture), ("reconstruct", self._reconstruct), ("sink", self._sink)]
        if self.rec_cursor_record is not None:
            stages.append(("record", self._record))
        for name, fn in stages:
            t = threading.Thread(target=self._guard(fn), name=f"ssml-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        self._reconstruct_thread, self._sink_thread = self._threads[1], self._threads[2]
        if self.adapter is not None:
            self.adapter.start()

    def stop(self) -> None:
        """Stop every stage (safe from a signal handler): source, ring waits, model loop."""
        self.stop_event.set()
        self.ring.close()

    def run(self) -> Summary:
        """Start (if needed), print status lines, wait for the end, close everything, return the summary."""
        if not self._threads:
            self.start()
        interval = self.config.status_interval_s
        next_status = time.perf_counter() + (interval or 1.0)
        silence = SilenceWatch(self.driver.info.name, self.log) if self.driver.info.live else None
        try:
            while any(t.is_alive() for t in self._threads):
                self._reconstruct_thread.join(0.05)  # reconstruct ends on stop or end of stream
                if not self._reconstruct_thread.is_alive():
                    self._sink_thread.join(2.0)  # sink drains
                    break
                if silence is not None:
                    silence.check(self.frames_in)
                if time.perf_counter() >= next_status:
                    self._status(interval)
                    next_status += interval or 1.0
        finally:
            self.close()
        if self._errors:
            raise self._errors[0]
        return self.summary

    def _status(self, interval) -> None:
        lat, times = self.latency.recent()
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
        p50, p99 = LatencyStats.percentiles(lat)
        stats = {"t_s": round(time.perf_counter() - self._t_start, 3), "fps": round(fps, 2),
                 "latency_p50_ms": round(p50, 2), "latency_p99_ms": round(p99, 2), "frames_in": self.frames_in,
                 "dropped": self.dropped, "skipped": self.skipped, "windows_out": self.windows_out,
                 "model": getattr(self.rec, "name", "?")}
        if self.adapter is not None:
            stats.update(self.adapter.stats())
        self._pending_stats = stats
        if interval:
            self.log(f"[{stats['t_s']:6.1f} s] fps {fps:6.1f}  latency p50 {p50:6.1f} ms p99 {p99:6.1f} ms  "
                     f"dropped {stats['dropped']}  skipped {stats['skipped']}  in {stats['frames_in']}"
                     + (self.adapter.status_text(stats) if self.adapter is not None else ""))

    def close(self) -> None:
        """Stop and join the stages (bounded wait), flush --save/--record, close sockets and the driver."""
        if self._finished.is_set():
            return
        self._finished.set()
        if hasattr(self, "ring"):
            self.stop()
        deadline = time.perf_counter() + 1.5
        for t in self._threads:
            # the recorder gets longer: it writes what the ring still holds (at most ring_frames frames)
            extra_s = 5.0 if t.name == "ssml-record" else 0.0
            t.join(max(0.0, deadline + extra_s - time.perf_counter()))
        wall_s = time.perf_counter() - self._t_start if self._t_start else 0.0
        for close in self._closers:
            try:
                close()
            except Exception as e:  # keep closing the rest; report the first problem
                self._errors.append(e)
        if hasattr(self, "latency") and self._t_start:
            p50, p99 = LatencyStats.hist_percentiles(self.latency.hist)
            self.summary = Summary(
                frames_in=self.frames_in, frames_dropped=self.dropped, windows_out=self.latency.count,
                windows_skipped=self.skipped, fps=self.latency.fps(), latency_p50_ms=p50, latency_p99_ms=p99,
                wall_s=wall_s, model=getattr(self.rec, "name", "?"),
                frames_recorded=self.frames_recorded if self.config.record_path else None,
                record_dropped=self.rec_cursor_record.dropped if self.rec_cursor_record else None,
                stage_ms=self.stage_times.mean_ms())
            if self.config.print_summary:
                self.log("summary: " + self.summary.line())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open_publisher(c: PipelineConfig):
    if not c.publish:
        return None
    try:
        from .publish import Publisher
    except ImportError as e:
        raise ConfigError(f"publishing needs ssml_stream.publish, which is not available ({e}); "
                          "run without --publish") from None
    try:
        return Publisher(list(c.publish), fmt=c.fmt, rate_norm=c.rate_norm, gamma=c.gamma, curve_keys=c.curve_keys)
    except SsmlError:
        raise
    except Exception as e:  # zmq.ZMQError: address in use, bad endpoint
        raise ConfigError(f"cannot publish on {', '.join(c.publish)}: {e}") from None
