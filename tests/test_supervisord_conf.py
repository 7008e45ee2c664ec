"""The supervisord section generator and the sample configs in conf/, checked with
supervisord's own config parser and tornado-run's own option table."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions
from supervisor_support import APPS, TORNADO_RUN
from tornado_run.runner import supervisord_conf

CONF = Path(__file__).resolve().parent.parent / "conf"


def generate(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert supervisord_conf.main(list(argv)) == 0
    return capsys.readouterr().out


def parse_programs(tmp_path: Path, sections: str) -> dict[str, Any]:
    """Load `sections` with supervisord's parser; return each process config by name."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisord]\n[unix_http_server]\nfile={tmp_path}/s.sock\n{sections}")
    options = ServerOptions()
    options.realize(["-c", str(conf)])
    return {p.name: p for g in options.process_group_configs for p in g.process_configs}


def test_program_section_waits_longer_than_the_graceful_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = generate(
        capsys, "myapp:application", "--name", "web", "--workers", "3",
        "--bind", "127.0.0.1:8123", "--bind", "unix:/tmp/web.sock",
        "--graceful-timeout", "42.5", "--log-dir", str(tmp_path),
        "--environment", "RATIO=50%", "--", "--log-level", "debug",
    )  # fmt: skip
    web = parse_programs(tmp_path, section)["web"]
    assert web.stopwaitsecs > 42.5
    assert web.stopsignal == 15 and web.stopasgroup and web.killasgroup
    assert web.exitcodes == [0] and web.autorestart.__name__ == "RestartWhenExitUnexpected"
    assert web.command.split()[1:] == [
        "myapp:application", "--workers", "3", "--bind", "127.0.0.1:8123",
        "--bind", "unix:/tmp/web.sock", "--graceful-timeout", "42.5",
        "--log-level", "debug",
    ]  # fmt: skip
    assert web.environment == {"PYTHONUNBUFFERED": "1", "RATIO": "50%"}
    assert web.stdout_logfile == str(tmp_path / "web.log")
    assert web.stdout_logfile_backups > 0 and web.stdout_logfile_maxbytes > 0


def test_fcgi_section_hands_one_supervisor_socket_to_numprocs_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = generate(
        capsys, "myapp:application", "--mode", "fcgi", "--name", "api", "--numprocs", "3",
        "--bind", "127.0.0.1:8124", "--log-dir", str(tmp_path),
    )  # fmt: skip
    assert "socket=tcp://127.0.0.1:8124\n" in section
    procs = parse_programs(tmp_path, section)
    assert sorted(procs) == ["api_00", "api_01", "api_02"]
    for proc in procs.values():
        assert "--no-master --bind fd://0" in proc.command
        assert proc.stopwaitsecs > supervisord_conf.DEFAULT_GRACEFUL_TIMEOUT
        assert proc.stdout_logfile == str(tmp_path / f"{proc.name}.log")


def test_fcgi_unix_socket_with_a_group_is_owned_by_the_user_and_that_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = tmp_path / "api.sock"
    section = generate(
        capsys, "myapp:application", "--mode", "fcgi", "--name", "api", "--user", "nobody",
        "--bind", f"unix:{sock}?mode=0660&group=www-data", "--log-dir", str(tmp_path),
    )  # fmt: skip
    assert "socket_owner=nobody:www-data\n" in section and "socket_mode=0660\n" in section
    assert len(parse_programs(tmp_path, section)) == 2  # supervisord accepts the owner


def test_stopwaitsecs_follows_the_config_files_graceful_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.toml").write_text("[server]\ngraceful_timeout = 61\n")
    section = generate(
        capsys, "myapp:application", "--directory", str(tmp_path), "--config", "app.toml"
    )
    assert "--graceful-timeout 61 --config app.toml\n" in section
    assert "stopwaitsecs=66\n" in section
    (tmp_path / "app.toml").write_text("[server]\ngraceful_timeout = -1\n")
    assert supervisord_conf.main(["myapp:application", "--config", str(tmp_path / "app.toml")]) == 2
    assert "graceful_timeout -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["myapp"], "'myapp'"),
        (["myapp:application", "--workers", "0"], "'0'"),
        (["myapp:application", "--workers", "many"], "'many'"),
        (["myapp:application", "--bind", "127.0.0.1:70000"], "127.0.0.1:70000"),
        (["myapp:application", "--bind", "localhost"], "'localhost'"),
        (["myapp:application", "--bind", "unix:"], "'unix:'"),
        (["myapp:application", "--bind", "http://127.0.0.1:80"], "'http'"),
        (["myapp:application", "--mode", "fcgi", "--bind", "127.0.0.1:0"], "127.0.0.1:0"),
        (["myapp:application", "--bind", "fd://x"], "fd://x"),
        (["myapp:application", "--graceful-timeout", "-1"], "'-1'"),
        (["myapp:application", "--graceful-timeout", "nan"], "'nan'"),
        (["myapp:application", "--mode", "daemon"], "'daemon'"),
        (["myapp:application", "--name", "web:1"], "'web:1'"),
        (["myapp:application", "--numprocs", "2"], "--numprocs 2"),
        (["myapp:application", "--mode", "fcgi", "--workers", "2"], "--workers 2"),
        (["myapp:application", "--mode", "fcgi", "--bind", "fd://3"], "fd://3"),
        (
            ["myapp:application", "--mode", "fcgi", "--bind", "unix:/tmp/a.sock?group=www-data"],
            "group=",
        ),
        (["myapp:application", "--mode", "fcgi", "--bind", "a:1", "--bind", "b:2"], "a:1 b:2"),
        (["myapp:application", "--environment", "NOVALUE"], "'NOVALUE'"),
        (["myapp:application", "--startsecs", "-5"], "'-5'"),
        (["myapp:application", "--colour"], "--colour"),
        (["myapp:application", "--config", "/nonexistent/app.toml"], "/nonexistent/app.toml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert supervisord_conf.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], captured.err
    assert lines[0].startswith("tornado-run supervisord-conf: error:")


def test_sample_supervisord_conf_stops_slower_than_it_drains(tmp_path: Path) -> None:
    text = (CONF / "supervisord.conf").read_text()
    text = text.replace("/var/log/tornado-run", str(tmp_path)).replace(
        "/var/log/supervisor", str(tmp_path)
    )
    text = text.replace("/run/", f"{tmp_path}/")
    text = re.sub(r"^user=.*$", "", text, flags=re.MULTILINE)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    options = ServerOptions()
    options.realize(["-c", str(conf)])
    procs = [p for g in options.process_group_configs for p in g.process_configs]
    assert {p.name for p in procs} == {"web", "web-fcgi_00", "web-fcgi_01"}
    for proc in procs:
        graceful = float(proc.command.split("--graceful-timeout ")[1].split()[0])
        assert proc.stopwaitsecs > graceful, proc.name
        assert proc.stopasgroup and proc.killasgroup and proc.exitcodes == [0]
        assert proc.startretries <= 3
    master = next(p for p in procs if p.name == "web")
    assert master.startsecs >= supervisord_conf.start_seconds("program", "auto")


@pytest.mark.parametrize("workers", ["auto", "1", "2", "3", "16"])
def test_program_startsecs_outlast_crash_loop_detection(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tornado_run.runner.master.crashes import CRASH_LIMIT, CRASH_WINDOW

    section = generate(capsys, "myapp:application", "--workers", workers)
    startsecs = int(section.split("startsecs=")[1].split()[0])
    count = 1 if workers == "auto" else int(workers)
    deaths_per_worker = -(-CRASH_LIMIT // count)
    assert startsecs > deaths_per_worker * CRASH_WINDOW


def test_sample_toml_lists_every_server_option() -> None:
    from tornado_run.runner.settings.options import OPTIONS

    server = tomllib.loads((CONF / "tornado-run.toml").read_text())["server"]
    assert sorted(server) == sorted(option.name for option in OPTIONS)
    for option in OPTIONS:
        assert option.parse(server[option.name]) == option.default, option.name


def test_sample_toml_passes_tornado_run_check() -> None:
    result = subprocess.run(
        [str(TORNADO_RUN), "sup_app:application", "--app-dir", str(APPS), "--check",
         "--config", str(CONF / "tornado-run.toml")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_tornado_run_cli_dispatches_to_the_generator() -> None:
    result = subprocess.run(
        [str(TORNADO_RUN), "supervisord-conf", "myapp:application", "--graceful-timeout", "7"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[program:tornado-run]\n")
    assert "stopwaitsecs=12\n" in result.stdout


def unit_settings(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a systemd unit file (comments and sections skipped)."""
    settings = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_sample_systemd_units_use_socket_activation_and_do_not_restart_exit_3() -> None:
    service = unit_settings(CONF / "tornado-run.service")
    socket_unit = unit_settings(CONF / "tornado-run.socket")
    command = service["ExecStart"].split()
    assert "--bind" not in command, "the socket comes from tornado-run.socket (LISTEN_FDS)"
    graceful = float(command[command.index("--graceful-timeout") + 1])
    assert float(service["TimeoutStopSec"]) > graceful
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert {"2", "3"} <= set(service["RestartPreventExitStatus"].split())
    assert service["Requires"] == "tornado-run.socket"
    assert socket_unit["ListenStream"] == "127.0.0.1:8000"
