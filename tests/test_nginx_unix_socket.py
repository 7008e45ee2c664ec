"""The real nginx in front of tornado-run on a unix socket, with conf/nginx.conf as shipped:
a root nginx master whose workers run as www-data reach a socket of mode 0660 only when
`group=www-data` gives the socket to their group; without it they answer 502."""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runner_support import Server, free_port, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SAMPLE = Path(__file__).resolve().parent.parent / "conf" / "nginx.conf"
SAMPLE_SOCKET = "server unix:/run/myapp/app.sock "  # the upstream line


def _why_not() -> str:
    if not os.access(NGINX, os.X_OK):
        return "nginx is not installed (apt-get install nginx-light)"
    if os.getuid() != 0:
        return "needs root: the nginx master runs as root with www-data workers"
    try:
        pwd.getpwnam("www-data")
        grp.getgrnam("www-data")
    except KeyError:
        return "no www-data user and group on this machine"
    return ""


pytestmark = [
    pytest.mark.skipif(bool(_why_not()), reason=_why_not()),
    pytest.mark.timeout(90),
]


class Nginx:
    """nginx run from a folder of its own: nginx.conf, the sample as site.conf, pid, logs."""

    def __init__(self, folder: Path, socket_path: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.pid_file = folder / "nginx.pid"
        site = SAMPLE.read_text()
        assert site.count(SAMPLE_SOCKET) == 1 and site.count("listen 80;") == 1
        site = site.replace(SAMPLE_SOCKET, f"server unix:{socket_path} ")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        (folder / "site.conf").write_text(site)
        (folder / "nginx.conf").write_text(
            f"user www-data;\nworker_processes 1;\ndaemon off;\npid {self.pid_file};\n"
            f"error_log {folder}/error.log;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n  access_log {folder}/access.log;\n"
            f"  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
            f"  include {folder}/site.conf;\n}}\n"
        )
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "stderr.log").open("wb"),
        )
        wait_until(self._listening, 15, f"nginx listening on 127.0.0.1:{self.port}")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, (self.folder / "stderr.log").read_text()
        if not self.pid_file.exists():
            return False
        with contextlib.suppress(OSError):
            http.client.HTTPConnection("127.0.0.1", self.port, timeout=2).connect()
            return True
        return False

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def error_log(self) -> str:
        return (self.folder / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop nginx by the pid in its pid file (TERM: fast shutdown), then reap it."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder www-data can pass through (pytest's tmp_path is 0700, root's only)."""
    path = Path(tempfile.mkdtemp(prefix="tornado-run-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx_in_front(folder: Path) -> Iterator[Callable[[], Nginx]]:
    started: list[Nginx] = []

    def start() -> Nginx:
        started.append(Nginx(folder, folder / "app.sock"))
        return started[-1]

    yield start
    for nginx in started:
        nginx.stop()


def test_nginx_workers_reach_a_0660_socket_given_to_their_group(
    launch: Callable[..., Server], folder: Path, nginx_in_front: Callable[[], Nginx]
) -> None:
    sock = folder / "app.sock"
    server = launch(
        "hello:application", "--workers", "2", bind=f"unix:{sock}?mode=0660&group=www-data"
    )
    assert (sock.stat().st_gid, sock.stat().st_mode & 0o777) == (
        grp.getgrnam("www-data").gr_gid,
        0o660,
    )
    nginx = nginx_in_front()
    statuses = [nginx.get("/pid")[0] for _ in range(30)]
    assert statuses == [200] * 30, nginx.error_log()
    assert server.stop() == 0


def test_without_the_group_nginx_workers_are_refused_and_answer_502(
    launch: Callable[..., Server], folder: Path, nginx_in_front: Callable[[], Nginx]
) -> None:
    sock = folder / "app.sock"
    server = launch("hello:application", bind=f"unix:{sock}?mode=0660")
    nginx = nginx_in_front()
    assert nginx.get("/pid")[0] == 502
    assert "Permission denied" in nginx.error_log()
    assert server.stop() == 0
