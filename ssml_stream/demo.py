"""`make demo` (`python -m ssml_stream.demo [--view]`): the live pipeline on the simulated camera.

Runs the pipeline (`ssml-stream --device sim:SCENE --model ssml-rt`, 30 fps) for ~20 s of stream time while
`ssml-view` subscribes as a separate process: headless, recording demo/out.mp4 (or, with --view, in a
window). Writes demo/contact_sheet.png (3 x 3 reconstructed frames, spike-frame centre on each) and
prints the pipeline summary (fps, latency, drops). Without shipped weights it falls back to TFP and
says so.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np

from .cli_common import cli_entry
from .display import DEFAULT_RATE_NORM
from .errors import ModelError


def contact_sheet(frames: np.ndarray, centers: np.ndarray, path: str, rows: int = 3, cols: int = 3,
                  rate_norm: float = DEFAULT_RATE_NORM) -> int:
    """Tile rows x cols evenly spaced frames (firing rate -> 8-bit via rate_norm) with their centre index."""
    import cv2
    n = min(len(frames), rows * cols)
    if n == 0:
        raise ModelError("no frames were reconstructed, nothing to put on a contact sheet")
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    h, w = frames.shape[1:]
    sheet = np.zeros((rows * h, cols * w), np.uint8)
    for k, i in enumerate(picks):
        tile = np.clip(frames[i] / rate_norm * 255.0, 0, 255).astype(np.uint8)
        cv2.putText(tile, f"t={int(centers[i])}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 255, 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    if not cv2.imwrite(path, sheet):
        raise ModelError(f"cannot write {path}")
    return n


def pick_model(requested: str) -> tuple[str, str]:
    from .runtime import load_model
    try:
        load_model(requested, "cpu")
        return requested, ""
    except ModelError as e:
        if requested not in ("ssml-rt", "ssml"):
            raise
        return "tfp", f"note: {e}; the demo uses TFP instead"


def mp4_frames(path: str) -> int:
    import cv2
    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return n


@cli_entry("ssml-demo")
def main(argv=None) -> int:
    from .pipeline import Pipeline, PipelineConfig
    p = argparse.ArgumentParser(prog="python -m ssml_stream.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--view", action="store_true", help="open the viewer window instead of recording headless")
    p.add_argument("--scene", default="shapes", help="built-in simulator scene (default shapes)")
    p.add_argument("--model", default="ssml-rt", help="model (default: the shipped ssml-rt network)")
    p.add_argument("--seconds", type=float, default=20.0, help="stream seconds (default 20)")
    p.add_argument("--out", default="demo", help="output folder (default demo/)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    model, note = pick_model(args.model)
    if note:
        print(note, file=sys.stderr)
    video = os.path.join(args.out, "out.mp4")
    sheet = os.path.join(args.out, "contact_sheet.png")
    with tempfile.TemporaryDirectory(prefix="ssml-demo-") as tmp:
        endpoint = f"ipc://{tmp}/demo.ipc"
        saved = os.path.join(tmp, "frames.npz")
        config = PipelineConfig(device=f"sim:{args.scene}", model=model, fps=30, duration_s=args.seconds,
                                publish=[endpoint], save_path=saved, status_interval_s=2.0)
        pipeline = Pipeline(config)
        viewer_cmd = [sys.executable, "-m", "ssml_stream.viewer", "--connect", endpoint]
        viewer_cmd += [] if args.view else ["--headless", "--record", video]
        viewer = subprocess.Popen(viewer_cmd)
        if args.view:  # closing the window ends the demo
            threading.Thread(target=lambda: (viewer.wait(), pipeline.stop()), daemon=True).start()
        try:
            summary = pipeline.run()
        finally:
            pipeline.close()
            viewer.terminate()  # the viewer finishes its recording on SIGTERM
            try:
                viewer.wait(15)
            except subprocess.TimeoutExpired:
                viewer.kill()
        z = np.load(saved)
        tiles = contact_sheet(z["frames"], z["center"], sheet)
    print(f"demo: model {model}, scene {args.scene}, {args.seconds:g} s")
    print(f"demo: {summary.line()}")
    print(f"demo: contact sheet ({tiles} frames) -> {sheet}")
    if args.view and viewer.returncode not in (0, None, -15):
        print(f"demo: the viewer window could not run (exit code {viewer.returncode})")
        return 1
    if not args.view:
        n = mp4_frames(video)
        print(f"demo: viewer recording -> {video} ({n} frames)" if n else
              f"demo: the viewer did not write {video} (exit code {viewer.returncode})")
        return 0 if n else 1
    return 0


if __name__ == "__main__":
    main()
