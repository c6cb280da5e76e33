"""Spike sources, found by URI (docs/architecture.md#stages). Installed as `ssml_stream.drivers`.

Third parties add a scheme through the entry point group `ssml_stream.drivers`: the entry point's
name is the URI scheme and it loads a callable `factory(uri: str, options: DriverOptions) -> Driver`.
"""
from .base import Driver, DriverOptions, SourceInfo
from .registry import open_driver

__all__ = ["Driver", "DriverOptions", "SourceInfo", "open_driver"]
