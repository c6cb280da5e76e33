"""ssml-train checkpoints (RUN_DIR/last.pt, best.pt) and the networks other commands start from.

A checkpoint holds both networks ("bsn", "nbsn" state dicts, the NBSN's arch and both configs), the
optimiser and sampler state and the training record (`Trainer.checkpoint_state`). It is not a weights
file: `ssml-export --format weights` turns one into a file that `runtime.load_model` reads.
Every file passes `ssml_stream.model_files` (nothing in it can run code) before torch reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

NBSN_ARCHS = {"full": "nbsn", "rt": "rt"}  # --nbsn name -> arch


def read_torch_file(path: str | os.PathLike, map_location="cpu"):
    """A checkpoint or weights record, checked before torch reads it; ModelError in one line if it is
    missing or refused."""
    from ..model_files import load_record

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: not found")
    return load_record(path, map_location)


def is_checkpoint(obj) -> bool:
    """Whether a loaded torch object is an ssml-train checkpoint (vs. a shipped-weights record)."""
    return isinstance(obj, dict) and "nbsn" in obj and "nbsn_arch" in obj


def read_checkpoint(spec: str | os.PathLike) -> dict | None:
    """The checkpoint at `spec`, or None when `spec` is anything else (a shipped name, a weights file,
    a TorchScript or torch.export file: those load through `runtime.load_model`)."""
    from ..model_files import RECORD, check_model_file

    if not Path(spec).is_file() or check_model_file(spec).kind != RECORD:
        return None
    record = read_torch_file(spec)
    return record if is_checkpoint(record) else None


def net_from_checkpoint(ckpt: dict, which: str, path) -> nn.Module:
    """The "nbsn" or "bsn" network of a checkpoint (fp32, CPU, train mode), built with the config it
    was trained with."""
    from ..models import build_model, config_kwargs

    arch = ckpt["nbsn_arch"] if which == "nbsn" else "bsn"
    model = build_model(arch, **config_kwargs(arch, ckpt.get(f"{which}_config", {})))
    try:
        model.load_state_dict(ckpt[which])
    except RuntimeError as e:
        raise ModelError(f"{path}: the {arch!r} network in this checkpoint does not fit the current "
                         f"network code (trained with an older version?): {str(e).splitlines()[0]}") from e
    return model


def load_nbsn_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(NBSN in eval mode, checkpoint dict); ModelError when `path` is not a checkpoint."""
    ckpt = read_checkpoint(path)
    if ckpt is None:
        raise ModelError(f"{path}: not an ssml-train checkpoint (no 'nbsn' / 'nbsn_arch' entries)")
    return net_from_checkpoint(ckpt, "nbsn", path).eval(), ckpt


def load_nbsn(spec: str) -> tuple[nn.Module, str]:
    """(NBSN in eval mode, float32, CPU; arch) from a checkpoint, weights file or shipped name."""
    ckpt = read_checkpoint(spec)
    if ckpt is not None:
        return net_from_checkpoint(ckpt, "nbsn", spec).eval(), ckpt["nbsn_arch"]
    from ..models import load_weights

    model, meta = load_weights(spec)
    return model, meta["arch"]


def load_teacher(spec: str) -> nn.Module:
    """A frozen teacher NBSN (`--distill-from`) from a checkpoint or weights (name or path)."""
    model, _arch = load_nbsn(spec)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class InitNets:
    """The two networks a fine-tuning run or the online adapter starts from (`load_init`)."""

    nbsn: nn.Module
    nbsn_arch: str
    nbsn_config: dict
    bsn: nn.Module
    bsn_config: dict
    warning: str | None = None  # set when no BSN was saved with the NBSN and it starts from scratch


def load_init(spec: str) -> InitNets:
    """Both networks (fp32, CPU, train mode) from a checkpoint, or from an NBSN weights file (shipped
    name or path) plus the BSN weights saved beside it (`models.companion_bsn`); without those the
    BSN is freshly initialised and `warning` says so."""
    from ..models import build_model, bsn_path_for, companion_bsn, load_weights, model_config, resolve_weights

    ckpt = read_checkpoint(spec)
    if ckpt is not None:
        return InitNets(net_from_checkpoint(ckpt, "nbsn", spec).train(), ckpt["nbsn_arch"],
                        ckpt.get("nbsn_config") or model_config(ckpt["nbsn_arch"]),
                        net_from_checkpoint(ckpt, "bsn", spec).train(),
                        ckpt.get("bsn_config") or model_config("bsn"))
    nbsn, meta = load_weights(spec)
    if meta["arch"] not in NBSN_ARCHS.values():
        raise ModelError(f"{spec} holds a {meta['arch']!r} network, not an NBSN (use full or rt weights)")
    bsn_path = companion_bsn(spec)
    if bsn_path is None:
        return InitNets(nbsn.train(), meta["arch"], meta["config"], build_model("bsn").train(), model_config("bsn"),
                        f"{bsn_path_for(resolve_weights(spec))} not found: the BSN starts from scratch, and until it "
                        "has trained for thousands of steps it pulls the NBSN below its starting quality")
    bsn, bsn_meta = load_weights(bsn_path)
    if bsn_meta["arch"] != "bsn":
        raise ModelError(f"{bsn_path} holds a {bsn_meta['arch']!r} network, expected the BSN")
    return InitNets(nbsn.train(), meta["arch"], meta["config"], bsn.train(), bsn_meta["config"])


def write_checkpoint(state: dict, path: Path) -> None:
    """torch.save through a temporary file, so an interrupted run never leaves a cut checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
