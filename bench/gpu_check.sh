#!/usr/bin/env bash
# GPU check: model, pipeline and offline benchmarks on CUDA in at most 6 minutes.
#
#   bench/gpu_check.sh            # from anywhere; needs the package installed with a CUDA build of torch
#   OUT=/some/dir bench/gpu_check.sh
#
# Writes JSON (same format as every ssml-bench run, so `ssml-bench --compare` works on them) and a
# steps.txt with each step's exit code and seconds into $OUT, or bench_results/gpu when OUT is unset.
# Each step has its own time limit (model 90 s, compare 60 s, pipeline 110 s, offline 70 s: 330 s in
# all, plus start-up); a step that fails or runs out of time is recorded and the next one still runs.
# Exit code: 0 all steps passed, 1 some step failed, 2 no CUDA device (nothing run).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DEST=${OUT:-bench_results/gpu}

probe_code='import ssml_stream, torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())'
if ! probe=$("$PY" -c "$probe_code" 2>&1); then
    echo "gpu_check: error: cannot import ssml_stream and torch with $PY: $(echo "$probe" | tail -n 1)" >&2
    exit 2
fi
read -r torch_version cuda_version available <<< "$(echo "$probe" | tail -n 1)"
if [ "$available" != "True" ]; then
    echo "gpu_check: error: no CUDA device is available to torch $torch_version (built for CUDA $cuda_version);" \
         "run this on a machine with an NVIDIA GPU and a CUDA build of torch. Nothing was run." >&2
    exit 2
fi

mkdir -p "$DEST" || exit 2
: > "$DEST/steps.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$DEST/nvidia-smi.csv" 2>&1 || true
failed=0

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit} s)"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    echo "$name rc=$rc $(( $(date +%s) - start )) s" | tee -a "$DEST/steps.txt"
    [ "$rc" -eq 0 ] || failed=1
}

step model 90 "$PY" -m ssml_stream.bench.cli model --device cuda --iters 50 --full-iters 10 \
    --json "$DEST/model-cuda.json"
step compare 60 "$PY" -m ssml_stream.bench.cli compare --device cuda --iters 5 --json "$DEST/compare-cuda.json"
# pipeline rows pick CUDA themselves (load_model "auto"): 2 rows x 30 s of stream
step pipeline 110 "$PY" -m ssml_stream.bench.cli pipeline --seconds 30 --segments 2 --rows rt-0 rt-4 \
    --json "$DEST/pipeline-cuda.json"
step offline 70 "$PY" - "$DEST" <<'EOF'
"""Offline (file at --speed max, lossless): windows/s of both shipped models on CUDA, via ssml-stream."""
import os, subprocess, sys, tempfile, time
import numpy as np
from ssml_stream.bench.report import report

dest = sys.argv[1]


def tool(entry, *args):  # a console script through this same Python (the venv need not be on PATH)
    module, func = entry.split(":")
    subprocess.run([sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())", *args],
                   check=True, stdout=subprocess.DEVNULL)


rows = []
with tempfile.TemporaryDirectory() as tmp:
    clip = os.path.join(tmp, "clip.dat")
    tool("ssml_stream.cli:sim_main", clip, "--scene", "traffic", "--frames", "4000")
    for model, stride in (("ssml-rt", 10), ("ssml-full", 40)):
        out = os.path.join(tmp, f"{model}.npz")
        t0 = time.perf_counter()
        tool("ssml_stream.stream_cli:main", "--device", f"file:{clip}", "--model", model, "--compute", "cuda",
             "--speed", "max", "--stride", str(stride), "--save", out, "--quiet")
        seconds = time.perf_counter() - t0
        with np.load(out) as z:
            windows = int(z["frames"].shape[0])
        rows.append({"model": model, "stride": stride, "windows": windows, "seconds_with_startup": round(seconds, 2),
                     "windows_per_s": round(windows / seconds, 1)})
report("offline-cuda", rows, os.path.join(dest, "offline-cuda.json"))
EOF

echo "results in $DEST:"; ls "$DEST"
exit "$failed"
