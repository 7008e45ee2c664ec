"""`--reuse-port`: one `SO_REUSEPORT` listening socket per worker, so the kernel spreads
connections evenly instead of letting the busiest worker take them all.

The master calls `reserve` for each TCP address: a socket bound with SO_REUSEPORT that never
listens. Linux gives connections only to listening sockets of the group, so the reservation
takes none, yet the port stays taken (another program cannot bind it) and port 0 resolves once
for every worker. The listening sockets of the group are opened by the master too, one per
worker position (`socketsets.py`), so that replacing a worker loses no queued connection;
`worker_sockets` (a worker binding its own socket) remains for a master without that hook.
The kernel only groups sockets created by the same user: bind before dropping privileges.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tornado.netutil import bind_sockets

from .binding import BindSpec, bind_all, bind_error

log = logging.getLogger("tornado_run.reuseport")

MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def supported() -> bool:
    """True when this platform has SO_REUSEPORT with load balancing (Linux >= 3.9)."""
    return hasattr(socket, "SO_REUSEPORT")


def _addresses(host: str, port: int) -> list[tuple[int, int, int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    unique = {(family, kind, proto, address): None for family, kind, proto, _, address in infos}
    return [(f, k, p, tuple(a)) for f, k, p, a in unique]


def reserve(host: str, port: int) -> list[socket.socket]:
    """Bind (without listening) SO_REUSEPORT sockets on every address of host:port.

    With `port` 0 every address gets the port the first one drew; `getsockname()` tells it.
    Raises OSError (e.g. address in use) like a plain bind would, closing what it bound.
    """
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, address in _addresses(host, port):
            if bound and port == 0:
                address = (address[0], bound[0].getsockname()[1], *address[2:])
            if address[1]:
                _refuse_if_taken(family, kind, proto, address)
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                # "localhost" may resolve to ::1 on a host without IPv6, as Tornado allows.
                if exc.errno != errno.EADDRNOTAVAIL or family != socket.AF_INET6:
                    raise
                bound.pop().close()
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def _refuse_if_taken(family: int, kind: int, proto: int, address: tuple[object, ...]) -> None:
    """Raise EADDRINUSE if anyone listens on or reserves `address`: a SO_REUSEPORT bind alone
    would silently join another server's group (same user) and split its traffic."""
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(address)


def listen_sockets(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Create this worker's own non-blocking listening sockets on host:port (a real port)."""
    return bind_sockets(port, host or None, backlog=backlog, reuse_port=True)


def bind_for_workers(specs: Iterable[BindSpec], backlog: int) -> list[socket.socket]:
    """In the master: reserve every TCP `--bind` spec; bind the others (unix, fd://) as
    usual, shared. Raises UsageError naming the address that failed."""
    result: list[socket.socket] = []
    try:
        for spec in specs:
            if spec.kind != "tcp":
                result.extend(bind_all((spec,), backlog))
                continue
            try:
                result.extend(reserve(spec.host, spec.port))
            except OSError as exc:
                raise bind_error(spec, exc) from None
    except BaseException:
        for sock in result:
            sock.close()
        raise
    return result


def is_reservation(sock: socket.socket) -> bool:
    """True for a TCP socket bound with SO_REUSEPORT that does not listen (made by `reserve`)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        reuse = sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    except OSError:
        return False
    return bool(reuse) and not listening


def worker_sockets(inherited: list[socket.socket], backlog: int) -> list[socket.socket]:
    """In a worker after the fork: replace each inherited reservation by this worker's own
    listening socket on the same address; other sockets (shared, unix, fd://) pass through.

    The worker's copies of the reservations are closed (the master keeps its own).
    """
    result: list[socket.socket] = []
    for sock in inherited:
        if not is_reservation(sock):
            result.append(sock)
            continue
        host, port = sock.getsockname()[:2]
        sock.close()
        result.extend(listen_sockets(host, port, backlog))
    return result


def accept_queued(
    sock: socket.socket, handle: Callable[[socket.socket, Any], None], limit: int = 4096
) -> int:
    """Accept every connection already queued on `sock` (non-blocking) and pass each to
    `handle`; returns how many. A worker calls it right before closing its own listening
    socket: without `tcp_migrate_req`, the kernel would reset them."""
    accepted = 0
    while accepted < limit:
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        accepted += 1
        handle(conn, address)
    return accepted


def migration_enabled(path: Path = MIGRATE_REQ) -> bool | None:
    """Whether the kernel moves queued connections of a closing listener to its siblings
    (`net.ipv4.tcp_migrate_req`); None when the kernel does not have the setting."""
    try:
        return path.read_text().strip() != "0"
    except OSError:
        return None


def warn_without_migration(path: Path = MIGRATE_REQ) -> bool:
    """Log a warning when migration is off; returns True if it warned."""
    if migration_enabled(path) is not False:
        return False
    log.warning(
        "--reuse-port: net.ipv4.tcp_migrate_req is 0, so connections still queued in a worker "
        "that exits or crashes are reset; enable it with `sysctl -w net.ipv4.tcp_migrate_req=1`"
    )
    return True
