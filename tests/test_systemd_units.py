"""The sample systemd units in conf/ pass `systemd-analyze verify` (with ExecStart pointing at
this installation's tornado-run, as a user's unit would point at theirs)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from runner_support import TORNADO_RUN

CONF = Path(__file__).resolve().parent.parent / "conf"
SAMPLE_BINARY = "/srv/myapp/.venv/bin/tornado-run"
NOTIFY_RELOAD_SINCE = 253
"""The systemd version that knows Type=notify-reload."""

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _systemd_version() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True)
    match = re.search(r"systemd (\d+)", out.stdout)
    return int(match.group(1)) if match else 0


def _install(tmp_path: Path, *names: str) -> list[Path]:
    units = []
    for name in names:
        text = (CONF / name).read_text()
        assert name.endswith(".socket") or SAMPLE_BINARY in text
        (tmp_path / name).write_text(text.replace(SAMPLE_BINARY, str(TORNADO_RUN)))
        units.append(tmp_path / name)
    return units


def _verify(*units: Path) -> tuple[int, list[str]]:
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units[0].parent,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if line.strip()]


@pytest.mark.timeout(90)
def test_the_socket_activated_exec_unit_verifies(tmp_path: Path) -> None:
    code, lines = _verify(*_install(tmp_path, "tornado-run.service", "tornado-run.socket"))
    assert (code, lines) == (0, [])


@pytest.mark.timeout(90)
def test_the_notify_reload_unit_verifies(tmp_path: Path) -> None:
    (unit,) = _install(tmp_path, "tornado-run-notify.service")
    text = unit.read_text()
    assert "Type=notify-reload" in text and "\nExecReload=" not in text
    code, lines = _verify(unit)
    assert code == 0
    if _systemd_version() >= NOTIFY_RELOAD_SINCE:
        assert lines == []
        return
    # An older systemd names the one setting it does not know, and nothing else; the unit's
    # own advice for it (Type=notify with ExecReload=) must verify cleanly.
    assert len(lines) == 1 and "Failed to parse service type" in lines[0], lines
    older = text.replace("Type=notify-reload", "Type=notify\nExecReload=/bin/kill -HUP $MAINPID")
    unit.write_text(older)
    assert _verify(unit) == (0, [])
