"""Smoke runs of `ssml-bench unpack` and `ssml-bench ingest` with tiny sizes (numbers are not checked
against targets here: CI machines are shared)."""
import json

import pytest

from ssml_stream.bench.cli import main as bench_main


@pytest.mark.slow  # loads the parallel Numba kernels: ~10 s on a busy 2-core machine
def test_unpack_bench_smoke(tmp_path, capsys):
    out = tmp_path / "unpack.json"
    rc = bench_main(["unpack", "--frames", "90", "--height", "16", "--width", "32", "--window", "9",
                     "--repeat", "1", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    rows = {(r["method"], r["into"].split("-")[1]): r for r in result["rows"]}
    assert set(m for m, _ in rows) == {"numba", "numba-parallel", "numba-lut", "numpy"} and len(rows) == 8
    assert all(r["frames_per_s"] > 0 for r in rows.values())
    assert rows[("numpy", "frame window")]["x_numpy"] == 1
    assert "frames_per_s" in capsys.readouterr().out


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
