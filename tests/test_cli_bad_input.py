"""Every kind of bad input gives one clear error line naming the value and what is allowed,
exit code 2 (3 when the application cannot load), and never a traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runner_support import APPS, run_cli

HELLO = ["hello:application", "--app-dir", str(APPS)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    (folder / "bad.toml").write_text("[server]\nworkers = \n")
    (folder / "typo.toml").write_text("[server]\nwrkers = 2\n")
    (folder / "wrongtype.toml").write_text('[server]\ngraceful_timeout = "soon"\n')
    (folder / "table.toml").write_text("[srv]\nworkers = 2\n")
    (folder / "pools.toml").write_text("pools = 3\n")
    (folder / "logging.toml").write_text('[logging]\nversion = 1\n[logging.root]\nlevel = "LOUD"\n')
    (folder / "bindlist.toml").write_text('[server]\nbind = ["127.0.0.1:80", 7]\n')
    (folder / "syntax_app.py").write_text("def app(:\n    pass\n")
    fake = folder / "no_uvloop" / "uvloop"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('uvloop is not installed here')\n")
    return folder


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


# (case id, argv after "tornado-run", extra env, expected exit code, text the error names)
CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    ("unknown module", ["nosuchmod:app", "--check"], {}, 3, "cannot import module 'nosuchmod'"),
    (
        "missing attribute",
        ["hello:nosuch", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "'hello' has no attribute 'nosuch'",
    ),
    (
        "dotted attribute missing",
        ["hello:Pid.nosuch", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "'hello:Pid' has no attribute 'nosuch'",
    ),
    (
        "not an Application",
        ["hello:VERSION", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "'hello:VERSION' is a str, not a tornado.web.Application",
    ),
    (
        "factory needed",
        ["factory_app:make_app", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "pass --factory",
    ),
    (
        "factory raising",
        ["factory_app:broken", "--factory", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "the factory 'factory_app:broken' raised: RuntimeError: database unreachable",
    ),
    (
        "factory not callable",
        ["hello:VERSION", "--factory", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "is a str, not callable",
    ),
    (
        "app raising at import",
        ["boom_app:application", "--app-dir", str(APPS), "--check"],
        {},
        3,
        "importing module 'boom_app' failed: RuntimeError",
    ),
    (
        "app ConfigurationError",
        ["factory_app:misconfigured", "--factory", "--app-dir", str(APPS), "--check"],
        {},
        2,
        "[pools.cpu] size = -1 is not allowed",
    ),
    (
        "syntax error",
        ["syntax_app:app", "--app-dir", "{files}", "--check"],
        {},
        3,
        "syntax error in",
    ),
    ("app spec without colon", ["hello", "--check"], {}, 2, "use MODULE:ATTR"),
    ("missing app", [], {}, 2, "missing the application"),
    (
        "misspelt option",
        [*HELLO, "--wrokers", "2"],
        {},
        2,
        "unrecognized option --wrokers; did you mean --workers?",
    ),
    (
        "misspelt option before the app",
        ["--wrokers", "2", *HELLO],
        {},
        2,
        "unrecognized option --wrokers; did you mean --workers?",
    ),
    ("unknown short option", [*HELLO, "-x"], {}, 2, "unrecognized option -x"),
    (
        "unknown access log atom",
        [*HELLO, "--access-log-format", "%(h)s %(zz)s"],
        {},
        2,
        "--access-log-format '%(h)s %(zz)s': unknown atom %(zz)s; use %(h)s",
    ),
    ("reload dir without --reload", [*HELLO, "--reload-dir", "."], {}, 2, "needs --reload"),
    (
        "reload dir missing",
        [*HELLO, "--reload", "--reload-dir", "/nonexistent"],
        {},
        2,
        "--reload-dir '/nonexistent': /nonexistent is not a directory",
    ),
    (
        "workers zero",
        [*HELLO, "--workers", "0"],
        {},
        2,
        "--workers '0': use 'auto' or a whole number from 1 to 1024",
    ),
    ("workers not a number", [*HELLO, "--workers", "many"], {}, 2, "--workers 'many'"),
    ("workers env", HELLO, {"TORNADO_RUN_WORKERS": "lots"}, 2, "TORNADO_RUN_WORKERS='lots'"),
    ("WEB_CONCURRENCY", HELLO, {"WEB_CONCURRENCY": "-3"}, 2, "WEB_CONCURRENCY='-3'"),
    (
        "port out of range",
        [*HELLO, "--bind", "127.0.0.1:70000"],
        {},
        2,
        "--bind '127.0.0.1:70000': the port must be from 0 to 65535",
    ),
    (
        "port in use",
        [*HELLO, "--bind", "127.0.0.1:{port}", "--check"],
        {},
        2,
        "address already in use",
    ),
    (
        "unknown bind scheme",
        [*HELLO, "--bind", "http://127.0.0.1:80"],
        {},
        2,
        "unknown scheme 'http'",
    ),
    ("bind without port", [*HELLO, "--bind", "localhost"], {}, 2, "use HOST:PORT"),
    (
        "unresolvable host",
        [*HELLO, "--bind", "no-such-host.invalid:8000", "--check"],
        {},
        2,
        "cannot resolve host 'no-such-host.invalid'",
    ),
    (
        "foreign address",
        [*HELLO, "--bind", "192.0.2.1:8000", "--check"],
        {},
        2,
        "cannot assign that address",
    ),
    (
        "unix dir missing",
        [*HELLO, "--bind", "unix:/nonexistent/dir/app.sock", "--check"],
        {},
        2,
        "directory /nonexistent/dir does not exist",
    ),
    ("unix bad mode", [*HELLO, "--bind", "unix:/tmp/x.sock?mode=999"], {}, 2, "mode must be octal"),
    (
        "unix unknown group",
        [*HELLO, "--bind", "unix:/tmp/x-group.sock?mode=0660&group=no-such-group", "--check"],
        {},
        2,
        "unknown group 'no-such-group'",
    ),
    (
        "unix unknown parameter",
        [*HELLO, "--bind", "unix:/tmp/x.sock?owner=www-data"],
        {},
        2,
        "unix:PATH?mode=0660&group=NAME",
    ),
    (
        "unix group not a name",
        [*HELLO, "--bind", "unix:/tmp/x.sock?group=a b"],
        {},
        2,
        "group 'a b' is not a group name",
    ),
    (
        "fd not open",
        [*HELLO, "--bind", "fd://999", "--check"],
        {},
        2,
        "file descriptor 999 is not open",
    ),
    ("fd not a socket", [*HELLO, "--bind", "fd://{filefd}", "--check"], {}, 2, "is not a socket"),
    ("fd not a number", [*HELLO, "--bind", "fd://three"], {}, 2, "fd://N needs a file descriptor"),
    ("bad TOML", [*HELLO, "--config", "{files}/bad.toml"], {}, 2, "invalid TOML"),
    ("config not found", [*HELLO, "--config", "/nonexistent.toml"], {}, 2, "file not found"),
    (
        "config from env not found",
        HELLO,
        {"TORNADO_RUN_CONFIG": "/nonexistent.toml"},
        2,
        "--config /nonexistent.toml: file not found",
    ),
    (
        "unknown config key",
        [*HELLO, "--config", "{files}/typo.toml"],
        {},
        2,
        "unknown key 'wrkers' in [server]; did you mean 'workers'?",
    ),
    (
        "wrong value type",
        [*HELLO, "--config", "{files}/wrongtype.toml"],
        {},
        2,
        "graceful_timeout = 'soon'",
    ),
    (
        "wrong item type in list",
        [*HELLO, "--config", "{files}/bindlist.toml"],
        {},
        2,
        "bind = ['127.0.0.1:80', 7]",
    ),
    (
        "unknown table",
        [*HELLO, "--config", "{files}/table.toml"],
        {},
        2,
        "unknown table or key 'srv'",
    ),
    (
        "pools not a table",
        [*HELLO, "--config", "{files}/pools.toml"],
        {},
        2,
        "'pools' must be a table",
    ),
    (
        "bad logging table",
        [*HELLO, "--config", "{files}/logging.toml"],
        {},
        2,
        "[logging] table in the config file is invalid",
    ),
    (
        "negative graceful timeout",
        [*HELLO, "--graceful-timeout=-1"],
        {},
        2,
        "--graceful-timeout '-1': use a number of seconds >= 0",
    ),
    ("zero idle timeout", [*HELLO, "--idle-timeout", "0"], {}, 2, "use a number of seconds > 0"),
    ("infinite body timeout", [*HELLO, "--body-timeout", "inf"], {}, 2, "--body-timeout 'inf'"),
    (
        "zero max connections",
        [*HELLO, "--max-connections", "0"],
        {},
        2,
        "--max-connections '0': use a whole number >= 1",
    ),
    (
        "max header size without a number",
        [*HELLO, "--max-header-size", "big"],
        {},
        2,
        "--max-header-size 'big': use a number of bytes >= 1",
    ),
    (
        "unknown loop",
        [*HELLO, "--loop", "trio"],
        {},
        2,
        "--loop 'trio': use one of: auto, asyncio, uvloop",
    ),
    (
        "uvloop not installed",
        [*HELLO, "--loop", "uvloop"],
        {"PYTHONPATH": "{files}/no_uvloop"},
        2,
        "uvloop is not installed",
    ),
    (
        "unwritable pid file",
        [*HELLO, "--pid", "/nonexistent/dir/app.pid"],
        {},
        2,
        "cannot write the pid file",
    ),
    ("bad log level", [*HELLO, "--log-level", "loud"], {}, 2, "--log-level 'loud'"),
    (
        "bad boolean env",
        HELLO,
        {"TORNADO_RUN_ACCESS_LOG": "maybe"},
        2,
        "TORNADO_RUN_ACCESS_LOG='maybe': use true or false",
    ),
    ("bad body size", [*HELLO, "--max-body-size", "10X"], {}, 2, "--max-body-size '10X'"),
    ("bad backlog", [*HELLO, "--backlog", "0"], {}, 2, "--backlog '0'"),
    (
        "bad forwarded ips",
        [*HELLO, "--forwarded-allow-ips", "10.0.0.300"],
        {},
        2,
        "--forwarded-allow-ips '10.0.0.300'",
    ),
    (
        "app dir missing",
        ["hello:application", "--app-dir", "/nonexistent/app"],
        {},
        2,
        "--app-dir '/nonexistent/app': no such directory",
    ),
    (
        "no-master with workers",
        [*HELLO, "--no-master", "--workers", "4"],
        {},
        2,
        "--workers 4 with --no-master",
    ),
    ("bad LISTEN_FDS", HELLO, {"LISTEN_FDS": "x", "LISTEN_PID": "{self}"}, 2, "LISTEN_FDS='x'"),
]


@pytest.mark.parametrize(
    ("argv", "env", "code", "expected"),
    [pytest.param(a, e, c, x, id=i) for i, a, e, c, x in CASES],
)
def test_bad_input_is_one_clear_line_and_the_right_exit_code(
    argv: list[str],
    env: dict[str, str],
    code: int,
    expected: str,
    files: Path,
    busy_port: int,
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a socket")
    with plain.open() as handle:
        values = {
            "files": str(files),
            "port": str(busy_port),
            "filefd": str(handle.fileno()),
            "self": "{self}",
        }
        args = [item.format(**values) for item in argv]
        environment = {key: value.format(**values) for key, value in env.items()}
        if "{self}" in env.get("LISTEN_PID", ""):
            result = _run_with_own_pid(args, environment)
        else:
            result = run_cli(*args, env=environment, pass_fds=[handle.fileno()])
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("tornado-run: error: "), result.stderr
    assert expected in lines[0], result.stderr
    if code == 2:
        assert len(lines) == 1, result.stderr


def _run_with_own_pid(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """LISTEN_PID must be the pid of tornado-run itself: sh sets it to $$ and execs."""
    from runner_support import TORNADO_RUN, clean_env

    env = {**env}
    env.pop("LISTEN_PID")
    return subprocess.run(
        ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', str(TORNADO_RUN), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_there_are_at_least_25_bad_input_cases() -> None:
    assert len(CASES) >= 25
