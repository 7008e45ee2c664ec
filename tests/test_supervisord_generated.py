"""What `tornado-run supervisord-conf` prints, fed as is to a real supervisord, serves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from supervisor_support import (
    APPS,
    TORNADO_RUN,
    free_port,
    running_supervisord,
    try_get,
    wait_for,
)


def generated(tmp_path: Path, *argv: str) -> str:
    common = ["--app-dir", str(APPS), "--directory", str(tmp_path), "--log-dir", str(tmp_path)]
    result = subprocess.run(
        [str(TORNADO_RUN), "supervisord-conf", "sup_app:application", *argv, *common,
         "--graceful-timeout", "5", "--startsecs", "1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(90)
def test_generated_sections_run_under_supervisord(tmp_path: Path) -> None:
    web_port, fcgi_port = free_port(), free_port()
    sections = generated(
        tmp_path, "--name", "web", "--workers", "2", "--bind", f"127.0.0.1:{web_port}"
    ) + generated(tmp_path, "--name", "api", "--mode", "fcgi", "--bind", f"127.0.0.1:{fcgi_port}")
    with running_supervisord(tmp_path, sections) as sup:
        master = int(sup.wait_state("web", "RUNNING", 30)["pid"])
        fcgi = {int(sup.wait_state(f"api:api_0{i}", "RUNNING", 30)["pid"]) for i in (0, 1)}
        for pid in (master, *fcgi):
            sup.remember_tree(pid)
        web_body = wait_for(lambda: try_get(web_port), 20, "the program to serve")
        fcgi_body = wait_for(lambda: try_get(fcgi_port), 20, "the fcgi-program to serve")
        assert web_body["ppid"] == master
        assert fcgi_body["pid"] in fcgi

        stopped = sup.ctl("stop", "all")
        assert "ERROR" not in stopped.stdout, stopped.stdout
        for name in ("web", "api:api_00", "api:api_01"):
            info = sup.info(name)
            assert (info["statename"], info["exitstatus"]) == ("STOPPED", 0), info
