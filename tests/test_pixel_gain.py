"""The sensor's per-pixel gain learnt from a moving scene (ssml_stream/pixel_gain.py) and its use."""
import shutil

import numpy as np
import pytest

from ssml_stream import pixel_gain
from ssml_stream.errors import ConfigError
from ssml_stream.models import WEIGHTS_DIR
from ssml_stream.pixel_gain import PixelGainEstimator, gain_path_for, load_gain, save_gain_atomic
from ssml_stream.stream_cli import main as stream_main

SIZE = 48


def smooth_texture(rng, h, w):
    """Blobs of a few pixels spanning a 1:9 light range (a low-contrast scene whose texture is weaker
    than the pattern counts as still: the estimator is conservative there)."""
    import cv2
    blurred = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    return 0.1 + 0.9 * (blurred - blurred.min()) / (blurred.max() - blurred.min())


def scene(rng, gain, frames=3000, moving=np.ones(SIZE, bool)):
    """Integrate-and-fire spikes (mean rate ~0.3) of a texture sliding left by 0.5 px per frame in the
    columns where `moving` is set and standing still in the others, each pixel's rate times gain."""
    tex = smooth_texture(rng, SIZE, SIZE + frames // 2 + 1)
    tex *= 0.3 / tex.mean()
    acc = rng.random((SIZE, SIZE)).astype(np.float32)
    out = np.empty((frames, SIZE, SIZE), np.uint8)
    for t in range(frames):
        shift = np.where(moving, t // 2, 0)
        rate = tex[:, np.arange(SIZE) + shift] * gain
        acc += rate
        fired = acc >= 1
        acc -= fired
        out[t] = fired
    return out


def estimate(spikes, rng, windows=200):
    est = PixelGainEstimator(SIZE, SIZE)
    for start in rng.integers(0, len(spikes) - 41, windows):
        est.add(spikes[start:start + 41])
    return est.estimate()


def pattern(rng, sigma=0.1):
    return (1 / np.maximum(1 + sigma * rng.standard_normal((SIZE, SIZE)), 0.2)).astype(np.float32)


def test_a_moving_scene_reveals_the_threshold_pattern(rng):
    truth = pattern(rng)
    gain, info = estimate(scene(rng, truth), rng)
    assert gain is not None and info["pattern_share"] > 0.5
    inner = (slice(4, -4), slice(4, -4))   # the box means see reflected borders
    assert np.corrcoef(gain[inner].ravel(), truth[inner].ravel())[0, 1] > 0.8
    assert np.std((truth / gain)[inner]) < 0.5 * np.std(truth[inner])  # the pattern left after correction


def test_no_pattern_no_correction(rng):
    gain, info = estimate(scene(rng, np.ones((SIZE, SIZE), np.float32)), rng)
    assert gain is None or np.abs(gain - 1).max() < 0.02, info


def test_hot_pixels_are_corrected_without_inventing_a_pattern(rng):
    spikes = scene(rng, np.ones((SIZE, SIZE), np.float32))
    hot = (np.array([10, 20, 30]), np.array([12, 25, 40]))
    spikes[:, hot[0], hot[1]] = rng.random((len(spikes), 3)) < 0.9   # fire in 90 % of the frames, whatever the light
    gain, info = estimate(spikes, rng)
    assert gain is not None and info["pattern_share"] < 0.1
    assert np.all(gain[hot] > 1.5)
    others = np.ones(gain.shape, bool)
    others[hot] = False
    assert np.abs(gain[others] - 1).max() < 0.02


def test_a_still_scene_is_never_corrected(rng):
    # texture and a threshold pattern cannot be told apart on a still scene: no map at all
    spikes = scene(rng, pattern(rng), moving=np.zeros(SIZE, bool))
    gain, info = estimate(spikes, rng)
    assert gain is None and info["moving_share"] == 0


def test_only_the_moving_part_is_corrected(rng):
    moving = np.arange(SIZE) >= SIZE // 2
    truth = pattern(rng)
    gain, _ = estimate(scene(rng, truth, moving=moving), rng)
    assert gain is not None
    assert np.all(gain[:, :SIZE // 2 - pixel_gain.MOTION_BOX // 2] == 1)  # still columns, beyond the box's reach
    assert np.corrcoef(gain[4:-4, -20:-4].ravel(), truth[4:-4, -20:-4].ravel())[0, 1] > 0.7


def test_gain_files_are_checked(tmp_path):
    good = tmp_path / "g.npy"
    save_gain_atomic(good, np.full((4, 6), 1.1, np.float32))
    assert load_gain(good, 4, 6).shape == (4, 6)
    with pytest.raises(ConfigError, match="expected 5 x 6 float32"):
        load_gain(good, 5, 6)
    np.save(tmp_path / "far.npy", np.full((4, 6), 3.0, np.float32))
    with pytest.raises(ConfigError, match="within 0.5-2"):
        load_gain(tmp_path / "far.npy", 4, 6)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="not a .npy array"):   # never unpickled
        load_gain(tmp_path / "obj.npy", 4, 6)
    (tmp_path / "junk.npy").write_bytes(b"\x00" * 40)
    with pytest.raises(ConfigError, match="not a .npy array"):
        load_gain(tmp_path / "junk.npy", 4, 6)


def test_a_gain_map_beside_the_weights_divides_every_output(tmp_path, capsys, rng):
    spikes = tmp_path / "s.npy"
    np.save(spikes, (rng.random((120, 32, 40)) < 0.3).astype(np.uint8))
    model = tmp_path / "mine.pt"
    shutil.copy(WEIGHTS_DIR / "ssml-rt.pt", model)
    runs = {}
    for name in ("plain", "gain"):
        if name == "gain":
            save_gain_atomic(gain_path_for(model), np.full((32, 40), 2.0, np.float32))
        out = tmp_path / f"{name}.npz"
        assert stream_main(["--device", f"file:{spikes}", "--model", str(model), "--speed", "max", "--stride", "10",
                            "--save", str(out), "--no-publish", "--quiet"]) == 0
        runs[name] = np.load(out)["frames"]
    assert "pixel gain map from" in capsys.readouterr().err
    np.testing.assert_allclose(runs["gain"], runs["plain"] / 2, rtol=1e-6)
    save_gain_atomic(gain_path_for(model), np.full((31, 40), 1.0, np.float32))
    assert stream_main(["--device", f"file:{spikes}", "--model", str(model), "--speed", "max",
                        "--no-publish", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 32 x 40 float32" in err[0]


@pytest.mark.slow
def test_adapt_learns_installs_and_saves_the_gain_map(tmp_path, spawn, rng, monkeypatch):
    from ssml_stream.pipeline import Pipeline
    from ssml_stream.stream_cli import build_parser, config_from_args

    monkeypatch.setattr(pixel_gain, "MIN_WINDOWS", 20)   # a map after ~20 samples, not 100
    clip = tmp_path / "fpn.npy"
    np.save(clip, scene(rng, pattern(rng), frames=3331))  # a loop not in step with the 0.1 s sampling
    save = tmp_path / "mine.pt"
    lines: list[str] = []
    args = build_parser().parse_args(["--device", f"file:{clip}", "--loop", "--speed", "1", "--model", "ssml-rt",
                                      "--no-publish", "--adapt", "--adapt-every", "0.5", "--adapt-save", str(save)])
    pipeline = Pipeline(config_from_args(args), log=lines.append)
    run = spawn(pipeline.run)
    try:
        deadline = 240
        while pipeline.gain_map is None and run.is_alive() and deadline > 0:
            run.join(0.5)
            deadline -= 0.5
        assert pipeline.gain_map is not None, "no gain map within 240 s"
        outputs, deadline = pipeline.windows_out, 60
        while pipeline.windows_out < outputs + 5 and run.is_alive() and deadline > 0:   # outputs go on
            run.join(0.2)
            deadline -= 0.2
        assert pipeline.windows_out >= outputs + 5, "no outputs after the gain map was installed"
    finally:
        pipeline.stop()
    summary = run.result(60)
    adapter = pipeline.adapter
    assert adapter.error is None and summary.frames_dropped == 0
    assert adapter.stats()["adapt_gain_std"] > 0
    np.testing.assert_array_equal(load_gain(gain_path_for(save), SIZE, SIZE), adapter.gain)
