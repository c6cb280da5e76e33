"""A wheel (not only the editable install) must carry drivers/, train/, bench/ inside ssml_stream."""
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True)
    (whl,) = out.glob("ssml_stream-*.whl")
    return whl


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for sub in ("drivers", "train", "bench", "models"):
        assert f"ssml_stream/{sub}/__init__.py" in names
    assert not any(n.split("/")[0] in ("drivers", "train", "bench", "tests") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "ssml-stream =" in entry_points and "ssml-bench =" in entry_points
    shipped = sorted(p.name for p in (ROOT / "ssml_stream" / "models" / "weights").glob("*.pt"))
    assert shipped == sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("ssml_stream/models/weights/")
                             and n.endswith(".pt"))


@pytest.mark.slow
def test_wheel_install_imports_subpackages(wheel, tmp_path):
    # A bare venv whose only copy of ssml_stream is the installed wheel; dependencies come from the
    # current environment through a .pth line (which does not load the editable-install finder).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    code = ("import ssml_stream, ssml_stream.drivers, ssml_stream.train, ssml_stream.bench.cli, ssml_stream.models;"
            "import importlib.metadata as m;"
            "print(ssml_stream.__file__); print(ssml_stream.drivers.__file__);"
            "print(sorted(e.name for e in m.entry_points(group='console_scripts') if e.name.startswith('ssml-')))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site)), out
    assert "ssml-stream" in out[2] and "ssml-train" in out[2]
