"""ssml-export: TorchScript and torch.export artefacts load in a torch-only process and match eager."""
import subprocess
import sys

import pytest
import torch

from ssml_stream.models import build_model, model_config
from ssml_stream.train.export import example_input, export_nbsn, main

LOADER = r"""
import sys
import torch
path, fmt, data = sys.argv[1:4]
x, expected = torch.load(data)
model = torch.jit.load(path) if fmt == "torchscript" else torch.export.load(path).module()
with torch.no_grad():
    y = model(x)
assert not any(m.startswith("ssml_stream") for m in sys.modules), "loader imported ssml_stream"
print(float((y - expected).abs().max()), tuple(y.shape))
"""


def _checkpoint(tmp_path, arch):
    torch.manual_seed(0)
    nbsn = build_model(arch).eval()
    path = tmp_path / f"{arch}.pt"
    torch.save({"bsn": {}, "nbsn": nbsn.state_dict(), "nbsn_arch": arch, "nbsn_config": model_config(arch),
                "optimizer": {}, "step": 0, "args": {}}, path)
    return path, nbsn


def _check_in_fresh_process(tmp_path, out, fmt, eager, h, w):
    x = example_input(h, w, seed=7)
    with torch.no_grad():
        expected = eager(x)
    data = tmp_path / "io.pt"
    torch.save((x, expected), data)
    proc = subprocess.run([sys.executable, "-c", LOADER, str(out), fmt, str(data)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff, shape = proc.stdout.split(" ", 1)
    assert float(diff) <= 1e-4
    assert shape.strip() == str((1, 1, h, w))


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".ts"),
                                        pytest.param("export", ".pt2", marks=pytest.mark.slow)])
def test_rt_export_matches_eager_in_torch_only_process(tmp_path, fmt, suffix):
    ckpt, eager = _checkpoint(tmp_path, "rt")
    out = tmp_path / f"rt{suffix}"
    info = export_nbsn(str(ckpt), fmt, out, height=32, width=48)
    assert info["arch"] == "rt" and out.stat().st_size < 2_000_000  # no sample window stored
    # a size other than the example's: both formats keep height/width dynamic
    _check_in_fresh_process(tmp_path, out, fmt, eager, 30, 52)


@pytest.mark.slow
@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".ts"), ("export", ".pt2")])
def test_full_nbsn_export_matches_eager(tmp_path, fmt, suffix):
    ckpt, eager = _checkpoint(tmp_path, "nbsn")
    out = tmp_path / f"full{suffix}"
    export_nbsn(str(ckpt), fmt, out, height=32, width=32)
    _check_in_fresh_process(tmp_path, out, fmt, eager, 36, 44)


def test_export_cli_output_is_clean(tmp_path):
    ckpt, _ = _checkpoint(tmp_path, "rt")
    out = tmp_path / "rt.ts"
    proc = subprocess.run([sys.executable, "-c", "from ssml_stream.train.export import main; main()", str(ckpt),
                           "--format", "torchscript", "--out", str(out), "--height", "16", "--width", "16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr + proc.stdout
    assert "rt NBSN" in proc.stdout and out.exists()


def test_export_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope.pt"), "--format", "export", "--out", str(tmp_path / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err, err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    assert main([str(junk), "--out", str(tmp_path / "x.ts")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable" in err, err
    ckpt, _ = _checkpoint(tmp_path, "rt")
    assert main([str(ckpt), "--out", str(tmp_path / "missing_dir" / "x.ts")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_weights_format_writes_fp16_weights_with_training_metadata(tmp_path):
    import json as _json

    from ssml_stream.models import load_weights

    ckpt, eager = _checkpoint(tmp_path, "rt")
    record = torch.load(ckpt, weights_only=True)
    record.update(step=123, elapsed_s=600.0, args={"command": "ssml-train data --nbsn rt", "dat": ["data"],
                                                   "sim": ["spin"], "mutual_weight": 0.01})
    torch.save(record, ckpt)
    eval_json = tmp_path / "eval.json"
    row = {"TFP41": {"psnr": 30.0, "ssim": 0.9}, "TFI": {"psnr": 20.0, "ssim": 0.5},
           "rt.pt": {"psnr": 33.0, "ssim": 0.95}, "best_baseline": {"method": "TFP41", "psnr": 30.0}}
    eval_json.write_text(_json.dumps({"methods": ["TFP41", "TFI", "rt.pt"], "command": "ssml-eval rt.pt",
                                      "summary": {"rt.pt": {"psnr_mean": 33.0, "margin_over_best_baseline_db": 3.0}},
                                      "sources": {"s": row}}))
    out = tmp_path / "w" / "ssml-rt.pt"
    out.parent.mkdir()
    assert main([str(ckpt), "--format", "weights", "--out", str(out), "--eval-json", str(eval_json)]) == 0
    model, meta = load_weights(out)
    assert meta["training_command"] == "ssml-train data --nbsn rt" and meta["steps"] == 123
    assert meta["wall_time_min"] == 10.0 and meta["eval"]["summary"]["psnr_mean"] == 33.0
    assert _json.loads((tmp_path / "w" / "ssml-rt.pt.json").read_text())["meta"]["steps"] == 123
    assert meta["loss"] == "MSE(BSN, tfi label) + 0.01 * MSE(NBSN, BSN)"
    x = example_input(24, 24)
    with torch.no_grad():
        assert (model(x) - eager(x)).abs().max() < 5e-3  # fp16 storage


def test_weights_loss_text_names_every_term():
    """The exported loss names the teachers and the BSN teaching of --worlds-hard crops (train/loop.py)."""
    from ssml_stream.train.export import weights_meta

    args = {"label": "adaptive", "mutual_weight": 0.01, "light_weighting": True, "worlds_hard": 60,
            "distill_from": ["ssml-full"], "distill_rates": [[[0.0, 0.08]]], "distill_weight": 1.0}
    loss = weights_meta({"args": args})["loss"]
    assert loss == ("MSE(BSN, adaptive label) + 0.01 * MSE(NBSN, BSN), each crop weighted by 1 / (mean rate + 0.01)"
                    " + 1 * MSE(NBSN, teacher ssml-full on crops with mean rate in [0, 0.08])"
                    " + 1 * MSE(NBSN, BSN detached) on crops of the 60 --worlds-hard clips, which skip the teachers")
    assert "worlds-hard" not in weights_meta({"args": {**args, "distill_from": [], "distill_rates": []}})["loss"]
