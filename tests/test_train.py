"""Trainer: data pipeline, augmentations, loss wiring, loop with checkpoints/resume/logs, DDP."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssml_stream.errors import ConfigError
from ssml_stream.formats import write_dat
from ssml_stream.train.data import (CropSampler, DatOptions, Recording, dihedral, load_dat_recording,
                                    load_recordings, validation_windows)
from ssml_stream.train.curves import read_log
from ssml_stream.train.loop import MutualPair, TrainConfig, Trainer, cosine_lr, mutual_loss


def _spikes(rng, n=45, h=24, w=32, rate=0.3):
    return (rng.random((n, h, w)) < rate).astype(np.uint8)


@pytest.fixture
def tiny_dat(tmp_path, rng):
    """A 45-frame 24x32 recording with a ground-truth PNG at frame 22 (not REDS: gt_frame option)."""
    import cv2

    frames = _spikes(rng)
    path = tmp_path / "data" / "rec.dat"
    path.parent.mkdir()
    write_dat(path, frames)
    gt = (rng.random((24, 32)) * 255).astype(np.uint8)
    cv2.imwrite(str(path.with_suffix(".png")), gt)
    return path, frames, gt


def test_dihedral_gives_eight_distinct_invertible_views(rng):
    x = rng.random((3, 5, 5))
    views = [dihedral(x, i) for i in range(8)]
    assert len({v.tobytes() for v in map(np.ascontiguousarray, views)}) == 8
    assert all(v.shape == x.shape for v in views)
    # every view is a symmetry of the square: the multiset of values per frame is unchanged
    assert all(np.array_equal(np.sort(v[1].ravel()), np.sort(x[1].ravel())) for v in views)


def test_dat_recording_reads_frames_and_png_ground_truth(tiny_dat):
    path, frames, gt = tiny_dat
    rec = load_dat_recording(path, DatOptions(height=24, width=32, gt_frame=22))
    assert rec.frames.shape == (45, 24, 32)
    assert np.array_equal(rec.frames, frames)
    assert list(rec.gt) == [22]
    assert np.allclose(rec.gt[22], gt / 255.0)
    assert list(rec.centres()) == list(range(20, 25))  # every valid centre of a 41-frame window
    val = validation_windows([rec])
    assert len(val) == 1 and val[0].window.shape == (41, 24, 32)
    assert np.array_equal(val[0].window, frames[2:43])


def test_load_recordings_refuses_reds_test_and_missing_paths(tmp_path):
    test_dir = tmp_path / "reds_base" / "test"
    test_dir.mkdir(parents=True)
    write_dat(test_dir / "x.dat", np.zeros((41, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="test data"):
        load_recordings([str(test_dir)], dat_options=DatOptions(8, 8))
    with pytest.raises(ConfigError, match="no such file"):
        load_recordings([str(tmp_path / "absent")])
    with pytest.raises(ConfigError, match="no training data"):
        load_recordings([], [])


def test_crop_sampler_shapes_content_and_seed(rng):
    frames = _spikes(rng, n=50, h=20, w=30)
    rec = Recording("r", frames)
    s1 = CropSampler([rec], crop=8, batch_size=3, seed=5)
    b = s1.sample()
    assert b.shape == (3, 41, 8, 8) and b.dtype == np.uint8
    assert np.array_equal(b, CropSampler([rec], crop=8, batch_size=3, seed=5).sample())
    # each sample is one of the 8 views of some crop of some window of the recording
    found = False
    for c in rec.centres():
        win = rec.window(c)
        for y in range(20 - 8 + 1):
            for x in range(30 - 8 + 1):
                crop = win[:, y:y + 8, x:x + 8]
                if any(np.array_equal(dihedral(crop, k), b[0]) for k in range(8)):
                    found = True
                    break
            if found:
                break
        if found:
            break
    assert found
    with pytest.raises(ConfigError, match="smaller than"):
        CropSampler([rec], crop=40)


def test_cosine_schedule_endpoints():
    assert cosine_lr(3e-4, 0.0) == pytest.approx(3e-4)
    assert cosine_lr(3e-4, 0.5) == pytest.approx(1.5e-4)
    assert cosine_lr(3e-4, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(3e-4, 2.0) == pytest.approx(0.0, abs=1e-12)


def test_mutual_term_sends_gradients_into_both_networks():
    """Mutual learning: MSE(NBSN, BSN) is not detached, so both networks get its gradient."""
    torch.manual_seed(0)
    bsn, nbsn = torch.nn.Conv2d(41, 1, 3, padding=1), torch.nn.Conv2d(41, 1, 1)
    pair = MutualPair(bsn, nbsn)
    x = (torch.rand(2, 41, 8, 8) < 0.3).float()
    b, n = pair(x)
    label = torch.full_like(b, 0.25)
    terms = mutual_loss(b, n, label, mutual_weight=0.01)
    terms["loss_mutual"].backward()
    assert bsn.weight.grad.abs().sum() > 0
    assert nbsn.weight.grad.abs().sum() > 0
    manual = torch.mean((b - label) ** 2) + 0.01 * torch.mean((n - b) ** 2)
    assert torch.allclose(terms["loss"], manual)
    teacher = torch.zeros_like(n)
    t2 = mutual_loss(b, n, label, 0.01, teacher_out=teacher, distill_weight=2.0)
    assert torch.allclose(t2["loss"], manual + 2.0 * torch.mean(n ** 2))
    # the teacher only where it is trusted: a masked-out sample adds nothing to the distillation term
    mask = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    t3 = mutual_loss(b, n, label, 0.01, teacher_out=teacher, distill_weight=2.0, distill_mask=mask)
    assert torch.allclose(t3["loss_distill"], torch.mean((n * mask) ** 2))
    assert t3["loss_distill"] < t2["loss_distill"]


def test_per_sample_weights_scale_each_crop():
    b = torch.zeros(2, 1, 2, 2)
    n = torch.zeros(2, 1, 2, 2)
    label = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 2.0)])
    weight = torch.tensor([2.0, 0.0]).view(2, 1, 1, 1)
    terms = mutual_loss(b, n, label, 0.0, weight=weight)
    assert float(terms["loss_bsn"]) == pytest.approx((2.0 * 1.0 + 0.0 * 4.0) * 4 / 8)


def _tiny_config(tmp_path, dat_path, **kw):
    base = dict(run_dir=str(tmp_path / "run"), dat=[str(dat_path)], nbsn="rt", steps=2, crop=16, batch_size=2,
                val_every=2, log_every=1, seed=3, threads=1, device="cpu", height=24, width=32, gt_frame=22,
                progress=False)
    base.update(kw)
    cfg = TrainConfig(**base)
    return cfg


def test_trainer_runs_checkpoints_logs_and_resumes(tmp_path, tiny_dat):
    path, _, _ = tiny_dat
    cfg = _tiny_config(tmp_path, path)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.pair.bsn.state_dict().items()}
    result = trainer.run()
    assert result["step"] == 2
    after = trainer.pair.bsn.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the BSN was trained
    run = Path(cfg.run_dir)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    for key in ("bsn", "nbsn", "nbsn_arch", "nbsn_config", "optimizer", "step", "args"):
        assert key in ckpt
    assert ckpt["nbsn_arch"] == "rt" and ckpt["step"] == 2
    assert (run / "best.pt").exists() and (run / "curves.png").stat().st_size > 1000
    rows = read_log(run)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("train") == 2 and "val" in kinds and "baseline" in kinds
    val = [r for r in rows if r["kind"] == "val"][-1]
    assert np.isfinite(val["psnr_nbsn"]) and np.isfinite(val["psnr_bsn"]) and "rec" in val["windows"]

    # resume: continues from step 2 to 4 with the saved weights
    cfg2 = _tiny_config(tmp_path, path, steps=4, resume="auto")
    t2 = Trainer(cfg2)
    assert t2.step == 2
    assert all(torch.equal(ckpt["nbsn"][k], v) for k, v in t2.pair.nbsn.state_dict().items())
    assert t2.run()["step"] == 4
    ckpt2 = torch.load(run / "last.pt", weights_only=True)
    assert ckpt2["step"] == 4 and len(ckpt2["commands"]) == 2  # the resume is on record
    assert ckpt2["elapsed_s"] > ckpt["elapsed_s"]

    # distillation from a trained NBSN (here the rt just trained): the extra term is logged
    cfg3 = _tiny_config(tmp_path, path, steps=1, run_dir=str(tmp_path / "run3"), distill_from=str(run / "last.pt"))
    t3 = Trainer(cfg3)
    assert not any(p.requires_grad for teacher, _ in t3.teachers for p in teacher.parameters())
    t3.run()
    train_rows = [r for r in read_log(tmp_path / "run3") if r["kind"] == "train"]
    assert train_rows and train_rows[0]["loss_distill"] >= 0

    # with teacher-free (hard world) clips every logged step carries the BSN-teaching term, also the
    # steps whose batch drew none of them (logging averages steps key by key)
    cfg4 = _tiny_config(tmp_path, path, steps=4, log_every=2, run_dir=str(tmp_path / "run4"),
                        distill_from=str(run / "last.pt"), worlds_hard=1, world_val=1)
    t4 = Trainer(cfg4)
    assert [r.teacher_free for r in t4.recordings] == [False, True]
    draw, keep = t4.sampler.sample_batch, iter([False, True, False, True])

    def every_other_batch_without_free_crops():
        windows, free = draw()
        return windows, free & next(keep)

    t4.sampler.sample_batch = every_other_batch_without_free_crops
    t4.run()
    train_rows = [r for r in read_log(tmp_path / "run4") if r["kind"] == "train"]
    assert len(train_rows) == 2 and all(r["loss_bsn_teach"] >= 0 for r in train_rows)


def test_train_cli_bad_input_is_one_line(tmp_path, capsys):
    from ssml_stream.train.cli import main

    rc = main([str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no such file" in err


@pytest.mark.slow
@pytest.mark.system
def test_ddp_two_cpu_processes(tmp_path, rng):
    """torchrun with 2 gloo processes trains a few steps; rank 0 writes the checkpoint."""
    data = tmp_path / "d"
    data.mkdir()
    write_dat(data / "a.dat", _spikes(rng, n=43, h=16, w=16))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ssml_stream.train.cli", str(data), "--height", "16", "--width", "16", "--nbsn", "rt",
           "--steps", "2", "--crop", "16", "--batch-size", "1", "--threads", "1", "--device", "cpu",
           "--run-dir", str(run), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 2
    config = [r for r in read_log(run) if r["kind"] == "config"]
    assert len(config) == 1 and config[0]["world_size"] == 2
    assert "2 steps" in proc.stdout
