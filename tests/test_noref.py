import sys

import cv2
import numpy as np
import pytest

from ssml_stream.drivers.sim import simulate
from ssml_stream.errors import ConfigError, ModelError
from ssml_stream.features import tfp
from ssml_stream.formats import read_dat
from ssml_stream.train.noref import (blind_scores, brightness_bias, format_noref_table, noref_table,
                                     temporal_flicker)
from ssml_stream.unpack import unpack

SIZE = 64
GAIN = 0.6
SHAPES_GT = [20 + 41 * k for k in range(6)]  # centres of the first 6 non-overlapping 41-frame windows


def _still_image() -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img = 40 + 3 * xx + 80 * (((yy // 8) + (xx // 8)) % 2)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shapes():
    res = simulate("shapes", 300, height=SIZE, width=SIZE, seed=3, gt_frames=SHAPES_GT)
    return unpack(res.packed, SIZE, SIZE), res


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    png = tmp_path_factory.mktemp("noref") / "still.png"
    cv2.imwrite(str(png), _still_image())
    res = simulate(str(png), 369, height=SIZE, width=SIZE, seed=3,
                   scene_options={"pan": 0.0, "zoom": 0.0, "rotate_deg": 0.0})
    return unpack(res.packed, SIZE, SIZE)


def test_tfp41_has_no_brightness_bias(shapes):
    frames, _ = shapes
    assert abs(brightness_bias(tfp, frames, [40, 150, 259])) < 0.02


@pytest.mark.parametrize("gain", [1.3, 0.8])
def test_scaled_method_bias_is_its_gain_error(shapes, gain):
    frames, _ = shapes
    bias = brightness_bias(lambda w: gain * tfp(w), frames, [40, 150, 259])
    assert bias == pytest.approx(gain - 1, abs=0.02)


def test_bias_reads_a_spike_file_like_an_array(shapes, tmp_path):
    frames, res = shapes
    path = tmp_path / "shapes.dat"
    res.packed.tofile(path)
    method = lambda w: 1.1 * tfp(w)  # noqa: E731
    with read_dat(path, SIZE, SIZE) as rec:
        from_file = brightness_bias(method, rec, [20, 279], long_window=101)
    assert from_file == pytest.approx(brightness_bias(method, frames, [20, 279], long_window=101), abs=1e-6)


def test_still_scene_flicker_falls_with_longer_tfp(still):
    short = temporal_flicker(tfp, still, window=41, n_windows=9)
    long = temporal_flicker(tfp, still, window=123, n_windows=3)
    assert short.static_fraction > 0.95 and long.static_fraction > 0.95
    assert short.value > 1.5 * long.value > 0


def test_steady_output_has_no_flicker(still):
    steady = tfp(still)
    result = temporal_flicker(lambda w: steady, still, n_windows=4)
    assert result.value == 0 and result.static_fraction > 0.95


def test_moving_pixels_do_not_count_as_flicker(shapes):
    """An ideal reconstruction follows the motion: where the mask keeps only static pixels it barely
    changes between windows, while TFP41's spike noise does."""
    frames, res = shapes
    truth = iter([GAIN * res.gt[c] for c in SHAPES_GT])
    ideal = temporal_flicker(lambda w: next(truth), frames, n_windows=len(SHAPES_GT))
    noisy = temporal_flicker(tfp, frames, n_windows=len(SHAPES_GT))
    assert 0.3 < ideal.static_fraction == noisy.static_fraction < 0.97
    assert ideal.value < 0.2 * noisy.value


def test_table_and_markdown(shapes):
    frames, _ = shapes
    result = noref_table({"TFP41": tfp, "bright": lambda w: 1.3 * tfp(w)}, frames, [40, 150],
                         n_windows=4, blind=False)
    assert list(result) == ["TFP41", "bright"]
    assert set(result["TFP41"]) == {"bias", "flicker", "static"}
    assert result["bright"]["bias"] == pytest.approx(0.3, abs=0.02)
    assert result["bright"]["flicker"] == pytest.approx(1.3 * result["TFP41"]["flicker"], rel=1e-4)
    lines = format_noref_table(result).splitlines()
    assert lines[0] == "| method | bias | flicker | static px |"
    assert lines[3].startswith("| bright | +0.30")
    assert len(lines) == 4


def test_blind_scores_see_noise_and_blur():
    pytest.importorskip("skimage")
    pytest.importorskip("pywt")
    clean = GAIN * _still_image().astype(np.float32) / 255
    clean = cv2.GaussianBlur(clean, (0, 0), 0.7)  # anti-aliased edges, like a camera image
    noisy = clean + np.random.default_rng(0).normal(0, 0.03, clean.shape).astype(np.float32)
    blurred = cv2.GaussianBlur(clean, (0, 0), 2.5)
    base, with_noise, with_blur = blind_scores(clean), blind_scores(noisy), blind_scores(blurred)
    assert with_noise.noise > 3 * base.noise
    assert with_blur.blur > base.blur + 0.1
    assert tuple(blind_scores(noisy / GAIN)) == pytest.approx(tuple(with_noise), rel=1e-5)  # scale-free


def test_blind_scores_without_scikit_image_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ConfigError, match="scikit-image"):
        blind_scores(np.ones((8, 8), np.float32))


def test_bad_input_is_refused(shapes):
    frames, _ = shapes
    with pytest.raises(ConfigError, match="does not fit"):
        brightness_bias(tfp, frames, [10])
    with pytest.raises(ConfigError, match="no centres"):
        brightness_bias(tfp, frames, [])
    with pytest.raises(ConfigError, match="odd"):
        brightness_bias(tfp, frames, [150], long_window=100)
    with pytest.raises(ModelError, match="shape"):
        brightness_bias(lambda w: tfp(w)[1:], frames, [150])
    with pytest.raises(ConfigError, match="at least 2"):
        temporal_flicker(tfp, frames, n_windows=1)
    with pytest.raises(ConfigError, match="there are 300"):
        temporal_flicker(tfp, frames, n_windows=8)
    with pytest.raises(ConfigError, match="no spikes"):
        brightness_bias(tfp, np.zeros((41, 8, 8), np.uint8), [20])
