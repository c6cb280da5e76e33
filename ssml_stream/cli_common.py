"""What every console script shares: one-line errors with a non-zero exit, clean output."""
from __future__ import annotations

import functools
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
