"""`ssml-bench pipeline`: the live pipeline end to end on the simulated camera (issue 4 targets).

Each row runs `--device sim` (40 kHz, 250 x 400, paced in real time) for `--seconds` through the
real pipeline (capture thread -> ring -> newest-window scheduler -> model -> ZeroMQ publisher on an
ipc:// endpoint) and reports spike frames dropped at ingest, reconstructed fps, windows skipped and
latency (capture of the window's last spike frame -> publish) p50/p99.

Rows: the rt NBSN at the live default (30 fps target) and TFP flat out (target 1000 fps), each with no
subscribers and with four subscriber processes (three draining and validating every message, one
connected but never reading). The subscriber ratio is fps(4 subscribers) / fps(none) in the same run.
The rt model is the shipped `ssml` weights when present, otherwise the untrained rt architecture
(same cost per frame); the JSON says which.

Targets: rt 0 dropped, >= 30 fps, p99 <= 100 ms; TFP >= 200 fps; subscriber ratio >= 0.95.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from ..errors import ConfigError

SUBSCRIBER = r"""
import sys, zmq
from ssml_stream import schema
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b""); s.setsockopt(zmq.RCVHWM, 4)
s.connect(sys.argv[1])
if sys.argv[2] == "stuck":
    import time
    while True: time.sleep(1)
n = 0
while True:
    schema.decode(s.recv_multipart(copy=False)); n += 1
"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ssml-bench pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  ssml-bench pipeline\n  ssml-bench pipeline --seconds 20 --rows rt-0 tfp-0\n"
                                       "  ssml-bench pipeline --model /path/model.pt --json out/pipeline.json")
    p.add_argument("--seconds", type=float, default=60.0, help="stream seconds per row (default 60)")
    p.add_argument("--device", default="sim", help="live source (default sim)")
    p.add_argument("--model", default=None, help="rt rows: model name/path (default: ssml, else untrained rt)")
    p.add_argument("--rows", nargs="+", default=["rt-0", "rt-4", "tfp-0", "tfp-4"],
                   choices=["rt-0", "rt-4", "tfp-0", "tfp-4"], help="MODEL-SUBSCRIBERS rows to run")
    p.add_argument("--rt-fps", type=float, default=30.0, help="target fps of the rt rows (default 30)")
    p.add_argument("--tfp-fps", type=float, default=1000.0, help="target fps of the TFP rows (default 1000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores - 1)")
    p.add_argument("--json", default="bench_results/pipeline.json")
    args = p.parse_args(argv)
    if not args.seconds > 0 or not args.rt_fps > 0 or not args.tfp_fps > 0:
        raise ConfigError("--seconds, --rt-fps and --tfp-fps must be > 0")
    return args


def rt_reconstructor(model: str | None, threads: int | None):
    from ..errors import ModelError
    from ..runtime import RuntimeOptions, TorchReconstructor, load_model
    if model:
        return load_model(model, "auto", threads=threads), model
    try:
        return load_model("ssml", "auto", threads=threads), "ssml (shipped rt weights)"
    except ModelError:
        import torch

        from .. import models
        torch.manual_seed(0)
        net = models.build_model("rt")
        return TorchReconstructor(net, "rt-untrained", RuntimeOptions(threads=threads)), "rt architecture, untrained"


def start_subscribers(endpoint: str, count: int) -> list[subprocess.Popen]:
    kinds = ["stuck"] + ["drain"] * (count - 1) if count else []
    return [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, endpoint, k]) for k in kinds]


def run_row(args, model_label: str, rec, fps: float, subscribers: int, endpoint: str) -> dict:
    from ..pipeline import Pipeline, PipelineConfig
    cfg = PipelineConfig(device=args.device, model=rec.name, fps=fps, duration_s=args.seconds, publish=[endpoint],
                         status_interval_s=None, print_summary=False)
    pipeline = Pipeline(cfg, reconstructor=rec)
    subs = start_subscribers(endpoint, subscribers)
    try:
        time.sleep(1.0 if subs else 0.0)  # subscriber processes start and connect
        s = pipeline.run()
    finally:
        for proc in subs:
            proc.kill()
            proc.wait()
    return {"model": model_label, "subscribers": subscribers, "target_fps": fps, "seconds": args.seconds,
            "frames_in": s.frames_in, "dropped": s.frames_dropped, "windows_out": s.windows_out,
            "skipped": s.windows_skipped, "fps": round(s.fps, 2), "latency_p50_ms": round(s.latency_p50_ms, 2),
            "latency_p99_ms": round(s.latency_p99_ms, 2)}


def main(argv=None) -> int:
    from .report import report
    args = parse_args(argv)
    rows, notes = [], {}
    with tempfile.TemporaryDirectory(prefix="ssml-bench-") as tmp:
        endpoint = f"ipc://{tmp}/pipeline.ipc"
        rt = None
        for row in args.rows:
            kind, subs = row.split("-")
            if kind == "rt":
                if rt is None:
                    rt, notes["rt_model"] = rt_reconstructor(args.model, args.threads)
                rec, fps, label = rt, args.rt_fps, rt.name
            else:
                from ..runtime import load_model
                rec, fps, label = load_model("tfp"), args.tfp_fps, "tfp"
            print(f"running {row}: {label}, {subs} subscribers, {args.seconds:g} s ...", file=sys.stderr, flush=True)
            rows.append(run_row(args, label, rec, fps, int(subs), endpoint))
    by = {(r["model"], r["subscribers"]): r for r in rows}
    checks = {}
    for r in rows:
        if r["subscribers"] == 4 and (r["model"], 0) in by and by[(r["model"], 0)]["fps"] > 0:
            ratio = r["fps"] / by[(r["model"], 0)]["fps"]
            checks[f"{r['model']} fps ratio 4 subscribers / none"] = (round(ratio, 3), ratio >= 0.95)
        if r["model"] == "tfp" and r["subscribers"] == 0:
            checks["tfp fps >= 200"] = (r["fps"], r["fps"] >= 200)
        if r["model"] != "tfp" and r["subscribers"] == 0:
            checks["rt dropped == 0"] = (r["dropped"], r["dropped"] == 0)
            # at a 30 fps target the scheduler can at best deliver 30.0; allow 1 % for timer granularity
            checks["rt fps >= 30"] = (r["fps"], r["fps"] >= 29.7)
            checks["rt latency p99 <= 100 ms"] = (r["latency_p99_ms"], r["latency_p99_ms"] <= 100)
    report("pipeline", rows, args.json, extra={"notes": notes, "load_average": os.getloadavg(),
                                               "checks": {k: {"value": v, "ok": ok} for k, (v, ok) in checks.items()}})
    for name, (value, ok) in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}: {value}")
    print(f"rt model: {notes.get('rt_model', '-')}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(other processes share the CPU: timings are noisy)")
    return 0
