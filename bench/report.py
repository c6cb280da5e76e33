"""Benchmarks print an aligned table and write the same rows as JSON; `diff_results` compares two runs."""
from __future__ import annotations

import json
import math
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


# integer fields that say which configuration a row measured (not what it measured)
LABEL_INTS = ("threads", "subscribers", "target_fps")
# text fields that are results, not labels: "meets_*" verdicts, the pipeline's per-segment fps
OUTCOME_TEXT = ("meets_", "fps_segments")


def load_result(path: str) -> dict:
    """A JSON file written by `report`; ConfigError in one line when it is not one (OSError if unreadable)."""
    from ..errors import ConfigError
    try:
        with open(path) as f:
            result = json.load(f)
    except ValueError as e:
        raise ConfigError(f"{path} is not JSON: {e}") from None
    if not isinstance(result, dict) or not isinstance(result.get("benchmark"), str) \
            or not isinstance(result.get("rows"), list) or not all(isinstance(r, dict) for r in result["rows"]):
        raise ConfigError(f"{path} is not a benchmark result (no 'benchmark' name and 'rows' list)")
    return result


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _row_labels(rows: list[dict]) -> list[str]:
    """A label per row from its text fields and configuration integers; repeats get #2, #3, ..."""
    labels, seen = [], {}
    for r in rows:
        parts = [str(v) for k, v in r.items()
                 if (isinstance(v, str) and not k.startswith(OUTCOME_TEXT)) or (k in LABEL_INTS and _is_number(v))]
        label = " / ".join(parts) or "row"
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def _change(old, new) -> str:
    if old == new:
        return "="
    if old == 0 or not (math.isfinite(old) and math.isfinite(new)):
        return f"{new - old:+.3g}"
    return f"{100 * (new - old) / abs(old):+.1f} %"


def diff_results(old: dict, new: dict) -> list[dict]:
    """One row per number present in both results (rows matched by label, then top-level numbers):
    old value, new value and the change (percent of the old value; the difference when it is 0).
    A verdict that changed (e.g. meets_200k yes -> no) is listed too."""
    out = []
    new_rows = dict(zip(_row_labels(new["rows"]), new["rows"]))
    old_rows = dict(zip(_row_labels(old["rows"]), old["rows"]))
    for label, o in old_rows.items():
        n = new_rows.get(label)
        if n is None:
            out.append({"row": label, "field": "(row)", "old": "present", "new": "missing", "change": ""})
            continue
        for key, v in o.items():
            if _is_number(v) and key not in LABEL_INTS and _is_number(n.get(key)):
                out.append({"row": label, "field": key, "old": v, "new": n[key], "change": _change(v, n[key])})
            elif key.startswith(OUTCOME_TEXT) and key in n and n[key] != v:
                out.append({"row": label, "field": key, "old": v, "new": n[key], "change": "changed"})
    for label in new_rows.keys() - old_rows.keys():
        out.append({"row": label, "field": "(row)", "old": "missing", "new": "present", "change": ""})
    for key, v in old.items():
        if _is_number(v) and _is_number(new.get(key)):
            out.append({"row": "(run)", "field": key, "old": v, "new": new[key], "change": _change(v, new[key])})
    return out
