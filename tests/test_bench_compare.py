"""`ssml-bench compare` (ours vs peers' inference paths, same run) and `ssml-bench --compare` (change of
every number between two benchmark JSON files). Numbers are not checked against targets."""
import json

import numpy as np
import pytest
import torch

from ssml_stream.bench.cli import main as bench_main
from ssml_stream.bench.peers import PlainUNet, numpy_tfi, numpy_tfp
from ssml_stream.bench.report import report
from ssml_stream.models.features import tfi_center, tfp_center


def test_compare_bench_reports_ratios_against_ours(tmp_path, capsys):
    out = tmp_path / "compare.json"
    rc = bench_main(["compare", "--height", "16", "--width", "24", "--iters", "1", "--threads", "1",
                     "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"ssml-rt (ours)", "ssml-full (ours)", "ssml-full (ours, bf16)",
                         "SSML release NBSN (re-impl.)", "plain U-Net stand-in, eager",
                         "plain U-Net stand-in, our runtime"}
    rt, full = rows["ssml-rt (ours)"], rows["ssml-full (ours)"]
    assert rt["x_ssml_rt"] == 1 and full["x_ssml_full"] == 1
    for r in rows.values():
        assert r["ms_best"] > 0 and r["params"] > 0 and r["gmac"] > 0
        assert r["x_ssml_full"] == pytest.approx(r["ms_best"] / full["ms_best"], rel=0.02, abs=1e-3)
        assert r["x_ssml_rt"] == pytest.approx(r["ms_best"] / rt["ms_best"], rel=0.02, abs=1e-3)
    release = rows["SSML release NBSN (re-impl.)"]
    assert release["max_abs_diff_vs_full"] <= 1e-4  # the same network and weights, another path
    assert release["params"] == full["params"]
    assert rows["ssml-full (ours, bf16)"]["max_abs_diff_vs_full"] <= 0.01
    assert 2e6 <= rows["plain U-Net stand-in, eager"]["params"] <= 4e6
    assert "the time of ssml-full" in capsys.readouterr().out


def test_release_features_match_ours():
    rng = np.random.default_rng(0)
    for density in (0.02, 0.2, 0.7):  # sparse: many pixels take the fallback
        window = (rng.random((27, 12, 20)) < density).astype(np.uint8)
        x = torch.from_numpy(window).float()[None]
        assert np.array_equal(numpy_tfi(window, 12, 24), tfi_center(x, 12, 24)[0, 0].numpy())
        for n in (11, 19, 27):
            assert np.allclose(numpy_tfp(window, n), tfp_center(x, n)[0, 0].numpy(), atol=1e-6)


def test_plain_unet_any_size():
    with torch.no_grad():
        assert PlainUNet()(torch.zeros(2, 41, 19, 33)).shape == (2, 1, 19, 33)


def _write(path, name, rows, **extra):
    report(name, rows, str(path), extra)
    return str(path)


def test_compare_flag_prints_the_change_of_every_number(tmp_path, capsys):
    old = _write(tmp_path / "old.json", "model", [
        {"arch": "rt", "variant": "traced", "threads": 1, "ms_best": 10.0, "fps_best": 100.0, "meets_x": "yes"},
        {"arch": "rt", "variant": "traced", "threads": 2, "ms_best": 6.0, "fps_best": 166.7},
        {"arch": "nbsn", "variant": "eager", "threads": 1, "ms_best": 4000.0, "fps_best": 0.25}], best=0)
    new = _write(tmp_path / "new.json", "model", [
        {"arch": "rt", "variant": "traced", "threads": 1, "ms_best": 15.0, "fps_best": 66.7, "meets_x": "no"},
        {"arch": "rt", "variant": "traced", "threads": 2, "ms_best": 6.0, "fps_best": 166.7},
        {"arch": "rt", "variant": "bf16", "threads": 1, "ms_best": 5.0, "fps_best": 200.0}], best=3)
    capsys.readouterr()
    assert bench_main(["--compare", old, new]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "old.json" in lines[0] and "new.json" in lines[0]

    def line(*words):
        found = [ln for ln in lines if all(w in ln.split() for w in words)]
        assert len(found) == 1, (words, lines)
        return found[0]
    assert "+50.0" in line("rt", "traced", "1", "ms_best", "10", "15")
    assert "-33.3" in line("rt", "traced", "1", "fps_best")
    assert line("rt", "traced", "1", "meets_x", "yes", "no").split()[-1] == "changed"  # a verdict is no label
    assert line("rt", "traced", "2", "ms_best").split()[-1] == "="
    assert "missing" in line("nbsn", "eager", "(row)")
    assert "present" in line("rt", "bf16", "(row)")
    assert line("(run)", "best").split()[-1] == "+3"  # a top-level number that was 0: the difference


def test_compare_flag_defaults_to_the_latest_run_and_refuses_bad_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    old = _write(tmp_path / "old.json", "unpack", [{"method": "numba", "frames_per_s": 100}])
    _write(tmp_path / "bench_results" / "unpack.json", "unpack", [{"method": "numba", "frames_per_s": 120}])
    _write(tmp_path / "bench_results" / "model.json", "model", [{"arch": "rt", "ms_best": 1.0}])
    capsys.readouterr()
    assert bench_main(["--compare", old]) == 0
    assert "+20.0 %" in capsys.readouterr().out

    assert bench_main(["--compare", old, "bench_results/model.json"]) == 2
    assert "is a unpack run" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    assert bench_main(["--compare", str(tmp_path / "other.json")]) == 2
    assert "not a benchmark result" in capsys.readouterr().err
    assert bench_main(["--compare"]) == 2
    assert bench_main(["--compare", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err
