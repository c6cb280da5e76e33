"""`ssml-bench NAME [options]`: runs bench/NAME.py's `main(argv)`; `ssml-bench all` runs each default."""
from __future__ import annotations

import importlib
import pkgutil
import sys

from .. import bench as _pkg

NOT_BENCHMARKS = {"cli", "report"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(_pkg.__path__) if m.name not in NOT_BENCHMARKS)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ssml-bench {" + ",".join(names + ["all"]) + "} [options]\n\n"
              "Each benchmark prints a table and writes JSON (see its --help).\n"
              "examples:\n  ssml-bench unpack\n  ssml-bench ingest --seconds 60\n  ssml-bench all")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        worst = 0
        for n in names:
            print(f"== ssml-bench {n}")
            worst = max(worst, _run(n, rest))
        return worst
    if name not in names:
        print(f"ssml-bench: error: unknown benchmark {name!r}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    return _run(name, rest)


def _run(name: str, argv: list[str]) -> int:
    from ..cli_common import cli_entry
    mod = importlib.import_module(f"{_pkg.__name__}.{name}")
    return cli_entry(f"ssml-bench {name}")(mod.main)(argv)


if __name__ == "__main__":
    sys.exit(main())
