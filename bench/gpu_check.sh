#!/usr/bin/env bash
# GPU check: model, pipeline and offline benchmarks on CUDA in at most 7 minutes.
#
#   bench/gpu_check.sh            # from anywhere; needs the package installed with a CUDA build of torch
#   OUT=/some/dir bench/gpu_check.sh
#
# Writes JSON (same format as every ssml-bench run, so `ssml-bench --compare` works on them) and a
# steps.txt with each step's exit code and seconds into $OUT, or bench_results/gpu when OUT is unset.
# Each step has its own time limit (model 70 s at 250 x 400 and 70 s at 1000 x 1000, compare 45 s, pipeline
# 110 s, offline 100 s: 395 s in all, plus start-up); a step that fails or runs out of time is recorded and
# the next one still runs.
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

step model 70 "$PY" -m ssml_stream.bench.cli model --device cuda --iters 50 --full-iters 10 \
    --weights ssml-rt ssml-full --json "$DEST/model-cuda.json"
step model-1000 70 "$PY" -m ssml_stream.bench.cli model --device cuda --iters 20 --full-iters 5 \
    --height 1000 --width 1000 --weights ssml-rt ssml-full --json "$DEST/model-cuda-1000.json"
step compare 45 "$PY" -m ssml_stream.bench.cli compare --device cuda --iters 5 --json "$DEST/compare-cuda.json"
# pipeline rows pick CUDA themselves (load_model "auto"): 2 rows x 2 segments x 20 s of stream, asked for 60 fps
step pipeline 110 "$PY" -m ssml_stream.bench.cli pipeline --seconds 40 --segments 2 --rows rt-0 rt-4 --rt-fps 60 \
    --json "$DEST/pipeline-cuda.json"
step offline 100 "$PY" -m ssml_stream.bench.cli offline --compute cuda --sizes 250x400 1000x1000 \
    --models ssml-rt ssml-full --windows 200 --json "$DEST/offline-cuda.json"

echo "results in $DEST:"; ls "$DEST"
exit "$failed"
