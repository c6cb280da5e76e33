import json

import numpy as np
import pytest
import torch

from ssml_stream import features as ref
from ssml_stream.errors import ModelError
from ssml_stream.models import build_model, load_weights, save_weights, model_config
from ssml_stream.models.features import tfi_center, tfp_center
from ssml_stream.runtime import trace_frozen


def spikes(shape, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


# ---------------------------------------------------------------- features

@pytest.mark.parametrize("p", [0.02, 0.15, 0.6])
def test_torch_features_match_numba_reference(rng, p):
    win = (rng.random((41, 23, 17)) < p).astype(np.uint8)
    x = torch.from_numpy(win).float()[None]
    np.testing.assert_allclose(tfi_center(x)[0, 0].numpy(), ref.tfi(win, 12, 24), rtol=1e-6)
    np.testing.assert_allclose(tfp_center(x, 41)[0, 0].numpy(), ref.tfp(win), rtol=1e-6)
    for n in (11, 19, 27):
        c = 20
        np.testing.assert_allclose(tfp_center(x, n)[0, 0].numpy(), ref.tfp(win[c - n // 2:c + n // 2 + 1]), rtol=1e-6)


def test_tfi_range_and_edge_cases():
    x = torch.zeros(2, 41, 3, 3)
    assert torch.all(tfi_center(x) == 1 / 24)            # no spikes: fallback
    x[:, 20] = 1
    x[:, 21] = 1
    assert torch.all(tfi_center(x) == 1.0)               # spikes at c and c+1: interval 1
    x = spikes((2, 27, 8, 8), 0.3)
    v = tfi_center(x)
    assert v.shape == (2, 1, 8, 8) and v.min() >= 1 / 24 and v.max() <= 1


def test_features_script():
    x = spikes((1, 41, 5, 6))
    scripted_tfi = torch.jit.script(tfi_center)
    scripted_tfp = torch.jit.script(tfp_center)
    assert torch.equal(scripted_tfi(x, 12, 24), tfi_center(x))
    assert torch.equal(scripted_tfp(x, 19), tfp_center(x, 19))


# ---------------------------------------------------------------- blind spot

@pytest.fixture(scope="module")
def bsn64():
    torch.manual_seed(0)
    return build_model("bsn").double().eval()


NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1), (1, 1), (-2, 1))   # one in each half-plane and more


def _blind_check(model, x, pixels):
    """Flip all 41 frames of a pixel (must not change its output) or of a neighbour (must change it);
    every variant runs in one batch."""
    h, w = x.shape[-2:]
    variants, checks = [x[0]], []
    for r, c in pixels:
        for dr, dc in ((0, 0),) + NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w:
                v = x[0].clone()
                v[:, rr, cc] = 1 - v[:, rr, cc]
                checks.append((len(variants), (r, c), (rr, cc)))
                variants.append(v)
    with torch.no_grad():
        out = model(torch.stack(variants))[:, 0]
    for i, (r, c), (rr, cc) in checks:
        delta = (out[i, r, c] - out[0, r, c]).abs().item()
        if (rr, cc) == (r, c):
            assert delta < 1e-12, f"output at {(r, c)} changed by {delta} when only its own input changed"
        else:
            assert delta > 1e-8, f"output at {(r, c)} ignores neighbour {(rr, cc)}"


def test_bsn_blind_spot_square(bsn64):
    x = spikes((1, 41, 20, 20), seed=1).double()
    _blind_check(bsn64, x, [(10, 10), (0, 0), (19, 19), (0, 13), (7, 19), (19, 3)])


def test_bsn_blind_spot_nonsquare(bsn64):
    x = spikes((1, 41, 14, 23), seed=2).double()    # not a multiple of 4 either
    _blind_check(bsn64, x, [(6, 11), (13, 0), (0, 22), (13, 22), (12, 5), (3, 21)])


def test_bsn_receptive_field_excludes_only_centre(bsn64):
    """Gradient of one output pixel wrt the input: exactly zero at the pixel (all frames), non-zero
    at every other pixel of the surrounding 9 x 9 block."""
    x = spikes((1, 41, 24, 24), seed=3).double().requires_grad_(True)
    r, c = 11, 12
    bsn64(x)[0, 0, r, c].backward()
    g = x.grad[0].abs().sum(0)
    assert g[r, c].item() == 0.0
    block = g[r - 4:r + 5, c - 4:c + 5].clone()
    block[4, 4] = 1.0
    assert torch.all(block > 0)


def test_bsn_reflect_mode_leaks_near_padded_edge():
    """Why nonsquare="split" is the default: reflect-padding to square puts a mirror copy of a pixel
    next to the padded edge inside its own receptive field."""
    torch.manual_seed(0)
    model = build_model("bsn", nonsquare="reflect").double().eval()
    x = spikes((1, 41, 14, 24), seed=4).double()
    r, c = 12, 8          # reflect padding copies row 12 to row 14, just below the bottom edge
    own = x.clone()
    own[0, :, r, c] = 1 - own[0, :, r, c]
    with torch.no_grad():
        assert (model(own) - model(x))[0, 0, r, c].abs().item() > 1e-8


# ---------------------------------------------------------------- shapes, weights

@pytest.mark.parametrize("arch", ["bsn", "nbsn", "rt"])
def test_shapes_any_size(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    with torch.no_grad():
        for h, w in ((40, 40), (13, 22)):
            y = model(spikes((2, 41, h, w)))
            assert y.shape == (2, 1, h, w) and torch.isfinite(y).all()


def test_build_model_rejects_bad_config():
    with pytest.raises(ModelError, match="unknown model arch"):
        build_model("unet9")
    with pytest.raises(ModelError, match="unknown config keys"):
        build_model("rt", widht=8)


@pytest.mark.parametrize("arch", ["rt", "nbsn"])
def test_save_load_round_trip(tmp_path, arch):
    torch.manual_seed(0)
    cfg = {"width": 16} if arch == "rt" else {"width1": 16, "width2": 16}
    model = build_model(arch, **cfg).eval()
    path = tmp_path / "w.pt"
    meta = {"command": "ssml-train --nbsn rt", "psnr_db": np.float32(31.5), "data": [tmp_path]}
    save_weights(path, model, arch, model_config(arch, **cfg), meta)
    loaded, got_meta = load_weights(path)
    assert not loaded.training and got_meta["psnr_db"] == 31.5 and got_meta["arch"] == arch
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    sidecar = json.loads((tmp_path / "w.pt.json").read_text())
    assert sidecar["meta"]["command"] == meta["command"] and sidecar["arch"] == arch
    x = spikes((1, 41, 16, 20))
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    assert 0 < diff < 1e-2        # fp16 storage: close, not bit-identical
    for p in torch.load(path, weights_only=True)["state_dict"].values():
        assert p.dtype == torch.float16


def test_load_weights_errors(tmp_path, monkeypatch):
    import ssml_stream.models as models
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelError, match="shipped weights not found.*ssml-rt.pt.*train"):
        load_weights("ssml")
    with pytest.raises(ModelError, match="not found"):
        load_weights(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ModelError, match="not an ssml-stream weights file"):
        load_weights(bad)


# ---------------------------------------------------------------- export

def test_rt_trace_freeze_export_match_eager():
    torch.manual_seed(0)
    model = build_model("rt").eval()
    x = spikes((1, 41, 250, 400), 0.15)
    with torch.no_grad():
        eager = model(x)
        frozen = trace_frozen(model, x)
        assert (frozen(x) - eager).abs().max().item() <= 1e-4
        exported = torch.export.export(model, (x,))
        assert (exported.module()(x) - eager).abs().max().item() <= 1e-4


def test_nbsn_trace_freeze_export_match_eager():
    torch.manual_seed(0)
    model = build_model("nbsn").eval()
    x = spikes((1, 41, 40, 56), 0.15)
    with torch.no_grad():
        eager = model(x)
        assert (trace_frozen(model, x)(x) - eager).abs().max().item() <= 1e-4
        exported = torch.export.export(model, (x,))
        assert (exported.module()(x) - eager).abs().max().item() <= 1e-4


# ---------------------------------------------------------------- benchmark smoke run

def test_model_bench_smoke(tmp_path, capsys):
    from ssml_stream.bench.cli import main as bench_main
    out = tmp_path / "model.json"
    rc = bench_main(["model", "--height", "16", "--width", "24", "--iters", "1", "--full-iters", "1",
                     "--threads", "1", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["arch"] for r in rows] == ["rt"] * 6 + ["nbsn"] * 3
    for r in rows:
        assert r["fps_best"] > 0 and r["gmac"] > 0 and r["params"] > 0
        limit = 1e-4 if "bf16" not in r["variant"] else 0.05
        assert r["max_abs_diff"] <= limit, r
    assert "ms_best" in capsys.readouterr().out
    assert bench_main(["model", "--threads", "0"]) == 2


def test_rt_starts_as_tfp41():
    """The rt skip path is initialised to TFP41: with the residual branch silenced it returns TFP41."""
    model = build_model("rt").eval()
    with torch.no_grad():
        model.to_full[0].weight.zero_()
        model.to_full[0].bias.zero_()
        x = spikes((1, 41, 18, 30), 0.3)
        torch.testing.assert_close(model(x), tfp_center(x, 41), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["rt", "nbsn"])
def test_brightness_anchor_in_inference_only(arch):
    """Eval mode: every image's mean equals its window's mean firing rate (dark and bright windows in
    one batch); training mode leaves the output alone (crops are too small for a precise count)."""
    torch.manual_seed(0)
    cfg = {"width": 16} if arch == "rt" else {"width1": 16, "width2": 16}
    net = build_model(arch, **cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))   # an untrained, biased network
    x = torch.cat([spikes((1, 41, 20, 28), 0.02, seed=1), spikes((1, 41, 20, 28), 0.8, seed=2)])
    with torch.no_grad():
        anchored = net.eval()(x)
        free = build_model(arch, **cfg, anchor_mean=False)
        free.load_state_dict(net.state_dict())
        unanchored = free.eval()(x)
        trained_mode = net.train()(x)
    window_rate = x.mean(dim=(1, 2, 3))
    torch.testing.assert_close(anchored.mean(dim=(1, 2, 3)), window_rate, rtol=1e-5, atol=1e-7)
    assert (unanchored.mean(dim=(1, 2, 3)) - window_rate).abs().max() > 1e-3  # the anchor did something
    torch.testing.assert_close(trained_mode, unanchored, rtol=1e-4, atol=1e-5)


def test_weights_without_anchor_key_load_unanchored(tmp_path):
    """Files written before the anchor existed describe unanchored networks (models.LEGACY_DEFAULTS)."""
    model = build_model("rt", width=16).eval()
    path = tmp_path / "old.pt"
    save_weights(path, model, "rt", model_config("rt", width=16), {})
    record = torch.load(path, weights_only=True)
    del record["config"]["anchor_mean"]
    torch.save(record, path)
    assert load_weights(path)[0].anchor_mean is False
    assert load_weights("ssml-rt")[0].anchor_mean is True
