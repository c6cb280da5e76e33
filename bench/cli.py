"""`ssml-bench NAME [options]`: runs bench/NAME.py's `main(argv)`; `ssml-bench all` runs each default."""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys

from .. import bench as _pkg

NOT_BENCHMARKS = {"args", "cli", "report", "peers"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(_pkg.__path__) if m.name not in NOT_BENCHMARKS)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ssml-bench {" + ",".join(names + ["all"]) + "} [options]\n"
              "       ssml-bench --compare OLD.json [NEW.json]\n\n"
              "Each benchmark prints a table and writes JSON (see its --help). --compare prints the change of\n"
              "every number of a run against an earlier run's JSON (NEW defaults to the benchmark's latest\n"
              "bench_results/NAME.json).\n"
              "examples:\n  ssml-bench unpack\n  ssml-bench ingest --seconds 60\n  ssml-bench all\n"
              "  cp bench_results/model.json /tmp/before.json; ssml-bench model; "
              "ssml-bench --compare /tmp/before.json")
        return 0 if argv else 2
    if argv[0] == "--compare":
        from ..cli_common import cli_entry
        return cli_entry("ssml-bench --compare")(compare_runs)(argv[1:])
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


def compare_runs(argv: list[str]) -> int:
    from ..errors import ConfigError
    from .report import diff_results, load_result, report
    if len(argv) not in (1, 2):
        raise ConfigError("usage: ssml-bench --compare OLD.json [NEW.json]")
    old = load_result(argv[0])
    new_path = argv[1] if len(argv) == 2 else os.path.join("bench_results", f"{old['benchmark']}.json")
    new = load_result(new_path)
    if new["benchmark"] != old["benchmark"]:
        raise ConfigError(f"{argv[0]} is a {old['benchmark']} run, {new_path} a {new['benchmark']} run")
    print(f"{old['benchmark']}: {argv[0]} ({old.get('time', '?')}) -> {new_path} ({new.get('time', '?')})")
    report(f"{old['benchmark']}-diff", diff_results(old, new))
    return 0


def _run(name: str, argv: list[str]) -> int:
    from ..cli_common import cli_entry
    mod = importlib.import_module(f"{_pkg.__name__}.{name}")
    return cli_entry(f"ssml-bench {name}")(mod.main)(argv)


if __name__ == "__main__":
    sys.exit(main())
