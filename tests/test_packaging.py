"""A normal (non-editable) install: the wheel carries conf/, and its console scripts train without the checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the checkout.

    A copy, because setuptools builds in place through build/, where a module deleted from the tree
    would linger and ship. Build isolation (the default) because the venv's setuptools may be older
    than pyproject's `build-system.requires`.
    """
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(REPO, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, env=_without_pythonpath())
    (path,) = out.glob("genre_vit-*.whl")
    return path


@pytest.fixture(scope="module")
def target(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a bare folder; its dependencies come from this interpreter's site-packages."""
    target = tmp_path_factory.mktemp("target")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(target), str(wheel)], check=True, env=_without_pythonpath())
    return target


def _without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _installed_env(target: Path) -> dict[str, str]:
    """PYTHONPATH with the install first: it outranks the editable finder, which maps genre_vit to a checkout."""
    site = dict.fromkeys([target, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    return {**_without_pythonpath(), "PYTHONPATH": os.pathsep.join(map(str, site))}


def test_wheel_ships_every_config_and_module(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"genre_vit/conf/train.yaml", "genre_vit/conf/data/synthetic.yaml"} <= names
    configs = {f"genre_vit/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "genre_vit").rglob("*.py")}
    # A subpackage missing from pyproject's explicit `packages` list shows up here.
    assert configs - names == set() and modules - names == set()


def test_wheel_declares_the_console_scripts(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    for name in ("train", "predict", "summarize", "bench"):
        assert f"genre-vit-{name} = genre_vit.{name}:{'cli' if name in ('train', 'predict') else 'main'}" in text


def test_installed_package_imports_from_the_install_and_finds_its_configs(target: Path, tmp_path: Path):
    code = "import sys, genre_vit; print(genre_vit.__file__, genre_vit.CONFIG_DIR, 'torch' in sys.modules, sep='\\n')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_installed_env(target),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str(target.resolve() / "genre_vit" / "__init__.py"), str(target.resolve() / "genre_vit" / "conf"),
                   "False"]


def test_installed_train_script_runs_from_an_unrelated_directory(target: Path, tmp_path: Path):
    (cwd := tmp_path / "elsewhere").mkdir()
    subprocess.run([str(target / "bin" / "genre-vit-train"), "debug=fast", f"paths.output_root={tmp_path}",
                    f"hydra.run.dir={tmp_path}/run"], cwd=cwd, env=_installed_env(target), check=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
