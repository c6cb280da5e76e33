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
import signal
import sys
import tempfile

import numpy as np

from .cli_common import OneLineParser, cli_entry, positive_float
from .display import rate_to_u1
from .errors import ModelError
from .media import evenly_spaced, video_frames, write_contact_sheet
from .viewer import ViewerProcess


def pick_model(requested: str) -> tuple[str, str]:
    from .runtime import load_model
    try:
        load_model(requested, "cpu")
        return requested, ""
    except ModelError as e:
        if requested not in ("ssml-rt", "ssml"):
            raise
        return "tfp", f"note: {e}; the demo uses TFP instead"


@cli_entry("ssml-demo")
def main(argv=None) -> int:
    from .pipeline import Pipeline, PipelineConfig
    p = OneLineParser(prog="python -m ssml_stream.demo", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--view", action="store_true", help="open the viewer window instead of recording headless")
    p.add_argument("--scene", default="shapes", help="built-in simulator scene (default shapes)")
    p.add_argument("--model", default="ssml-rt", help="model (default: the shipped ssml-rt network)")
    p.add_argument("--seconds", type=positive_float, default=20.0, help="stream seconds (default 20)")
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
        viewer = (ViewerProcess(endpoint, on_exit=pipeline.stop) if args.view   # closing the window ends the demo
                  else ViewerProcess(endpoint, "--headless", "--record", video))
        try:
            summary = pipeline.run()
        finally:
            pipeline.close()
            viewer_code = viewer.stop(wait_s=15)  # the viewer finishes its recording on SIGTERM
        z = np.load(saved)
        if len(z["center"]) == 0:
            raise ModelError("no frames were reconstructed, nothing to put on a contact sheet")
        picks = evenly_spaced(len(z["center"]), 9)   # 3 x 3, shown as the viewer shows them
        write_contact_sheet(sheet, [rate_to_u1(z["frames"][i]) for i in picks], 3,
                            [f"t={z['center'][i]}" for i in picks])
    print(f"demo: model {model}, scene {args.scene}, {args.seconds:g} s")
    print(f"demo: {summary.line()}")
    print(f"demo: contact sheet ({len(picks)} frames) -> {sheet}")
    if args.view and viewer_code not in (0, -signal.SIGTERM):
        print(f"demo: the viewer window could not run (exit code {viewer_code})")
        return 1
    if not args.view:
        n = video_frames(video)
        print(f"demo: viewer recording -> {video} ({n} frames)" if n else
              f"demo: the viewer did not write {video} (exit code {viewer_code})")
        return 0 if n else 1
    return 0


if __name__ == "__main__":
    main()
