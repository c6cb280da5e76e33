"""SSML reconstruction networks and their weight files.

Every network maps a B x 41 x H x W float window of spikes (0/1) to B x 1 x H x W firing rate:
- "bsn":  blind-spot network (training only), bsn.py
- "nbsn": the paper's non-blind network, nbsn.py
- "rt":   a small real-time non-blind network for live use, rt.py
- "duo":  two rt networks blended per pixel by how much the scene moves, duo.py

Weight files (`save_weights`) hold an fp16 state_dict with arch, config and meta in one torch file,
plus a human-readable `<path>.json` with the same arch/config/meta.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..model_files import first_line, load_record
from .bsn import BlindSpotNet, BsnConfig
from .duo import DuoConfig, DuoNet
from .nbsn import NbsnConfig, NonBlindNet
from .rt import RealTimeNet, RtConfig

__all__ = ["build_model", "save_weights", "load_weights", "ARCHS", "SHIPPED", "WEIGHTS_DIR",
           "BlindSpotNet", "NonBlindNet", "RealTimeNet", "DuoNet", "BsnConfig", "NbsnConfig", "RtConfig", "DuoConfig"]

ARCHS = {"bsn": (BlindSpotNet, BsnConfig), "nbsn": (NonBlindNet, NbsnConfig), "rt": (RealTimeNet, RtConfig),
         "duo": (DuoNet, DuoConfig)}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"ssml-rt": "ssml-rt.pt", "ssml-full": "ssml-full.pt", "ssml-duo": "ssml-duo.pt"}
SHIPPED_ALIASES = {"ssml": "ssml-rt"}  # the earlier name, still accepted
FORMAT_TAG = "ssml-weights-v1"
TRAIN_HINT = {"ssml-rt": "ssml-train --nbsn rt", "ssml-full": "ssml-train --nbsn full",
              "ssml-duo": "python -m ssml_stream.train.duo build"}


def build_model(arch: str, **config) -> nn.Module:
    """A freshly initialised network; `config` overrides fields of the arch's config dataclass."""
    if arch not in ARCHS:
        raise ModelError(f"unknown model arch {arch!r}; choose from {', '.join(ARCHS)}")
    cls, cfg_cls = ARCHS[arch]
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelError(f"unknown config keys for {arch!r}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(cfg_cls(**config))
    except (TypeError, ValueError) as e:
        raise ModelError(f"invalid config for {arch!r}: {e}") from e


def model_config(arch: str, **config) -> dict:
    """The full config dict (defaults filled in) that build_model(arch, **config) uses."""
    return _jsonable(dataclasses.asdict(ARCHS[arch][1](**config)))


def _jsonable(value):
    """Plain JSON types only (numpy scalars -> numbers, tuples -> lists, paths etc. -> str), so the
    record loads with torch.load(weights_only=True) and matches the .json sidecar."""
    def default(v):
        return v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else str(v)
    return json.loads(json.dumps(value, default=default))


def save_weights(path, model: nn.Module, arch: str, config: dict, meta: dict) -> None:
    """Write fp16 weights + arch + config + meta to `path` and the metadata to `<path>.json`."""
    if arch not in ARCHS:
        raise ModelError(f"unknown model arch {arch!r}; choose from {', '.join(ARCHS)}")
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    # the full config (keys left out: today's defaults), so a later default change (see LEGACY_DEFAULTS)
    # cannot change the network a file describes
    record = {"format": FORMAT_TAG, "arch": arch, "config": model_config(arch, **config), "meta": _jsonable(dict(meta))}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**record, "state_dict": state}, path)
    with open(str(path) + ".json", "w") as f:
        json.dump(record, f, indent=2)


def resolve_weights(name_or_path) -> Path:
    """Path of a shipped weights name ("ssml-rt", "ssml-full") or of a given file; ModelError if absent."""
    name = os.fspath(name_or_path)
    name = SHIPPED_ALIASES.get(name, name)
    if name in SHIPPED:
        path = WEIGHTS_DIR / SHIPPED[name]
        if not path.exists():
            raise ModelError(f"shipped weights not found: {path}; train them with `{TRAIN_HINT[name]}` "
                             f"(see README) or pass --model PATH")
        return path
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelError(f"model weights not found: {path}; give a file written by save_weights/ssml-train "
                         f"or one of {', '.join(SHIPPED)}")
    return path


def load_weights(name_or_path) -> tuple[nn.Module, dict]:
    """(model in eval mode, float32, on CPU; meta dict) from a weights file or shipped name."""
    path = resolve_weights(name_or_path)
    return model_from_record(load_record(path), path)


def model_from_record(record, source) -> tuple[nn.Module, dict]:
    """The network a loaded weights record describes; ModelError in one line when the record is not a
    weights file or its tensors do not fit its arch and config exactly (names and shapes)."""
    if not isinstance(record, dict) or record.get("format") != FORMAT_TAG:
        raise ModelError(f"{source} is not an ssml-stream weights file (expected format {FORMAT_TAG}); "
                         f"TorchScript/.pt2 exports load through ssml_stream.runtime.load_model")
    arch, config, state = record.get("arch"), record.get("config"), record.get("state_dict")
    meta = record.get("meta") or {}
    if not isinstance(arch, str) or arch not in ARCHS or not isinstance(config, dict) or not isinstance(meta, dict):
        raise ModelError(f"weights file {source}: arch must be one of {', '.join(ARCHS)} with a config map "
                         f"and a meta map, got arch {arch!r}")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelError(f"weights file {source}: state_dict must map names to tensors")
    config = config_kwargs(arch, config)
    _check_state_fits(arch, config, state, source)
    model = build_model(arch, **config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.float().eval()
    meta = dict(meta)
    meta.setdefault("arch", arch)
    meta.setdefault("config", record["config"])
    return model, meta


def _check_state_fits(arch: str, config: dict, state: dict, source) -> None:
    """Compare names and shapes against the network built on the meta device (nothing allocated), so
    a record whose config asks for a huge network is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            expected = build_model(arch, **config).state_dict()
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - a config value the network code cannot use
        raise ModelError(f"weights file {source}: invalid config for {arch!r}: {first_line(e)}") from None
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(f"weights in {source} do not fit arch {arch!r} with its config: missing "
                         f"{', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'}")
    for key, want in expected.items():
        if state[key].shape != want.shape:
            raise ModelError(f"weights in {source} do not fit arch {arch!r} with its config: {key} has shape "
                             f"{list(state[key].shape)}, the network needs {list(want.shape)}")


# Config fields added after files were shipped: a record without the key was written before the
# option existed, so it gets the value that reproduces that network.
LEGACY_DEFAULTS = {"nbsn": {"normalize": False, "anchor_mean": False},
                   "rt": {"normalize": False, "anchor_mean": False}}


def config_kwargs(arch: str, config: dict) -> dict:
    """build_model keyword arguments from a stored config: JSON lists back to tuples, and the
    LEGACY_DEFAULTS of keys the record predates."""
    fields = {f.name: f for f in dataclasses.fields(ARCHS[arch][1])}
    out = {k: v for k, v in LEGACY_DEFAULTS.get(arch, {}).items() if k not in config}
    for k, v in config.items():
        if k in fields and isinstance(v, list):
            v = tuple(v)  # JSON turned tuples into lists
        out[k] = v
    return out


def bsn_path_for(nbsn_path) -> Path:
    """Where the BSN trained with an NBSN weights file is saved: `<stem>-bsn.pt` beside it
    (ssml-rt.pt -> ssml-rt-bsn.pt)."""
    path = Path(nbsn_path)
    return path.with_name(f"{path.stem}-bsn{path.suffix}")


def companion_bsn(name_or_path) -> Path | None:
    """The BSN weights saved with an NBSN weights file (shipped name or path), or None when there are
    none. Fine-tuning and online adaptation start their BSN from it."""
    bsn = bsn_path_for(resolve_weights(name_or_path))
    return bsn if bsn.is_file() else None
