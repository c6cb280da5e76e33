"""`ss.stream(...)`: reconstructed frames as a Python generator, from any source (the notebook API over
`pipeline.Pipeline`). The pipeline runs on its own thread; outputs come through a small queue, and
closing the generator (or leaving the loop) stops the pipeline."""
from __future__ import annotations

import queue
import threading
from typing import Iterator

from .pipeline import DEFAULT_FPS, Output, Pipeline, PipelineConfig


def stream(device: str = "sim", model: str = "ssml-rt", fps: float | None = DEFAULT_FPS,
           duration: float | None = None, *, stride: int | None = None, window: int = 41,
           speed: float | None = 1.0, publish: list[str] | None = None, compute: str = "auto",
           max_queued: int = 4, **options) -> Iterator[Output]:
    """Yield reconstructed frames (Output: .frame, .center, .first, .last, .capture_ns) from a source.

    Live (default): the newest window at `fps`; a consumer slower than that causes skipped windows,
    never a slowed source. `stride=N` (and fps=None) gives every N-th window, nothing skipped.
    Extra keyword options are PipelineConfig fields (e.g. height, width, save_path).
    """
    if stride is not None:
        fps = None
    outputs: queue.Queue = queue.Queue(maxsize=max_queued)
    config = PipelineConfig(device=device, model=model, fps=fps, stride_frames=stride, duration_s=duration,
                            window_frames=window, speed=speed, publish=list(publish or []), compute=compute,
                            status_interval_s=None, print_summary=False, **options)
    done = object()

    def hand_over(out: Output) -> None:
        while not pipeline.stop_event.is_set():  # `pipeline` is bound below, before any output
            try:
                outputs.put(out, timeout=0.1)
                return
            except queue.Full:
                continue

    pipeline = Pipeline(config, on_output=hand_over)
    runner_error: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as e:
            runner_error.append(e)
        finally:
            outputs.put(done)

    runner = threading.Thread(target=run, name="ssml-stream", daemon=True)
    runner.start()
    try:
        while True:
            item = outputs.get()
            if item is done:
                break
            yield item
    finally:
        pipeline.stop()
        while runner.is_alive():  # unblock a sink waiting on a full queue
            try:
                outputs.get(timeout=0.05)
            except queue.Empty:
                pass
        runner.join()
    if runner_error:
        raise runner_error[0]
