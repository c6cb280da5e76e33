"""ssml-eval: SSIM implementation, scoring/margins, REDS baseline figures, JSON and PNG outputs."""
import json
import shutil

import numpy as np
import pytest

from ssml_stream.train.data import DatOptions
from ssml_stream.train.evaluate import EvalSource, baseline_fns, evaluate, main, reds_sources
from ssml_stream.train.metrics import psnr, ssim


def test_ssim_identity_symmetry_and_noise(rng):
    img = rng.random((40, 50))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    noisier = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert ssim(noisy, img) == pytest.approx(ssim(img, noisy))
    assert 0 < ssim(noisier, img) < ssim(noisy, img) < 1


def test_ssim_of_constant_images_is_the_luminance_term():
    """Zero variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2."""
    a, b = 0.3, 0.5
    x, y = np.full((20, 20), a), np.full((20, 20), b)
    c1 = 0.01 ** 2
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def _source(rng, name, intensity, rate_gain=0.6, n=41):
    spikes = (rng.random((n,) + intensity.shape) < rate_gain * intensity).astype(np.uint8)
    return EvalSource(name, spikes, intensity.astype(np.float32), rate_gain)


def test_evaluate_scores_baselines_models_and_margins(rng):
    gt = np.tile(np.linspace(0.2, 0.9, 48, dtype=np.float32), (32, 1))
    sources = [_source(rng, "a", gt), _source(rng, "b", gt[::-1].copy())]
    methods = dict(baseline_fns())
    methods["oracle"] = lambda w: gt * 0.6 if w is sources[0].window else gt[::-1] * 0.6
    methods["zero"] = lambda w: np.zeros(w.shape[1:], np.float32)
    res = evaluate(sources, methods)
    for name in ("a", "b"):
        row = res["sources"][name]
        assert row["best_baseline"]["psnr"] == max(row["TFP41"]["psnr"], row["TFI"]["psnr"])
        assert row["oracle"]["psnr"] == float("inf") or row["oracle"]["psnr"] > 60
        assert row["TFP41"]["psnr"] > row["TFI"]["psnr"]  # static scene: the 41-frame mean wins
    zero = res["summary"]["zero"]
    expected = np.mean([res["sources"][s]["zero"]["psnr"] - res["sources"][s]["best_baseline"]["psnr"]
                        for s in ("a", "b")])
    assert zero["margin_over_best_baseline_db"] == pytest.approx(expected)
    assert zero["margin_over_best_baseline_db"] < 0
    assert set(res["images"]["a"]) == {"GT", "TFP41", "TFI", "oracle", "zero"}


def test_reds_baselines_match_the_published_figures(reds_test):
    """TFP41 31.6 dB and TFI 21.8 dB on REDS test/200_part1 (the figures published with the data)."""
    (src,) = reds_sources([reds_test.dat], DatOptions(gt_frame=reds_test.gt_frame))
    row = evaluate([src], baseline_fns())["sources"][src.name]
    assert row["TFP41"]["psnr"] == pytest.approx(31.6, abs=0.1)
    assert row["TFI"]["psnr"] == pytest.approx(21.8, abs=0.15)
    assert row["best_baseline"]["method"] == "TFP41"


def test_eval_cli_on_a_recording_writes_json_and_png(sim_recording, tmp_path, capsys):
    """--data reads NAME.dat + NAME.png (ground truth at frame 150), as for REDS_BASE files."""
    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    assert main(["--data", str(sim_recording.dat), "--no-sim", "--json", str(out_json), "--png", str(out_png)]) == 0
    res = json.loads(out_json.read_text())
    row = res["sources"][sim_recording.dat.stem]
    assert set(row) == {"TFP41", "TFI", "best_baseline"} and res["methods"] == ["TFP41", "TFI"]
    assert row["TFP41"]["psnr"] > 30 and row["best_baseline"]["method"] == "TFP41"  # ~35 dB: little motion in 1 ms
    import cv2

    img = cv2.imread(str(out_png))
    assert img is not None and img.shape[0] == 250 and img.shape[1] == 3 * 400
    assert "best classical" in capsys.readouterr().out


def test_eval_cli_bad_inputs(tmp_path, capsys):
    assert main(["--no-data", "--no-sim"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt"), "--no-sim", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1


def test_default_data_is_found_through_ssml_shared_data(sim_recording, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSML_SHARED_DATA", str(tmp_path))
    test_dir = (tmp_path / "reds_base" / "test").resolve()
    assert main(["--no-sim"]) == 2
    assert f"default data {test_dir} not found" in capsys.readouterr().err
    test_dir.mkdir(parents=True)
    for src in (sim_recording.dat, sim_recording.dat.with_suffix(".png")):
        shutil.copy(src, test_dir)
    assert main(["--no-sim", "--json", str(tmp_path / "e.json")]) == 0
    assert list(json.loads((tmp_path / "e.json").read_text())["sources"]) == [sim_recording.dat.stem]


def test_psnr_of_reconstruction_against_intensity():
    gt = np.full((8, 8), 0.5, np.float32)
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0)


def test_shipped_rt_weights_beat_the_best_classical_baseline(reds_test):
    """The committed ssml-rt.pt still loads into the current rt code and keeps its measured margin."""
    from ssml_stream import read_dat
    from ssml_stream.train.evaluate import load_model_fn
    from ssml_stream.train.metrics import rate_to_intensity

    window = read_dat(reds_test.dat).window(reds_test.gt_frame, 41)
    _, run = load_model_fn("ssml")
    tfp41 = psnr(rate_to_intensity(baseline_fns()["TFP41"](window)), reds_test.gt)
    model = psnr(rate_to_intensity(run(window)), reds_test.gt)
    assert model >= tfp41 + 3.0, (model, tfp41)


def test_a_checkpoint_runs_through_the_runtime_like_its_weights(sim_recording, tmp_path, rng):
    """ssml-eval takes an ssml-train checkpoint beside weights files; columns are named as given."""
    import torch

    from ssml_stream.models import build_model, model_config, save_weights
    from ssml_stream.train.evaluate import load_model_fn

    torch.manual_seed(0)
    nbsn = build_model("rt").eval()
    with torch.no_grad():
        for p in nbsn.parameters():  # away from its TFP41 start, so the columns say which network ran
            p.add_(0.01 * torch.randn_like(p))
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    torch.save({"bsn": {}, "nbsn": nbsn.state_dict(), "nbsn_arch": "rt", "nbsn_config": model_config("rt")}, ckpt)
    weights = tmp_path / "rt.pt"
    save_weights(weights, nbsn, "rt", model_config("rt"), {})

    window = (rng.random((41, 48, 64)) < 0.3).astype(np.uint8)
    with torch.no_grad():
        eager = nbsn(torch.from_numpy(window).float()[None])[0, 0].numpy()
    np.testing.assert_allclose(load_model_fn(str(ckpt))[1](window), eager, atol=1e-5)

    out = tmp_path / "e.json"
    assert main([str(ckpt), str(weights), "--data", str(sim_recording.dat), "--no-sim", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    by_ckpt, by_weights = "run/best.pt", f"{tmp_path.name}/rt.pt"
    assert res["methods"] == ["TFP41", "TFI", by_ckpt, by_weights]
    row = res["sources"][sim_recording.dat.stem]
    assert row[by_ckpt]["psnr"] == pytest.approx(row[by_weights]["psnr"], abs=0.05)  # weights are fp16
    assert abs(row[by_ckpt]["psnr"] - row["TFP41"]["psnr"]) > 0.05
