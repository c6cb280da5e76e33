"""ssml-stream: spiking-camera frames to live video.

The notebook API::

    import ssml_stream as ss
    spikes = ss.read_spikes("rec.dat")         # or .npy/.npz arrays; len(), [i], .window(center, n)
    rate = ss.tfp(spikes.window(150, 41))      # numpy in, numpy out (firing rate, spikes/frame)
    model = ss.load_model("ssml-rt")           # shipped weights or a path; callable on windows
    for out in ss.stream("sim", model="ssml-rt", fps=30, duration=5):
        out.frame, out.center, out.capture_ns
"""
from importlib import import_module

__version__ = "0.1.0"

from .errors import ConfigError, DriverError, ModelError, SpikeFormatError, SsmlError  # noqa: E402
from .formats import (DatWriter, SpikeFile, open_writer, pack_frames, read_dat, read_spikes,  # noqa: E402
                      write_dat)
from .features import psnr, tfi, tfi_all, tfp, tfp_all  # noqa: E402
from .unpack import SlidingWindows  # noqa: E402  (the module name `unpack` stays the module)

# Names whose modules import torch or zmq are loaded on first use, so `import ssml_stream` stays light.
_LAZY = {
    "load_model": "ssml_stream.runtime",
    "stream": "ssml_stream.streaming",
    "open_driver": "ssml_stream.drivers",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssml_stream' has no attribute {name!r}")


__all__ = ["ConfigError", "DriverError", "ModelError", "SpikeFormatError", "SsmlError", "DatWriter",
           "SpikeFile", "open_writer", "pack_frames", "read_dat", "read_spikes", "write_dat", "psnr", "tfi",
           "tfi_all", "tfp", "tfp_all", "SlidingWindows", *_LAZY]
