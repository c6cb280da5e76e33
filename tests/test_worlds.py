"""World clips (training distribution and evaluation sweep), the adaptive label and light normalisation."""
import math

import numpy as np
import pytest
import torch

from ssml_stream.drivers.worlds import ClipSpec, add_hot_pixels, hard_spec, random_spec, render_clip
from ssml_stream.models import build_model
from ssml_stream.models.features import adaptive_label, tfi_center


@pytest.mark.parametrize("rate", [0.02, 0.3, 0.9])
def test_clip_fires_at_the_requested_mean_rate(rate):
    clip = render_clip(ClipSpec(texture="leaves", seed=3, mean_rate=rate, height=48, width=64, n_frames=201))
    assert clip.frames.shape == (201, 48, 64) and set(np.unique(clip.frames)) <= {0, 1}
    assert clip.frames.mean() == pytest.approx(rate, rel=0.05)
    gt = clip.gt[100]
    assert gt.min() >= 0 and gt.max() <= 1
    assert clip.rate_gain * gt.mean() == pytest.approx(rate, rel=0.02)


def test_translation_moves_the_texture_by_the_requested_pixels():
    spec = ClipSpec(texture="pink", seed=4, speed=1.0, direction_deg=0.0, height=32, width=48, n_frames=41)
    clip = render_clip(spec, gt_frames=[0, 10])
    # the picture at frame 10 is the picture at frame 0 moved 10 px to the left (texture moves at +x)
    a, b = clip.gt[0], clip.gt[10]
    assert np.abs(b[:, :-10] - a[:, 10:]).max() < 1e-4
    assert np.abs(b - a).mean() > 0.01


def test_spinning_disk_changes_only_inside_the_disk():
    clip = render_clip(ClipSpec(texture="leaves", seed=5, rpm=5000, height=64, width=96, n_frames=21),
                       gt_frames=[0, 20])
    diff = np.abs(clip.gt[20] - clip.gt[0])
    assert diff[:, :10].max() == 0 and diff[:, -10:].max() == 0  # outside the centred disk
    assert diff[20:44, 36:60].mean() > 0.01


def test_hot_pixels_fire_often():
    frames = np.zeros((200, 20, 20), np.uint8)
    add_hot_pixels(frames, 0.01, np.random.default_rng(0))
    rates = frames.mean(axis=0)
    assert (rates > 0).sum() == 4 and rates[rates > 0].min() > 0.3


def test_random_specs_cover_motion_light_and_faults():
    rng = np.random.default_rng(0)
    specs = [random_spec(rng) for _ in range(300)]
    rates = [s.mean_rate for s in specs]
    assert min(rates) < 0.015 and max(rates) > 0.8
    assert max(s.speed for s in specs) > 1.0 and any(s.rpm for s in specs) and any(s.speed == 0 and not s.rpm for s in specs)
    assert any(s.hot_fraction for s in specs) and any(s.dark_rate for s in specs)


def test_hard_specs_are_the_sweeps_weak_corners():
    """Every hard clip is fast or photon-noisy (never both), at mid light; each kind appears."""
    rng = np.random.default_rng(0)
    specs = [hard_spec(rng) for _ in range(200)]
    fast = [s for s in specs if s.speed >= 0.4]
    photons = [s for s in specs if s.photons_per_spike]
    assert len(fast) + len(photons) == len(specs) and min(len(fast), len(photons)) > 70
    assert all(2 <= s.photons_per_spike <= 10 and s.speed <= 0.3 for s in photons)
    assert all(s.speed <= 1.3 and not s.threshold_sigma for s in fast)
    assert all(0.1 <= s.mean_rate <= 0.6 for s in specs)


def test_training_clips_never_use_evaluation_seeds():
    from ssml_stream.drivers.worlds import EVAL_SEED_LIMIT
    from ssml_stream.train.sweep import sweep_seeds

    class LowFirst:  # a generator whose first seed draws land in the evaluation range
        def __init__(self):
            self.rng, self.low = np.random.default_rng(0), [5, 1000]

        def integers(self, *a, **k):
            return self.low.pop(0) if self.low and a == (1 << 30,) else self.rng.integers(*a, **k)

        def __getattr__(self, name):
            return getattr(self.rng, name)

    assert random_spec(LowFirst()).seed >= EVAL_SEED_LIMIT
    assert hard_spec(LowFirst()).seed >= EVAL_SEED_LIMIT
    assert max(sweep_seeds()) < EVAL_SEED_LIMIT


def test_adaptive_label_is_unbiased_where_tfi_is_not():
    # a static pixel firing every 40 frames: TFI falls back to 1/24; the adaptive label counts spikes
    x = torch.zeros(1, 41, 1, 1)
    x[0, 5] = 1
    assert float(tfi_center(x, 12, 24)) == pytest.approx(1 / 24)
    assert float(adaptive_label(x, 12, 24)) == pytest.approx(1 / 41)
    bright = torch.zeros(1, 41, 1, 1)
    bright[0, ::4] = 1  # every 4th frame: enough spikes, TFI is used
    assert float(adaptive_label(bright, 12, 24)) == pytest.approx(float(tfi_center(bright, 12, 24)))


def test_normalised_rt_starts_as_tfp41_at_any_light_level():
    net = build_model("rt").eval()
    assert net.normalize
    for rate in (0.01, 0.5):
        x = (torch.rand(1, 41, 16, 20, generator=torch.Generator().manual_seed(1)) < rate).float()
        with torch.no_grad():
            net.to_full[0].weight.zero_()
            net.to_full[0].bias.zero_()
            out = net(x)
        assert torch.allclose(out[0, 0], x[0].mean(0), atol=1e-5)


def test_sweep_scores_baselines_and_models(monkeypatch, tmp_path):
    from ssml_stream.features import tfp
    from ssml_stream.train import sweep

    monkeypatch.setattr(sweep, "SIZE", (40, 48))
    few = [s for s in sweep.settings() if s.name in ("translate 0.6 px/frame", "rate 0.03", "hot pixels 0.1 %")]
    monkeypatch.setattr(sweep, "settings", lambda: few)
    result = sweep.run_sweep({"tfp41 as a model": lambda w: tfp(w)})
    assert list(result["rows"]) == [s.name for s in few]
    for row in result["rows"].values():
        assert len(row["cases"]) == 2
        assert row["psnr"]["TFP best"] >= row["psnr"]["TFP41"] - 1e-9  # the oracle includes n = 41
        assert row["psnr"]["tfp41 as a model"] == pytest.approx(row["psnr"]["TFP41"])
        assert row["margin"]["tfp41 as a model"] <= 1e-9
    fast = result["rows"]["translate 0.6 px/frame"]
    assert max(fast["tfp_best_n"]) < 41  # fast motion: a shorter window wins
    text = sweep.format_sweep(result)
    assert "translate 0.6 px/frame" in text and "tfp41 as a model margin" in text
    sweep.plot_sweep(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_local_rate_is_the_smooth_local_mean():
    from ssml_stream.models.rt import local_rate

    flat = torch.full((1, 1, 16, 24), 0.2)
    assert torch.allclose(local_rate(flat), torch.full_like(flat, 0.2 + 1e-3), atol=1e-6)
    step = torch.zeros(1, 1, 64, 64)
    step[..., 32:] = 0.6  # dark left half, bright right half
    r = local_rate(step)[0, 0]
    assert r[:, 0].max() < 0.01 and r[:, -1].min() > 0.59       # far from the edge: the local level
    assert 0.05 < float(r[10, 32]) < 0.55                          # at the edge: in between, no jump
    assert (r[10, 1:] - r[10, :-1] >= -1e-6).all()                 # monotone across the edge


def test_normalised_rt_sees_the_light_level():
    """The log of the local rate is an input channel: the same relative pattern at two light levels
    reaches the convolutions as different inputs (the global-mean version could not tell them apart)."""
    net = build_model("rt").eval()
    assert net.down[0].in_channels == net.skip.in_channels + 1
