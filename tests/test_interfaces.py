"""Driver, Reconstructor and Scene are typing Protocols: the built-in implementations satisfy them, and
so does a plain class with the right members (no subclassing)."""
import cv2
import numpy as np

from ssml_stream import models
from ssml_stream.drivers import Driver, DriverOptions, open_driver
from ssml_stream.drivers.scenes import SCENE_CLASSES, Scene, SceneConfig, make_scene
from ssml_stream.drivers.sim import SimConfig, Simulator
from ssml_stream.drivers.worlds import MovingTexture
from ssml_stream.features import tfp
from ssml_stream.runtime import Reconstructor, RuntimeOptions, TorchReconstructor, load_model

H, W = 16, 32


def test_built_in_drivers_are_drivers(sim_recording):
    with open_driver("sim", DriverOptions(height=H, width=W, extra={"loop_s": 0.01})) as sim:
        assert isinstance(sim, Driver)
    with open_driver(str(sim_recording.dat)) as replay:
        assert isinstance(replay, Driver)
    assert not isinstance(object(), Driver)


class HalfTfp:
    """A reconstructor that subclasses nothing."""

    name, window_frames, device = "half-tfp", None, "cpu"

    def __call__(self, window, out=None):
        return np.multiply(tfp(window), 0.5, out=out)

    def warm_up(self, height, width, n_frames=None):
        pass


def test_reconstructors():
    rt = TorchReconstructor(models.build_model("rt"), "rt", RuntimeOptions(compute="cpu"))
    for rec in (load_model("tfp"), load_model("tfi"), rt, HalfTfp()):
        assert isinstance(rec, Reconstructor), rec.name
    assert not isinstance(tfp, Reconstructor)  # a bare function has no name, window_frames, device


class Gray:
    """A scene that subclasses nothing."""

    def intensity(self, t_s):
        return np.full((H, W), 0.5, np.float32)


def test_scenes_and_the_simulator_takes_any_scene(tmp_path):
    cfg = SceneConfig(H, W)
    cv2.imwrite(str(tmp_path / "still.png"), np.full((H, W), 100, np.uint8))
    for spec in (*SCENE_CLASSES, str(tmp_path / "still.png")):
        assert isinstance(make_scene(spec, cfg), Scene), spec
    assert isinstance(MovingTexture(cfg, np.zeros((H, W), np.float32)), Scene)
    assert isinstance(Gray(), Scene) and not isinstance("shapes", Scene)
    packed = Simulator(Gray(), SimConfig(H, W)).run(2000).packed
    assert abs(np.unpackbits(packed).mean() - 0.6 * 0.5) < 0.01  # rate gain x intensity
