"""What every console script shares: one-line errors with a non-zero exit, clean output."""
from __future__ import annotations

import argparse
import functools
import math
import sys
import warnings


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
        return lambda argv=None: sys.exit(main(argv)) if argv is None else main(argv)
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


def speed(text: str) -> float | None:
    """--speed: a positive pace factor, or 'max' (None) for lossless as fast as consumed."""
    if text.lower() == "max":
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'max', got {text!r}") from None
