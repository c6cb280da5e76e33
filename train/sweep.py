"""`ssml-eval --suite sweep`: quality where users are, not where we trained.

Every setting is simulated at sensor size (250 x 400) from `drivers.worlds` at fixed seeds below
`EVAL_SEED_LIMIT`, which training clips never use (`random_spec` redraws them), on two textures: a
dead-leaves texture and a natural photograph (the REDS test frame, never a training texture; 1/f noise
when it is not available). Groups:

- motion: translation 0 / 0.1 / 0.3 / 0.6 / 1.0 px per spike frame; a 200 px textured disk at 1,000 /
  5,000 / 8,000 rpm (light: mean rate 0.3);
- light: mean firing rate 0.01 ... 0.9 with slow motion (0.1 px per frame);
- sensor: dark current, hot pixels, fixed-pattern threshold variation, photon noise (rate 0.3, 0.1 px/frame);
- real: the REDS test recording itself (real spikes, when available).

Columns: TFP41, the best TFP window length for that setting (an oracle that looks at ground truth to
pick n in 1..41), TFI, and every model. A model's margin is its PSNR minus the best classical method of
that setting (the TFP oracle or TFI). Ground truth is used for scoring only.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .metrics import psnr, rate_to_intensity

SIZE = (250, 400)
N_FRAMES = 61
WINDOW = 41
TFP_LENGTHS = tuple(range(1, WINDOW + 1, 2))


@dataclass(frozen=True)
class Setting:
    group: str      # motion | light | sensor | real
    name: str
    x: float        # the value plotted on the group's axis
    changes: dict   # ClipSpec fields that differ from the group's base


def settings() -> list[Setting]:
    base_motion = []
    for v in (0.0, 0.1, 0.3, 0.6, 1.0):
        base_motion.append(Setting("motion", f"translate {v:g} px/frame", v, {"speed": v}))
    for rpm in (1000, 5000, 8000):
        base_motion.append(Setting("motion", f"spin {rpm} rpm (200 px disk)", rpm, {"rpm": float(rpm)}))
    light = [Setting("light", f"rate {r:g}", r, {"mean_rate": r, "speed": 0.1})
             for r in (0.01, 0.03, 0.1, 0.3, 0.6, 0.9)]
    sensor = [
        Setting("sensor", "dark current 0.1 %", 0.001, {"dark_rate": 0.001, "speed": 0.1}),
        Setting("sensor", "dark current 0.5 %", 0.005, {"dark_rate": 0.005, "speed": 0.1}),
        Setting("sensor", "hot pixels 0.1 %", 0.001, {"hot_fraction": 0.001, "speed": 0.1}),
        Setting("sensor", "threshold variation 5 %", 0.05, {"threshold_sigma": 0.05, "speed": 0.1}),
        Setting("sensor", "threshold variation 10 %", 0.10, {"threshold_sigma": 0.10, "speed": 0.1}),
        Setting("sensor", "photon noise (5 photons/spike)", 5, {"photons_per_spike": 5.0, "speed": 0.1}),
        Setting("sensor", "all faults, dark scene", 0.03, {"dark_rate": 0.002, "hot_fraction": 0.0005,
                                                          "threshold_sigma": 0.05, "photons_per_spike": 10.0,
                                                          "mean_rate": 0.03, "speed": 0.1}),
    ]
    return base_motion + light + sensor


def sweep_seeds() -> list[int]:
    """The seeds of every simulated sweep clip (two textures per setting)."""
    from ..drivers.worlds import EVAL_SEED_LIMIT

    seeds = [1000 + 2 * i + k for i in range(len(settings())) for k in (0, 1)]
    assert max(seeds) < EVAL_SEED_LIMIT
    return seeds


def natural_texture(data_dirs) -> str:
    """Path of the REDS test frame (a natural photograph) if one of `data_dirs` has it, else "pink"."""
    for d in data_dirs:
        for p in sorted(Path(d).glob("**/200_part1*.png")):
            return str(p)
    return "pink"


def tfp_oracle(window: np.ndarray, gt: np.ndarray, rate_gain: float) -> tuple[float, int]:
    """(best PSNR, its n) of TFP over the centred n frames, n = 1, 3, ..., 41 (picked with ground truth)."""
    c = window.shape[0] // 2
    csum = np.cumsum(window, axis=0, dtype=np.float32)
    best = (-math.inf, 0)
    for n in TFP_LENGTHS:
        h = n // 2
        hi = csum[c + h]
        total = hi - csum[c - h - 1] if c - h - 1 >= 0 else hi
        best = max(best, (psnr(rate_to_intensity(total / n, rate_gain), gt), n))
    return best


@dataclass
class Case:
    setting: Setting
    label: str
    window: np.ndarray
    gt: np.ndarray
    rate_gain: float


def cases(data_dirs=(), real_dat: str | None = None) -> list[Case]:
    """Every (setting, texture) window of the sweep, plus the real REDS recording when given."""
    from ..drivers.worlds import ClipSpec, render_clip

    natural = natural_texture(data_dirs)
    out = []
    seeds = iter(sweep_seeds())
    half = WINDOW // 2
    for s in settings():
        for texture in ("leaves", natural):
            spec = replace(ClipSpec(texture=texture, seed=next(seeds), speed=0.0, direction_deg=30.0,
                                    mean_rate=0.3, height=SIZE[0], width=SIZE[1], n_frames=N_FRAMES), **s.changes)
            clip = render_clip(spec)
            c = N_FRAMES // 2
            out.append(Case(s, "natural" if texture == natural and texture != "leaves" else texture,
                            clip.frames[c - half:c + half + 1], clip.gt[c], clip.rate_gain))
    if real_dat:
        from .data import load_dat_recording

        rec = load_dat_recording(real_dat)
        for k, gt in rec.gt.items():
            out.append(Case(Setting("real", f"REDS {Path(real_dat).stem}", 0, {}), "real spikes",
                            rec.window(k), gt, rec.rate_gain))
    return out


def run_sweep(methods: dict[str, Callable[[np.ndarray], np.ndarray]], data_dirs=(), real_dat=None) -> dict:
    """Per setting (averaged over its textures): PSNR of TFP41, TFP oracle, TFI and each method, the
    best classical method, each model's margin and brightness bias."""
    from ..features import tfi, tfp

    rows: dict[str, dict] = {}
    for case in cases(data_dirs, real_dat):
        row = rows.setdefault(case.setting.name, {"group": case.setting.group, "x": case.setting.x, "cases": []})
        scores = {}
        to_i = lambda rate: rate_to_intensity(rate, case.rate_gain)  # noqa: E731
        scores["TFP41"] = psnr(to_i(tfp(case.window)), case.gt)
        scores["TFP best"], n_best = tfp_oracle(case.window, case.gt, case.rate_gain)
        scores["TFI"] = psnr(to_i(tfi(case.window, search=20, fallback=40)), case.gt)
        bias = {}
        truth_rate = float(case.gt.mean()) * case.rate_gain
        for name, fn in methods.items():
            rate = fn(case.window)
            scores[name] = psnr(to_i(rate), case.gt)
            bias[name] = float(rate.mean()) / truth_rate - 1.0
        row["cases"].append({"texture": case.label, "psnr": scores, "tfp_best_n": n_best, "bias": bias})
    classical = ("TFP41", "TFP best", "TFI")
    for row in rows.values():
        names = list(row["cases"][0]["psnr"])
        row["psnr"] = {m: float(np.mean([c["psnr"][m] for c in row["cases"]])) for m in names}
        row["best_classical"] = max(("TFP best", "TFI"), key=lambda m: row["psnr"][m])
        best = row["psnr"][row["best_classical"]]
        row["margin"] = {m: row["psnr"][m] - best for m in names if m not in classical}
        row["bias"] = {m: float(np.mean([c["bias"][m] for c in row["cases"]])) for m in methods}
        row["tfp_best_n"] = [c["tfp_best_n"] for c in row["cases"]]
    summary = {}
    for m in methods:
        margins = [r["margin"][m] for r in rows.values()]
        summary[m] = {"margin_mean_db": float(np.mean(margins)), "margin_min_db": float(np.min(margins)),
                      "settings_at_least_1db": int(sum(x >= 1.0 for x in margins)), "settings": len(margins),
                      "max_abs_bias_light": float(max(abs(r["bias"][m]) for r in rows.values()
                                                      if r["group"] == "light"))}
    return {"rows": rows, "summary": summary, "methods": list(methods)}


def format_sweep(result: dict) -> str:
    models = result["methods"]
    head = ["setting", "TFP41", "TFP best (n)", "TFI", *models, *(f"{m} margin" for m in models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in result["rows"].items():
        p = r["psnr"]
        ns = "/".join(str(n) for n in r["tfp_best_n"])
        cells = [f"{r['group']}: {name}", f"{p['TFP41']:.2f}", f"{p['TFP best']:.2f} ({ns})", f"{p['TFI']:.2f}",
                 *(f"{p[m]:.2f}" for m in models), *(f"{r['margin'][m]:+.2f}" for m in models)]
        lines.append("| " + " | ".join(cells) + " |")
    for m in models:
        s = result["summary"][m]
        lines.append(f"\n{m}: mean margin over the best classical method {s['margin_mean_db']:+.2f} dB, worst "
                     f"{s['margin_min_db']:+.2f} dB, >= 1 dB in {s['settings_at_least_1db']} of {s['settings']} "
                     f"settings; largest brightness bias over the light levels {100 * s['max_abs_bias_light']:.1f} %")
    return "\n".join(lines)


def plot_sweep(result: dict, path: os.PathLike) -> None:
    """PSNR vs translation speed and vs light level, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ["TFP41", "TFP best", "TFI", *result["methods"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, group, xlabel, log in ((axes[0], "motion", "translation (px per spike frame)", False),
                                   (axes[1], "light", "mean firing rate (spikes per pixel per frame)", True)):
        rows = [r for n, r in result["rows"].items() if r["group"] == group and not n.startswith("spin")]
        xs = [r["x"] for r in rows]
        for m in methods:
            ax.plot(xs, [r["psnr"][m] for r in rows], "o-", label=m)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR (dB)")
        if log:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_title("motion (mean rate 0.3)")
    axes[1].set_title("light (0.1 px per frame)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
