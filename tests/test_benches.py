"""Smoke runs of `ssml-bench unpack`, `ingest` and `scaling` with tiny sizes, bad benchmark arguments, and
bench/gpu_check.sh's no-GPU path (numbers are not checked against targets here: CI machines are shared)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssml_stream.bench.cli import main as bench_main


@pytest.mark.slow  # loads the parallel Numba kernels: ~10 s on a busy 2-core machine
def test_unpack_bench_smoke(tmp_path, capsys):
    out = tmp_path / "unpack.json"
    rc = bench_main(["unpack", "--frames", "90", "--height", "16", "--width", "32", "--window", "9",
                     "--repeat", "1", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    rows = {(r["method"], r["into"].split("-")[1]): r for r in result["rows"]}
    unpackers = {"numba", "numba-parallel", "shift (previous)", "lut", "numpy"}
    assert set(m for m, _ in rows) == unpackers | {"fill", "fill-parallel", "copy"} and len(rows) == 15
    assert all(r["frames_per_s"] > 0 and r["write_gb_s"] >= 0 for r in rows.values())
    assert rows[("numpy", "frame window")]["x_numpy"] == 1
    assert rows[("fill", "frame window")]["pct_of_fill"] == 100 and rows[("copy", "frame buffer")]["threads"] == 1
    assert all(r["meets_200k"] in ("yes", "no") for (m, _), r in rows.items() if m in unpackers)
    assert result["written_bytes_per_frame"] == 16 * 32 and result["read_bytes_per_frame"] == 16 * 32 // 8
    assert "of a fill of the same buffer" in capsys.readouterr().out


def test_unpack_bench_rejects_bad_sizes(capsys):
    assert bench_main(["unpack", "--frames", "4", "--window", "41"]) == 2
    assert "--frames >= --window" in capsys.readouterr().err


@pytest.mark.system
def test_ingest_bench_smoke(tmp_path):
    out = tmp_path / "ingest.json"
    bench_main(["ingest", "--seconds", "0.3", "--height", "16", "--width", "32", "--stride", "100",
                "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["source"].split(":")[0] for r in rows] == ["file", "sim"]
    for r in rows:
        assert r["frames"] == 12000 and r["received"] + r["dropped"] == 12000
        # paced: never faster than the camera rate (+ one 1 ms chunk); how much slower depends on the load
        assert 0 < r["rate_hz"] < 40000 * 1.01
        assert r["windows"] > 0


def test_offline_bench_counts_every_window(tmp_path):
    out = tmp_path / "offline.json"
    rc = bench_main(["offline", "--sizes", "16x32", "--models", "tfp", "ssml-rt", "--strides", "1", "3",
                     "--windows", "6", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["stride"]) for r in rows] == [("tfp", 1), ("tfp", 3), ("ssml-rt", 1), ("ssml-rt", 3)]
    assert all(r["lossless"] == "yes" and r["windows_per_s"] > 0 for r in rows)
    assert [r["windows"] for r in rows] == [6, 2, 6, 2]  # 46 frames: windows on the grid 20, 23, ...


def test_scaling_bench_writes_rows_and_plots(tmp_path):
    out = tmp_path / "scaling.json"
    rc = bench_main(["scaling", "--sizes", "24x32", "40x48", "--windows", "11", "41", "--subscribers", "0", "2",
                     "--iters", "1", "--send-frames", "40", "--out-dir", str(tmp_path), "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    points = {(r["sweep"], r["setting"], r["what"]): r for r in result["rows"]}
    assert {s for s, _, _ in points} == {"resolution", "window", "subscribers"}
    assert ("resolution", "40x48", "rt network (ssml-rt)") in points
    assert ("window", "41 frames", "TFI") in points and ("window", "11 frames", "unpack window") in points
    subs = [points[("subscribers", f"{k} subscribers", "publisher u1 send")] for k in (0, 2)]
    assert subs[1]["received_min"] > 0 and all(r["refused"] == 0 for r in subs)
    assert all(r["per_s_best"] > 0 and r["ms_best"] <= r["ms_median"] for r in points.values())
    for sweep in ("resolution", "window", "subscribers"):
        assert (tmp_path / f"scaling_{sweep}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_bench_rejects_bad_sizes(capsys):
    assert bench_main(["scaling", "--sizes", "250by400"]) == 2
    assert "expected HxW" in capsys.readouterr().err
    assert bench_main(["scaling", "--windows", "40"]) == 2


BAD_ARGUMENTS = [
    (["model", "--threads", "0"], "--threads"),
    (["offline", "--sizes", "12"], "expected HxW"),
    (["ingest", "--window", "40"], "odd"),
    (["unpack", "--width", "12"], "multiple of 8"),
    (["compare", "--iters", "x"], "--iters"),
]


@pytest.mark.system
@pytest.mark.parametrize("argv,words", BAD_ARGUMENTS, ids=[a[0] for a, _ in BAD_ARGUMENTS])
def test_bad_benchmark_argument_is_one_line_exit_2(argv, words):
    proc = subprocess.run([str(Path(sys.executable).parent / "ssml-bench"), *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"ssml-bench {argv[0]}: error: ") and words in lines[0], lines[0]
    assert not proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_benchmark_on_cuda_without_a_device_is_refused(capsys):
    assert bench_main(["model", "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


GPU_CHECK = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def test_gpu_check_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(GPU_CHECK)]).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs its 6-minute benchmarks")
def test_gpu_check_without_cuda_says_so_and_runs_nothing(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(GPU_CHECK)], env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("gpu_check: error: no CUDA device is available") and "Nothing was run" in proc.stderr
    assert not out.exists()
