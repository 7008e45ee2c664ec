"""Configuration: precedence (defaults < file < environment < command line), the config
file's tables, worker counts from cores, affinity and cgroup quotas, help and version."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_support import APPS, TORNADO_RUN, Server, clean_env, run_cli
from tornado_run.runner.cpus import usable_cores
from tornado_run.runner.settings.loading import load_settings
from tornado_run.runner.settings.options import Settings
from tornado_run.runner.sockets.binding import parse_bind

HELLO = ["hello:application", "--app-dir", str(APPS)]


def _settings(
    tmp_path: Path, file_text: str | None, env: dict[str, str], cli: dict[str, object]
) -> Settings:
    path = None
    if file_text is not None:
        path = tmp_path / "tornado-run.toml"
        path.write_text(file_text)
    return load_settings("hello:application", cli, str(path) if path else None, environ=env)


def test_precedence_is_defaults_then_file_then_env_then_command_line(tmp_path: Path) -> None:
    file_text = "[server]\nworkers = 3\ngraceful_timeout = 12\nlog-level = 'debug'\n"
    env = {"TORNADO_RUN_WORKERS": "2", "WEB_CONCURRENCY": "7"}
    assert _settings(tmp_path, None, {}, {}).workers == 1
    assert _settings(tmp_path, None, {"WEB_CONCURRENCY": "7"}, {}).workers == 7
    assert _settings(tmp_path, file_text, {"WEB_CONCURRENCY": "7"}, {}).workers == 3
    assert _settings(tmp_path, file_text, env, {}).workers == 2
    assert _settings(tmp_path, file_text, env, {"workers": "4"}).workers == 4
    merged = _settings(tmp_path, file_text, env, {"workers": "auto"})
    assert merged.workers == "auto"
    assert merged.graceful_timeout == 12.0
    assert merged.log_level == "debug"


def test_bind_from_file_list_env_commas_and_repeated_flags(tmp_path: Path) -> None:
    file_text = '[server]\nbind = ["127.0.0.1:9001", "unix:/tmp/a.sock"]\n'
    from_file = _settings(tmp_path, file_text, {}, {})
    assert [spec.text for spec in from_file.bind] == ["127.0.0.1:9001", "unix:/tmp/a.sock"]
    assert from_file.bind_given
    from_env = _settings(tmp_path, file_text, {"TORNADO_RUN_BIND": "[::1]:9002,fd://3"}, {})
    assert [spec.kind for spec in from_env.bind] == ["tcp", "fd"]
    assert from_env.bind[0].host == "::1"
    from_cli = _settings(tmp_path, None, {}, {"bind": ["127.0.0.1:1", "127.0.0.1:2"]})
    assert [spec.port for spec in from_cli.bind] == [1, 2]
    assert not _settings(tmp_path, None, {}, {}).bind_given
    assert parse_bind("unix:/run/x.sock?mode=0600").mode == 0o600


def test_pools_table_reaches_workers_as_json(launch: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "tornado-run.toml"
    config.write_text('[server]\nworkers = 2\n[pools.cpu]\nkind = "process"\nsize = 2\n')
    server = launch("hello:application", "--config", str(config))
    assert len(server.worker_pids()) == 2
    env = server.get_json("/env")[1]
    assert json.loads(env["TORNADO_RUN_POOLS_CONFIG"]) == {"cpu": {"kind": "process", "size": 2}}


def test_workers_auto_follows_cpu_affinity() -> None:
    result = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            str(TORNADO_RUN),
            *HELLO,
            "--workers",
            "auto",
            "--check",
            "--bind",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 worker(s)" in result.stdout
    full = run_cli(*HELLO, "--workers", "auto", "--check", "--bind", "127.0.0.1:0")
    assert f"{len(os.sched_getaffinity(0))} worker(s)" in full.stdout


V2_MOUNTS = "30 23 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNTS = (
    "31 23 0:28 / {root}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "32 23 0:29 / {root}/cpuset rw - cgroup cgroup rw,cpuset\n"
)
CONTAINER_MOUNTS = "40 23 0:26 /lxc/box {root} rw - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(
    ("membership", "mounts", "files", "expected"),
    [
        pytest.param("0::/app\n", V2_MOUNTS, {"app/cpu.max": "50000 100000\n"}, 1, id="v2-own"),
        pytest.param(
            "0::/slice/app\n",
            V2_MOUNTS,
            {"slice/cpu.max": "100000 100000\n", "slice/app/cpu.max": "max 100000\n"},
            1,
            id="v2-parent",
        ),
        pytest.param(
            "0::/app\n", V2_MOUNTS, {"app/cpu.max": "150000 100000\n"}, 2, id="v2-rounds-up"
        ),
        pytest.param("0::/app\n", V2_MOUNTS, {"app/cpu.max": "max 100000\n"}, None, id="v2-max"),
        pytest.param(
            "3:cpuset:/\n2:cpu,cpuacct:/a/b\n0::/\n",
            V1_MOUNTS,
            {
                "cpu,cpuacct/a/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/a/cpu.cfs_period_us": "100000\n",
                "cpu,cpuacct/a/b/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/a/b/cpu.cfs_period_us": "100000\n",
            },
            1,
            id="v1-parent",
        ),
        pytest.param(
            "2:cpu,cpuacct:/a\n",
            V1_MOUNTS,
            {
                "cpu,cpuacct/a/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/a/cpu.cfs_period_us": "100000\n",
            },
            None,
            id="v1-no-quota",
        ),
        pytest.param(
            "0::/lxc/box/web\n",
            CONTAINER_MOUNTS,
            {"web/cpu.max": "100000 100000\n"},
            1,
            id="container-mounts-its-own-subtree",
        ),
        pytest.param("0::/app\n", "", {}, None, id="no-cgroup-mount"),
    ],
)
def test_usable_cores_honours_the_smallest_cgroup_quota_on_the_process_path(
    tmp_path: Path, membership: str, mounts: str, files: dict[str, str], expected: int | None
) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    (proc / "cgroup").write_text(membership)
    (proc / "mountinfo").write_text(mounts.format(root=root))
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    want = affinity if expected is None else min(expected, affinity)
    assert usable_cores(proc) == want


def test_access_log_is_off_by_default_and_on_with_the_flag(launch: Callable[..., Server]) -> None:
    quiet = launch("hello:application", "--no-master")
    loud = launch("hello:application", "--no-master", "--access-log")
    for server in (quiet, loud):
        assert server.get_json("/pid")[0] == 200
    loud.wait_for_log(r"200 GET /pid")
    assert "GET /pid" not in quiet.log()


def test_a_body_over_max_body_size_is_refused(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--no-master", "--max-body-size", "1K")
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert server.get_json("/pid")[0] == 200


def test_help_shows_examples_and_version_works() -> None:
    help_text = run_cli("--help")
    assert help_text.returncode == 0
    assert "examples:" in help_text.stdout and "--graceful-timeout" in help_text.stdout
    assert "TORNADO_RUN_" in help_text.stdout
    version = subprocess.run(
        [sys.executable, "-m", "tornado_run.runner", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("tornado-run ")


def test_subcommands_are_dispatched_before_the_app_is_parsed() -> None:
    result = run_cli("status", "--pid", "/nonexistent/master.pid")
    assert "MODULE:ATTR" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode != 0


def test_every_settings_field_with_a_parser_is_an_option_with_its_default() -> None:
    from dataclasses import fields

    from tornado_run.runner.settings.options import OPTIONS_BY_NAME

    declared = [f for f in fields(Settings) if "option" in f.metadata]
    assert [f.name for f in declared] == list(OPTIONS_BY_NAME)
    for f in declared:
        assert OPTIONS_BY_NAME[f.name].default == f.default


@pytest.mark.parametrize("spec", ["a..b:c", "a.:b", ":b", "a:", "a:b..c"])
def test_launcher_and_supervisord_conf_reject_the_same_app_specs(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tornado_run.runner import supervisord_conf
    from tornado_run.runner.errors import UsageError

    with pytest.raises(UsageError, match="MODULE:ATTR"):
        load_settings(spec, {}, environ={})
    assert supervisord_conf.main([spec]) == 2
    assert "MODULE:ATTR" in capsys.readouterr().err
