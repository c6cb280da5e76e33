"""Self-supervised adaptation: fine-tuning from shipped weights (`ssml-train --init`) and online
adaptation while streaming (`ssml-stream --adapt`, train/adapt.py)."""
import itertools
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ssml_stream.features import psnr
from ssml_stream.formats import pack_frames
from ssml_stream.models import build_model, companion_bsn, load_weights, save_weights
from ssml_stream.models.features import adaptive_label
from ssml_stream.pipeline import Pipeline
from ssml_stream.ring import Ring
from ssml_stream.runtime import load_model
from ssml_stream.stream_cli import build_parser, config_from_args, main as stream_main
from ssml_stream.train import adapt as adapt_module
from ssml_stream.train.adapt import AdaptOptions, Adapter
from ssml_stream.train.cli import main as train_main
from ssml_stream.train.evaluate import load_model_fn
from ssml_stream.train.checkpoints import load_init

SIM_64 = ["--device", "sim", "--height", "64", "--width", "64", "--model", "ssml", "--no-publish"]
DEADLINE_S = 240  # this machine is shared with a training job: waits are generous, never timed


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"no {what} within {deadline_s} s")
        time.sleep(0.1)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def spike_window(rng, h=64, w=64):
    return (rng.random((41, h, w)) < 0.3).astype(np.uint8)


def adapting_pipeline(lines: list, *flags: str) -> Pipeline:
    args = build_parser().parse_args([*SIM_64, "--adapt", "--adapt-lr", "1e-3", *flags])
    return Pipeline(config_from_args(args), log=lines.append)


def run_until(pipeline: Pipeline, spawn, condition, what: str):
    """Run the pipeline in a thread until condition() and 10 more outputs, then stop; the summary."""
    run = spawn(pipeline.run)
    try:
        wait_for(lambda: condition() or not run.is_alive(), what)
        outputs = pipeline.windows_out
        wait_for(lambda: pipeline.windows_out >= outputs + 10 or not run.is_alive(), f"outputs after {what}")
    finally:
        pipeline.stop()
    return run.result(60)


# ------------------------------------------------------------------------------------- streaming


@pytest.mark.slow
def test_adapt_swaps_in_trained_weights_without_dropping_frames(tmp_path, spawn, rng, monkeypatch):
    # every candidate scores better: the swap mechanics, whatever the data (the gate is tested below)
    scores = itertools.count(1000.0, -1.0)
    monkeypatch.setattr(Adapter, "_held_out_score", lambda self, nbsn: next(scores))
    save = tmp_path / "mine.pt"
    lines: list[str] = []
    pipeline = adapting_pipeline(lines, "--adapt-every", "0.5", "--adapt-save", str(save))
    shipped_rec = pipeline.rec
    swap_shown = re.compile(r"adapt steps \d+ loss \S+ swaps [1-9]")
    summary = run_until(pipeline, spawn, lambda: any(map(swap_shown.search, lines)), "swap in a status line")
    adapter = pipeline.adapter
    assert adapter.error is None, adapter.error
    assert adapter.swaps >= 1 and adapter.steps >= 1 and adapter.poisoned == 0
    assert summary.frames_dropped == 0 and summary.frames_in > 0
    assert pipeline.rec is not shipped_rec  # the reconstruct loop runs the swapped-in network
    stats = adapter.stats()
    assert stats["adapt_swaps"] == adapter.swaps and stats["adapt_since_swap_s"] >= 0
    assert {"adapt_steps", "adapt_loss", "adapt_live_score", "adapt_poisoned"} <= stats.keys()

    adapted, meta = load_weights(save)
    shipped, _ = load_weights("ssml")
    assert not states_equal(adapted, shipped)
    assert meta["adapt_swaps"] == adapter.swaps and companion_bsn(save) is not None
    # the file holds exactly the network that was live at the end (saved as fp16)
    window = spike_window(rng)
    np.testing.assert_allclose(load_model(str(save), "cpu")(window), pipeline.rec(window), atol=5e-3)
    _, run_eval_model = load_model_fn(str(save))
    assert np.isfinite(run_eval_model(window)).all()


@pytest.mark.slow
def test_poisoned_steps_are_skipped_and_the_stream_goes_on(tmp_path, spawn, monkeypatch):
    real_batch = Adapter._batch

    def poisoned_batch(self):
        x, gain = real_batch(self)
        x[0, 0, 0, 0] = float("nan")
        return x, gain

    monkeypatch.setattr(Adapter, "_batch", poisoned_batch)
    save = tmp_path / "p.pt"
    lines: list[str] = []
    pipeline = adapting_pipeline(lines, "--adapt-every", "0.5", "--adapt-save", str(save))
    summary = run_until(pipeline, spawn, lambda: pipeline.adapter.poisoned >= 3, "poisoned steps")
    adapter = pipeline.adapter
    assert adapter.error is None, adapter.error
    assert adapter.steps == 0 and adapter.swaps == 0 and adapter.poisoned >= 3
    assert summary.frames_dropped == 0
    saved, _ = load_weights(save)  # written at close: still the shipped network
    assert states_equal(saved, load_weights("ssml")[0])


@pytest.fixture(scope="module")
def sim_64():
    """600 packed frames of a simulated 64 x 64 scene."""
    from ssml_stream.drivers.sim import simulate

    return np.asarray(simulate("shapes", 600, height=64, width=64, seed=3).packed)


def fed_adapter(packed, model="ssml", samples=4, **options) -> tuple[Adapter, list]:
    """An adapter (not started) that has taken `samples` samples of 123 frames from a ring."""
    ring = Ring(packed.shape[1], capacity=1000)
    installed = []
    adapter = Adapter(ring, 64, 64, 64, model, install=installed.append, log=lambda msg: None,
                      options=AdaptOptions(**options))
    for i in range(samples):
        ring.write(packed[123 * i:123 * (i + 1)], 0)
        adapter._sample()
    return adapter, installed


class Net(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def perturbed(model: torch.nn.Module, scale: float) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean())
    return model


def test_the_gate_swaps_a_better_nbsn_in_and_keeps_a_worse_one_out(tmp_path, sim_64):
    shipped, meta = load_weights("ssml")
    save_weights(tmp_path / "worse.pt", perturbed(load_weights("ssml")[0], 0.03), "rt", meta["config"], {})
    adapter, installed = fed_adapter(sim_64, str(tmp_path / "worse.pt"))  # live: the perturbed NBSN
    assert len(adapter.holdout) == 16 and adapter.holdout[0].shape == (41, 40, 40)
    adapter.live_score = adapter._held_out_score(adapter._live.nbsn)
    assert adapter._held_out_score(shipped) < adapter.live_score  # the score sees the 0.03 perturbation

    perturbed(adapter.pair.nbsn, 0.1)  # a candidate worse than the live one: stays out
    adapter._check()
    assert installed == [] and adapter.swaps == 0

    adapter.pair.nbsn.load_state_dict(shipped.state_dict())  # a better one: swapped in
    adapter._check()
    assert len(installed) == 1 and adapter.swaps == 1 and states_equal(adapter._live.nbsn, shipped)
    window = adapter.holdout[0]
    np.testing.assert_allclose(installed[0](window), load_model("ssml", "cpu")(window), atol=1e-5)


def test_the_score_never_shows_the_network_the_spikes_it_is_scored_against(sim_64):
    adapter, _ = fed_adapter(sim_64)
    blank = adapter._held_out_score(Net(lambda x: torch.zeros_like(x[:, :1])))
    cheat = adapter._held_out_score(Net(adaptive_label))  # 0 if it saw the scored pixels' own spikes
    assert cheat > 0.05 * blank > 0


def test_under_fast_motion_the_score_prefers_the_sharper_network_as_ground_truth_does():
    from ssml_stream.drivers.worlds import ClipSpec, render_clip

    clip = render_clip(ClipSpec(seed=5, speed=0.6, height=64, width=64, n_frames=4 * 123), gt_frames=[61])
    adapter, _ = fed_adapter(pack_frames(clip.frames), "ssml")
    sharp = load_weights("ssml")[0].eval()
    blurred = torch.nn.Sequential(sharp, torch.nn.AvgPool2d(5, stride=1, padding=2, count_include_pad=False))
    window = torch.from_numpy(clip.frames[41:82].astype(np.float32))[None]
    truth = clip.gt[61] * clip.rate_gain
    with torch.no_grad():
        assert psnr(sharp(window)[0, 0].numpy(), truth) > psnr(blurred(window)[0, 0].numpy(), truth)
    assert adapter._held_out_score(sharp) < adapter._held_out_score(blurred)


def test_weights_that_are_not_finite_are_never_swapped_in(sim_64):
    adapter, installed = fed_adapter(sim_64, samples=3, holdout_windows=1, crops_per_window=2, batch_size=2)
    adapter.live_score = adapter._held_out_score(adapter._live.nbsn)
    assert np.isfinite(adapter.live_score)
    with torch.no_grad():
        next(adapter.pair.nbsn.parameters()).fill_(float("nan"))
    adapter._check()
    assert installed == [] and adapter.swaps == 0 and adapter.poisoned == 1
    assert states_equal(adapter.pair, adapter._live)  # reset to the live weights
    adapter._step()
    assert adapter.steps == 1


def test_steps_and_scores_see_the_output_over_the_pixel_gain_map(sim_64, monkeypatch):
    """With a gain map in use the NBSN is trained and scored on what the stream shows (its output over
    the map, the label likewise): a map of 2 everywhere quarters the score; the crops of a batch come
    with the map under them, turned the way the crop was."""
    adapter, _ = fed_adapter(sim_64, samples=3, holdout_windows=1, crops_per_window=2, batch_size=2)
    plain = adapter._held_out_score(adapter._live.nbsn)
    adapter.gain = np.full((64, 64), 2.0, np.float32)
    assert adapter._held_out_score(adapter._live.nbsn) == pytest.approx(plain / 4, rel=1e-5)
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1)) / 64 + 0.5   # grows to the right
    adapter.gain = ramp
    x, gain = adapter._batch()
    assert x.shape == (2, 41, 40, 40) and gain.shape == (2, 1, 40, 40)
    assert all(float(g.std()) > 0 for g in gain)   # a real crop of the ramp, not a constant
    seen = {}
    real_loss = adapt_module.mutual_loss

    def recording_loss(bsn_out, nbsn_out, label, *args, **kwargs):
        seen.update(nbsn_out=nbsn_out, label=label)
        return real_loss(bsn_out, nbsn_out, label, *args, **kwargs)

    adapter.gain = np.full((64, 64), 2.0, np.float32)
    real_batch = adapter._batch
    monkeypatch.setattr(adapter, "_batch", lambda: seen.setdefault("batch", real_batch()))
    monkeypatch.setattr(adapt_module, "mutual_loss", recording_loss)
    adapter.pair.nbsn.register_forward_hook(lambda module, args, out: seen.setdefault("raw", out))
    adapter._step()
    x = seen["batch"][0]
    torch.testing.assert_close(seen["label"], adaptive_label(x) / 2)   # what the stream shows, label and
    torch.testing.assert_close(seen["nbsn_out"], seen["raw"].float() / 2)   # output alike
    assert adapter.steps == 1 and np.isfinite(adapter.loss)


def test_the_adapter_never_holds_up_a_lossless_producer(rng, spawn):
    packed = pack_frames((rng.random((500, 64, 64)) < 0.3).astype(np.uint8))
    ring = Ring(packed.shape[1], capacity=200, lossless=True)
    adapter = Adapter(ring, 64, 64, 64, "ssml", install=lambda rec: None, log=lambda msg: None)
    spawn(ring.write, packed, 0).result(30)  # 5x the capacity, nobody reading: must not wait
    adapter._sample()
    assert ring.head == 500 and len(adapter.holdout) == adapter.options.crops_per_window


@pytest.mark.system
@pytest.mark.slow
def test_ctrl_c_writes_the_adapted_weights(tmp_path):
    save = tmp_path / "cam.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssml_stream.stream_cli", *SIM_64, "--adapt", "--adapt-lr", "1e-3",
         "--adapt-every", "0.5", "--adapt-save", str(save)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        end = time.monotonic() + DEADLINE_S
        seen = []
        while time.monotonic() < end:
            line = proc.stderr.readline()
            seen.append(line)
            if not line or re.search(r"adapt steps [1-9]\d* ", line):
                break
        assert seen[-1].startswith("["), seen  # a status line of a run that is training
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "frames dropped 0," in rest and re.search(r"adapt: [1-9]\d* steps", rest), rest
    model, meta = load_weights(save)
    assert meta["adapt_steps"] >= 1 and all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.system
def test_a_plain_run_imports_no_training_code():
    code = ("import sys; from ssml_stream.stream_cli import main; "
            "rc = main(['--device', 'sim', '--height', '64', '--width', '64', '--model', 'ssml', "
            "'--duration', '0.3', '--no-publish', '--quiet']); "
            "print(rc, sorted(m for m in sys.modules if m.startswith('ssml_stream.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


@pytest.mark.parametrize("args, message", [
    (["--adapt-lr", "1e-3"], "need --adapt"),
    (["--adapt", "--model", "tfp"], "'tfp' has none"),
    (["--adapt", "--adapt-save", "/nonexistent/dir/x.pt"], "does not exist"),
    (["--adapt", "--adapt-every", "0"], "--adapt-every"),
])
def test_adapt_bad_input_is_one_line_exit_2(args, message, capsys):
    rc = stream_main([*SIM_64, "--duration", "0.1", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


# ------------------------------------------------------------------------------------- fine-tuning


def test_init_fine_tunes_shipped_weights_on_arrays_and_writes_loadable_weights(tmp_path, rng, capsys):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "cam.npy", (rng.random((45, 48, 48)) < 0.3).astype(np.uint8))
    run_dir = tmp_path / "run"
    rc = train_main([str(data), "--init", "ssml", "--steps", "3", "--crop", "16", "--run-dir", str(run_dir),
                     "--no-progress", "--threads", "1"])
    err = capsys.readouterr()
    assert rc == 0, err.err
    assert "3 steps" in err.out and str(run_dir / "adapted.pt") in err.out
    adapted, meta = load_weights(run_dir / "adapted.pt")
    assert meta["arch"] == "rt" and meta["init"] == "ssml" and meta["steps"] == 3
    assert not states_equal(adapted, load_weights("ssml")[0])
    assert load_weights(companion_bsn(run_dir / "adapted.pt"))[1]["arch"] == "bsn"
    window = spike_window(rng, 48, 48)
    assert np.isfinite(load_model(str(run_dir / "adapted.pt"), "cpu")(window)).all()
    assert np.isfinite(load_model_fn(str(run_dir / "adapted.pt"))[1](window)).all()


def test_init_takes_the_bsn_beside_the_weights_or_from_a_checkpoint(tmp_path):
    nbsn, meta = load_weights("ssml")
    save_weights(tmp_path / "cam.pt", nbsn, "rt", meta["config"], {})
    fresh = load_init(str(tmp_path / "cam.pt"))
    assert fresh.warning and "cam-bsn.pt" in fresh.warning  # no BSN beside it: from scratch, said once
    bsn = build_model("bsn")
    save_weights(tmp_path / "cam-bsn.pt", bsn, "bsn", {}, {})
    init = load_init(str(tmp_path / "cam.pt"))
    assert init.warning is None and init.nbsn_arch == "rt" and init.nbsn_config == meta["config"]
    assert states_equal(init.nbsn, nbsn)
    assert states_equal(init.bsn, load_weights(tmp_path / "cam-bsn.pt")[0])
    ckpt = {"bsn": bsn.state_dict(), "nbsn": nbsn.state_dict(), "nbsn_arch": "rt", "nbsn_config": meta["config"]}
    torch.save(ckpt, tmp_path / "last.pt")
    from_ckpt = load_init(str(tmp_path / "last.pt"))
    assert states_equal(from_ckpt.bsn, bsn) and states_equal(from_ckpt.nbsn, nbsn)


def test_folders_of_recordings_list_spike_arrays_but_not_ground_truth(tmp_path, rng):
    from ssml_stream.formats import write_dat
    from ssml_stream.train.data import find_dat_files

    spikes = (rng.random((41, 8, 8)) < 0.3).astype(np.uint8)
    write_dat(tmp_path / "clip.dat", spikes)
    np.savez(tmp_path / "clip.npz", frames=np.zeros(1), intensity=np.zeros((1, 8, 8)))  # ssml-sim's ground truth
    np.save(tmp_path / "cam.npy", spikes)
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "cam2.npz", spk=spikes)
    assert find_dat_files([tmp_path]) == [tmp_path / "cam.npy", tmp_path / "clip.dat", tmp_path / "sub" / "cam2.npz"]
