"""Model runtime: turn a name or an artefact path into a `Reconstructor` (docs/models.md#loading-a-model).

    rec = load_model("ssml-rt")               # or tfp, tfi, ssml-full, model.pt (TorchScript), model.pt2
    rate = rec(window)                        # n x H x W uint8 spikes -> H x W float32 firing rate
    rec(window, out=buf)                      # writes into a preallocated H x W float32 array

Loading: a model file is recognised by its content and passes `ssml_stream.model_files` (nothing in it
runs) before torch reads it; every torch model then runs one forward on a small window (`probe`), so a
wrong or damaged model is one ModelError at load time, not a failure mid-stream.

Runtime choices:
- every forward runs under `torch.inference_mode`; `warm_up(h, w)` runs a few forwards on the real
  frame size first (kernel selection, allocator, tracing) so timed frames are steady-state;
- CPU: eager modules are traced and frozen once per frame size (TorchScript's DeprecationWarnings
  are silenced while loading and tracing, users see none); bf16 autocast only when asked
  (`precision="bf16"`), because it changes the numbers and the shipped weights' quality was measured
  in fp32;
  (channels-last is optional on CPU: for the rt net it measured no faster with one thread);
- CUDA: fp16 weights/activations and channels-last by default (`precision="auto"`); the uint8 window is
  copied to the GPU through a pinned buffer and converted there (4x fewer bytes than float32);
- torch's intra-op thread count (process-wide) is set only when `threads=N` is given; the pipeline
  gives `default_threads()`, one core fewer than the machine has, so the capture thread (driver ->
  ring) always keeps a core and a live source is never starved by the network.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ModelError
from .features import tfi, tfp
from .model_files import first_line

CLASSICAL = ("tfp", "tfi")
SHIPPED = ("ssml-rt", "ssml-full", "ssml-duo", "ssml")  # "ssml": the earlier name of ssml-rt
NETWORK_WINDOW_FRAMES = 41  # every SSML network takes 41-frame windows (docs/models.md#networks)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PROBE_SIZE = 32  # load-time probe window: 41 x 32 x 32 (deep U-Nets need a few halvings)


@dataclass
class RuntimeOptions:
    compute: str = "auto"          # auto (cuda when available) | cpu | cuda
    precision: str = "auto"        # auto: fp16 on CUDA, fp32 on CPU | fp32 | fp16 (CUDA) | bf16 (autocast)
    threads: int | None = None     # set torch intra-op threads (process-wide); None = leave them as they are
    channels_last: bool | None = None  # None: on CUDA only (measured on CPU for the rt net: no gain)
    trace: bool = True             # trace + freeze eager modules on CPU (faster, same numbers)
    warm_up_runs: int = 3


def check_threads(threads: int | None) -> None:
    """None (leave torch's setting) or a thread count >= 1."""
    if threads is not None and threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")


def default_threads() -> int:
    """One core fewer than the machine has (at least one): the pipeline's torch threads."""
    return max(1, (os.cpu_count() or 2) - 1)


@contextmanager
def quiet_torch():
    """TorchScript (deprecated upstream in torch 2.13) warns on trace/load/freeze; keep output clean."""
    with warnings.catch_warnings():
        # Deprecation/Future warnings from torch.jit, and TracerWarnings about shape-dependent Python
        # values (harmless: a trace is made per frame size)
        warnings.simplefilter("ignore")
        yield


def trace_frozen(module, example):
    """`module` traced on `example` and frozen (weights folded in as constants): the same numbers as
    eager, faster on the CPU. The trace records the operations run for `example`'s shape."""
    import torch
    with quiet_torch(), torch.inference_mode(False), torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(module, example, check_trace=False).eval())


def _check_window(window: np.ndarray) -> np.ndarray:
    if not isinstance(window, np.ndarray) or window.ndim != 3:
        raise ModelError(f"expected a window of n x H x W uint8 spikes, got {getattr(window, 'shape', type(window))}")
    if window.dtype != np.uint8:
        window = (window != 0).astype(np.uint8)
    return np.ascontiguousarray(window)


def _out_for(window: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return np.empty(window.shape[1:], np.float32)
    if out.shape != window.shape[1:] or out.dtype != np.float32:
        raise ModelError(f"out must be a {window.shape[1]}x{window.shape[2]} float32 array, "
                         f"got {out.shape} {out.dtype}")
    return out


@runtime_checkable
class Reconstructor(Protocol):
    """What the pipeline runs: `rec(window, out=None)` maps an n x H x W uint8 spike window to an H x W
    float32 firing rate (written into `out` when given). Subclassing is optional; it inherits `warm_up`."""

    name: str
    window_frames: int | None  # None: any odd n
    device: str                # "cpu" or "cuda"

    def __call__(self, window: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        ...

    def warm_up(self, height: int, width: int, n_frames: int | None = None, runs: int = 2) -> None:
        """Run the reconstruction `runs` times on the real frame size before anything is timed."""
        n = n_frames or self.window_frames or NETWORK_WINDOW_FRAMES
        window = np.zeros((n, height, width), np.uint8)
        window[n // 2::3] = 1
        out = np.empty((height, width), np.float32)
        for _ in range(runs):
            self(window, out)


class ClassicalReconstructor(Reconstructor):
    """TFP / TFI (Numba, GIL released while they run)."""

    thread_safe = True  # may be called from several threads at once (pipeline lanes)

    def __init__(self, kind: str):
        self.name, self.kind, self.window_frames, self.device = kind, kind, None, "cpu"

    def __call__(self, window, out=None):
        window = _check_window(window)
        out = _out_for(window, out)
        return tfp(window, out=out) if self.kind == "tfp" else tfi(window, out=out)


class TorchReconstructor(Reconstructor):
    """A torch module with forward(B x 41 x H x W float) -> B x 1 x H x W firing rate. Safe to call from
    several threads at once: each thread gets its own input buffers, the traced module is shared."""

    thread_safe = True

    def __init__(self, module, name: str, options: RuntimeOptions, *, scripted: bool = False,
                 meta: dict | None = None):
        import torch
        self.torch = torch
        self.name, self.meta, self.options = name, meta or {}, options
        self.window_frames = int(self.meta.get("window_frames", NETWORK_WINDOW_FRAMES))
        self.device = _resolve_device(options.compute)
        self.dtype = _resolve_dtype(options.precision, self.device)
        self.autocast_bf16 = options.precision == "bf16"
        channels_last = options.channels_last if options.channels_last is not None else self.device == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.device == "cpu" and options.threads:
            torch.set_num_threads(options.threads)
        try:
            module = module.eval()
        except NotImplementedError:  # torch.export modules are always in inference form
            pass
        for p in module.parameters():
            p.requires_grad_(False)
        module = module.to(self.device)
        if self.dtype != torch.float32:
            module = module.to(self.dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.scripted = scripted
        self._traced: dict[tuple[int, int, int], object] = {}
        # per calling thread: the preallocated 1 x n x H x W input on the compute device (.input) and,
        # on CUDA, a pinned uint8 host buffer (.staging)
        self._local = threading.local()
        self.stage_times = None       # a run_stats.StageTimes that the pipeline sets to see where time goes

    def probe(self) -> None:
        """One forward on a small window at load time, so a model built for other inputs (frames,
        channels, output shape) or with broken weights fails here in one line, not mid-stream."""
        torch = self.torch
        shape = _probe_shape(self.module, self.window_frames)
        x = torch.zeros(shape, dtype=self.dtype, device=self.device).contiguous(memory_format=self.memory_format)
        x[:, shape[1] // 2::3] = 1
        window = " x ".join(map(str, shape))
        try:
            with quiet_torch(), torch.inference_mode():
                y = self.module(x)
        except Exception as e:  # noqa: BLE001 - whatever the foreign module raises, report it in one line
            raise ModelError(f"model {self.name} does not run on a {window} spike window: "
                             f"{type(e).__name__}: {first_line(e)}") from None
        want = (shape[0], 1, *shape[2:])
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ModelError(f"model {self.name} returned {got} for a {window} spike window, expected "
                             f"{' x '.join(map(str, want))} (one firing-rate image)")
        if not bool(torch.isfinite(y).all()):
            raise ModelError(f"model {self.name} returned NaN/inf on a test window (damaged weights?)")

    def warm_up(self, height: int, width: int, n_frames: int | None = None, runs: int | None = None) -> None:
        super().warm_up(height, width, n_frames, runs or max(1, self.options.warm_up_runs))

    def _buffers(self, shape):
        torch, local = self.torch, self._local
        x = getattr(local, "input", None)
        if x is None or tuple(x.shape[1:]) != shape:
            x = local.input = torch.empty((1, *shape), dtype=self.dtype, device=self.device).contiguous(
                memory_format=self.memory_format)
            if self.device != "cpu":
                local.staging = torch.empty((1, *shape), dtype=torch.uint8).pin_memory()
        return x

    def _runner(self, x):
        """Eager modules on CPU are traced and frozen once per input size (falls back to eager)."""
        if self.scripted or not self.options.trace or self.device != "cpu" or self.autocast_bf16:
            return self.module
        key = tuple(x.shape[1:])
        if key not in self._traced:
            try:
                self._traced[key] = trace_frozen(self.module, x.clone())
            except Exception:  # tracing is an optimisation; any module still runs eagerly
                self._traced[key] = self.module
        return self._traced[key]

    def __call__(self, window, out=None):
        torch = self.torch
        window = _check_window(window)
        if window.shape[0] != self.window_frames:
            raise ModelError(f"{self.name} takes {self.window_frames}-frame windows, got {window.shape[0]} "
                             f"(a window length of {self.window_frames})")
        out = _out_for(window, out)
        t0 = time.perf_counter_ns()
        x = self._buffers(window.shape)
        src = torch.from_numpy(window)[None]
        if self.device == "cpu":
            x.copy_(src)                          # uint8 -> float into the preallocated input
        else:
            self._local.staging.copy_(src)
            x.copy_(self._local.staging.to(self.device, non_blocking=True))
        t1 = time.perf_counter_ns()
        runner = self._runner(x) if self.device == "cpu" else self.module
        autocast = torch.autocast(self.device, dtype=torch.bfloat16) if self.autocast_bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            y = runner(x)
        t2 = time.perf_counter_ns()
        if y.dim() != 4 or y.shape[0] != 1 or y.shape[1] != 1 or tuple(y.shape[2:]) != window.shape[1:]:
            raise ModelError(f"{self.name} returned shape {tuple(y.shape)}, expected 1 x 1 x "
                             f"{window.shape[1]} x {window.shape[2]}")
        torch.from_numpy(out).copy_(y[0, 0].float().cpu() if self.device != "cpu" else y[0, 0])
        if self.stage_times is not None:
            # on CUDA the forward is asynchronous: its time shows up in "model: to numpy" (the copy waits)
            self.stage_times.add("model: to tensor", t1 - t0)
            self.stage_times.add("model: forward", t2 - t1)
            self.stage_times.add("model: to numpy", time.perf_counter_ns() - t2)
        return out


def _probe_shape(module, frames: int) -> tuple[int, int, int, int]:
    """1 x frames x PROBE x PROBE, except that a torch.export program exported for a fixed size is
    probed at that size (its graph's input placeholder says)."""
    from torch.fx import GraphModule

    size = [1, frames, PROBE_SIZE, PROBE_SIZE]
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"] if isinstance(module, GraphModule) else []
    example = placeholders[-1].meta.get("val") if placeholders else None
    if getattr(example, "ndim", None) == 4:
        size[2:] = [d if isinstance(d, int) else PROBE_SIZE for d in example.shape[2:]]
    return tuple(size)


def _resolve_device(compute: str) -> str:
    import torch
    if compute not in ("auto", "cpu", "cuda"):
        raise ModelError(f"compute device must be auto, cpu or cuda, got {compute!r}")
    if compute == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if compute == "cuda" and not torch.cuda.is_available():
        raise ModelError("compute device cuda was asked for but torch sees no CUDA device; use cpu")
    return compute


def _resolve_dtype(precision: str, device: str):
    import torch
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    if precision == "fp16":
        if device != "cuda":
            raise ModelError("fp16 runs on CUDA only; on CPU use fp32 or bf16")
        return torch.float16
    return torch.float32  # fp32, and bf16 (autocast keeps fp32 weights)


def _load_artifact(path: str, options: RuntimeOptions) -> TorchReconstructor:
    """A model file, by what it holds (not its name); `model_files` checks it before torch reads it."""
    from . import models
    from .model_files import EXPORT, RECORD, load_model_file

    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path} (give tfp, tfi, ssml-rt, ssml-full, ssml-duo or a .pt/.pt2 path)")
    kind, loaded = load_model_file(path, map_location=_resolve_device(options.compute))
    if kind == RECORD:
        model, meta = models.model_from_record(loaded, path)
        return TorchReconstructor(model, name, options, meta=meta)
    if kind == EXPORT:
        # an exported program is fixed to its export-time layout/dtype: run it as given
        options = RuntimeOptions(**{**options.__dict__, "channels_last": False, "trace": False})
    return TorchReconstructor(loaded, name, options, scripted=True)


def load_model(name_or_path: str, compute: str = "auto", *, precision: str = "auto",
               threads: int | None = None, options: RuntimeOptions | None = None) -> Reconstructor:
    """tfp | tfi | ssml-rt | ssml-full | ssml-duo | PATH (.pt TorchScript or shipped weights, .pt2 torch.export)."""
    options = options or RuntimeOptions(compute=compute, precision=precision, threads=threads)
    check_threads(options.threads)
    name = os.fspath(name_or_path)
    if name in CLASSICAL:
        _resolve_device(options.compute)  # still reject a bad --compute
        return ClassicalReconstructor(name)
    if name in SHIPPED:
        from . import models
        model, meta = models.load_weights(name)  # ModelError with a clear message when not shipped yet
        rec = TorchReconstructor(model, name, options, meta=meta)
    elif os.sep in name or name.endswith((".pt", ".pt2", ".ts", ".pth")) or os.path.exists(name):
        rec = _load_artifact(name, options)
    else:
        raise ModelError(f"unknown model {name!r}: use tfp, tfi, ssml-rt, ssml-full, ssml-duo or a path to a .pt/.pt2 file")
    rec.probe()
    return rec
