"""The distribution installs `runner/` and `decorators/` as `tornado_run.runner` and
`tornado_run.decorators`, both as a wheel (`pip install .`) and editable (`pip install -e .`),
and the names resolve from a directory outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import tornado_run.runner as r, tornado_run.decorators as d;"
    "from tornado_run.decorators import unblock, pools, TaskTimeout;"
    "print(r.__file__); print(d.__file__)"
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.timeout(150)
def test_wheel_installs_both_packages_under_tornado_run(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("runner", "decorators"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], tmp_path)
    [wheel] = wheels.glob("tornado_run-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "tornado_run/runner/__init__.py",
        "tornado_run/runner/py.typed",
        "tornado_run/decorators/__init__.py",
        "tornado_run/decorators/py.typed",
    ):
        assert expected in names
    assert not any(name.startswith(("runner/", "decorators/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "tornado-run = tornado_run.runner.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )

    target = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)}
    paths = _run([sys.executable, "-c", PROBE], outside, env).split()
    assert all(path.startswith(str(target)) for path in paths), paths


def test_editable_install_resolves_to_the_checkout_from_elsewhere(tmp_path: Path) -> None:
    runner_file, decorators_file = _run([sys.executable, "-c", PROBE], tmp_path).split()
    assert Path(runner_file) == ROOT / "runner" / "__init__.py"
    assert Path(decorators_file) == ROOT / "decorators" / "__init__.py"
