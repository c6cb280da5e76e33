"""ssml-duo: two rt networks blended per pixel by the spike-count change between the window's halves."""
import numpy as np
import pytest
import torch

from ssml_stream.errors import ModelError
from ssml_stream.models import build_model, load_weights, model_config, save_weights
from ssml_stream.runtime import load_model
from ssml_stream.train.duo import assemble, main as duo_main


def regular_spikes(rate: np.ndarray, frames: int = 41, seed: int = 0) -> torch.Tensor:
    """Integrate-and-fire spikes of a still scene: each pixel fires at its own regular pace."""
    phase = np.random.default_rng(seed).random(rate.shape)
    acc = phase[None] + rate[None] * np.arange(frames + 1)[:, None, None]
    return torch.from_numpy(np.diff(np.floor(acc), axis=0).astype(np.float32))[None]


def random_rt(seed: int, **config):
    torch.manual_seed(seed)
    net = build_model("rt", width=16, **config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def duo_of(still, motion, **gate):
    duo = build_model("duo", width=16, **gate).eval()
    duo.still.load_state_dict(still.state_dict())
    duo.motion.load_state_dict(motion.state_dict())
    return duo


def test_a_still_scene_keeps_the_still_network_at_every_light_level():
    still, motion = random_rt(0), random_rt(1)
    duo = duo_of(still, motion)
    light = np.linspace(0.005, 0.95, 24 * 32).reshape(24, 32)
    x = regular_spikes(light)
    with torch.no_grad():
        assert duo.gate(x).max() == 0
        torch.testing.assert_close(duo(x), still(x), rtol=1e-5, atol=1e-6)


def test_a_moving_region_switches_to_the_motion_network_there_only():
    still, motion = random_rt(0), random_rt(1)
    duo = duo_of(still, motion, gate_size=3)
    x = regular_spikes(np.full((24, 32), 0.3))
    x[0, :20, :, 20:] = 1.0   # right part: bright in the first half, dark in the second (an edge passed)
    x[0, 21:, :, 20:] = 0.0
    with torch.no_grad():
        g = duo.gate(x)[0, 0]
        assert g[:, 24:].min() == 1 and g[:, :16].max() == 0
        blend = duo_of(still, motion, gate_size=3, anchor_mean=False)(x)
        unanchored = {}
        for name, net in (("still", still), ("motion", motion)):
            unanchored[name] = build_model("rt", width=16, anchor_mean=False).eval()
            unanchored[name].load_state_dict(net.state_dict())
        torch.testing.assert_close(blend[..., 24:], unanchored["motion"](x)[..., 24:], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(blend[..., :16], unanchored["still"](x)[..., :16], rtol=1e-5, atol=1e-6)


def test_bad_gates_are_refused():
    with pytest.raises(ModelError, match="odd"):
        build_model("duo", gate_size=4)
    with pytest.raises(ModelError, match="gate_low < gate_high"):
        build_model("duo", gate_low=2.0, gate_high=1.0)


def test_build_writes_a_loadable_file_and_refuses_other_archs(tmp_path, capsys):
    still, motion = random_rt(0), random_rt(1)
    for name, net in (("still", still), ("motion", motion)):
        save_weights(tmp_path / f"{name}.pt", net, "rt", model_config("rt", width=16), {"steps": 1})
    out = tmp_path / "duo.pt"
    assert duo_main(["build", str(tmp_path / "still.pt"), str(tmp_path / "motion.pt"), str(out),
                     "--gate-size", "3", "--gate-low", "0.5", "--gate-high", "1.5"]) == 0
    duo, meta = load_weights(out)
    assert meta["arch"] == "duo" and meta["gate"] == {"size": 3, "low": 0.5, "high": 1.5}
    x = regular_spikes(np.full((16, 20), 0.2))
    with torch.no_grad():
        torch.testing.assert_close(duo(x), still(x), rtol=1e-3, atol=1e-4)  # fp16 file, still scene
    save_weights(tmp_path / "bsn.pt", build_model("bsn"), "bsn", model_config("bsn"), {})
    with pytest.raises(ModelError, match="blends two rt networks"):
        assemble(str(tmp_path / "still.pt"), str(tmp_path / "bsn.pt"), 9, 1.0, 2.0)
    assert duo_main(["build", str(tmp_path / "still.pt"), str(tmp_path / "bsn.pt"), str(tmp_path / "x.pt")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "blends two rt networks" in err[0] and not (tmp_path / "x.pt").exists()


def test_shipped_duo_loads_traced_and_matches_eager():
    rec = load_model("ssml-duo", "cpu")
    eager, _ = load_weights("ssml-duo")
    window = (np.random.default_rng(0).random((41, 40, 56)) < 0.3).astype(np.uint8)
    with torch.no_grad():
        want = eager(torch.from_numpy(window.astype(np.float32))[None])[0, 0].numpy()
    np.testing.assert_allclose(rec(window), want, rtol=1e-4, atol=1e-5)
