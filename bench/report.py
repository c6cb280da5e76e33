"""Benchmarks print an aligned table and write the same rows as JSON."""
from __future__ import annotations

import json
import os
import platform
import time


def machine() -> dict:
    import numpy as np
    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "numpy": np.__version__,
            "machine": platform.machine(), "processor": platform.processor()}
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def report(name: str, rows: list[dict], json_path: str | None = None, extra: dict | None = None) -> dict:
    """Print rows (list of dicts with the same keys) as a table; write JSON if json_path is given."""
    if rows:
        keys = list(rows[0])
        cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    result = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
              "rows": rows, **(extra or {})}
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {json_path}")
    return result


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
