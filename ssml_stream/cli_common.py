"""What every console script shares: one-line errors with a non-zero exit, clean output."""
from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable


def quiet_torch_warnings() -> None:
    """TorchScript prints DeprecationWarnings in torch >= 2.11; users should not see them."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
    warnings.filterwarnings("ignore", message=r".*TorchScript.*")


def cli_entry(prog: str):
    """Decorate `main(argv) -> int`: SsmlError/OSError become `prog: error: message` and exit 2;
    Ctrl-C exits 130 without a traceback."""
    def wrap(fn):
        @functools.wraps(fn)
        def main(argv=None):
            from .errors import SsmlError
            quiet_torch_warnings()
            try:
                return fn(argv) or 0
            except SsmlError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2
            except OSError as e:
                where = f" ({e.filename})" if getattr(e, "filename", None) else ""
                print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130

        def entry(argv=None):
            if argv is not None:  # called from Python (tests): return the exit code
                return main(argv)
            code = main(None)
            # Everything is written. A signal during interpreter teardown (torch alone takes seconds on a
            # busy machine) would otherwise print a traceback and change the exit code.
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
            sys.exit(code)
        return entry
    return wrap


class OneLineParser(argparse.ArgumentParser):
    """Usage errors become a ConfigError, so cli_entry prints one line and exits 2."""

    def error(self, message):
        from .errors import ConfigError
        raise ConfigError(f"{message} (see --help)")


def _number(kind, minimum, strict: bool):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected a number {'>' if strict else '>='} {minimum}, got {text}")
        return value
    return parse


positive_int = _number(int, 0, strict=True)
nonneg_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
nonneg_float = _number(float, 0.0, strict=False)


def int_at_least(minimum: int):
    """An argparse type for whole numbers >= minimum."""
    return _number(int, minimum, strict=False)


def speed(text: str) -> float | None:
    """--speed: a positive pace factor, or 'max' (None) for lossless as fast as consumed."""
    if text.lower() == "max":
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'max', got {text!r}") from None


def format_bytes(n: float) -> str:
    """'12 bytes', '1.5 GB', ... (powers of 1000, as disk tools print them)."""
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_path(path, what: str, *, inputs: Iterable = (), others: Iterable = (), folder: bool = False,
                      size: int = 0) -> None:
    """Refuse, before any work starts, an output that cannot be written or would destroy data.

    `what` names the output in the message ("recording", "ground truth"). `inputs`: paths the run reads
    (writing over one truncates it under its reader); names that are not files, such as a built-in
    scene, are ignored. `others`: the run's other outputs (one would silently replace another).
    `folder`: the output is a folder that receives files (it may exist). `size`: bytes the output will
    take, checked against the free disk space. Messages name paths, not options, so the Python API can
    raise them too.
    """
    from .errors import ConfigError
    path = os.fspath(path)
    target = os.path.abspath(path)
    if folder and os.path.isdir(target):
        parent = target
    elif folder and os.path.exists(target):
        raise ConfigError(f"cannot write the {what} {path}: it is a file, not a folder")
    else:
        if os.path.isdir(target):
            raise ConfigError(f"cannot write the {what} {path}: it is a folder")
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise ConfigError(f"cannot write the {what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the {what} {path}: folder {parent} is not writable")
    for source in inputs:
        if os.path.exists(source) and _same_file(target, os.fspath(source)):
            raise ConfigError(f"the {what} {path} is also the input {source}: writing it would destroy the "
                              "input; choose another output path")
    for other in others:
        if other is not None and _same_file(target, os.fspath(other)):
            raise ConfigError(f"the {what} {path} is also another output of this run ({other}); give each "
                              "output its own path")
    if size:
        free = shutil.disk_usage(parent).free
        if size > free:
            raise ConfigError(f"the {what} {path} needs {format_bytes(size)}; its disk has {format_bytes(free)} free")


@contextmanager
def stop_signals(handler: Callable[[int, object], None]):
    """Route SIGINT and SIGTERM to `handler(signum, frame)` while the block runs (main thread only).

    Installed explicitly for both: a script started in the background by a shell script inherits
    SIGINT *ignored*, and SIGTERM's default ends the process wherever it is, e.g. in the middle of a
    frame being written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def say(prog: str, message: str) -> None:
    """One line on stderr that is safe to write from a signal handler (no buffered-stream reentry)."""
    os.write(2, f"{prog}: {message}\n".encode())
