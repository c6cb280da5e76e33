"""`ssml-bench pipeline`: the live pipeline end to end on the simulated camera, against its targets.

Each row runs `--device sim` (40 kHz, 250 x 400, paced in real time) for `--seconds` through the
real pipeline (capture thread -> ring -> newest-window scheduler -> model -> ZeroMQ publisher on an
ipc:// endpoint) and reports spike frames dropped at ingest, reconstructed fps, windows skipped and
latency (capture of the window's last spike frame -> publish) p50/p99, and the mean time per call of
each stage (ring read, unpack, model: to tensor / forward / to numpy, hand to sink, publish).

Rows: the rt NBSN asked for 60 fps (`--rt-fps`) and TFP flat out (target 1000 fps), each with no
subscribers and with four subscriber processes (three draining and validating every message, one
connected but never reading). The subscriber ratio is fps(4 subscribers) / fps(none) in the same run;
rows are run in interleaved segments (`--segments`, default 3) so that load changes on a shared machine
hit all rows alike.
The rt model is the shipped `ssml-rt` weights when present, otherwise the untrained rt architecture
(same cost per frame); the JSON says which.

Targets: rt 0 dropped, >= 55 fps, p99 <= 50 ms; TFP >= 200 fps; subscriber ratio >= 0.95.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time

from ..cli_common import positive_float, positive_int
from ..errors import ConfigError
from .args import add_threads, bench_parser

RT_TARGET_FPS = 60.0  # the live target on two cores: >= 55 fps delivered, p99 <= 50 ms, 0 dropped
SETTLE_S = 1.0  # pause before each segment (same for every row: start-up work settles, subscribers connect)

SUBSCRIBER = r"""
import sys, zmq
from ssml_stream import schema
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b""); s.setsockopt(zmq.RCVHWM, 4)
s.connect(sys.argv[1])
print("ready", flush=True)
if sys.argv[2] == "stuck":
    import time
    while True: time.sleep(1)
n = 0
while True:
    schema.decode(s.recv_multipart(copy=False)); n += 1
"""


def parse_args(argv):
    p = bench_parser("pipeline", __doc__, "ssml-bench pipeline", "ssml-bench pipeline --seconds 20 --rows rt-0 tfp-0",
                     "ssml-bench pipeline --model /path/model.pt --json out/pipeline.json")
    p.add_argument("--seconds", type=positive_float, default=60.0, help="stream seconds per row (default 60)")
    p.add_argument("--device", default="sim", help="live source (default sim)")
    p.add_argument("--model", default=None, help="rt rows: model name/path (default: ssml-rt, else untrained rt)")
    p.add_argument("--rows", nargs="+", default=["rt-0", "rt-4", "tfp-0", "tfp-4"],
                   choices=["rt-0", "rt-4", "tfp-0", "tfp-4"], help="MODEL-SUBSCRIBERS rows to run")
    p.add_argument("--rt-fps", type=positive_float, default=RT_TARGET_FPS,
                   help=f"target fps of the rt rows (default {RT_TARGET_FPS:g})")
    p.add_argument("--tfp-fps", type=positive_float, default=1000.0, help="target fps of the TFP rows (default 1000)")
    p.add_argument("--segments", type=positive_int, default=3,
                   help="split each row into this many segments, interleaved with the other rows (default 3)")
    add_threads(p, "cores - 1")
    return p.parse_args(argv)


def rt_reconstructor(model: str | None, threads: int | None):
    from ..errors import ModelError
    from ..runtime import RuntimeOptions, TorchReconstructor, load_model
    if model:
        return load_model(model, "auto", threads=threads), model
    try:
        return load_model("ssml-rt", "auto", threads=threads), "ssml-rt (shipped weights)"
    except ModelError:
        import torch

        from .. import models
        torch.manual_seed(0)
        net = models.build_model("rt")
        return TorchReconstructor(net, "rt-untrained", RuntimeOptions(threads=threads)), "rt architecture, untrained"


def start_subscribers(endpoint: str, count: int, timeout_s: float = 30.0) -> list[subprocess.Popen]:
    """Start `count` subscriber processes (the first never reads) and wait until each has connected."""
    kinds = ["stuck"] + ["drain"] * (count - 1) if count else []
    procs = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, endpoint, k], stdout=subprocess.PIPE, text=True)
             for k in kinds]
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready or proc.stdout.readline().strip() != "ready":
            for q in procs:
                q.kill()
            raise ConfigError("a benchmark subscriber did not start; is pyzmq installed?")
    return procs


def run_segment(args, rec, fps: float, subscribers: int, endpoint: str, seconds: float) -> dict:
    from ..pipeline import Pipeline, PipelineConfig
    cfg = PipelineConfig(device=args.device, model=rec.name, fps=fps, duration_s=seconds, publish=[endpoint],
                         status_interval_s=None, print_summary=False)
    pipeline = Pipeline(cfg, reconstructor=rec)
    subs = start_subscribers(endpoint, subscribers)
    try:
        time.sleep(SETTLE_S)  # subscriptions reach the publisher; every row waits alike
        s = pipeline.run()
    finally:
        for proc in subs:
            proc.kill()
            proc.wait()
    lat = pipeline.latency
    return {"summary": s, "latency_hist": lat.hist.copy(), "stage_ms": s.stage_ms,
            "intervals": max(0, lat.count - 1), "active_s": lat.last_t - lat.first_t}


def aggregate(model_label: str, subscribers: int, fps: float, segments: list[dict]) -> dict:
    """One row from several segments: counts summed, fps = output intervals / time, latencies pooled."""
    import numpy as np
    from ..pipeline import LatencyStats
    hist = sum((g["latency_hist"] for g in segments), np.zeros_like(LatencyStats().hist))
    active_s = sum(g["active_s"] for g in segments)
    p50, p99 = LatencyStats.hist_percentiles(hist)
    total = lambda key: sum(getattr(g["summary"], key) for g in segments)  # noqa: E731
    return {"model": model_label, "subscribers": subscribers, "target_fps": fps,
            "seconds": round(sum(g["summary"].frames_in for g in segments) / 40_000.0, 1),
            "frames_in": total("frames_in"), "dropped": total("frames_dropped"), "windows_out": total("windows_out"),
            "skipped": total("windows_skipped"),
            "fps": round(sum(g["intervals"] for g in segments) / active_s, 2) if active_s else 0.0,
            "latency_p50_ms": round(float(p50), 2), "latency_p99_ms": round(float(p99), 2),
            # per-segment fps: their spread shows how much machine load moved during the run
            "fps_segments": " ".join(f"{g['intervals'] / g['active_s']:.1f}" if g["active_s"] else "0"
                                     for g in segments)}


def stage_rows(rows: list[dict], segments: dict[str, list[dict]]) -> list[dict]:
    """Mean milliseconds per call of each pipeline stage (averaged over a row's segments), one column per row."""
    names = list(dict.fromkeys(k for segs in segments.values() for g in segs for k in g["stage_ms"]))
    out = []
    for name in names:
        line = {"stage": name}
        for row, segs in segments.items():
            values = [g["stage_ms"][name] for g in segs if name in g["stage_ms"]]
            line[row] = round(sum(values) / len(values), 3) if values else float("nan")
        out.append(line)
    return out


def main(argv=None) -> int:
    from .report import report
    args = parse_args(argv)
    rows, notes = [], {"segments_per_row": args.segments}
    segments: dict[str, list[dict]] = {row: [] for row in args.rows}
    recs = {}
    seconds = args.seconds / args.segments
    with tempfile.TemporaryDirectory(prefix="ssml-bench-") as tmp:
        endpoint = f"ipc://{tmp}/pipeline.ipc"
        # rows are interleaved segment by segment, so a change in machine load hits every row alike
        for k in range(args.segments):
            for row in args.rows:
                kind, subs = row.split("-")
                if kind not in recs:
                    if kind == "rt":
                        recs[kind], notes["rt_model"] = rt_reconstructor(args.model, args.threads)
                    else:
                        from ..runtime import load_model
                        recs[kind] = load_model("tfp")
                rec = recs[kind]
                fps = args.rt_fps if kind == "rt" else args.tfp_fps
                print(f"segment {k + 1}/{args.segments} {row}: {rec.name}, {subs} subscribers, {seconds:g} s ...",
                      file=sys.stderr, flush=True)
                segments[row].append(run_segment(args, rec, fps, int(subs), endpoint, seconds))
    for row in args.rows:
        kind, subs = row.split("-")
        rows.append(aggregate(recs[kind].name, int(subs), args.rt_fps if kind == "rt" else args.tfp_fps,
                              segments[row]))
    stages = stage_rows(rows, segments)
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
            want = min(55.0, 0.99 * r["target_fps"])  # 55 of 60 asked; a lower target: that target (1 % slack)
            checks[f"rt fps >= {want:g}"] = (r["fps"], r["fps"] >= want)
            checks["rt latency p99 <= 50 ms"] = (r["latency_p99_ms"], r["latency_p99_ms"] <= 50)
    print("mean ms per call of each stage (model = to tensor + forward + to numpy):")
    report("pipeline-stages", stages)
    report("pipeline", rows, args.json, extra={"notes": notes, "load_average": os.getloadavg(), "stage_ms": stages,
                                               "checks": {k: {"value": v, "ok": ok} for k, (v, ok) in checks.items()}})
    for name, (value, ok) in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}: {value}")
    print(f"rt model: {notes.get('rt_model', '-')}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(other processes share the CPU: timings are noisy)")
    return 0
