"""An app that cannot run ends FATAL in supervisord after a few tries, not in a respawn storm:
tornado-run exits 3, which is not in `exitcodes`, before `startsecs` have passed."""

from __future__ import annotations

from pathlib import Path

import pytest
from supervisor_support import (
    free_port,
    program_section,
    running_supervisord,
    tornado_run_command,
)

NAME = "web"
STARTRETRIES = 1


def test_app_that_fails_to_import_ends_fatal(tmp_path: Path) -> None:
    command = tornado_run_command(
        "broken_app:application", f"--bind 127.0.0.1:{free_port()}", "--workers 1"
    )
    section = program_section(NAME, command, tmp_path, startsecs=5, startretries=STARTRETRIES)
    with running_supervisord(tmp_path, section) as sup:
        sup.wait_state(NAME, "FATAL", 40)
        assert sup.spawn_count(NAME) == STARTRETRIES + 1
        log = (tmp_path / f"{NAME}.log").read_text()
        assert "DATABASE_URL is not set" in log
        assert "exit status 3" in sup.log_text()


@pytest.mark.timeout(120)
def test_crash_looping_workers_end_fatal_not_in_a_respawn_storm(tmp_path: Path) -> None:
    command = tornado_run_command(
        "crash_app:make_app", "--factory", f"--bind 127.0.0.1:{free_port()}", "--workers 2"
    )
    # startsecs above the time tornado-run needs to declare a crash loop (a few seconds).
    section = program_section(NAME, command, tmp_path, startsecs=15, startretries=STARTRETRIES)
    with running_supervisord(tmp_path, section) as sup:
        sup.wait_state(NAME, "FATAL", 90)
        assert sup.spawn_count(NAME) == STARTRETRIES + 1
        assert "exit status 3" in sup.log_text()
