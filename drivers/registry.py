"""URI -> driver. Built-in schemes plus the `ssml_stream.drivers` entry point group."""
from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import DriverError
from ..formats import SPIKE_FILE_SUFFIXES
from .base import Driver, DriverOptions

ENTRY_POINT_GROUP = "ssml_stream.drivers"


def open_driver(uri: str, options: DriverOptions | None = None) -> Driver:
    """Open a spike source: sim, sim:SCENE, sim:IMAGE_OR_VIDEO, file:PATH (.dat, .npy or .npz),
    PATH.dat, PATH.npy, PATH.npz, /dev/NODE, fifo:PATH, tcp://HOST:PORT, - (stdin), or SCHEME:...
    from a third-party entry point."""
    options = options or DriverOptions()
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if uri == "sim" or scheme == "sim":
        from .sim import open_sim
        return open_sim(uri, options)
    # explicit schemes first, so fifo:/tmp/cam.dat is a FIFO and /dev/shm/rec.dat a file
    if scheme == "file" or (uri.lower().endswith(SPIKE_FILE_SUFFIXES) and scheme not in ("fifo", "tcp")):
        from .file import FileReplay
        return FileReplay(uri[5:] if scheme == "file" else uri, options)
    if uri == "-" or scheme in ("fifo", "tcp") or uri.startswith("/dev/"):
        from .raw import open_raw
        return open_raw(uri, options)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()(uri, options)
    raise DriverError(f"unknown device {uri!r}: use sim, sim:SCENE, file:PATH.dat, PATH.dat, PATH.npy, PATH.npz, "
                      "/dev/NODE, fifo:PATH, tcp://HOST:PORT or - (stdin)")
