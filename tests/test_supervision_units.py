"""Recycling policies, privilege drop, --reload's watcher and --reuse-port sockets, without a
master: each module on its own, with real processes and sockets where they matter."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import psutil
import pytest
from tornado_run.runner.master.recycling import MIB, RecyclePolicy, Recycler
from tornado_run.runner.master.reloader import SourceWatcher
from tornado_run.runner.sockets import reuseport
from tornado_run.runner.worker import privileges

# --- recycling ---------------------------------------------------------------------------


def test_max_requests_recycles_at_the_limit_plus_jitter() -> None:
    policy = RecyclePolicy(max_requests=100, max_requests_jitter=10)
    limits = set()
    for seed in range(50):
        recycler = Recycler(policy, pid=os.getpid(), rng=random.Random(seed))
        limits.add(recycler.request_limit)
        assert recycler.check(recycler.request_limit - 1) is None
        reason = recycler.check(recycler.request_limit)
        assert reason is not None and reason.startswith("max-requests")
    assert min(limits) >= 100 and max(limits) <= 110
    assert len(limits) > 1, "jitter must spread the limits"


def test_max_lifetime_recycles_after_the_deadline() -> None:
    policy = RecyclePolicy(max_lifetime=60, max_lifetime_jitter=5)
    recycler = Recycler(policy, pid=os.getpid(), started=1000.0, rng=random.Random(1))
    assert recycler.deadline is not None and 1060 <= recycler.deadline <= 1065
    assert recycler.check(0, now=1059.9) is None
    reason = recycler.check(0, now=1065.1)
    assert reason is not None and reason.startswith("max-lifetime")


def test_max_memory_needs_consecutive_samples_over_the_limit() -> None:
    policy = RecyclePolicy(max_memory_mib=100, memory_samples=3)
    recycler = Recycler(policy, pid=os.getpid())
    over, under = 150 * MIB, 50 * MIB
    assert recycler.observe_rss(over) is None
    assert recycler.observe_rss(over) is None
    assert recycler.observe_rss(under) is None, "a dip below the limit resets the count"
    assert recycler.observe_rss(over) is None
    assert recycler.observe_rss(over) is None
    reason = recycler.observe_rss(over)
    assert reason is not None and "150 MiB" in reason and "3 consecutive" in reason


def test_max_memory_samples_the_real_process_rss() -> None:
    policy = RecyclePolicy(max_memory_mib=1, memory_samples=2, memory_interval=0.01)
    recycler = Recycler(policy, pid=os.getpid(), started=0.0)
    assert recycler.check(0, now=1.0) is None
    assert recycler.last_rss > MIB, "the sample is this process's real RSS"
    reason = recycler.check(0, now=2.0)
    assert reason is not None and reason.startswith("max-memory")


def test_memory_of_a_vanished_worker_is_no_verdict() -> None:
    proc = psutil.Popen(["true"])
    proc.wait(timeout=10)
    recycler = Recycler(RecyclePolicy(max_memory_mib=1, memory_samples=1), pid=proc.pid)
    assert recycler.check(0, now=time.monotonic() + 10) is None


def test_disabled_policy_never_recycles() -> None:
    policy = RecyclePolicy()
    assert not policy.enabled
    assert Recycler(policy, pid=os.getpid()).check(10**9, now=10**9) is None


@pytest.mark.parametrize(
    ("field", "flag"),
    [("max_requests", "--max-requests"), ("max_memory_mib", "--max-memory"),
     ("max_lifetime", "--max-lifetime"), ("max_requests_jitter", "--max-requests-jitter")],
)  # fmt: skip
def test_negative_limits_are_refused_naming_the_flag(field: str, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        RecyclePolicy(**{field: -1})


# --- privileges --------------------------------------------------------------------------


def test_unknown_user_and_group_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="--user 'no-such-user-xyz': no such user"):
        privileges.resolve("no-such-user-xyz", None)
    with pytest.raises(ValueError, match="--group 'no-such-group-xyz': no such group"):
        privileges.resolve(None, "no-such-group-xyz")


def test_no_user_or_group_means_no_change() -> None:
    assert privileges.resolve(None, None) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_forked_child_drops_to_nobody_for_good() -> None:
    identity = privileges.resolve("nobody", None)
    assert identity is not None and identity.uid != 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what it became, never return into pytest
        code = 1
        try:
            privileges.drop(identity)
            ids = os.getresuid() + os.getresgid() + (len(os.getgroups()),)
            os.write(write_end, " ".join(map(str, ids)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = os.read(read_end, 200).decode().split()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    uid, gid = str(identity.uid), str(identity.gid)
    assert report[:6] == [uid, uid, uid, gid, gid, gid]
    assert os.geteuid() == 0, "the parent keeps its identity"


@pytest.mark.parametrize(("text", "mask"), [("022", 0o22), ("0o027", 0o27), ("0", 0), (0o77, 0o77)])
def test_umask_is_octal(text: str | int, mask: int) -> None:
    assert privileges.parse_umask(text) == mask


@pytest.mark.parametrize("bad", ["8", "rw-", "1000", "-1"])
def test_bad_umask_is_refused_naming_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"--umask '{bad}'"):
        privileges.parse_umask(bad)


# --- reloader ----------------------------------------------------------------------------


def test_source_watcher_sees_changed_added_and_removed_files(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "ignored.py").write_text("")
    watcher = SourceWatcher([tmp_path], interval=0.5)
    assert watcher.watched == 1
    assert watcher.poll(now=time.monotonic() + 1) == []
    os.utime(app, ns=(time.time_ns(), time.time_ns() + 10**9))
    new = tmp_path / "pkg" / "views.py"
    new.parent.mkdir()
    new.write_text("")
    assert watcher.poll(now=time.monotonic() + 2) == sorted([app.resolve(), new.resolve()])
    new.unlink()
    assert watcher.poll(now=time.monotonic() + 3) == [new.resolve()]


def test_source_watcher_waits_for_its_interval(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("")
    watcher = SourceWatcher([tmp_path], interval=60)
    app.write_text("changed")
    os.utime(app, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert watcher.poll() == []
    assert watcher.poll(now=time.monotonic() + 61) == [app.resolve()]


# --- reuse-port --------------------------------------------------------------------------


def test_reservation_keeps_the_port_without_taking_connections() -> None:
    (reserved,) = reuseport.reserve("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        plain = socket.socket()
        with pytest.raises(OSError, match="in use"):
            plain.bind(("127.0.0.1", port))
        plain.close()
    finally:
        reserved.close()


def test_reuse_port_listeners_share_connections_evenly() -> None:
    (reserved,) = reuseport.reserve("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    listeners = [sock for _ in range(2) for sock in reuseport.listen_sockets("127.0.0.1", port)]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    try:
        counts = [_accept_all(sock) for sock in listeners]
        assert sum(counts) == 64
        assert min(counts) >= 8, f"the kernel hash should give each listener a share: {counts}"
    finally:
        for sock in [*clients, *listeners, reserved]:
            sock.close()


def test_localhost_reservation_covers_every_address_on_one_port() -> None:
    reserved = reuseport.reserve("localhost", 0)
    try:
        assert len({sock.getsockname()[1] for sock in reserved}) == 1
        listeners = reuseport.listen_sockets("localhost", reserved[0].getsockname()[1])
        assert len(listeners) == len(reserved)
        for sock in listeners:
            sock.close()
    finally:
        for sock in reserved:
            sock.close()


def test_worker_swaps_reservations_for_its_own_listeners_only(tmp_path: Path) -> None:
    reserved = reuseport.reserve("127.0.0.1", 0)
    port = reserved[0].getsockname()[1]
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "s"))
    unix.listen(1)
    worker_copy = [socket.socket(fileno=os.dup(reserved[0].fileno())), unix]
    own = reuseport.worker_sockets(worker_copy, backlog=16)
    try:
        assert own[1] is unix and len(own) == 2
        assert own[0].getsockname() == ("127.0.0.1", port)
        assert not reuseport.is_reservation(own[0])
        assert reuseport.is_reservation(reserved[0]), "the master's reservation stays"
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        for sock in [*own, *reserved]:
            sock.close()


def test_reuse_port_refuses_a_port_another_server_holds() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        with pytest.raises(OSError, match="in use"):
            reuseport.reserve("127.0.0.1", other.getsockname()[1])
    first = reuseport.reserve("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            reuseport.reserve("127.0.0.1", first[0].getsockname()[1])
    finally:
        first[0].close()


def _accept_all(listener: socket.socket) -> int:
    accepted = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            if accepted:
                break
            time.sleep(0.01)
            continue
        conn.close()
        accepted += 1
    return accepted


def test_migration_setting_is_read_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    off.write_text("0\n")
    on.write_text("1\n")
    assert reuseport.migration_enabled(off) is False
    assert reuseport.migration_enabled(on) is True
    assert reuseport.migration_enabled(tmp_path / "missing") is None
    assert reuseport.warn_without_migration(off)
    assert "tcp_migrate_req" in caplog.text
    assert not reuseport.warn_without_migration(on)
