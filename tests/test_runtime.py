import os
import warnings

import numpy as np
import pytest
import torch

from ssml_stream import models
from ssml_stream.errors import ModelError
from ssml_stream.features import tfi, tfp
from ssml_stream.runtime import RuntimeOptions, TorchReconstructor, default_threads, load_model

H, W = 32, 48


@pytest.fixture
def window(rng):
    return (rng.random((41, H, W)) < 0.3).astype(np.uint8)


@pytest.fixture(scope="module")
def rt_model():
    torch.manual_seed(0)
    return models.build_model("rt").eval()


def eager(model, window):
    with torch.no_grad():
        return model(torch.from_numpy(window).float()[None])[0, 0].numpy()


@pytest.mark.parametrize("name, reference", [("tfp", tfp), ("tfi", tfi)])
def test_classical_matches_features_and_fills_out(name, reference, window):
    rec = load_model(name)
    assert rec.name == name and rec.device == "cpu"
    out = np.full((H, W), -1, np.float32)
    result = rec(window, out)
    assert result is out
    np.testing.assert_array_equal(out, reference(window))


def test_torchscript_file_matches_eager(tmp_path, rt_model, window):
    path = tmp_path / "rt.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(rt_model, torch.zeros(1, 41, H, W), check_trace=False).save(str(path))
    rec = load_model(str(path), "cpu")
    assert rec.window_frames == 41 and rec.device == "cpu"
    rec.warm_up(H, W)
    np.testing.assert_allclose(rec(window), eager(rt_model, window), atol=1e-5)


def test_shipped_weights_file_loads_with_meta(tmp_path, rt_model, window):
    path = tmp_path / "w.pt"
    models.save_weights(path, rt_model, "rt", {}, {"note": "untrained test net"})
    rec = load_model(str(path), "cpu")
    assert rec.meta["note"] == "untrained test net"
    half = models.build_model("rt").eval()
    half.load_state_dict({k: v.half().float() for k, v in rt_model.state_dict().items()})
    np.testing.assert_allclose(rec(window), eager(half, window), atol=1e-4)


def test_exported_pt2_loads(tmp_path, window):
    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=1, keepdim=True)

    path = tmp_path / "mean.pt2"
    torch.export.save(torch.export.export(Mean(), (torch.zeros(1, 41, H, W),)), str(path))
    rec = load_model(str(path), "cpu")
    np.testing.assert_allclose(rec(window), tfp(window), atol=1e-6)


def test_traced_and_eager_agree_and_bf16_is_close(rt_model, window):
    ref = eager(rt_model, window)
    traced = TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu", trace=True))
    np.testing.assert_allclose(traced(window), ref, atol=1e-5)
    bf16 = TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu", precision="bf16"))
    assert np.abs(bf16(window) - ref).max() < 0.05


def test_no_warnings_reach_the_user(tmp_path, rt_model, window):
    path = tmp_path / "rt.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(rt_model, torch.zeros(1, 41, H, W), check_trace=False).save(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load_model(str(path), "cpu")
        rec.warm_up(H, W)
        rec(window)
        TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu"))(window)
    assert [str(w.message)[:80] for w in caught] == []


def test_thread_count_changes_only_when_asked(rt_model):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_model("tfp")(np.zeros((41, 8, 8), np.uint8))
        TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu"))(np.zeros((41, H, W), np.uint8))
        assert torch.get_num_threads() == 2  # building and running a model leaves the process setting alone
        TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert default_threads() == max(1, (os.cpu_count() or 2) - 1)  # what the pipeline asks for


def test_errors_are_model_errors(tmp_path, rt_model, window):
    with pytest.raises(ModelError, match="unknown model"):
        load_model("nonsense")
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        load_model(str(junk))
    rec = TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu"))
    with pytest.raises(ModelError, match="41-frame"):
        rec(window[:21])
    with pytest.raises(ModelError, match="out must be"):
        rec(window, np.empty((H, W + 1), np.float32))
    with pytest.raises(ModelError, match="precision"):
        TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu", precision="fp8"))
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            load_model("tfp", "cuda")
        with pytest.raises(ModelError, match="CUDA only"):
            TorchReconstructor(rt_model, "rt", RuntimeOptions(compute="cpu", precision="fp16"))


def test_shipped_name_loads_or_says_how_to_train(window):
    if os.path.exists(models.WEIGHTS_DIR / models.SHIPPED["ssml-rt"]):
        rec, old_name = load_model("ssml-rt", "cpu"), load_model("ssml", "cpu")
        assert rec.name == "ssml-rt" and old_name.name == "ssml"  # the earlier name is still accepted
        np.testing.assert_array_equal(rec(window), old_name(window))
    else:
        with pytest.raises(ModelError, match="ssml-train"):
            load_model("ssml")


# ---------------------------------------------------------------- wrong or damaged models fail at load time


class _Conv(torch.nn.Module):
    def __init__(self, frames=41, out=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(frames, out, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def _torchscript(module, path, frames=41):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(module.eval(), torch.zeros(1, frames, 16, 16), check_trace=False).save(str(path))
    return path


def _one_line_model_error(path, *fragments):
    with pytest.raises(ModelError) as err:
        load_model(str(path), "cpu")
    text = str(err.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.parametrize("change, fragments", [
    (lambda r: r["state_dict"].pop("skip.weight"), ["do not fit", "missing skip.weight"]),
    (lambda r: r["state_dict"].update(extra=torch.zeros(1)), ["unexpected extra"]),
    (lambda r: r["state_dict"].update({"skip.weight": torch.zeros(2, 2)}), ["skip.weight has shape [2, 2]"]),
    (lambda r: r.update(arch="vgg"), ["arch must be one of"]),
    (lambda r: r.update(arch=["rt"]), ["arch must be one of"]),
    (lambda r: r.update(config=[1, 2]), ["config map"]),
    (lambda r: r.update(config={"width": -4}), ["invalid config"]),
    (lambda r: r.update(state_dict={"skip.weight": 3}), ["map names to tensors"]),
    (lambda r: r.update(format="other"), ["not an ssml-stream weights file"]),
])
def test_malformed_weights_records(tmp_path, rt_model, change, fragments):
    path = tmp_path / "w.pt"
    models.save_weights(path, rt_model, "rt", {}, {})
    record = torch.load(path, weights_only=True)
    change(record)
    torch.save(record, path)
    _one_line_model_error(path, *fragments)


def test_nan_weights_fail_the_probe(tmp_path, rt_model):
    path = tmp_path / "nan.pt"
    models.save_weights(path, rt_model, "rt", {}, {})
    record = torch.load(path, weights_only=True)
    record["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in record["state_dict"].items()}
    torch.save(record, path)
    _one_line_model_error(path, "NaN")


def test_torchscript_for_other_inputs_or_outputs(tmp_path):
    _one_line_model_error(_torchscript(_Conv(frames=21), tmp_path / "21.ts", frames=21),
                          "does not run on a 1 x 41 x 32 x 32 spike window")
    _one_line_model_error(_torchscript(_Conv(out=3), tmp_path / "rgb.ts"), "returned (1, 3, 32, 32)")


def test_pt2_for_other_inputs_and_static_size(tmp_path, window):
    def export(module, path, frames=41, h=16, w=16, dynamic=True):
        dims = {"x": {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}} if dynamic else None
        program = torch.export.export(module.eval(), (torch.zeros(1, frames, h, w),), dynamic_shapes=dims)
        torch.export.save(program, str(path))
        return path

    _one_line_model_error(export(_Conv(frames=21), tmp_path / "21.pt2", frames=21), "does not run on a")
    _one_line_model_error(export(_Conv(out=2), tmp_path / "two.pt2"), "returned (1, 2, 32, 32)")
    static = load_model(str(export(_Conv(), tmp_path / "static.pt2", h=H, w=W, dynamic=False)), "cpu")
    assert static(window).shape == (H, W)          # probed at its own size, not refused
