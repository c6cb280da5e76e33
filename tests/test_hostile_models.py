"""Loading a model file never runs code from it (ssml_stream/model_files.py, docs/reliability.md).

Every accepted format (weights record, TorchScript, torch.export .pt2) is rebuilt here with a hostile
part whose code, if anything ran it, would create a marker file. Each load must raise ModelError in
one line and leave no marker; fuzzed archives must raise ModelError or load, nothing else.
"""
import io
import json
import os
import pickle
import warnings
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssml_stream import model_files, models
from ssml_stream.errors import ModelError
from ssml_stream.runtime import Reconstructor, load_model

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class _Call:
    """Pickles as a call of `fn(arg)`: what an attacker puts in a pickle."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def hostile_pickle(marker, via="system", protocol=2) -> bytes:
    """A pickle that creates `marker` when unpickled: os.system (GLOBAL posix.system) or builtins.exec /
    eval (STACK_GLOBAL at protocol 4)."""
    code = f"open({str(marker)!r}, 'w').close()"
    call = {"system": _Call(os.system, f"touch {marker}"), "exec": _Call(exec, code), "eval": _Call(eval, code)}[via]
    return pickle.dumps([call], protocol=protocol)


def rewrite(src, dst, *, replace=None, add=(), edit_json=None, prefix=b""):
    """Copy a zip archive entry by entry: `replace` maps a name suffix to new bytes (or a function of
    the old bytes), `add` appends (name, bytes) entries, `edit_json(doc)` edits models/model.json."""
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate-name case, made on purpose
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = new(data) if callable(new) else new
            if edit_json and info.filename.endswith("models/model.json"):
                doc = json.loads(data)
                edit_json(doc)
                data = json.dumps(doc).encode()
            zout.writestr(info.filename, data)
        root = zin.namelist()[0].split("/")[0]
        for name, data in add:
            zout.writestr(f"{root}/{name}", data)
    dst.write_bytes(prefix + out.getvalue())
    return dst


class _TinyConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(41, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One valid file per accepted format."""
    folder = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    rt = models.build_model("rt").eval()
    models.save_weights(folder / "weights.pt", rt, "rt", {}, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(rt, torch.zeros(1, 41, 16, 16), check_trace=False).save(str(folder / "traced.pt"))
        dims = {"x": {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
        program = torch.export.export(_TinyConv().eval(), (torch.zeros(1, 41, 16, 16),), dynamic_shapes=dims)
        torch.export.save(program, str(folder / "conv.pt2"))  # with its sample inputs (a torch.save record)
    return {"weights": folder / "weights.pt", "torchscript": folder / "traced.pt", "export": folder / "conv.pt2"}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a model file ran code"


def refused(path, *expected):
    """load_model raises one ModelError line naming the file (and `expected` fragments)."""
    with pytest.raises(ModelError) as err:
        load_model(str(path), "cpu")
    text = str(err.value)
    assert "\n" not in text and path.name in text, text
    for fragment in expected:
        assert fragment in text, text
    return text


def test_good_files_load_through_the_gate(good):
    for kind, path in good.items():
        rec = load_model(str(path), "cpu")
        assert isinstance(rec, Reconstructor), kind
    assert [model_files.check_model_file(good[k]).kind for k in ("weights", "torchscript", "export")] == [
        model_files.RECORD, model_files.TORCHSCRIPT, model_files.EXPORT]


# ---------------------------------------------------------------- one hostile file per way in

@pytest.mark.parametrize("entry", ["data.pkl"])
@pytest.mark.parametrize("via, protocol, shown", [("system", 2, "posix.system"), ("exec", 4, "builtins.exec"),
                                                  ("eval", 2, "__builtin__.eval")])
def test_weights_record_with_hostile_pickle(good, tmp_path, marker, entry, via, protocol, shown):
    path = rewrite(good["weights"], tmp_path / "evil.pt", replace={f"/{entry}": hostile_pickle(marker, via, protocol)})
    refused(path, "refused", entry, shown)
    with pytest.raises(ModelError, match=shown):
        models.load_weights(path)


@pytest.mark.parametrize("entry", ["/data.pkl", "/constants.pkl", ".debug_pkl"])
def test_torchscript_with_hostile_pickle(good, tmp_path, marker, entry):
    path = rewrite(good["torchscript"], tmp_path / "evil.ts", replace={entry: hostile_pickle(marker)})
    refused(path, "refused", "posix.system")


class _WritesAFile(torch.nn.Module):
    """TorchScript cannot import Python, but torch.save inside forward writes any file."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        torch.save(x, self.target)
        return x.mean(dim=1, keepdim=True)


def test_torchscript_that_writes_files_is_refused(tmp_path, marker):
    path = tmp_path / "writer.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_WritesAFile(str(marker))).save(str(path))
    refused(path, "'save'")


def _torch_save_with(pickle_bytes, tmp_path) -> bytes:
    plain = tmp_path / "plain.pt"
    torch.save({"x": torch.zeros(1)}, plain)
    return rewrite(plain, tmp_path / "inner.pt", replace={"/data.pkl": pickle_bytes}).read_bytes()


def _first_expr(doc, value):
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "expr_str" in item:
                item["expr_str"] = value
                return
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError("no symbolic expression in the exported program")


def _pickled_weight(doc_bytes):
    doc = json.loads(doc_bytes)
    for meta in doc["config"].values():
        meta["use_pickle"] = True
    return json.dumps(doc).encode()


PT2_ATTACKS = {
    # torch.export.load falls back to torch.load(weights_only=False) for sample inputs
    "sample inputs pickle in a torch.save record": lambda m, t: dict(
        replace={"sample_inputs/model.pt": _torch_save_with(hostile_pickle(m), t)}),
    "sample inputs as a bare pickle": lambda m, t: dict(replace={"sample_inputs/model.pt": hostile_pickle(m)}),
    # sympify (eval) of symbolic shapes, exec of input guards
    "shape expression": lambda m, t: dict(edit_json=lambda d: _first_expr(d, f"__import__('os').system('touch {m}')")),
    "input guard": lambda m, t: dict(edit_json=lambda d: d.update(guards_code=[f"__import__('os').system('touch {m}') == 0"])),
    "operator target": lambda m, t: dict(edit_json=lambda d: d["graph_module"]["graph"]["nodes"][0].update(
        target="torch.os.system")),
    "pickled weight": lambda m, t: dict(replace={"model_weights_config.json": _pickled_weight,
                                                 "weight_0": _torch_save_with(hostile_pickle(m), t)}),
    "custom object constant": lambda m, t: dict(add=[("data/constants/custom_obj_0", hostile_pickle(m))]),
    "compiled code": lambda m, t: dict(add=[("data/aotinductor/model/model.so", b"\x7fELF")]),
}


@pytest.mark.parametrize("attack", sorted(PT2_ATTACKS))
def test_pt2_with_hostile_part(good, tmp_path, marker, attack):
    path = rewrite(good["export"], tmp_path / "evil.pt2", **PT2_ATTACKS[attack](marker, tmp_path))
    refused(path, "refused")
    with pytest.raises(ModelError):
        model_files.load_exported(path)


def test_zip_parser_tricks_are_refused(good, tmp_path, marker):
    evil = hostile_pickle(marker)
    duplicate = rewrite(good["weights"], tmp_path / "dup.pt", add=[("data.pkl", evil)])
    refused(duplicate, "twice")
    shifted = rewrite(good["weights"], tmp_path / "shifted.pt", prefix=b"\0" * 64)
    refused(shifted)
    outside = rewrite(good["weights"], tmp_path / "outside.pt", add=[("../data.pkl", evil)])
    refused(outside, "one top-level folder")


def test_oversized_and_foreign_files(tmp_path, monkeypatch, good):
    monkeypatch.setattr(model_files, "MAX_FILE_BYTES", 1000)
    refused(good["weights"], "limit")
    monkeypatch.undo()
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    refused(text, "not a zip")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    refused(empty)
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x/readme.txt", "hello")
    refused(other, "not a model archive")


def test_consoles_print_one_line_and_exit_2(good, tmp_path, marker, capsys):
    from ssml_stream.stream_cli import main as stream_main
    from ssml_stream.train.evaluate import main as eval_main
    from ssml_stream.train.export import main as export_main

    evil = rewrite(good["export"], tmp_path / "evil.pt2", **PT2_ATTACKS["input guard"](marker, tmp_path))
    evil_weights = rewrite(good["weights"], tmp_path / "evil.pt", replace={"/data.pkl": hostile_pickle(marker)})
    runs = [(stream_main, ["--device", "sim", "--model", str(evil), "--duration", "1", "--no-publish"]),
            (eval_main, ["--no-data", "--sim", "shapes", str(evil)]),
            (export_main, [str(evil_weights), "--format", "torchscript", "--out", str(tmp_path / "x.ts")])]
    for main, argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "refused" in err, err


# ---------------------------------------------------------------- fuzzing


def _load_or_model_error(path):
    """The property: a Reconstructor or a one-line ModelError, never any other exception."""
    try:
        return load_model(str(path), "cpu")
    except ModelError as e:
        assert "\n" not in str(e)
        return e


@FUZZ
@given(data=st.binary(max_size=2048), zip_magic=st.booleans())
def test_fuzz_random_bytes(tmp_path, data, zip_magic):
    path = tmp_path / "random.pt"
    path.write_bytes((b"PK\x03\x04" if zip_magic else b"") + data)
    assert isinstance(_load_or_model_error(path), ModelError)


@FUZZ
@given(kind=st.sampled_from(["weights", "torchscript", "export"]), cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncated_archives(good, tmp_path, kind, cut):
    data = good[kind].read_bytes()
    path = tmp_path / f"cut{good[kind].suffix}"
    path.write_bytes(data[:int(cut * len(data))])
    assert isinstance(_load_or_model_error(path), ModelError)


@FUZZ
@given(kind=st.sampled_from(["weights", "torchscript", "export"]), which=st.integers(0, 10_000),
       where=st.floats(0, 1, exclude_max=True), byte=st.integers(0, 255))
def test_fuzz_damaged_entries(good, tmp_path, kind, which, where, byte):
    """One byte of one entry changed, archive rebuilt with valid checksums: torch sees the damage."""
    with zipfile.ZipFile(good[kind]) as z:
        name = z.namelist()[which % len(z.namelist())]

    def damage(data):
        if not data:
            return b"\0"
        i = int(where * len(data))
        return data[:i] + bytes([byte]) + data[i + 1:]

    path = rewrite(good[kind], tmp_path / f"damaged{good[kind].suffix}", replace={name: damage})
    _load_or_model_error(path)


@FUZZ
@given(kind=st.sampled_from(["weights", "torchscript", "export"]),
       via=st.sampled_from(["system", "exec", "eval"]), protocol=st.integers(0, 5), position=st.integers(0, 10_000))
def test_fuzz_hostile_pickles_in_any_entry(good, tmp_path, kind, via, protocol, position):
    """A hostile pickle replaces any entry of any format (or is a sample-inputs record for .pt2)."""
    marker = tmp_path / "PWNED"
    with zipfile.ZipFile(good[kind]) as z:
        name = z.namelist()[position % len(z.namelist())]
    evil = hostile_pickle(marker, via, protocol)
    path = rewrite(good[kind], tmp_path / f"evil{good[kind].suffix}", replace={name: evil})
    result = _load_or_model_error(path)
    assert not marker.exists(), f"{via} ran from {name}"
    if name.endswith("pkl") or name.endswith("sample_inputs/model.pt"):
        assert isinstance(result, ModelError), name
