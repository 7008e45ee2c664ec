"""Listening sockets: parse `--bind` addresses, bind them in the master before forking, adopt
inherited descriptors (`fd://N`, systemd socket activation)."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from tornado.netutil import bind_sockets

from ..errors import BadValue, UsageError

BIND_FORMS = "use HOST:PORT, [IPv6]:PORT, unix:PATH[?mode=0660&group=NAME] or fd://N"
UNIX_QUERY = (
    "use unix:PATH?mode=0660&group=NAME (mode octal, group a name or a number; both optional)"
)
DEFAULT_UNIX_MODE = 0o660
SYSTEMD_FIRST_FD = 3


@dataclass(frozen=True)
class BindSpec:
    """One parsed `--bind` value; `text` is what the user wrote."""

    text: str
    kind: str  # "tcp" | "unix" | "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    mode: int = DEFAULT_UNIX_MODE
    group: str = ""  # unix: the socket file's group (a name or a gid); "" keeps the master's
    fd: int = -1


def parse_bind(text: str) -> BindSpec:
    """Parse one bind address or raise `BadValue` naming the allowed forms."""
    text = text.strip()
    if text.startswith("unix:"):
        return _parse_unix(text)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isdigit() or int(number) > 65535:
            raise BadValue("fd://N needs a file descriptor number, e.g. fd://3")
        return BindSpec(text, "fd", fd=int(number))
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme:
        raise BadValue(f"unknown scheme '{scheme.group(1)}'; {BIND_FORMS}")
    match = re.fullmatch(r"\[([0-9a-fA-F:.%a-zA-Z]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", text)
    if not match:
        raise BadValue(BIND_FORMS)
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise BadValue("the port must be from 0 to 65535 (0 picks a free port)")
    return BindSpec(text, "tcp", host=host, port=port)


def _parse_unix(text: str) -> BindSpec:
    path, _, query = text[len("unix:") :].partition("?")
    if not path:
        raise BadValue("unix:PATH needs a path, e.g. unix:/run/app.sock")
    params = _unix_params(query)
    mode = DEFAULT_UNIX_MODE
    if "mode" in params:
        match = re.fullmatch(r"(0o?)?([0-7]{3,4})", params["mode"])
        if not match:
            raise BadValue("the unix socket mode must be octal, e.g. unix:/run/app.sock?mode=0660")
        mode = int(match.group(2), 8)
    group = params.get("group", "")
    if "group" in params and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", group):
        raise BadValue(f"group '{group}' is not a group name or number, e.g. group=www-data")
    return BindSpec(text, "unix", path=path, mode=mode, group=group)


def _unix_params(query: str) -> dict[str, str]:
    """`mode=0660&group=www-data` as a dict; each key once, no other keys."""
    params: dict[str, str] = {}
    for item in query.split("&") if query else []:
        key, sep, value = item.partition("=")
        if not sep or key not in ("mode", "group") or key in params:
            raise BadValue(UNIX_QUERY)
        params[key] = value
    return params


def unix_group_id(spec: BindSpec) -> int:
    """The gid for `spec.group` (-1 for none); `UsageError` naming the group if unknown."""
    if not spec.group:
        return -1
    if spec.group.isdigit():
        return int(spec.group)
    try:
        return grp.getgrnam(spec.group).gr_gid
    except KeyError:
        raise UsageError(
            f"--bind {spec.text}: unknown group '{spec.group}' (no such group on this machine)"
        ) from None


def bind_all(specs: tuple[BindSpec, ...], backlog: int) -> list[socket.socket]:
    """Bind (or adopt) every address; on any failure close what was bound and raise
    `UsageError` naming the address and the reason."""
    bound: list[socket.socket] = []
    try:
        for spec in specs:
            bound.extend(_bind_one(spec, backlog))
    except BaseException:
        close_all(bound)
        raise
    return bound


def _bind_one(spec: BindSpec, backlog: int) -> list[socket.socket]:
    try:
        if spec.kind == "tcp":
            return bind_sockets(spec.port, spec.host, backlog=backlog)
        if spec.kind == "unix":
            return [_bind_unix(spec, backlog)]
        return [adopt_fd(spec.fd, backlog, f"--bind {spec.text}")]
    except OSError as exc:
        raise bind_error(spec, exc) from None


def bind_error(spec: BindSpec, exc: OSError, note: str = "") -> UsageError:
    """The one-line error for a failed bind of `spec`, e.g. "--bind 127.0.0.1:80: address
    already in use (another server is listening there)"; `note` is appended in parentheses."""
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve host '{spec.host}' ({exc.strerror})"
    elif exc.errno == errno.EADDRINUSE:
        reason = "address already in use (another server is listening there)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = "cannot assign that address (not an address of this machine)"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    else:
        reason = exc.strerror or str(exc)
    return UsageError(f"--bind {spec.text}: {reason}" + (f" ({note})" if note else ""))


def _bind_unix(spec: BindSpec, backlog: int) -> socket.socket:
    path = Path(spec.path)
    if not path.parent.is_dir():
        raise UsageError(f"--bind {spec.text}: directory {path.parent} does not exist")
    gid = unix_group_id(spec)
    _remove_stale_unix_socket(spec, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(str(path))
        _set_group(spec, path, gid)
        os.chmod(path, spec.mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _set_group(spec: BindSpec, path: Path, gid: int) -> None:
    """Give the socket file to `gid`, before it listens, so a proxy in that group (nginx's
    www-data workers) can connect under a mode such as 0660 that shuts everyone else out."""
    if gid < 0:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        path.unlink()
        raise UsageError(
            f"--bind {spec.text}: cannot give the socket to group '{spec.group}' "
            "(permission denied: the master must be root or a member of that group)"
        ) from None


def _remove_stale_unix_socket(spec: BindSpec, path: Path) -> None:
    """A socket file nobody listens on is left over from a crash: remove it. One that answers
    belongs to a running server: refuse."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"--bind {spec.text}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise UsageError(f"--bind {spec.text}: address already in use (a server answers on {path})")


def adopt_fd(fd: int, backlog: int, where: str) -> socket.socket:
    """Wrap an inherited listening socket; raise `UsageError` if `fd` is not a stream socket."""
    try:
        os.fstat(fd)
    except OSError:
        raise UsageError(f"{where}: file descriptor {fd} is not open") from None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        raise UsageError(f"{where}: file descriptor {fd} is not a socket") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise UsageError(f"{where}: file descriptor {fd} is not a stream (TCP or unix) socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        try:
            sock.listen(backlog)
        except OSError as exc:
            sock.detach()
            reason = exc.strerror or str(exc)
            raise UsageError(f"{where}: cannot listen on fd {fd}: {reason}") from None
    sock.setblocking(False)
    return sock


def systemd_sockets(backlog: int) -> list[socket.socket] | None:
    """Sockets passed by systemd socket activation (LISTEN_FDS for this pid), or None.

    The variables are removed so that processes started later do not claim them too.
    """
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    if not pid or not count:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid():
        return None
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"LISTEN_FDS={count!r}: systemd passed no sockets; expected a number >= 1")
    fds = range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(count))
    return [adopt_fd(fd, backlog, f"LISTEN_FDS fd {fd}") for fd in fds]


def describe(sock: socket.socket, tls: bool = False) -> str:
    """A URL-like name of a listening socket, e.g. http://127.0.0.1:8000, https://[::1]:8443,
    unix:/run/a.sock or unix:/run/a.sock (TLS)."""
    name = sock.getsockname()
    scheme = "https" if tls else "http"
    if sock.family == socket.AF_UNIX:
        path = name.decode() if isinstance(name, bytes) else name
        return f"unix:{path} (TLS)" if tls else f"unix:{path}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    return f"{scheme}://{name[0]}:{name[1]}"


def close_all(socks: list[socket.socket]) -> None:
    """Close sockets, ignoring ones already closed."""
    for sock in socks:
        sock.close()


def remove_unix_files(specs: tuple[BindSpec, ...]) -> None:
    """Remove the socket files this process created for `unix:` binds (at the final stop)."""
    for spec in specs:
        if spec.kind == "unix":
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(spec.path).st_mode):
                    os.unlink(spec.path)
