"""`ssml-view`: subscribe to an ssml-stream publisher and show the newest frame.

Each loop drains everything queued on the SUB socket (non-blocking) and keeps only the newest valid
frame, so a viewer that is slower than the stream shows fresh frames with gaps rather than building a
backlog (CONFLATE cannot be used: it breaks multipart messages). Every message is validated with
`ssml_stream.schema`; malformed ones are counted, shown in the overlay, and skipped.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import zmq

from . import schema
from .cli_common import OneLineParser, check_output_path, cli_entry, positive_float, positive_int, stop_signals
from .display import DEFAULT_RATE_NORM, DisplayScale, to_display
from .errors import ConfigError, SsmlError
from .keys import ClientKeys, load_client_keys
from .media import ContactSheet, Recorder, write_image
from .publish import DEFAULT_ENDPOINT

WINDOW_TITLE = "ssml-view"
DEFAULT_RCVHWM = 4          # small: old frames are worthless to a viewer
MAX_DRAIN_MESSAGES = 512    # bound one drain so a very fast publisher cannot starve the display
PANEL_LINE_PX = 18
PANEL_MIN_WIDTH_PX = 480
GAMMA_STEPS = (1.0, 1.5, 2.2)
GAIN_STEP = 1.25


class ViewerError(SsmlError):
    """The viewer cannot run as asked (no display, unwritable output, ...)."""


@dataclass
class ViewerConfig:
    connect: list[str] = field(default_factory=lambda: [DEFAULT_ENDPOINT])
    headless: bool = False
    record: str | None = None
    record_fps: float = 30.0
    snapshots: str | None = None
    snapshot_interval_s: float = 1.0
    contact_sheet: str | None = None
    screenshot: str | None = None
    burn_overlay: bool = False
    duration_s: float | None = None
    max_frames: int | None = None
    rate_norm: float = DEFAULT_RATE_NORM
    gain: float = 1.0
    gamma: float = 1.0
    scale: float | None = None      # display zoom; None = automatic
    rcvhwm: int = DEFAULT_RCVHWM
    curve_keys: str | None = None   # key folder (ssml_stream.keys) for an encrypted publisher


# ---------------------------------------------------------------- receiving

class Subscriber:
    """SUB socket that drains its queue and returns the newest valid frame, counting everything else."""

    def __init__(self, endpoints: list[str], rcvhwm: int = DEFAULT_RCVHWM, curve: ClientKeys | None = None):
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        # ZeroMQ drops a peer that sends a part larger than the biggest valid frame (bounded memory)
        self._sock.setsockopt(zmq.MAXMSGSIZE, schema.MAX_DIM * schema.MAX_DIM * 4 + schema.MAX_HEADER_BYTES)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        if curve is not None:
            self._sock.curve_secretkey = curve.secret
            self._sock.curve_publickey = curve.public
            self._sock.curve_serverkey = curve.server_public
        try:
            for endpoint in endpoints:
                self._sock.connect(endpoint)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigError(f"cannot connect to {endpoint!r} ({zmq.strerror(e.errno)}); "
                              "use tcp://HOST:PORT or ipc:///PATH") from None
        self.received = 0        # messages of any kind
        self.frames = 0          # valid frame messages
        self.superseded = 0      # valid frames replaced by a newer one in the same drain (not shown)
        self.gaps = 0            # frames missed in transport, from seq
        self.restarts = 0        # seq went backwards: publisher restarted
        self.malformed = 0
        self.stats = 0
        self.last_stats: dict = {}
        self.last_error = ""
        self._last_seq: int | None = None

    def wait(self, timeout_ms: int) -> bool:
        """True when a message is ready within timeout_ms."""
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    def drain(self) -> schema.Frame | None:
        newest = None
        for _ in range(MAX_DRAIN_MESSAGES):
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.received += 1
            try:
                msg = schema.decode(parts)
            except schema.SchemaError as e:
                self.malformed += 1
                self.last_error = str(e)
                continue
            if isinstance(msg, schema.Stats):
                self.stats += 1
                self.last_stats = msg.values
                continue
            self._count_seq(msg.header.seq)
            self.frames += 1
            if newest is not None:
                self.superseded += 1
            newest = msg
        return newest

    def _count_seq(self, seq: int) -> None:
        if self._last_seq is not None:
            if seq > self._last_seq + 1:
                self.gaps += seq - self._last_seq - 1
            elif seq <= self._last_seq:
                self.restarts += 1
        self._last_seq = seq

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


# ---------------------------------------------------------------- measuring

class RateMeter:
    """Frames per second over the last `window_s` seconds."""

    def __init__(self, window_s: float = 1.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now_s: float) -> None:
        self._times.append(now_s)
        while self._times and now_s - self._times[0] > self.window_s:
            self._times.popleft()

    def fps(self, now_s: float) -> float:
        if len(self._times) < 2 or now_s - self._times[-1] > self.window_s:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


# ---------------------------------------------------------------- drawing and writing

def display_zoom(shape: tuple[int, int], requested: float | None) -> float:
    """Automatic zoom: small frames are enlarged (integer factor), very large ones reduced to fit ~1000 px."""
    if requested is not None:
        return requested
    h, w = shape
    if max(h, w) > 1000:
        return 1000 / max(h, w)
    return float(max(1, min(4, PANEL_MIN_WIDTH_PX // max(w, 1), 500 // max(h, 1))))


def zoom_image(image: np.ndarray, zoom: float) -> np.ndarray:
    if zoom == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if zoom > 1 else cv2.INTER_AREA)


def compose(image_u1: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """BGR canvas: the (zoomed) image at the top left, a text panel below it (the image is not covered)."""
    h, w = image_u1.shape
    width = max(w, PANEL_MIN_WIDTH_PX)
    canvas = np.zeros((h + PANEL_LINE_PX * len(lines) + 6, width, 3), np.uint8)
    canvas[:h, :w] = image_u1[:, :, None]
    for i, (text, color) in enumerate(lines):
        y = h + PANEL_LINE_PX * (i + 1)
        cv2.putText(canvas, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return canvas


WHITE, GREY, YELLOW, RED = (235, 235, 235), (150, 150, 150), (0, 220, 255), (60, 60, 255)


def adapt_line(stats: dict) -> str | None:
    """Panel text for the online-adaptation counters of a stats map (docs/formats.md#stats-message);
    None when the stream does not adapt. The map comes from the network: what is not a number shows as -."""
    if "adapt_steps" not in stats:
        return None

    def shown(key: str, spec: str = "") -> str:
        value = stats.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return format(value, spec) if number else "-"

    since = shown("adapt_since_swap_s", ".0f")   # not a number before the first swap
    return (f"adapt steps {shown('adapt_steps')}  loss {shown('adapt_loss', '.2e')}  swaps {shown('adapt_swaps')}"
            + (f" (last {since} s ago)" if since != "-" else "") + f"  poisoned {shown('adapt_poisoned')}"
            + (f"  pixel gain ±{100 * stats['adapt_gain_std']:.1f} %" if shown("adapt_gain_std") != "-" else ""))


# ---------------------------------------------------------------- the viewer

class Viewer:
    def __init__(self, config: ViewerConfig):
        self.cfg = config
        self.gain, self.gamma = config.gain, config.gamma
        self.paused = False
        self.stop_reason = ""
        self.shown = 0
        self.latencies_ms: list[float] = []
        self.meter = RateMeter()
        self.canvas: np.ndarray | None = None
        self.frame: schema.Frame | None = None         # newest shown frame as received
        self.current: np.ndarray | None = None        # its display-scaled u1 image
        self._drawn_s = -math.inf                     # when the window was last redrawn
        self._dirty = True                            # something changed since then
        self._window_opened_s = -math.inf
        self.header: schema.FrameHeader | None = None
        # every output checked before anything runs (the screenshot and contact sheet are written at exit)
        named = [(what, path) for what, path in (("recording", config.record), ("screenshot", config.screenshot),
                                                 ("contact sheet", config.contact_sheet)) if path]
        for i, (what, path) in enumerate(named):
            check_output_path(path, what, others=[p for _, p in named[:i]])
        if config.snapshots:
            check_output_path(config.snapshots, "snapshot folder", folder=True)
            Path(config.snapshots).mkdir(exist_ok=True)
        self.recorder: Recorder | None = Recorder(config.record, config.record_fps) if config.record else None
        self.sheet = ContactSheet() if config.contact_sheet else None
        self._last_snapshot_s = -math.inf
        self._last_frame_s: float | None = None
        curve = load_client_keys(config.curve_keys) if config.curve_keys else None
        self.sub = Subscriber(config.connect, config.rcvhwm, curve)

    # ----- per frame
    def _scale(self) -> DisplayScale:
        return DisplayScale(rate_norm=self.cfg.rate_norm, gamma=self.gamma, gain=self.gain)

    def show(self, frame: schema.Frame, now_s: float) -> None:
        self.frame, self.header, self._dirty = frame, frame.header, True
        self.current = to_display(frame.image, self._scale())
        self.shown += 1
        self._last_frame_s = now_s
        self.meter.tick(now_s)
        latency_ms = (time.time_ns() - frame.header.capture_ns) / 1e6
        # beyond an hour either way the clocks disagree or capture_ns is bogus (any int64 decodes): not a latency
        if abs(latency_ms) <= 3_600_000 and len(self.latencies_ms) < 1_000_000:
            self.latencies_ms.append(latency_ms)
        if self.sheet is not None:
            self.sheet.offer(self.current)
        if self.recorder is not None:
            self.recorder.write(self._output_image(now_s))
        if self.cfg.headless and self.cfg.snapshots and now_s - self._last_snapshot_s >= self.cfg.snapshot_interval_s:
            self.snapshot(now_s)

    def _output_image(self, now_s: float) -> np.ndarray:
        """What recordings and snapshots get: the clean frame, or the full canvas with --burn-overlay."""
        return self.render(now_s) if self.cfg.burn_overlay else self.current

    def overlay_lines(self, now_s: float) -> list[tuple[str, tuple[int, int, int]]]:
        h, s = self.header, self.sub
        recent = self.latencies_ms[-30:]
        latency = f"{float(np.median(recent)):.0f} ms" if recent else "-"
        state = " PAUSED" if self.paused else ""
        state += " REC" if self.recorder is not None and not self.cfg.headless else ""
        lines = [(f"fps {self.meter.fps(now_s):.1f}  latency {latency}  model {h.model}  seq {h.seq}{state}", WHITE),
                 (f"gaps {s.gaps}  dropped {h.dropped}  skipped {h.skipped}  malformed {s.malformed}",
                  RED if s.malformed else WHITE),
                 (f"{h.shape[1]}x{h.shape[0]} {h.dtype}  gain {self.gain:.2f}  gamma {self.gamma:.1f}", WHITE)]
        adapting = adapt_line(s.last_stats)
        if adapting:   # from the first stats map of an adapting stream on
            lines.append((adapting, WHITE))
        if self._last_frame_s is not None and now_s - self._last_frame_s > 2.0:
            lines.append((f"no frames for {now_s - self._last_frame_s:.0f} s", YELLOW))
        else:   # a fixed number of lines, so the window keeps its size
            lines.append(("q quit  space pause  s snapshot  +/- gain  g gamma  r record", GREY))
        return lines

    def render(self, now_s: float) -> np.ndarray:
        image = zoom_image(self.current, display_zoom(self.current.shape, self.cfg.scale))
        self.canvas = compose(image, self.overlay_lines(now_s))
        return self.canvas

    def render_waiting(self) -> np.ndarray:
        self.canvas = compose(np.zeros((120, PANEL_MIN_WIDTH_PX), np.uint8),
                              [(f"waiting for a publisher on {', '.join(self.cfg.connect)}", YELLOW)])
        return self.canvas

    # ----- actions
    def snapshot(self, now_s: float) -> str | None:
        if self.current is None:
            return None
        path = Path(self.cfg.snapshots or ".") / f"ssml-view-{self.header.seq:08d}.png"
        write_image(path, self._output_image(now_s), "snapshot")
        self._last_snapshot_s = now_s
        return str(path)

    def toggle_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            print(f"ssml-view: recorded {self.recorder.frames} frames to {self.recorder.path}", file=sys.stderr)
            self.recorder = None
        else:
            # never overwrite an earlier recording of this session: later ones get a time stamp
            stem = Path(self.cfg.record).with_suffix("") if self.cfg.record else Path("ssml-view")
            path = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
            self.recorder = Recorder(path, self.cfg.record_fps)
            print(f"ssml-view: recording to {path}", file=sys.stderr)

    def handle_key(self, key: int, now_s: float) -> None:
        self._dirty = True
        if key in (ord("q"), 27):
            self.stop_reason = "key"
        elif key == ord(" "):
            self.paused = not self.paused
        elif key == ord("s"):
            path = self.snapshot(now_s)
            if path:
                print(f"ssml-view: wrote {path}", file=sys.stderr)
        elif key in (ord("+"), ord("=")):
            self.gain *= GAIN_STEP
        elif key in (ord("-"), ord("_")):
            self.gain /= GAIN_STEP
        elif key == ord("g"):
            nxt = [g for g in GAMMA_STEPS if g > self.gamma + 1e-6]
            self.gamma = nxt[0] if nxt else GAMMA_STEPS[0]
        elif key == ord("r"):
            self.toggle_recording()
        if key in (ord("+"), ord("="), ord("-"), ord("_"), ord("g")) and self.frame is not None:
            self.current = to_display(self.frame.image, self._scale())   # visible at once, also when paused

    # ----- loop
    def run(self) -> int:
        cfg = self.cfg
        window = None if cfg.headless else _open_window()
        start_s = self._window_opened_s = time.monotonic()
        told_waiting = False
        try:
            while not self.stop_reason:
                now_s = time.monotonic()
                if cfg.duration_s is not None and now_s - start_s >= cfg.duration_s:
                    self.stop_reason = "duration"
                    break
                ready = self.sub.wait(10 if window else 100)
                frame = self.sub.drain() if ready else None   # drained even while paused: no backlog
                now_s = time.monotonic()
                if frame is not None and not self.paused:
                    if told_waiting and self.shown == 0:
                        print(f"ssml-view: receiving {frame.header.shape[1]}x{frame.header.shape[0]} "
                              f"{frame.header.dtype} frames, model {frame.header.model}", file=sys.stderr)
                    self.show(frame, now_s)
                    if cfg.max_frames is not None and self.shown >= cfg.max_frames:
                        self.stop_reason = "max-frames"
                if self.shown == 0 and not told_waiting and now_s - start_s > 0.5:
                    print(f"ssml-view: waiting for a publisher on {', '.join(cfg.connect)} ...", file=sys.stderr)
                    told_waiting = True
                if window:
                    self._update_window(now_s)
        finally:
            self._finish(window, time.monotonic() - start_s)
        return 0 if self.shown or self.stop_reason in ("key", "signal") else 1

    def _update_window(self, now_s: float) -> None:
        # Redraw on news, every 0.25 s (the overlay's fps/stall text ages), and on every loop for the
        # first 2 s: under Xvfb without a window manager that made Qt's unpainted-window failure rarer
        # (1 start in 11 instead of 4 in 12 in the same conditions).
        if self._dirty or now_s - self._drawn_s >= 0.25 or now_s - self._window_opened_s < 2.0:
            canvas = self.render(now_s) if self.current is not None else self.render_waiting()
            cv2.imshow(WINDOW_TITLE, canvas)
            self._drawn_s, self._dirty = now_s, False
        key = cv2.waitKey(1)
        if key != -1:
            self.handle_key(key & 0xFF, now_s)
        if cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_reason = "window closed"

    def _finish(self, window: bool | None, elapsed_s: float) -> None:
        cfg = self.cfg
        if cfg.screenshot:
            canvas = self.canvas
            if canvas is None and self.current is not None:
                canvas = self.render(time.monotonic())
            if canvas is not None:
                write_image(cfg.screenshot, canvas, "screenshot")
        visible = None
        if window:
            visible = cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) >= 1
            cv2.destroyAllWindows()
            cv2.waitKey(1)
        if self.recorder is not None:
            self.recorder.close()
        if self.sheet is not None:
            self.sheet.write(cfg.contact_sheet)
        self.sub.close()
        print(self.summary(elapsed_s, visible))

    def summary(self, elapsed_s: float, window_visible: bool | None = None) -> str:
        s = self.sub
        lat = np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else None
        parts = [f"ssml-view: shown {self.shown} frames in {elapsed_s:.1f} s ({self.shown / max(elapsed_s, 1e-9):.1f} fps)",
                 f"received {s.frames}", f"superseded {s.superseded}", f"gaps {s.gaps}",
                 f"malformed {s.malformed}", f"stats {s.stats}"]
        if lat is not None:
            parts.append(f"latency p50 {lat[0]:.1f} ms p99 {lat[1]:.1f} ms")
        if self.header is not None:
            parts.append(f"dropped {self.header.dropped} skipped {self.header.skipped}")
        if self.recorder is not None:
            parts.append(f"recorded {self.recorder.frames} to {self.recorder.path}")
        if window_visible is not None:
            parts.append(f"window {'visible' if window_visible else 'not visible'}")
        if self.shown == 0:
            parts.append(f"no frames from {', '.join(self.cfg.connect)}")
        return ", ".join(parts)


def check_display() -> None:
    """Refuse early when there is no display: Qt would abort the whole process instead."""
    if sys.platform.startswith("linux"):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise ViewerError("no display (DISPLAY is not set); use --headless --record out.mp4 or --snapshots DIR")
        if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
        os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")


def _open_window() -> bool:
    flags = cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL
    try:
        if os.environ.get("QT_QPA_PLATFORM", "").startswith("xcb"):
            # Qt (opencv-python 5) on an X server without a window manager (e.g. Xvfb) sometimes misses
            # the MapNotify of the first window it maps and then never paints it (about 1 start in 4
            # here). A short-lived first window absorbs most of that for bare OpenCV (0 in 32 starts);
            # the viewer still failed 4 starts in 12 until it also redrew early (1 in 11, _update_window).
            cv2.namedWindow(WINDOW_TITLE + " starting", flags)
            cv2.imshow(WINDOW_TITLE + " starting", np.zeros((1, 1), np.uint8))
            cv2.waitKey(100)
            cv2.destroyWindow(WINDOW_TITLE + " starting")
            cv2.waitKey(50)
        cv2.namedWindow(WINDOW_TITLE, flags)
    except cv2.error as e:
        raise ViewerError(f"cannot open a window ({str(e).strip().splitlines()[-1]}); use --headless") from None
    return True


# ---------------------------------------------------------------- as a child process

class ViewerProcess:
    """`ssml-view --connect ENDPOINT ARGS...` as a child process (its own GIL and event loop); `on_exit`
    runs on a helper thread when it exits, e.g. to stop the stream when its window is closed."""

    def __init__(self, endpoint: str, *args: str, on_exit: Callable[[], None] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "ssml_stream.viewer", "--connect", endpoint, *args])
        if on_exit is not None:
            threading.Thread(target=lambda: (self.proc.wait(), on_exit()), daemon=True).start()

    def stop(self, wait_s: float) -> int:
        """SIGTERM (the viewer then writes out its recording, screenshot and contact sheet), SIGKILL
        after `wait_s`; returns the exit code (negative: the signal that ended it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


# ---------------------------------------------------------------- command line

EXAMPLES = """examples:
  ssml-view                                     # window on the default publisher tcp://127.0.0.1:5555
  ssml-view --connect ipc:///tmp/ssml.ipc --gamma 1.5
  ssml-view --headless --record out.mp4 --duration 20
  ssml-view --headless --snapshots shots/ --max-frames 100
keys: q/Esc quit, space pause, s snapshot PNG, +/- gain, g gamma, r start/stop recording
"""


def build_parser() -> argparse.ArgumentParser:
    """Every option's dest is the ViewerConfig field it sets."""
    p = OneLineParser(prog="ssml-view", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                      description="Subscribe to an ssml-stream publisher and show the newest frame.")
    p.add_argument("--connect", action="append", metavar="ENDPOINT",
                   help=f"publisher endpoint (repeatable; default {DEFAULT_ENDPOINT})")
    p.add_argument("--headless", action="store_true", help="no window (use with --record / --snapshots)")
    p.add_argument("--record", metavar="OUT.mp4", help="record shown frames to an mp4 (mp4v); r toggles in a window")
    p.add_argument("--record-fps", type=positive_float, default=30.0, metavar="FPS",
                   help="playback rate of the recording (default 30)")
    p.add_argument("--snapshots", metavar="DIR", help="PNG folder: s key in a window, every --snapshot-interval headless")
    p.add_argument("--snapshot-interval", dest="snapshot_interval_s", type=positive_float, default=1.0, metavar="S",
                   help="headless snapshot period (s)")
    p.add_argument("--contact-sheet", metavar="PNG", help="at exit, tile 12 evenly spaced shown frames into one PNG")
    p.add_argument("--screenshot", metavar="PNG", help="at exit, write exactly the last image drawn (with overlay)")
    p.add_argument("--burn-overlay", action="store_true", help="draw the overlay into recordings and snapshots")
    p.add_argument("--duration", dest="duration_s", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after showing N frames")
    p.add_argument("--rate-norm", type=positive_float, default=DEFAULT_RATE_NORM, metavar="RATE",
                   help="firing rate shown as white (f4/f2)")
    p.add_argument("--gain", type=positive_float, default=1.0, help="display gain (+/- keys)")
    p.add_argument("--gamma", type=positive_float, default=1.0, help="display gamma, >1 brightens darks (g key)")
    p.add_argument("--scale", type=positive_float, help="window zoom (default: automatic)")
    p.add_argument("--curve-keys", metavar="DIR", help="CURVE key folder from ssml-keys (encrypted publisher)")
    return p


def config_from_args(args: argparse.Namespace) -> ViewerConfig:
    """The one place parsed arguments become a ViewerConfig (values are checked by the parser's types)."""
    cfg = ViewerConfig(**{**vars(args), "connect": args.connect or [DEFAULT_ENDPOINT]})
    if cfg.headless and not (cfg.record or cfg.snapshots or cfg.contact_sheet or cfg.screenshot
                             or cfg.duration_s or cfg.max_frames):
        raise ConfigError("--headless shows nothing: add --record OUT.mp4, --snapshots DIR, --duration or --max-frames")
    return cfg


@cli_entry("ssml-view")
def main(argv=None) -> int:
    cfg = config_from_args(build_parser().parse_args(argv))
    if not cfg.headless:
        check_display()
    viewer = Viewer(cfg)

    def stop(_signum, _frame):
        viewer.stop_reason = "signal"  # the loop ends, then the recording and sheet are written out

    with stop_signals(stop):
        return viewer.run()


if __name__ == "__main__":
    main()
