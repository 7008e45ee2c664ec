"""The master's control socket: a unix socket that answers `status` with a JSON snapshot.

Where it lives: `--control PATH` if given, else next to the pid file (`FILE.ctl`), else
`$XDG_RUNTIME_DIR/tornado-run-UID/MASTERPID.ctl` (the temp dir when XDG_RUNTIME_DIR is unset),
where `tornado-run status` finds it without arguments. Only the master's user may connect.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .pollserver import PollServer
from .snapshot import Snapshot

SUFFIX = ".ctl"


def default_dir() -> Path:
    """Folder of control sockets of masters started without --pid or --control."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"tornado-run-{os.getuid()}"


def control_path(explicit: str | None, pid_file: str | None, master_pid: int) -> Path:
    """Where the master with `master_pid` puts its control socket."""
    if explicit:
        return Path(explicit)
    if pid_file:
        return Path(pid_file + SUFFIX)
    return default_dir() / f"{master_pid}{SUFFIX}"


def responder(snapshot: Callable[[], Snapshot]) -> Callable[[bytes], bytes | None]:
    """Answer one newline-terminated command; `status` is the only one."""

    def respond(request: bytes) -> bytes | None:
        if b"\n" not in request:
            return None
        command = request.split(b"\n", 1)[0].strip()
        if command == b"status":
            return snapshot().to_json().encode() + b"\n"
        return b'{"error": "unknown command; expected status"}\n'

    return respond


def control_server(path: Path, snapshot: Callable[[], Snapshot]) -> PollServer:
    """Bind the control socket at `path` (replacing a stale socket there), mode 0600.

    Raises OSError when the folder cannot be created or the path is taken by a non-socket.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"control socket path {str(path)!r} exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return PollServer(sock, responder(snapshot))


def remove(path: Path) -> None:
    """Remove the control socket file if it is still there (on master exit)."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()


def query(path: Path, timeout: float = 5.0) -> Snapshot:
    """Ask the master listening on `path` for its snapshot.

    Raises OSError when nobody answers there and ValueError on a garbled answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(b"status\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return Snapshot.from_json(b"".join(chunks).decode())


def running_masters(folder: Path | None = None) -> list[Path]:
    """Control sockets in the default folder whose master pid is still alive."""
    folder = folder or default_dir()
    found = []
    for entry in sorted(folder.glob(f"*{SUFFIX}")):
        pid_text = entry.name[: -len(SUFFIX)]
        if pid_text.isdigit() and _alive(int(pid_text)):
            found.append(entry)
    return found


def remove_stale(folder: Path | None = None) -> None:
    """Remove sockets left in the default folder by masters that died without cleaning up."""
    folder = folder or default_dir()
    for entry in folder.glob(f"*{SUFFIX}"):
        pid_text = entry.name[: -len(SUFFIX)]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            remove(entry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
