"""The one gate for model files: check an archive without running anything in it, then load it.

Model files are data. `check_model_file` reads a file as a zip archive and inspects, statically,
every part that torch.load / torch.jit.load / torch.export.load would interpret:
- pickles (`*.pkl`, torch.save records): every GLOBAL / INST / STACK_GLOBAL must be on the
  allow-list of the file's kind (tensor rebuild functions, OrderedDict; for TorchScript also the
  `__torch__.*` classes compiled from the archive's own TorchScript code);
- TorchScript code: no operator that reads or writes files or talks to other processes;
- torch.export programs: only ATen operators and shape arithmetic, symbolic-shape expressions and
  input guards limited to plain arithmetic (torch feeds both to eval/exec), one tensor in and one
  out, no pickled payloads, custom objects, compiled code or legacy layouts.
Torch then reads a canonical copy rewritten from exactly the entries that were checked, so a zip
parser disagreement (duplicate names, data before the archive) cannot hide an entry.
Anything else raises one ModelError naming the file and the reason. Trust model: docs/reliability.md.
"""
from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickletools
import re
import warnings
import zipfile
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import ModelError

RECORD = "torch.save record"          # weights files and ssml-train checkpoints
TORCHSCRIPT = "TorchScript archive"
EXPORT = "torch.export program"

MAX_FILE_BYTES = 512 << 20        # the full NBSN in fp32 is ~11 MB
MAX_UNPACKED_BYTES = 1 << 30      # sum of the entries' sizes: no zip bombs
MAX_ENTRIES = 10_000
MAX_SCANNED_BYTES = 64 << 20      # one pickle / JSON / code entry

_TENSOR_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"),
    *(("torch", f"{t}Storage") for t in ("Float", "Half", "BFloat16", "Double", "Long", "Int", "Short",
                                        "Char", "Byte", "Bool")),
}
_TORCHSCRIPT_GLOBALS = _TENSOR_GLOBALS | {
    ("torch.jit._pickle", f) for f in ("build_intlist", "build_doublelist", "build_boollist",
                                       "build_tensorlist", "build_tensor_from_id", "restore_type_tag")}
# TorchScript's own unpickler resolves `__torch__.*` only to classes compiled from the archive's code
_TORCHSCRIPT_CLASS = re.compile(r"__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# operators that touch files or other processes (torch.save(x, path) runs inside TorchScript)
_FORBIDDEN_OPS = re.compile(r"\b(save|from_file|load_tensor|c10d|_c10d_functional|_c10d_functional_autograd"
                            r"|symm_mem|debugprims)\b")

_PT2_ENTRIES = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+|extra/[A-Za-z0-9_.\-]+")
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.([A-Za-z0-9_]+)\.[A-Za-z0-9_]+")
_SHAPE_TARGETS = {
    *(f"_operator.{f}" for f in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pos",
                                 "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_")),
    *(f"math.{f}" for f in ("ceil", "floor", "trunc", "sqrt")),
    *(f"torch.sym_{f}" for f in ("max", "min", "float", "int", "not", "sqrt", "ite")),
}
# sympy srepr of shape expressions, e.g. Max(Integer(1), FloorDiv(Symbol('s0', integer=True), Integer(2)));
# no powers or shifts (a tiny string could ask for a gigantic integer)
_SYMPY_NAMES = {
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Max", "Min", "Abs", "Mod", "Eq", "Ne", "Lt", "Le",
    "Gt", "Ge", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "Equality", "Unequality",
    "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan", "Infinity", "NegativeInfinity",
    "IntInfinity", "NegativeIntInfinity", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv",
    "CeilToInt", "FloorToInt", "CeilDiv", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "ToFloat", "Identity",
    "positive", "negative", "integer", "nonnegative", "nonpositive", "real", "finite", "zero", "nonzero",
    "even", "odd", "commutative", "rational",
}
_EXPR_TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z_][A-Za-z0-9_]*'|\d{1,30}(\.\d{1,30})?(?![\d.])"
                         r"|==|!=|<=|>=|[(),=+\-*/%<>&|~]")
_GUARD_NAMES = {"L", "math", "inf", "max", "min", "abs", "Max", "Min", "Abs", "Mod", "PythonMod", "FloorDiv",
                "Eq", "Ne", "Gt", "Ge", "Lt", "Le"}
_GUARD_ATTRS = {"size", "stride", "storage_offset", "dim", "floor", "ceil", "trunc", "sqrt", "isnan", "inf"}
_GUARD_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
                ast.FloorDiv, ast.Mod, ast.UnaryOp, ast.USub, ast.UAdd, ast.Not, ast.Compare, ast.Eq, ast.NotEq,
                ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Call, ast.Name, ast.Load, ast.Attribute, ast.Subscript,
                ast.Constant)


@dataclass(frozen=True)
class CheckedArchive:
    path: str
    kind: str
    data: bytes     # canonical zip rewritten from the checked entries: the only bytes torch reads

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)


def first_line(error: BaseException) -> str:
    """torch's errors span many lines (some start with a blank one); the CLI promises one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__


def check_model_file(path) -> CheckedArchive:
    """Read and check a model file (see the module doc); ModelError in one line if it is refused."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise _refused(path, f"{size / 2**20:.0f} MiB exceeds the {MAX_FILE_BYTES >> 20} MiB limit for model files")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from None
    kind, data = _check_archive(raw, path)
    return CheckedArchive(path, kind, data)


def load_record(path, map_location="cpu"):
    """A torch.save record (weights file, checkpoint): checked, then torch.load(weights_only=True)."""
    return _load(_checked(path, RECORD), map_location)


def load_torchscript(path, map_location="cpu"):
    return _load(_checked(path, TORCHSCRIPT), map_location)


def load_exported(path):
    """The module of a torch.export program (`torch.export.load(path).module()`), checked first."""
    return _load(_checked(path, EXPORT), "cpu")


def load_model_file(path, map_location="cpu") -> tuple[str, object]:
    """(kind, loaded): the record, or the TorchScript / torch.export module, by what the file holds."""
    checked = check_model_file(path)
    return checked.kind, _load(checked, map_location)


def _load(checked: CheckedArchive, map_location):
    import torch
    with _one_line(checked):
        if checked.kind == RECORD:
            return torch.load(checked.open(), map_location=map_location, weights_only=True)
        if checked.kind == TORCHSCRIPT:
            return torch.jit.load(checked.open(), map_location=map_location)
        return torch.export.load(checked.open()).module()


def _checked(path, kind: str) -> CheckedArchive:
    checked = check_model_file(path)
    if checked.kind != kind:
        raise ModelError(f"{checked.path} is a {checked.kind}, not a {kind}")
    return checked


@contextmanager
def _one_line(checked: CheckedArchive):
    export_log = logging.getLogger("torch.export")  # logs multi-line tracebacks before raising
    level = export_log.level
    export_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript is deprecated upstream and says so on load
            yield
    except Exception as e:  # noqa: BLE001 - passed the check but torch cannot use it: say so in one line
        raise ModelError(f"could not load {checked.kind} {checked.path}: {type(e).__name__}: {first_line(e)}") from e
    finally:
        export_log.setLevel(level)


class _Forbidden(Exception):
    """Raised while reading a pickle's opcodes; _check_pickle adds the file and entry."""


def _refused(where: str, reason: str) -> ModelError:
    return ModelError(f"{where}: refused: {reason}")


def _check_archive(raw: bytes, where: str, expect: str | None = None) -> tuple[str, bytes]:
    entries = _read_zip(raw, where)
    root = next(iter(entries)).split("/", 1)[0]
    if not all(name.startswith(root + "/") and ".." not in name.split("/") for name in entries):
        raise _refused(where, "entries must all lie in one top-level folder (not a torch archive)")
    rel = {name[len(root) + 1:]: data for name, data in entries.items()}
    if "archive_format" in rel:
        kind = EXPORT
    elif "constants.pkl" in rel or any(name.startswith("code/") for name in rel):
        kind = TORCHSCRIPT
    elif "data.pkl" in rel:
        kind = RECORD
    else:
        raise _refused(where, "not a model archive (no data.pkl, TorchScript code or torch.export program)")
    if expect is not None and kind != expect:
        raise _refused(where, f"expected a {expect}, found a {kind}")
    allowed = _TORCHSCRIPT_GLOBALS if kind == TORCHSCRIPT else _TENSOR_GLOBALS
    for name, data in rel.items():
        if name.endswith("pkl"):  # data.pkl, constants.pkl, *.debug_pkl, ...
            _check_pickle(data, name, where, allowed, kind == TORCHSCRIPT)
        elif kind == TORCHSCRIPT and name.startswith("code/") and name.endswith(".py"):
            _check_torchscript_code(_text(data, name, where), name, where)
    if kind == EXPORT:
        rel = _check_export(rel, where)
    return kind, _canonical_zip({f"{root}/{name}": data for name, data in rel.items()})


def _read_zip(raw: bytes, where: str) -> dict[str, bytes]:
    if not raw.startswith(b"PK\x03\x04"):
        raise _refused(where, "not a readable model archive (not a zip file: truncated, or another format)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = zf.infolist()
            if not infos or len(infos) > MAX_ENTRIES:
                raise _refused(where, f"archive has {len(infos)} entries (expected 1..{MAX_ENTRIES})")
            if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
                raise _refused(where, f"archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
            if min(info.header_offset for info in infos) != 0:
                raise _refused(where, "archive does not start at the first byte of the file")
            entries: dict[str, bytes] = {}
            for info in infos:
                if info.filename in entries:
                    raise _refused(where, f"entry {info.filename} appears twice")
                entries[info.filename] = zf.read(info)  # checks the CRC
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile/zlib raise many types for damaged archives
        raise _refused(where, f"damaged zip archive ({first_line(e)})") from None
    return entries


def _canonical_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def _text(data: bytes, name: str, where: str, limit: int = MAX_SCANNED_BYTES) -> str:
    if len(data) > limit:
        raise _refused(where, f"{name} is larger than {limit >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(where, f"{name} is not UTF-8 text") from None


# ----- pickles


def _check_pickle(data: bytes, name: str, where: str, allowed: set, torchscript: bool) -> None:
    if len(data) > MAX_SCANNED_BYTES:
        raise _refused(where, f"{name} is larger than {MAX_SCANNED_BYTES >> 20} MiB")
    try:
        for module, qualname in _pickle_globals(data):
            ok = (module, qualname) in allowed or (
                torchscript and _TORCHSCRIPT_CLASS.fullmatch(module) and _IDENTIFIER.fullmatch(qualname))
            if not ok:
                raise _Forbidden(f"imports {module}.{qualname}, which is not an allowed tensor, container "
                                 f"or TorchScript type")
    except _Forbidden as e:
        raise _refused(where, f"{name} {e}") from None
    except Exception as e:  # noqa: BLE001 - pickletools raises ValueError and friends on garbage
        raise _refused(where, f"{name} is not a readable pickle ({first_line(e)})") from None


def _pickle_globals(data: bytes):
    """(module, name) of every import the pickle would do, read from its opcodes without running them.
    STACK_GLOBAL takes both from the stack: accepted only when the two pushes before it are strings
    (directly or from the memo), which is how every pickler writes it."""
    memo: dict[int, str | None] = {}
    recent: deque = deque([None, None], maxlen=2)   # values of the last two pushes (None: not a string)
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, qualname = arg.partition(" ")
            yield module, qualname
        elif name == "STACK_GLOBAL":
            if not all(isinstance(v, str) for v in recent):
                raise _Forbidden("has a STACK_GLOBAL whose target is not a plain string")
            yield recent[0], recent[1]
        elif name.startswith("EXT"):
            raise _Forbidden(f"uses a copyreg extension import ({name})")
        if name == "MEMOIZE":
            memo[len(memo)] = recent[-1]
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif "UNICODE" in name or name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            recent.append(arg)
        elif name not in ("PROTO", "FRAME"):
            recent.append(None)


# ----- TorchScript


def _check_torchscript_code(code: str, name: str, where: str) -> None:
    match = _FORBIDDEN_OPS.search(code)
    if match:
        raise _refused(where, f"TorchScript code {name} uses {match.group(1)!r}, which reads or writes files "
                              f"or talks to other processes")


# ----- torch.export


def _check_export(rel: dict[str, bytes], where: str) -> dict[str, bytes]:
    for name in rel:
        if not _PT2_ENTRIES.fullmatch(name):
            raise _refused(where, f"unexpected entry {name} in a torch.export archive (pickled objects, "
                                  f"compiled code and old layouts are not accepted)")
    if rel["archive_format"] != b"pt2" or "models/model.json" not in rel:
        raise _refused(where, "not a torch.export .pt2 archive (archive_format / models/model.json)")
    for config_name, prefix in (("data/weights/model_weights_config.json", "weight_"),
                                ("data/constants/model_constants_config.json", "tensor_")):
        if config_name in rel:
            _check_payload_config(_json(rel[config_name], config_name, where), config_name, prefix, where)
    _check_program(_json(rel["models/model.json"], "models/model.json", where), where)
    sample = rel.get("data/sample_inputs/model.pt", b"")
    if sample:  # a torch.save record of the example inputs: the same check, then its canonical copy
        _kind, sample = _check_archive(sample, f"{where} (sample inputs)", expect=RECORD)
        rel = {**rel, "data/sample_inputs/model.pt": sample}
    return rel


def _json(data: bytes, name: str, where: str):
    try:
        return json.loads(_text(data, name, where))
    except ModelError:
        raise
    except (ValueError, RecursionError) as e:
        raise _refused(where, f"{name} is not valid JSON ({first_line(e)})") from None


def _check_payload_config(doc, name: str, prefix: str, where: str) -> None:
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise _refused(where, f"{name} has no config map")
    for fqn, meta in config.items():
        if (not isinstance(meta, dict) or meta.get("use_pickle") is not False
                or not re.fullmatch(re.escape(prefix) + r"\d+", str(meta.get("path_name")))):
            raise _refused(where, f"{fqn} in {name} is not a plain tensor (pickled payloads are not accepted)")


def _check_program(doc, where: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("graph_module"), dict):
        raise _refused(where, "models/model.json is not an exported program")
    _check_signature(doc["graph_module"].get("signature"), where)
    for key, value in _walk(doc):
        if key == "target" and isinstance(value, str):
            _check_target(value, where)
        elif key == "expr_str":
            _check_sympy_expr(value, where)
    for guard in doc.get("guards_code") or []:
        _check_guard(guard, where)
    ranges = doc.get("range_constraints") or {}  # their bounds are printed into the input check's code
    if not isinstance(ranges, dict) or not all(
            isinstance(bounds, dict) and all(_is_int_or_none(bounds.get(k)) for k in ("min_val", "max_val"))
            for bounds in ranges.values()):
        raise _refused(where, "range constraints must be integer bounds")


def _is_int_or_none(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _check_signature(signature, where: str) -> None:
    """One tensor in, one tensor out; everything else the program holds are parameters and buffers."""
    ok = isinstance(signature, dict)
    inputs = signature.get("input_specs") if ok else None
    outputs = signature.get("output_specs") if ok else None
    ok = ok and isinstance(inputs, list) and isinstance(outputs, list)
    if ok:
        kinds = [next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None for spec in inputs]
        user = [spec["user_input"] for spec, k in zip(inputs, kinds) if k == "user_input"]
        ok = (all(k in ("parameter", "buffer", "tensor_constant", "user_input") for k in kinds)
              and len(user) == 1 and _is_tensor_arg(user[0])
              and len(outputs) == 1 and isinstance(outputs[0], dict)
              and _is_tensor_arg(outputs[0].get("user_output")))
    if not ok:
        raise _refused(where, "the exported program must take one tensor and return one tensor")


def _is_tensor_arg(spec) -> bool:
    return isinstance(spec, dict) and isinstance(spec.get("arg"), dict) and "as_tensor" in spec["arg"]


def _walk(doc):
    """(key, value) of every dict entry in a JSON document, iteratively (no recursion limit)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_target(target: str, where: str) -> None:
    aten = _ATEN_TARGET.fullmatch(target)
    if (aten and not _FORBIDDEN_OPS.fullmatch(aten.group(1))) or target in _SHAPE_TARGETS:
        return
    raise _refused(where, f"the program calls {target[:80]!r}; only ATen operators and shape arithmetic are accepted")


def _check_sympy_expr(expr, where: str) -> None:
    """torch turns these strings into sympy objects with sympify, i.e. eval: allow only the sympy
    constructors, symbol names and numbers that shape arithmetic needs."""
    ok = isinstance(expr, str) and len(expr) <= 100_000 and "**" not in expr
    pos = 0
    while ok and pos < len(expr):
        token = _EXPR_TOKEN.match(expr, pos)
        ok = token is not None and (not _IDENTIFIER.fullmatch(token.group()) or token.group() in _SYMPY_NAMES)
        pos = token.end() if token else pos
    if not ok:
        raise _refused(where, f"symbolic shape expression {str(expr)[:80]!r} is not plain shape arithmetic")


def _check_guard(guard, where: str) -> None:
    """torch compiles these strings into the module's input check with exec: allow only comparisons
    of input sizes and arithmetic, e.g. `L['x'].size()[2] <= 2*((L['x'].size()[2] + 3) // 2)`."""
    ok = isinstance(guard, str) and len(guard) <= 10_000 and not set(guard) & set('\n\r"\\')
    try:
        nodes = list(ast.walk(ast.parse(guard, mode="eval"))) if ok else []
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        ok = False
    for node in nodes:
        ok = ok and isinstance(node, _GUARD_NODES) and _guard_node_ok(node)
    if not ok:
        raise _refused(where, f"input guard {str(guard)[:80]!r} is not a plain size comparison")


def _guard_node_ok(node) -> bool:
    if isinstance(node, ast.Constant):
        return (isinstance(node.value, (int, float, bool))
                or (isinstance(node.value, str) and _IDENTIFIER.fullmatch(node.value) is not None))
    if isinstance(node, ast.Name):
        return node.id in _GUARD_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in _GUARD_ATTRS
    if isinstance(node, ast.Call):
        return not node.keywords
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant)
    return True
