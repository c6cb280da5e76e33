"""A run's log (RUN_DIR/log.jsonl, one JSON row per line) and its curves (RUN_DIR/curves.png)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of RUN_DIR/log.jsonl (none before the first one is written)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return rows


def plot_curves(run_dir: str | os.PathLike) -> Path | None:
    """curves.png in the run folder: training loss and validation PSNR of BSN and NBSN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(run_dir)
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    base = [r for r in rows if r.get("kind") == "baseline"]
    if not train:
        return None
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="total")
    ax_loss.plot([r["step"] for r in train], [r["loss_bsn"] for r in train], label="L2(BSN, TFI)", alpha=0.7)
    ax_loss.plot([r["step"] for r in train], [r["loss_mutual"] for r in train], label="MSE(NBSN, BSN)", alpha=0.7)
    if any("loss_distill" in r for r in train):
        ax_loss.plot([r["step"] for r in train], [r.get("loss_distill", float("nan")) for r in train],
                     label="MSE(NBSN, teacher)", alpha=0.7)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    if val:
        ax_psnr.plot([r["step"] for r in val], [r["psnr_bsn"] for r in val], "o-", label="BSN")
        ax_psnr.plot([r["step"] for r in val], [r["psnr_nbsn"] for r in val], "s-", label="NBSN")
    if base:
        ax_psnr.axhline(base[-1]["tfp41_psnr"], color="gray", linestyle="--", label="TFP41")
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.set_title("validation PSNR vs ground truth")
    ax_psnr.legend()
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
